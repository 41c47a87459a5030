"""docs/threats.md T1-T15: the tests that were missing, and a check that docs/threats.md names only real tests.

``docs/threats.md`` maps every threat to the code that answers it and the tests that prove it. Most threats are
proven by the tests of the layer concerned; this file holds only what no other test covered, each test naming its
threat, plus :func:`test_every_test_named_in_the_threat_table_exists` so the table cannot drift from the suite.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qrlogin import qr
from qrlogin.channel import ecies, hpke
from qrlogin.channel._common import ChannelFailed, InitiateRequested, PayloadReceived, ReportEstablished, SendPayload
from qrlogin.sim import Faults, Scenario
from qrlogin.sim.invariants import check
from qrlogin.sim.run import MAX_STEPS, Run
from qrlogin.sim.world import ATTACKER, actions, is_finished, new_world, step
from qrlogin.vocabulary import CheckCodeEntered, DeviceRole, ShowCheckCode
from tests.vectors import load

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "https://matrix.example.org"
RID = "threats-rendezvous"


def _key(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


# -- The table in docs/threats.md names tests that exist ---------------------------------------------------------

_TABLE_REFERENCE = re.compile(r"`(tests/test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`")


def _table_references() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "threats.md").read_text(encoding="utf-8")
    return sorted(set(_TABLE_REFERENCE.findall(text)))


def test_the_threat_table_has_a_row_per_threat_and_names_tests() -> None:
    text = (ROOT / "docs" / "threats.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| T(\d+) \|", text, flags=re.MULTILINE)
    assert rows == [str(n) for n in range(1, 16)]
    assert len(_table_references()) >= 15


@pytest.mark.parametrize(("path", "name"), _table_references(), ids=lambda v: v)
def test_every_test_named_in_the_threat_table_exists(path: str, name: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert name in defined, f"docs/threats.md names {path}::{name}, which does not exist"


# -- T3: fresh keys per session, for both generations -----------------------------------------------------------


@dataclass(frozen=True)
class _Generation:
    """Starts G and S of one channel generation and drives its handshake messages, tokens included for HPKE."""

    name: str
    start_showing: Callable[[bytes], Any]
    start_scanning: Callable[[bytes, bytes], Any]
    transition: Callable[..., tuple[Any, tuple[Any, ...]]]

    def initiate(self, s: Any) -> tuple[Any, str]:
        s, effects = self.transition(s, InitiateRequested(sequence_token="1"), now_ms=0)
        (send,) = effects
        assert isinstance(send, SendPayload)
        return s, send.payload

    def g_receives(self, g: Any, payload: str) -> tuple[Any, tuple[Any, ...]]:
        return self.transition(
            g, PayloadReceived(payload=payload, sequence_token="1", reply_sequence_token="2"), now_ms=0
        )

    def s_receives(self, s: Any, payload: str) -> tuple[Any, tuple[Any, ...]]:
        return self.transition(s, PayloadReceived(payload=payload, sequence_token="2"), now_ms=0)


GENERATIONS = [
    _Generation(
        name="ecies",
        start_showing=ecies.start_showing,
        start_scanning=ecies.start_scanning,
        transition=ecies.transition,
    ),
    _Generation(
        name="hpke",
        start_showing=lambda secret: hpke.start_showing(
            secret, base_url=BASE_URL, rendezvous_id=RID, response_nonce=_key("rn" + secret.hex())
        ),
        start_scanning=lambda g_public, secret: hpke.start_scanning(
            secret, peer_public_key=g_public, base_url=BASE_URL, rendezvous_id=RID
        ),
        transition=hpke.transition,
    ),
]


@pytest.mark.parametrize("gen", GENERATIONS, ids=lambda g: g.name)
def test_t3_each_session_secret_gives_its_own_public_key_and_check_code(gen: _Generation) -> None:
    """T3: G's public key (and so every key derived from it) differs between sessions with different secrets."""
    secrets = [_key(f"session-{n}") for n in range(8)]
    publics = {gen.start_showing(secret).public_key for secret in secrets}
    assert len(publics) == len(secrets)
    # The same S secret against two sessions' G keys still gives two channels: A's LoginInitiate does not open in B.
    g_a, g_b = gen.start_showing(secrets[0]), gen.start_showing(secrets[1])
    _, initiate_for_a = gen.initiate(gen.start_scanning(g_a.public_key, _key("s")))
    failed, _ = gen.g_receives(g_b, initiate_for_a)
    assert isinstance(failed, ChannelFailed)


# -- T9: G accepts exactly one LoginInitiate --------------------------------------------------------------------


@pytest.mark.parametrize("gen", GENERATIONS, ids=lambda g: g.name)
def test_t9_an_attackers_initiate_first_never_yields_a_second_channel(gen: _Generation) -> None:
    """T9: Specter's LoginInitiate reaches G first, then S's real one: G holds one channel (Specter's), S's real
    channel never establishes, and whatever the user types G reports at most one established channel."""
    g = gen.start_showing(_key("g"))
    attacker, attacker_initiate = gen.initiate(gen.start_scanning(g.public_key, _key("specter")))
    real, real_initiate = gen.initiate(gen.start_scanning(g.public_key, _key("real s")))
    g, effects = gen.g_receives(g, attacker_initiate)
    login_ok = next(e.payload for e in effects if isinstance(e, SendPayload))
    attacker, effects = gen.s_receives(attacker, login_ok)
    attacker_code = next(e.code for e in effects if isinstance(e, ShowCheckCode))
    # S's real LoginInitiate arrives second: held unopened (ECIES) or refused at once (HPKE); never a second reply.
    g, effects = gen.g_receives(g, real_initiate)
    assert not any(isinstance(e, SendPayload) for e in effects)
    # S, handed the LoginOk G sealed for Specter, never shows a code and never trusts the channel.
    real, effects = gen.s_receives(real, login_ok)
    assert isinstance(real, ChannelFailed)
    assert not any(isinstance(e, ShowCheckCode | ReportEstablished) for e in effects)
    if isinstance(g, ChannelFailed):
        return
    # Worst case: the user types exactly Specter's code. G then establishes once, and the held real initiate fails.
    g, effects = gen.transition(g, CheckCodeEntered(code=attacker_code), now_ms=0)
    assert sum(isinstance(e, ReportEstablished) for e in effects) == 1
    assert isinstance(g, ChannelFailed)


# -- T10: a third writer on the rendezvous ----------------------------------------------------------------------


def _run_preferring_overwrites(scenario: Scenario) -> tuple[Run, int]:
    world = new_world(scenario)
    trace = []
    overwrites = 0
    for _ in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        chosen = next((a for a in options if a.kind == "overwrite" and a.actor == ATTACKER), options[0])
        overwrites += chosen.kind == "overwrite"
        world = step(world, chosen)
        trace.append(chosen)
    return Run(world=world, trace=tuple(trace), finished=is_finished(world)), overwrites


@pytest.mark.parametrize("generation", tuple(qr.Generation))
@pytest.mark.parametrize("qr_on", tuple(DeviceRole))
def test_t10_a_third_writer_overwriting_the_slot_ends_in_typed_failures(
    generation: qr.Generation, qr_on: DeviceRole
) -> None:
    """T10: the attacker overwrites the rendezvous slot whenever it can; both user devices end typed (success only if
    the overwrite lost the race), the simulator's invariants (no key leak, no nonce reuse) hold, nothing raises."""
    scenario = Scenario(generation=generation, qr_on=qr_on, attacker=True, faults=Faults(overwrites=3))
    result, overwrites = _run_preferring_overwrites(scenario)
    assert overwrites > 0
    assert any("overwrites the rendezvous slot -> 2" in text for _, _, text in result.world.record.transcript)
    verdict = check(result)
    assert verdict.ok, verdict.violations
    assert result.finished
    for name, outcome in verdict.outcomes[:2]:
        assert outcome in {"absent", "success"} or outcome.startswith("failed:"), (name, outcome)
    assert any(outcome.startswith("failed:") for _, outcome in verdict.outcomes[:2])


# -- T12: no == on secrets --------------------------------------------------------------------------------------

_SECRET_WORDS = re.compile(r"(check_?code|secret|tag|mac|shared|(^|_)keys?$|enc_?key)", re.IGNORECASE)
_PUBLIC_WORDS = re.compile(r"public|length|len|name|profile|role", re.IGNORECASE)
_SCANNED = [
    "src/qrlogin/channel/_common.py",
    "src/qrlogin/channel/ecies.py",
    "src/qrlogin/channel/hpke.py",
    "src/qrlogin/hpke.py",
    "src/qrlogin/_crypto.py",
    "src/qrlogin/_secret.py",
]


def _identifier(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _identifier(node.value)
    return None


def _secret_comparisons(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare) or not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        for operand in (node.left, *node.comparators):
            name = _identifier(operand)
            if name and _SECRET_WORDS.search(name) and not _PUBLIC_WORDS.search(name):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", _SCANNED)
def test_t12_no_equality_operator_on_secret_values(path: str) -> None:
    """T12: check codes, secrets, tags and keys are compared with hmac.compare_digest (or Secret.__eq__, which uses
    it), never with == or != in the channel and crypto modules."""
    assert _secret_comparisons((ROOT / path).read_text(encoding="utf-8")) == []


def test_t12_the_scan_finds_what_it_looks_for() -> None:
    """T12: the scan above can fail: it flags the comparisons it forbids and passes the ones it allows."""
    assert _secret_comparisons("ok = entered == state.check_code\n")
    assert _secret_comparisons("if tag != expected_tag:\n    pass\n")
    assert _secret_comparisons("if keys.enc_key == other:\n    pass\n")
    assert _secret_comparisons("same = secret[0] == 0\n")
    assert not _secret_comparisons("ok = hmac.compare_digest(entered, state.check_code)\n")
    assert not _secret_comparisons("if len(secret) != 32:\n    pass\n")
    assert not _secret_comparisons("if peer_public_key == public_key:\n    pass\n")


def test_t12_secret_equality_is_constant_time() -> None:
    """T12: Secret.__eq__ goes through hmac.compare_digest."""
    source = (ROOT / "src/qrlogin/_secret.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    eq = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "__eq__")
    assert "compare_digest" in ast.unparse(eq)


# -- T13: every generation x intent -----------------------------------------------------------------------------


def _decodable_codes() -> dict[tuple[qr.Generation, DeviceRole], qr.QrCode]:
    codes: dict[tuple[qr.Generation, DeviceRole], qr.QrCode] = {}
    cases: list[dict[str, Any]] = load("qr_codes.json")["cases"]
    for case in cases:
        if case["expected"]["ok"]:
            code = qr.decode(bytes.fromhex(case["hex"]))
            codes.setdefault((code.generation, code.intent), code)
    return codes


CODES = _decodable_codes()
CODE_KEYS = sorted(CODES, key=lambda k: (k[0].value, k[1].value))


def test_t13_the_vectors_cover_every_generation_and_intent() -> None:
    """T13: the QR vectors hold a decodable code for every (generation, intent) pair."""
    assert set(CODES) == {(g, i) for g in qr.Generation for i in DeviceRole}


@pytest.mark.parametrize("key", CODE_KEYS, ids=str)
@pytest.mark.parametrize("scanner_is_new_device", [True, False])
def test_t13_require_intent_for_every_generation_and_intent(
    key: tuple[qr.Generation, DeviceRole], scanner_is_new_device: bool
) -> None:
    """T13: a code is accepted only by the other kind of device, in every generation."""
    code = CODES[key]
    shown_by_new = code.intent is DeviceRole.NEW
    if shown_by_new != scanner_is_new_device:
        assert qr.require_intent(code, scanner_is_new_device=scanner_is_new_device) is code
    else:
        with pytest.raises(qr.WrongIntentError):
            qr.require_intent(code, scanner_is_new_device=scanner_is_new_device)
