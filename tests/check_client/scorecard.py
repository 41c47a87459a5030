"""Running the suite against a shim once per test session, and comparing its results with a recorded scorecard."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable

from qrlogin.check_client.run import Target
from qrlogin.check_client.suite import Report, run_suite

#: Runs played at once. Each run mostly waits (for one-second polls), so more than the cores is what keeps it short.
JOBS = 10

#: The shim template of qrlogin's own runner (``qrlogin login`` / ``qrlogin link``).
QRLOGIN_SHIM = (
    f"{shlex.quote(sys.executable)} -m qrlogin.check_client.qrlogin_shim --role {{role}} --side {{side}}"
    " --generation {generation} --homeserver {homeserver} --qr {qr_hex} --user {user} --password {password}"
    " --secrets {secrets_file} --device-id {device_id}"
)


def play_all(template: str, targets: Iterable[Target]) -> Report:
    return run_suite(template, list(targets), jobs=JOBS)


def grades(report: Report) -> dict[tuple[str, str], str]:
    return {(result.scenario, result.target): result.grade for result in report.results}


def differences(report: Report, expected_not_passing: dict[tuple[str, str], str]) -> list[str]:
    """Every result whose grade is not the recorded one (a result not recorded must pass or be skipped as not
    applicable), with its evidence, so a change on either side reads as a list of what changed."""
    lines = []
    for result in report.results:
        key = (result.scenario, result.target)
        expected = expected_not_passing.get(key, "pass")
        got = result.grade
        if got == "skip" and expected == "pass" and key not in expected_not_passing:
            continue  # not applicable to this role, side or generation
        if got != expected:
            lines.append(f"{result.scenario} {result.target}: {got} (recorded {expected}): {result.evidence}")
    return lines
