"""matrix-js-sdk 43.0.0 (``interop/node/check_client_shim.mjs``: its MSC4108SignInWithQR and friends, unchanged) under
``qrlogin check-client``, in all four roles and sides of v1, the generation it speaks. Its scorecard is recorded
here, one line per scenario it does not pass, and in docs/conformance.md: a change on either side (a js-sdk upgrade,
a stricter or looser judge) shows up as the list of lines that changed."""

from __future__ import annotations

import shlex

import pytest

from qrlogin import qr
from qrlogin.check_client.run import Target
from qrlogin.check_client.suite import Report
from qrlogin.vocabulary import DeviceRole, QrSide
from tests.device.js_sdk_peer import NODE_PROJECT, require_js_sdk

from .scorecard import differences, play_all

pytestmark = pytest.mark.interop

SHIM = NODE_PROJECT / "check_client_shim.mjs"
TEMPLATE = (
    f"node {shlex.quote(str(SHIM))} --role {{role}} --side {{side}} --generation {{generation}}"
    " --homeserver {homeserver} --server-name {server_name} --qr {qr_hex} --access-token {access_token}"
    " --device-id {device_id} --secrets {secrets_file}"
)
TARGETS = [
    Target(role, side, qr.Generation.V1)
    for role in (DeviceRole.NEW, DeviceRole.EXISTING)
    for side in (QrSide.SHOWS, QrSide.SCANS)
]

#: What js-sdk 43 does not pass (docs/conformance.md has the evidence of each).
EXPECTED_NOT_PASSING = {
    ("stale-token-write", "new/shows/v1"): "warn",
    ("write-answer-lost", "new/shows/v1"): "warn",
    ("rate-limited", "new/shows/v1"): "fail",
    ("token-authorization-declined", "new/shows/v1"): "fail",
    ("malformed-secrets", "new/shows/v1"): "warn",
    ("unsupported-protocol", "new/shows/v1"): "warn",
    ("gives-up-tells-peer", "new/shows/v1"): "fail",
    ("creator-deletes-rendezvous", "new/shows/v1"): "fail",
    ("stale-token-write", "new/scans/v1"): "warn",
    ("write-answer-lost", "new/scans/v1"): "warn",
    ("rate-limited", "new/scans/v1"): "fail",
    ("token-authorization-declined", "new/scans/v1"): "fail",
    ("malformed-secrets", "new/scans/v1"): "warn",
    ("gives-up-tells-peer", "new/scans/v1"): "fail",
    ("stale-token-write", "existing/shows/v1"): "fail",
    ("write-answer-lost", "existing/shows/v1"): "fail",
    ("rate-limited", "existing/shows/v1"): "fail",
    ("device-check-error", "existing/shows/v1"): "fail",
    ("gives-up-tells-peer", "existing/shows/v1"): "fail",
    ("creator-deletes-rendezvous", "existing/shows/v1"): "fail",
    ("stale-token-write", "existing/scans/v1"): "warn",
    ("write-answer-lost", "existing/scans/v1"): "warn",
    ("rate-limited", "existing/scans/v1"): "fail",
    ("device-check-error", "existing/scans/v1"): "fail",
    ("gives-up-tells-peer", "existing/scans/v1"): "fail",
}


@pytest.fixture(scope="module")
def report() -> Report:
    require_js_sdk()
    return play_all(TEMPLATE, TARGETS)


def test_js_sdk_scorecard_is_the_recorded_one(report: Report) -> None:
    assert differences(report, EXPECTED_NOT_PASSING) == []


def test_js_sdk_signs_in_in_every_role(report: Report) -> None:
    honest = [r for r in report.results if r.scenario == "sign-in-completes"]
    assert [r.grade for r in honest] == ["pass"] * 4, honest
