"""The suite's own parts: templates, the line reader, payload shapes, the faults, verdicts, the scenario list, and
judges that grade misbehaving clients down (tests/check_client/fake_clients.py)."""

from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from qrlogin import qr
from qrlogin.check_client import faults
from qrlogin.check_client.run import Plan, Target, play
from qrlogin.check_client.scenarios import SCENARIOS, Grade, Judgement, Level, worst
from qrlogin.check_client.shim import PLACEHOLDERS, _parse, fill_template
from qrlogin.check_client.suite import Report, ScenarioResult, _mutate_payload, _mutated_answer, run_fuzz, run_suite
from qrlogin.check_client.wire import payload_of, with_payload
from qrlogin.cli import main as cli_main
from qrlogin.encoding import b64decode
from qrlogin.http import HttpRequest
from qrlogin.vocabulary import DeviceRole, QrSide

from .scorecard import QRLOGIN_SHIM

FAKE = Path(__file__).with_name("fake_clients.py")
V1_EXISTING_SHOWS = Target(DeviceRole.EXISTING, QrSide.SHOWS, qr.Generation.V1)


def fake(behaviour: str) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} {behaviour} {{role}}"


def around_qrlogin(behaviour: str) -> str:
    """A fake that wraps qrlogin's own runner (``laggard``, ``quitter``)."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} {behaviour} {QRLOGIN_SHIM}"


def test_a_filled_placeholder_is_one_argument_whatever_it_holds() -> None:
    argv = fill_template(
        "client --hs {homeserver} --x=pre{role}post '{qr_hex}'", {"homeserver": "a b", "role": "new", "qr_hex": ""}
    )
    assert argv == ["client", "--hs", "a b", "--x=prenewpost", ""]


def test_every_placeholder_is_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text(encoding="utf-8")
    for name in PLACEHOLDERS:
        assert "{" + name + "}" in text


def test_lines_that_are_not_events_are_kept_as_evidence() -> None:
    assert _parse("not json\n").kind == "unparsed"
    assert _parse('{"no": "event"}\n').kind == "unparsed"
    assert _parse("[1]\n").kind == "unparsed"
    event = _parse('{"event": "check_code", "code": "07"}\n')
    assert (event.kind, event.get("code")) == ("check_code", "07")


@pytest.mark.parametrize("body", [b"Zm9vYmFy", json.dumps({"sequence_token": "t", "data": "Zm9vYmFy"}).encode()])
def test_a_payload_is_read_and_replaced_in_either_body_shape(body: bytes) -> None:
    assert payload_of(body) == "Zm9vYmFy"
    changed = with_payload(body, "YmF6")
    assert payload_of(changed) == "YmF6"
    if body.startswith(b"{"):
        assert json.loads(changed)["sequence_token"] == "t"


def test_flip_changes_one_bit_of_the_ciphertext_and_keeps_the_key() -> None:
    payload = "AAAAAAAAAAAAAAAA|c2VuZGVyIGtleQ"
    flipped = faults.flip(payload)
    head, _, tail = flipped.partition("|")
    assert tail == "c2VuZGVyIGtleQ"
    before, after = b64decode("AAAAAAAAAAAAAAAA", padding="allow"), b64decode(head, padding="allow")
    assert sum(bin(a ^ b).count("1") for a, b in zip(before, after, strict=True)) == 1


def test_conflicts_are_spelled_per_generation() -> None:
    assert faults.conflict(qr.Generation.V1).status == 412
    assert faults.conflict(qr.Generation.V2).status == 409
    assert json.loads(faults.conflict(qr.Generation.V3).body)["errcode"] == "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"


def test_the_worst_variant_decides_and_is_named() -> None:
    verdict = worst(
        [("a", Judgement(Grade.PASS, "fine")), ("b", Judgement(Grade.FAIL, "broke")), ("c", Judgement(Grade.SKIP, ""))]
    )
    assert verdict.grade is Grade.FAIL and verdict.evidence.startswith("[b; 1/3 variants fail] broke")
    assert worst([("only", Judgement(Grade.WARN, "hm"))]) == Judgement(Grade.WARN, "hm")


def test_at_least_thirty_scenarios_each_naming_its_rule() -> None:
    names = [scenario.name for scenario in SCENARIOS]
    assert len(names) >= 30 and len(set(names)) == len(names)
    for scenario in SCENARIOS:
        assert scenario.level in (Level.MUST, Level.SHOULD)
        assert any(
            text in scenario.rule for text in ("MSC4108", "MSC4388", "RFC 8628", "RFC 8439", "Matrix client-server")
        )
    docs = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text(encoding="utf-8")
    for name in names:
        assert f"`{name}`" in docs, name


def test_a_client_that_claims_success_is_caught() -> None:
    report = run_suite(
        fake("liar"), [V1_EXISTING_SHOWS], names=["sign-in-completes", "tampered-message-1", "wrong-check-code"], jobs=3
    )
    grades = {r.scenario: (r.grade, r.evidence) for r in report.results}
    assert grades["sign-in-completes"][0] == "fail", grades
    assert "peer did not" in grades["sign-in-completes"][1]
    # It never showed a QR code, so nothing was tampered with: the tampering scenario did not get to its point.
    assert grades["tampered-message-1"][0] == "skip"
    assert grades["wrong-check-code"] == ("fail", "the sign-in went on after a wrong check code: done: success")
    assert [r.scenario for r in report.must_failed] == ["sign-in-completes", "wrong-check-code"]


def test_a_crash_and_a_hang_are_failures_with_evidence() -> None:
    crashed = play(fake("crasher"), V1_EXISTING_SHOWS, Plan(deadline_s=10), name="crash")
    assert crashed.crashed and crashed.summary() == "exited with status 3 without a done event"
    assert crashed.events[0].kind == "unparsed"
    hung = play(fake("sleeper"), V1_EXISTING_SHOWS, Plan(deadline_s=1.5), name="hang")
    assert hung.hung and not hung.crashed and hung.summary() == "no done event within 2 s"


@pytest.mark.parametrize(
    ("scenario", "since"), [("rendezvous-deleted", "the first 404"), ("rendezvous-expires", "the expiry")]
)
def test_a_client_slow_to_end_once_its_session_is_gone_is_warned(scenario: str, since: str) -> None:
    # The time counts from when the client could know (a 404, the expiry), not from the start: the handshake before
    # it, however slow on a loaded machine, is not held against the client.
    for template, grade in ((around_qrlogin("laggard"), "warn"), (QRLOGIN_SHIM, "pass")):
        (result,) = run_suite(template, [V1_EXISTING_SHOWS], names=[scenario], jobs=1).results
        assert result.grade == grade, result.evidence
        assert since in result.evidence


def test_a_failed_honest_run_says_where_the_client_stopped() -> None:
    (result,) = run_suite(around_qrlogin("quitter"), [V1_EXISTING_SHOWS], names=["sign-in-completes"], jobs=1).results
    assert result.grade == "fail", result.evidence
    assert "an honest sign-in failed: done: channel_closed (last step: " in result.evidence
    # The existing device showed the QR code: it created the session and read the peer's first message.
    assert "last rendezvous requests: POST 201, GET 200" in result.evidence, result.evidence


def test_the_command_lists_scenarios_and_refuses_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check-client", "--list"]) == 0
    assert "nonce-unique" in capsys.readouterr().out
    assert cli_main(["check-client", "--shim", fake("liar"), "--scenario", "no-such-thing"]) == 2
    assert "unknown scenario no-such-thing" in capsys.readouterr().err
    assert cli_main(["check-client", "--role", "new"]) == 2


def test_the_command_exits_1_on_a_failed_must_and_writes_json(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    status = cli_main(
        [
            "check-client",
            "--shim",
            fake("liar"),
            "--role",
            "existing",
            "--side",
            "shows",
            "--scenario",
            "sign-in-completes",
            "--json",
            str(report),
        ]
    )
    assert status == 1
    written = json.loads(report.read_text())
    assert written["summary"]["must_failed"] == 1
    assert written["scenarios"][0]["scenario"] == "sign-in-completes"
    assert written["scenarios"][0]["target"] == "existing/shows/v1"


def test_fuzzing_reports_each_crash_with_its_run_and_mutation() -> None:
    report = Report(shim=fake("crasher"))
    run_fuzz(fake("crasher"), [V1_EXISTING_SHOWS], runs=3, seed=7, report=report, jobs=3)
    assert [finding.run for finding in report.findings] == [0, 1, 2]
    assert all(finding.finding.startswith("crash: exited with status 3") for finding in report.findings)
    again = Report(shim=fake("crasher"))
    run_fuzz(fake("crasher"), [V1_EXISTING_SHOWS], runs=3, seed=7, report=again, jobs=1)
    assert [f.mutation for f in again.findings] == [f.mutation for f in report.findings]  # the seed decides


def test_the_scorecard_script_renders_what_is_not_a_pass(tmp_path: Path) -> None:
    report = Report(shim="x")
    for scenario, grade, level in (("a", "pass", "MUST"), ("b", "fail", "MUST"), ("c", "warn", "SHOULD")):
        report.results.append(
            ScenarioResult(scenario, "new/shows/v1", "rule", level, grade, f"why {scenario} | x", 1.0)
        )
    path = tmp_path / "report.json"
    report.write_json(path)
    script = Path(__file__).resolve().parents[2] / "scripts" / "scorecard.py"
    card = subprocess.run(
        [sys.executable, str(script), str(path), "T", "I"], capture_output=True, text=True, check=True
    )
    assert "| new/shows/v1 | 1 | 1 | 1 | 0 | 1 |" in card.stdout
    assert "| `b` | new/shows/v1 | MUST | fail | why b \\| x |" in card.stdout and "`a`" not in card.stdout
    table = subprocess.run(
        [sys.executable, str(script), str(path), "--expected"], capture_output=True, text=True, check=True
    )
    assert '("b", "new/shows/v1"): "fail",' in table.stdout and '("c", "new/shows/v1"): "warn",' in table.stdout


def test_every_payload_mutation_changes_the_payload() -> None:
    seen = set()
    for seed in range(60):
        rng = random.Random(seed)  # noqa: S311  (reproducible mutations)
        mutated, how = _mutate_payload(rng, "AAECAwQFBgcICQ", ["ZWFybGllcg"])
        seen.add(how.split(" at ")[0])
        assert mutated != "AAECAwQFBgcICQ" or how.startswith("cut at 14"), how
    assert seen == {"bit flipped", "cut", "extended", "random base64", "an earlier payload"}
    answer = _mutated_answer(random.Random(1), HttpRequest(method="GET", target="/x"))  # noqa: S311
    assert 400 <= answer.status < 600
