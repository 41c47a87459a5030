"""qrlogin's own runner (``qrlogin login`` / ``qrlogin link --events json``) under ``qrlogin check-client``: every MUST
passes in every role and side, for v1 (the deployed generation) and v3 (the current text). The SHOULDs it does not
meet are recorded here and in docs/conformance.md, so a change is noticed."""

from __future__ import annotations

import pytest

from qrlogin import qr
from qrlogin.check_client.run import Target
from qrlogin.check_client.suite import Report, run_fuzz
from qrlogin.vocabulary import DeviceRole, QrSide

from .scorecard import JOBS, QRLOGIN_SHIM, differences, play_all

# Each role and each side once in each generation (docs/conformance.md has the scorecard of all eight).
TARGETS = [
    Target(DeviceRole.NEW, QrSide.SHOWS, qr.Generation.V1),
    Target(DeviceRole.EXISTING, QrSide.SCANS, qr.Generation.V1),
    Target(DeviceRole.NEW, QrSide.SCANS, qr.Generation.V3),
    Target(DeviceRole.EXISTING, QrSide.SHOWS, qr.Generation.V3),
]

#: What qrlogin does not pass, and why. A scanner whose channel failed can neither seal a failure nor (having not
#: created the session) delete it; a conflict that leaves the slot unchanged ends the session (docs/rendezvous.md).
EXPECTED_NOT_PASSING = {
    ("stale-token-write", "new/shows/v1"): "warn",
    ("stale-token-write", "existing/scans/v1"): "warn",
    ("gives-up-tells-peer", "existing/scans/v1"): "fail",
    ("stale-token-write", "new/scans/v3"): "warn",
    ("gives-up-tells-peer", "new/scans/v3"): "fail",
    ("stale-token-write", "existing/shows/v3"): "warn",
}


#: The scenarios that reseal a plaintext under the counterpart's channel keys, and the nonce check, which opens the
#: client's payloads with them: graded in v3 (HPKE) as in v1 (ECIES), skipped only where the role has no such message.
RESEALING = [
    "plaintext-not-json",
    "unknown-message-type",
    "unexpected-message-1",
    "unexpected-message-2",
    "unexpected-message-3",
    "failure-at-message-1",
    "failure-at-message-2",
    "failure-at-message-3",
    "malformed-secrets",
    "unsupported-protocol",
    "nonce-unique",
]
NOT_APPLICABLE_V3 = {
    ("unexpected-message-3", "new/scans/v3"),
    ("failure-at-message-3", "new/scans/v3"),
    ("unsupported-protocol", "new/scans/v3"),
    ("unexpected-message-3", "existing/shows/v3"),
    ("failure-at-message-3", "existing/shows/v3"),
    ("malformed-secrets", "existing/shows/v3"),
    ("unsupported-protocol", "existing/shows/v3"),
}


@pytest.fixture(scope="module")
def report() -> Report:
    return play_all(QRLOGIN_SHIM, TARGETS)


def test_qrlogin_passes_every_must(report: Report) -> None:
    assert not report.must_failed, "\n".join(f"{r.scenario} {r.target}: {r.evidence}" for r in report.must_failed)


def test_qrlogin_scorecard_is_the_recorded_one(report: Report) -> None:
    assert differences(report, EXPECTED_NOT_PASSING) == []


def test_v3_reseal_scenarios_and_the_nonce_check_are_graded(report: Report) -> None:
    graded = {
        (result.scenario, result.target): (result.grade, result.evidence)
        for result in report.results
        if result.scenario in RESEALING and result.target.endswith("/v3")
    }
    assert len(graded) == 2 * len(RESEALING)
    wrong = [
        f"{scenario} {target}: {grade}: {evidence}"
        for (scenario, target), (grade, evidence) in graded.items()
        if grade != ("skip" if (scenario, target) in NOT_APPLICABLE_V3 else "pass")
    ]
    assert wrong == []


def test_fuzzing_finds_no_crash_hang_or_success_after_tampering() -> None:
    report = Report(shim=QRLOGIN_SHIM)
    run_fuzz(QRLOGIN_SHIM, TARGETS, runs=12, seed=5, report=report, jobs=JOBS)
    assert report.findings == []
