"""The scenarios: each names the rule it checks, how a run differs from an honest one, and how it is judged.

Theory of operation
-------------------
A :class:`ClientScenario` is data: its name, the rule (the text and section it comes from, and whether the text says
MUST or SHOULD), a one-line statement of what is checked, ``variants(target)`` (the runs it needs for a client of
that role, side and generation, each a :class:`~qrlogin.check_client.run.Plan`; a string instead says why the
scenario does not apply) and ``judge(run)`` (a :class:`Judgement` for one run). A scenario with several variants (each
unexpected message at one step, each failure reason) gets the worst verdict of them, with that run's evidence.

Grades: ``pass``; ``fail`` (the client broke the rule; a failed MUST makes ``check-client`` exit 1); ``warn`` (the
rule held but the client did something worth knowing, such as giving up where it could have recovered); ``skip``
(the scenario does not apply, or the run never reached the point it tests).

Numbering: the counterpart's payloads are counted from 0, its channel handshake message (``LoginInitiate`` when it
scans, ``LoginOk`` when it shows); 1, 2, ... are its login messages in order. Which message each number is depends
on the roles (docs/conformance.md lists them).
"""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from ..device import SessionEnd
from ..homeserver.oauth import DEVICE_AUTHORIZATION_PATH
from ..http import HttpRequest, HttpResponse
from ..login.events import ReportLoginSuccess
from ..login.messages import FailureReason, message_to_json
from ..sim.world import user_secrets
from ..vocabulary import DeviceRole, QrSide
from . import faults
from .counterpart import PendingWrite, WriteHook
from .homeserver import ACCOUNT, Forward, Intercept, ServedHomeserver
from .run import COUNTERPART_NEW_DEVICE_ID, ClientRun, Plan, Target
from .wire import payload_of, with_payload

__all__ = ["SCENARIOS", "ClientScenario", "Grade", "Judgement", "Level", "nonce_reuse", "worst"]


class Level(enum.StrEnum):
    MUST = "MUST"
    SHOULD = "SHOULD"


class Grade(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


_SEVERITY = {Grade.SKIP: 0, Grade.PASS: 1, Grade.WARN: 2, Grade.FAIL: 3}


@dataclass(frozen=True, slots=True)
class Judgement:
    grade: Grade
    evidence: str


def worst(verdicts: Sequence[tuple[str, Judgement]]) -> Judgement:
    """The worst verdict of several variants, its evidence naming the variant."""
    label, verdict = max(verdicts, key=lambda item: _SEVERITY[item[1].grade])
    if len(verdicts) == 1:
        return verdict
    counted = sum(1 for _, v in verdicts if v.grade is verdict.grade)
    return Judgement(verdict.grade, f"[{label}; {counted}/{len(verdicts)} variants {verdict.grade}] {verdict.evidence}")


Variants = list[tuple[str, Plan]] | str


@dataclass(frozen=True, slots=True)
class ClientScenario:
    name: str
    rule: str
    level: Level
    checks: str
    variants: Callable[[Target], Variants]
    judge: Callable[[ClientRun], Judgement]


# ------------------------------------------------------------------------------------------------- judging


def _ended_badly(run: ClientRun, after: str) -> Judgement | None:
    """A crash or a hang: always a failure, whatever the scenario expected."""
    if run.crashed:
        return Judgement(Grade.FAIL, f"crashed after {after}: {run.summary()}")
    if run.hung:
        return Judgement(Grade.FAIL, f"hung after {after}: {run.summary()}")
    return None


def _not_reached(run: ClientRun) -> Judgement | None:
    if not run.counterpart.tampered:
        count = len(run.counterpart.writes)
        return Judgement(Grade.SKIP, f"the counterpart wrote {count} payloads in this role; {run.summary()}")
    return None


def _peer_heard(run: ClientRun) -> str:
    """What the counterpart learned from the client after the tampering (evidence)."""
    received = run.counterpart.received
    failures = [kind for kind in received if kind.startswith("m.login.failure") or kind == "m.login.declined"]
    if failures:
        return f"peer told: {failures[-1]}"
    outcome = run.counterpart.outcome
    if outcome is not None and outcome.session_end is SessionEnd.DELETED:
        return "peer told nothing, but the session was deleted"
    if outcome is not None and outcome.session_end is not None:
        return f"peer told nothing (its session {outcome.session_end.value})"
    return "peer told nothing"


def _must_refuse(what: str) -> Callable[[ClientRun], Judgement]:
    """The client must end without success (and without crash or hang) after ``what``."""

    def judge(run: ClientRun) -> Judgement:
        skipped = _not_reached(run) if run.plan.write_hook is not None else None
        if skipped is not None:
            return skipped
        bad = _ended_badly(run, what)
        if bad is not None:
            return bad
        if run.succeeded:
            return Judgement(Grade.FAIL, f"done: success after {what}")
        if run.target.role is DeviceRole.EXISTING and "m.login.secrets" in run.counterpart.received:
            # The new device (the counterpart) got the account's secrets: the client handed them over regardless.
            return Judgement(Grade.FAIL, f"sent m.login.secrets after {what}; client {run.summary()}")
        return Judgement(Grade.PASS, f"{run.summary()} after {what}; {_peer_heard(run)}")

    return judge


def _should_recover(what: str) -> Callable[[ClientRun], Judgement]:
    def judge(run: ClientRun) -> Judgement:
        bad = _ended_badly(run, what)
        if bad is not None:
            return bad
        if run.succeeded:
            return Judgement(Grade.PASS, f"recovered from {what}: done: success")
        return Judgement(Grade.WARN, f"gave up after {what}: {run.summary()}")

    return judge


# ------------------------------------------------------------------------------------------------- plans


def _rewrite_at(
    index: int, rewrite: Callable[[PendingWrite, ClientRun], str | None]
) -> Callable[[ClientRun], WriteHook]:
    def build(run: ClientRun) -> WriteHook:
        def hook(write: PendingWrite) -> str | None:
            return rewrite(write, run) if write.index == index else None

        return hook

    return build


def _one(plan: Plan, label: str = "") -> Callable[[Target], Variants]:
    return lambda target: [(label, plan)]


def _reseal(message: Mapping[str, object]) -> Callable[[PendingWrite, ClientRun], str | None]:
    return lambda write, run: write.seal_json(message)


def _reseal_raw(plaintext: bytes) -> Callable[[PendingWrite, ClientRun], str | None]:
    return lambda write, run: write.seal(plaintext)


def _replay(write: PendingWrite, run: ClientRun) -> str | None:
    earlier = run.counterpart.writes
    return earlier[write.index - 1].payload if write.index >= 1 and len(earlier) >= write.index else None


def _secrets_sample() -> dict[str, object]:
    return dict(message_to_json(user_secrets(ACCOUNT)))


# A valid example of every login message the counterpart can send, for the unexpected-message scenarios.
def _samples() -> dict[str, dict[str, object]]:
    return {
        "m.login.protocols": {"type": "m.login.protocols", "protocols": ["device_authorization_grant"],
                              "homeserver": "example.org"},
        "m.login.protocol": {"type": "m.login.protocol", "protocol": "device_authorization_grant",
                             "device_authorization_grant": {"verification_uri": "https://example.org/link"},
                             "device_id": COUNTERPART_NEW_DEVICE_ID},
        "m.login.protocol_accepted": {"type": "m.login.protocol_accepted"},
        "m.login.success": {"type": "m.login.success"},
        "m.login.declined": {"type": "m.login.declined"},
        "m.login.secrets": _secrets_sample(),
    }  # fmt: skip


def _expected_type(target: Target, index: int) -> str | None:
    """Which login message the counterpart sends as payload ``index`` (1..) against a client of ``target``."""
    if target.role is DeviceRole.EXISTING:  # the counterpart is the new device
        order = ["m.login.protocol", "m.login.success"]
    elif target.side is QrSide.SHOWS:  # the counterpart is the existing device and scans: it speaks first
        order = ["m.login.protocols", "m.login.protocol_accepted", "m.login.secrets"]
    else:
        order = ["m.login.protocol_accepted", "m.login.secrets"]
    return order[index - 1] if 1 <= index <= len(order) else None


def _unexpected_at(index: int) -> Callable[[Target], Variants]:
    def variants(target: Target) -> Variants:
        expected = _expected_type(target, index)
        if expected is None:
            return f"the counterpart sends no message {index} in this role"
        return [
            (kind, Plan(write_hook=_rewrite_at(index, _reseal(message))))
            for kind, message in _samples().items()
            if kind != expected
        ]

    return variants


def _failure_at(index: int, reasons: Sequence[str]) -> Callable[[Target], Variants]:
    def variants(target: Target) -> Variants:
        if _expected_type(target, index) is None:
            return f"the counterpart sends no message {index} in this role"
        return [
            (reason, Plan(write_hook=_rewrite_at(index, _reseal({"type": "m.login.failure", "reason": reason}))))
            for reason in reasons
        ]

    return variants


def _judge_failure_received(run: ClientRun) -> Judgement:
    skipped = _not_reached(run)
    if skipped is not None:
        return skipped
    bad = _ended_badly(run, "the peer's m.login.failure")
    if bad is not None:
        return bad
    if run.succeeded:
        return Judgement(Grade.FAIL, "done: success after the peer's m.login.failure")
    return Judgement(Grade.PASS, f"{run.summary()} after the peer's m.login.failure")


# ---- honest run


def _judge_honest(run: ClientRun) -> Judgement:
    bad = _ended_badly(run, "an honest sign-in")
    if bad is not None:
        return bad
    if not run.succeeded:
        return Judgement(
            Grade.FAIL, f"an honest sign-in failed: {run.summary()} ({run.trail()}); peer: {run.counterpart.outcome}"
        )
    outcome = run.counterpart.outcome
    if outcome is None or not isinstance(outcome.result, ReportLoginSuccess):
        return Judgement(Grade.FAIL, f"the client reported success but the peer did not: {outcome}")
    new_id = COUNTERPART_NEW_DEVICE_ID if run.target.role is DeviceRole.EXISTING else run.done_device_id
    if new_id not in run.served.devices():
        devices = sorted(run.served.devices())
        return Judgement(Grade.FAIL, f"success, but the account has no device {new_id!r}: {devices}")
    if run.target.role is DeviceRole.EXISTING and outcome.result.secrets != user_secrets(ACCOUNT):
        return Judgement(Grade.FAIL, "success, but the secrets the peer received are not the ones handed over")
    return Judgement(
        Grade.PASS, f"signed in as {new_id} in {(run.done.at_ms - run.started_ms) / 1000:.1f} s" if run.done else ""
    )


# ---- check codes and the race


def _wrong_code(target: Target) -> Variants:
    if target.side is QrSide.SHOWS:
        return [("typed on the client", Plan(wrong_code_on_client=True))]
    return [("typed on the peer", Plan(wrong_code_on_counterpart=True, deadline_s=20))]


def _judge_wrong_code(run: ClientRun) -> Judgement:
    bad = _ended_badly(run, "a wrong check code")
    if bad is not None:
        return bad
    if run.succeeded or run.counterpart.succeeded:
        return Judgement(Grade.FAIL, f"the sign-in went on after a wrong check code: {run.summary()}")
    sent = [kind for kind in run.counterpart.received if not kind.startswith("m.login.failure")]
    if run.target.side is QrSide.SHOWS and sent:
        return Judgement(Grade.FAIL, f"the client sent {sent} over a channel whose code did not match")
    return Judgement(Grade.PASS, f"{run.summary()}; nothing sent over the unconfirmed channel")


def _race(target: Target) -> Variants:
    if target.side is QrSide.SCANS:
        return "the race is for the first LoginInitiate, which only a client that shows the QR code receives"
    return [("attacker first", Plan(counterpart_seed=b"check-client attacker", wrong_code_on_client=True,
                                    code_after_counterpart_writes=2))]  # fmt: skip


def _judge_race(run: ClientRun) -> Judgement:
    bad = _ended_badly(run, "an attacker's LoginInitiate")
    if bad is not None:
        return bad
    acted = [x.path for x in run.exchanges if "/devices/" in x.path or x.path == DEVICE_AUTHORIZATION_PATH]
    if run.succeeded or run.counterpart.succeeded:
        return Judgement(Grade.FAIL, "the attacker's sign-in went ahead")
    if run.prompts("open_uri") or acted:
        return Judgement(Grade.FAIL, f"acted on the attacker's message before the check code: {acted[:2]}")
    leaked = [kind for kind in run.counterpart.received if not kind.startswith("m.login.failure")]
    if leaked:
        return Judgement(Grade.FAIL, f"sent {leaked} to the attacker")
    return Judgement(Grade.PASS, f"{run.summary()}; the attacker got nothing and nothing was acted on")


# ---- silence, deletion, expiry


#: A client that polls about once a second and ends on the first 404 (or at the expiry it was told) is done well
#: within this; the rest is room for a loaded machine.
_END_LIMIT_MS = 5_000


def _session_gone_ms(run: ClientRun) -> tuple[str, int] | None:
    """When the client could first know that its session is gone: the first 404 to one of its rendezvous requests,
    or else the session's expiry (at the latest its first rendezvous request plus the TTL)."""
    rendezvous = [x for x in run.exchanges if faults.is_rendezvous(x.request)]
    first_404 = next((x.at_ms for x in rendezvous if x.response.status == 404), None)
    if first_404 is not None:
        return "the first 404", first_404
    if rendezvous:
        return "the expiry", rendezvous[0].at_ms + run.plan.ttl_ms
    return None


def _judge_ends_alone(what: str, limit_s: float) -> Callable[[ClientRun], Judgement]:
    """The client must end by itself, within a few seconds of learning (a 404) or being able to know (the expiry)
    that its session is gone. The time does not count from the start: how long the handshake took before that says
    nothing about ending, and grows with the machine's load. Only a client that never reached the rendezvous is held
    to ``limit_s`` from the start."""

    def judge(run: ClientRun) -> Judgement:
        bad = _ended_badly(run, what)
        if bad is not None:
            return bad
        if run.succeeded:
            return Judgement(Grade.FAIL, f"done: success after {what}")
        gone = _session_gone_ms(run)
        since, since_ms, limit_ms = (
            ("the start", run.started_ms, int(limit_s * 1000)) if gone is None else (*gone, _END_LIMIT_MS)
        )
        took_ms = run.ended_after_ms(since_ms)
        assert took_ms is not None
        if took_ms > limit_ms:
            return Judgement(Grade.WARN, f"{run.summary()} only {took_ms / 1000:.1f} s after {since} ({what})")
        return Judgement(Grade.PASS, f"{run.summary()} {took_ms / 1000:+.1f} s from {since} ({what})")

    return judge


def _deleted_after(index: int) -> Callable[[ClientRun], Intercept]:
    """After the counterpart wrote payload ``index``, every rendezvous request of the client finds it gone."""

    def build(run: ClientRun) -> Intercept:
        def intercept(request: HttpRequest, forward: Forward) -> HttpResponse:
            if faults.is_rendezvous(request) and len(run.counterpart.writes) > index:
                if run.counterpart.silent is False:
                    run.counterpart.silent = True
                    run.notes.append(f"deleted at {run.counterpart.writes[index].label}")
                return faults.matrix_error(404, "M_NOT_FOUND", "check-client: the session was deleted")
            return forward(request)

        return intercept

    return build


def _judge_deleted(run: ClientRun) -> Judgement:
    if not run.notes:
        return Judgement(Grade.SKIP, f"the deletion point was never reached: {run.summary()}")
    return _judge_ends_alone("the rendezvous was deleted", 10.0)(run)


# ---- rendezvous HTTP faults


def _first_write(request: HttpRequest) -> bool:
    return faults.is_rendezvous(request) and request.method == "PUT"


def _stale(target: Target) -> Variants:
    def build(run: ClientRun) -> Intercept:
        return faults.after_first(_first_write, lambda request, forward: faults.conflict(target.generation))

    return [("conflict on the first write", Plan(intercept=build, ttl_ms=10_000, deadline_s=15))]


def _judge_stale(run: ClientRun) -> Judgement:
    exchanges = [x for x in run.exchanges if faults.is_rendezvous(x.request)]
    conflict = next((i for i, x in enumerate(exchanges) if x.response.status in (409, 412)), None)
    if conflict is None:
        return Judgement(Grade.SKIP, f"the client never wrote to the rendezvous: {run.summary()}")
    bad = _ended_badly(run, "a stale-token write")
    if bad is not None:
        return bad
    following = exchanges[conflict + 1] if conflict + 1 < len(exchanges) else None
    if following is not None and following.method == "PUT":
        body_same = following.request.body == exchanges[conflict].request.body
        return Judgement(
            Grade.FAIL,
            f"answered {exchanges[conflict].response.status} by writing again without re-reading"
            + (" (the same bytes)" if body_same else " (different bytes)"),
        )
    if run.succeeded:
        return Judgement(Grade.PASS, "re-read after the conflict and completed the sign-in")
    return Judgement(Grade.WARN, f"re-read after the conflict, then gave up: {run.summary()}")


def _lost_answer(target: Target) -> Variants:
    def build(run: ClientRun) -> Intercept:
        lost = False

        def intercept(request: HttpRequest, forward: Forward) -> HttpResponse:
            nonlocal lost
            if faults.is_rendezvous(request) and lost and run.counterpart.held:
                run.counterpart.held = False  # the client's next step is in: the peer may move again
            if _first_write(request) and not lost:
                lost = True
                forward(request)  # the write lands ...
                # ... and the peer waits until the client has taken its next step, so that the step always meets
                # the slot as the client left it (else the outcome would depend on who is faster).
                run.counterpart.held = True
                return faults.matrix_error(502, "M_UNKNOWN", "check-client: bad gateway")  # ... its answer is lost
            return forward(request)

        return intercept

    return [("502 after the write landed", Plan(intercept=build, ttl_ms=20_000, deadline_s=25))]


def _judge_lost_answer(run: ClientRun) -> Judgement:
    reuse = nonce_reuse(run)
    if reuse is not None:
        return Judgement(Grade.FAIL, reuse)
    return _should_recover("a write whose answer was lost (502)")(run)


def _server_errors(target: Target) -> Variants:
    def build(run: ClientRun) -> Intercept:
        return faults.after_first(
            lambda r: faults.is_rendezvous(r) and r.method == "GET",
            lambda request, forward: faults.matrix_error(503, "M_UNKNOWN", "check-client: unavailable"),
            times=2,
            skip=1,
        )

    return [("two 503 on polls", Plan(intercept=build))]


def _rate_limited(target: Target) -> Variants:
    def build(run: ClientRun) -> Intercept:
        return faults.after_first(
            lambda r: faults.is_rendezvous(r) and r.method == "GET",
            lambda request, forward: faults.matrix_error(
                429, "M_LIMIT_EXCEEDED", "check-client: slow down", retry_after_ms=2000
            ),
            skip=1,
        )

    return [("429 with retry_after_ms 2000", Plan(intercept=build))]


def _judge_rate_limited(run: ClientRun) -> Judgement:
    exchanges = [x for x in run.exchanges if faults.is_rendezvous(x.request)]
    limited = next((i for i, x in enumerate(exchanges) if x.response.status == 429), None)
    if limited is None:
        return Judgement(Grade.SKIP, f"no rendezvous poll reached: {run.summary()}")
    bad = _ended_badly(run, "a 429")
    if bad is not None:
        return bad
    if limited + 1 < len(exchanges):
        gap = exchanges[limited + 1].at_ms - exchanges[limited].at_ms
        if gap < 1800:
            return Judgement(Grade.FAIL, f"asked again {gap} ms after a 429 that said retry_after_ms 2000")
    if run.succeeded:
        return Judgement(Grade.PASS, "waited as asked after the 429 and completed the sign-in")
    return Judgement(Grade.WARN, f"waited after the 429, then gave up: {run.summary()}")


# ---- the token endpoint (client is the new device)


def _new_only(target: Target) -> str | None:
    return None if target.role is DeviceRole.NEW else "only the new device polls the token endpoint"


def _existing_only(target: Target) -> str | None:
    return None if target.role is DeviceRole.EXISTING else "only the existing device checks the device id"


def _token_answers(answer: str, times: int = 1, ttl_ms: int = 30_000) -> Callable[[Target], Variants]:
    def variants(target: Target) -> Variants:
        skip = _new_only(target)
        if skip:
            return skip

        def build(run: ClientRun) -> Intercept:
            return faults.after_first(
                faults.is_token_poll, lambda request, forward: faults.oauth_error(answer), times=times
            )

        return [(answer, Plan(intercept=build, ttl_ms=ttl_ms, deadline_s=ttl_ms / 1000 + 10))]

    return variants


def _token_polls(run: ClientRun) -> list[tuple[int, str]]:
    """(time, error or "tokens") of every token poll."""
    polls = []
    for x in run.exchanges:
        if faults.is_token_poll(x.request):
            kind = "tokens" if x.response.status == 200 else _oauth_error(x.response.body)
            polls.append((x.at_ms, kind))
    return polls


def _oauth_error(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return "?"
    return str(value.get("error", "?")) if isinstance(value, dict) else "?"


def _judge_slow_down(run: ClientRun) -> Judgement:
    polls = _token_polls(run)
    if not polls:
        return Judgement(Grade.SKIP, f"the client never polled the token endpoint: {run.summary()}")
    bad = _ended_badly(run, "slow_down")
    if bad is not None:
        return bad
    if len(polls) < 2:
        return Judgement(Grade.FAIL, f"stopped polling after slow_down: {run.summary()}")
    gap = polls[1][0] - polls[0][0]
    interval_ms = run.served.poll_interval_s * 1000
    if gap < interval_ms + 5000 - 300:
        return Judgement(
            Grade.FAIL, f"polled again {gap} ms after slow_down (interval {interval_ms} ms + 5 s expected)"
        )
    if not run.succeeded:
        return Judgement(Grade.WARN, f"waited {gap} ms after slow_down, then {run.summary()}")
    return Judgement(Grade.PASS, f"waited {gap} ms after slow_down and completed the sign-in")


def _judge_token_stop(error: str) -> Callable[[ClientRun], Judgement]:
    def judge(run: ClientRun) -> Judgement:
        polls = _token_polls(run)
        stop = next((i for i, (_, kind) in enumerate(polls) if kind in (error, "access_denied")), None)
        if stop is None:
            return Judgement(Grade.SKIP, f"the token endpoint never answered {error}: {run.summary()}")
        bad = _ended_badly(run, error)
        if bad is not None:
            return bad
        if run.succeeded:
            return Judgement(Grade.FAIL, f"done: success after {error}")
        more = len(polls) - stop - 1
        if more:
            return Judgement(Grade.FAIL, f"polled {more} more times after {error}")
        return Judgement(Grade.PASS, f"stopped polling at {error}: {run.summary()}; {_peer_heard(run)}")

    return judge


def _declined(target: Target) -> Variants:
    skip = _new_only(target)
    if skip:
        return skip

    def build(run: ClientRun) -> Intercept:
        return faults.after_first(
            faults.is_token_poll, lambda request, forward: faults.oauth_error("authorization_declined")
        )

    return [
        ("the user denies (access_denied)", Plan(approve=False)),
        ("authorization_declined", Plan(intercept=build)),
    ]


def _poll_interval(target: Target) -> Variants:
    skip = _new_only(target)
    if skip:
        return skip

    def build(run: ClientRun) -> Intercept:
        return faults.after_first(
            faults.is_token_poll, lambda request, forward: faults.oauth_error("authorization_pending"), times=3
        )

    return [("three authorization_pending", Plan(intercept=build, ttl_ms=40_000, deadline_s=45))]


def _judge_poll_interval(run: ClientRun) -> Judgement:
    polls = _token_polls(run)
    if len(polls) < 2:
        return Judgement(Grade.SKIP, f"fewer than two token polls: {run.summary()}")
    bad = _ended_badly(run, "authorization_pending")
    if bad is not None:
        return bad
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(polls)]
    interval_ms = run.served.poll_interval_s * 1000
    if min(gaps) < interval_ms - 150:
        return Judgement(Grade.FAIL, f"polled {min(gaps)} ms after the previous poll (interval {interval_ms} ms)")
    if not run.succeeded:
        return Judgement(Grade.WARN, f"kept the interval (gaps {gaps} ms) but {run.summary()}")
    return Judgement(Grade.PASS, f"kept the interval: gaps {gaps} ms")


# ---- device checks (client is the existing device)


def _device_exists(target: Target) -> Variants:
    skip = _existing_only(target)
    if skip:
        return skip

    def take_the_id(served: ServedHomeserver) -> None:
        served.login(COUNTERPART_NEW_DEVICE_ID)

    return [("the id is taken", Plan(setup=take_the_id))]


def _judge_device_exists(run: ClientRun) -> Judgement:
    bad = _ended_badly(run, "a taken device id")
    if bad is not None:
        return bad
    if run.succeeded or "m.login.secrets" in run.counterpart.received:
        return Judgement(Grade.FAIL, "handed over the account for a device id that already exists")
    if run.prompts("open_uri") or "m.login.protocol_accepted" in run.counterpart.received:
        return Judgement(Grade.FAIL, "went on to the consent for a device id that already exists")
    told = _peer_heard(run)
    if "device_already_exists" not in told:
        return Judgement(Grade.WARN, f"refused, but {told}")
    return Judgement(Grade.PASS, f"refused: {told}")


def _device_check_error(target: Target) -> Variants:
    skip = _existing_only(target)
    if skip:
        return skip

    def build(run: ClientRun) -> Intercept:
        return faults.after_first(
            faults.is_device_check,
            lambda request, forward: faults.matrix_error(500, "M_UNKNOWN", "check-client: internal error"),
        )

    return [("500 on the first device check", Plan(intercept=build))]


def _judge_device_check_error(run: ClientRun) -> Judgement:
    checks = [x for x in run.exchanges if faults.is_device_check(x.request)]
    if not checks:
        return Judgement(Grade.SKIP, f"the client never checked the device id: {run.summary()}")
    bad = _ended_badly(run, "a 500 on the device check")
    if bad is not None:
        return bad
    told = _peer_heard(run)
    if "device_already_exists" in told or run.outcome == "device_already_exists":
        return Judgement(Grade.FAIL, f"took a 500 for 'the device exists': {told}")
    if run.succeeded:
        return Judgement(Grade.PASS, f"asked again after the 500 ({len(checks)} checks) and completed the sign-in")
    return Judgement(Grade.WARN, f"gave up after the 500 without claiming the device exists: {run.summary()}")


def _device_not_found(target: Target) -> Variants:
    skip = _existing_only(target)
    if skip:
        return skip

    def build(run: ClientRun) -> Intercept:
        def intercept(request: HttpRequest, forward: Forward) -> HttpResponse:
            response = forward(request)
            if faults.is_device_check(request) and response.status == 200:
                return faults.matrix_error(404, "M_NOT_FOUND", "check-client: no such device")
            return response

        return intercept

    # The existing device may wait some 10 s for the device to appear: the session must outlive that.
    return [("the device never appears", Plan(intercept=build, ttl_ms=45_000, deadline_s=45))]


def _judge_device_not_found(run: ClientRun) -> Judgement:
    if "m.login.success" not in run.counterpart.sent:
        return Judgement(Grade.SKIP, f"the peer never reported m.login.success: {run.summary()}")
    bad = _ended_badly(run, "a device that never appears")
    if bad is not None:
        return bad
    if run.succeeded or "m.login.secrets" in run.counterpart.received:
        return Judgement(Grade.FAIL, "sent the secrets although the new device does not exist")
    told = _peer_heard(run)
    if "device_not_found" not in told:
        return Judgement(Grade.WARN, f"withheld the secrets, but {told}")
    return Judgement(Grade.PASS, f"withheld the secrets: {told}")


# ---- secrets, protocols (client is the new device)


def _malformed_secrets(target: Target) -> Variants:
    skip = _new_only(target)
    if skip:
        return skip
    index = 3 if target.side is QrSide.SHOWS else 2
    message = {"type": "m.login.secrets", "cross_signing": {"master_key": 42, "self_signing_key": [],
                                                            "user_signing_key": "not base64!"}}  # fmt: skip
    return [("keys of the wrong type", Plan(write_hook=_rewrite_at(index, _reseal(message))))]


def _judge_malformed_secrets(run: ClientRun) -> Judgement:
    skipped = _not_reached(run)
    if skipped is not None:
        return skipped
    bad = _ended_badly(run, "malformed m.login.secrets")
    if bad is not None:
        return bad
    if run.succeeded:
        return Judgement(Grade.WARN, "reported success with malformed secrets")
    return Judgement(Grade.PASS, f"refused malformed secrets: {run.summary()}")


def _unsupported_protocol(target: Target) -> Variants:
    if target.role is not DeviceRole.NEW or target.side is not QrSide.SHOWS:
        return "only a new device that shows the QR code receives m.login.protocols"
    message = {"type": "m.login.protocols", "protocols": ["org.example.other"], "homeserver": "example.org"}
    return [("no protocol in common", Plan(write_hook=_rewrite_at(1, _reseal(message))))]


def _judge_unsupported(run: ClientRun) -> Judgement:
    skipped = _not_reached(run)
    if skipped is not None:
        return skipped
    bad = _ended_badly(run, "protocols it does not support")
    if bad is not None:
        return bad
    if run.succeeded or run.requests_to(DEVICE_AUTHORIZATION_PATH):
        return Judgement(Grade.FAIL, "started the device authorization without a protocol in common")
    told = _peer_heard(run)
    if "unsupported_protocol" not in told:
        return Judgement(Grade.WARN, f"stopped, but {told}")
    return Judgement(Grade.PASS, f"stopped: {told}")


# ---- cancelling, cleaning up, nonces


def _cancel(target: Target) -> Variants:
    point = "prompt:open_uri" if target.role is DeviceRole.EXISTING else "user_code"
    return [(f"cancel at {point}", Plan(cancel_on_client_after=point, linger_s=6.0, ttl_ms=60_000))]


def _judge_cancel(run: ClientRun) -> Judgement:
    if run.cancelled_at_ms is None:
        return Judgement(Grade.SKIP, f"the cancel point was never reached: {run.summary()}")
    if run.crashed:
        return Judgement(Grade.FAIL, f"crashed on cancel: {run.summary()}")
    outcome = run.counterpart.outcome
    told = [kind for kind in run.counterpart.received if kind.startswith("m.login.failure")]
    if told:
        return Judgement(Grade.PASS, f"the peer was told: {told[-1]}")
    if outcome is not None and outcome.session_end is not None and outcome.session_end.value == "deleted":
        return Judgement(Grade.PASS, "the peer learned from the deleted rendezvous")
    return Judgement(Grade.FAIL, f"the peer was not told within {run.plan.linger_s:.0f} s (it would wait for expiry)")


def _gives_up(target: Target) -> Variants:
    tamper = _rewrite_at(1, lambda write, run: faults.flip(write.payload))
    return [("after a tampered message 1", Plan(write_hook=tamper, linger_s=5.0, ttl_ms=60_000))]


def _judge_gives_up(run: ClientRun) -> Judgement:
    skipped = _not_reached(run)
    if skipped is not None:
        return skipped
    bad = _ended_badly(run, "a tampered message")
    if bad is not None:
        return bad
    if run.succeeded:
        return Judgement(Grade.FAIL, "done: success after a tampered message")
    told = [kind for kind in run.counterpart.received if kind.startswith("m.login.failure")]
    if told:
        return Judgement(Grade.PASS, f"{run.summary()}; the peer was told: {told[-1]}")
    outcome = run.counterpart.outcome
    if outcome is not None and outcome.session_end is not None and outcome.session_end.value == "deleted":
        return Judgement(Grade.PASS, f"{run.summary()}; the peer learned from the deleted rendezvous")
    return Judgement(Grade.FAIL, f"{run.summary()}; the peer was not told within {run.plan.linger_s:.0f} s")


def _creator_deletes(target: Target) -> Variants:
    if target.side is QrSide.SCANS:
        return "the client did not create the rendezvous"
    return [
        ("after success", Plan(linger_s=3.0)),
        ("after a wrong check code", Plan(linger_s=3.0, wrong_code_on_client=True)),
    ]


def _judge_creator_deletes(run: ClientRun) -> Judgement:
    if run.crashed or run.hung:
        return Judgement(Grade.FAIL, run.summary())
    deletes = [x for x in run.exchanges if faults.is_rendezvous(x.request) and x.method == "DELETE"]
    if deletes:
        return Judgement(Grade.PASS, f"deleted its rendezvous ({run.summary()})")
    return Judgement(Grade.FAIL, f"left its rendezvous to expire ({run.summary()})")


def _opened_by_nonce(run: ClientRun) -> dict[int, set[str]]:
    """The distinct payloads the client wrote that open with its sending key, by the nonce (counter) they open at."""
    by_counter: dict[int, set[str]] = {}
    payloads = list(dict.fromkeys(run.rendezvous_writes))
    for payload in payloads:
        for counter in range(len(payloads) + 2):
            if run.counterpart.receiver_open(payload, counter) is not None:
                by_counter.setdefault(counter, set()).add(payload)
                break
    return by_counter


def nonce_reuse(run: ClientRun) -> str | None:
    """Evidence of two different ciphertexts the client sealed under one nonce, or None."""
    for counter, sealed in sorted(_opened_by_nonce(run).items()):
        if len(sealed) > 1:
            return f"{len(sealed)} different ciphertexts under nonce {counter}"
    return None


def _judge_nonces(run: ClientRun) -> Judgement:
    if not run.counterpart.keys_known:
        return Judgement(Grade.SKIP, f"no channel keys to check with (no channel): {run.summary()}")
    reuse = nonce_reuse(run)
    if reuse is not None:
        return Judgement(Grade.FAIL, reuse)
    writes = run.rendezvous_writes
    opened = sum(len(sealed) for sealed in _opened_by_nonce(run).values())
    if opened == 0:
        return Judgement(Grade.SKIP, f"none of the {len(set(writes))} payloads written opened: {run.summary()}")
    return Judgement(
        Grade.PASS,
        f"{len(writes)} payloads written, {len(set(writes))} distinct, {opened} opened, every nonce used once",
    )


def _nonces(target: Target) -> Variants:

    def conflict_then_retry(run: ClientRun) -> Intercept:
        return faults.after_first(_first_write, lambda request, forward: faults.conflict(target.generation))

    return [
        ("honest run", Plan()),
        ("after a conflict", Plan(intercept=conflict_then_retry, ttl_ms=10_000, deadline_s=15)),
    ]


# ---- payload shape


def _oversized(target: Target) -> Variants:
    def build(run: ClientRun) -> Intercept:
        def intercept(request: HttpRequest, forward: Forward) -> HttpResponse:
            response = forward(request)
            writes = run.counterpart.writes
            reads = faults.is_rendezvous(request) and request.method == "GET" and len(writes) > 1
            if reads and payload_of(response.body) == writes[1].payload and not run.notes:
                run.notes.append("oversized")
                run.counterpart.tampered = True
                return replace(response, body=with_payload(response.body, "A" * 8192))
            return response

        return intercept

    return [("8192-byte payload", Plan(intercept=build))]


def _judge_oversized(run: ClientRun) -> Judgement:
    if not run.notes:
        return Judgement(Grade.SKIP, f"the client never read the counterpart's first login message: {run.summary()}")
    return _must_refuse("an oversized payload")(run)


def _tampered(index: int) -> Callable[[Target], Variants]:
    return _one(Plan(write_hook=_rewrite_at(index, lambda write, run: faults.flip(write.payload))))


def _silent(target: Target) -> Variants:
    return [("silent after message 1", Plan(counterpart_silent_after=1, ttl_ms=8_000, deadline_s=25))]


def _never_scanned(target: Target) -> Variants:
    if target.side is QrSide.SHOWS:
        return [("nobody scans", Plan(counterpart_scans=False, ttl_ms=6_000, deadline_s=20))]
    return [("the creator vanishes", Plan(counterpart_silent_after=-1, ttl_ms=6_000, deadline_s=20))]


_MSC4108_CHANNEL = "MSC4108 §Secure channel (a payload that does not authenticate ends the channel)"
_MSC4108_MESSAGES = "MSC4108 §Message reference (unexpected message: m.login.failure unexpected_message_received)"
_MSC4108_RENDEZVOUS = "MSC4108 §Insecure rendezvous session / MSC4388 §Insecure rendezvous session"
_MSC4108_LOGIN = "MSC4108 §Login via OAuth 2.0 device authorization flow"
_ALL_REASONS = [reason.value for reason in FailureReason]


SCENARIOS: tuple[ClientScenario, ...] = (
    ClientScenario(
        "sign-in-completes",
        f"{_MSC4108_LOGIN}, steps 1-6",
        Level.MUST,
        "an honest run ends in success on both devices, with the new device on the account",
        _one(Plan()),
        _judge_honest,
    ),
    ClientScenario(
        "tampered-handshake",
        f"{_MSC4108_CHANNEL}, establishment",
        Level.MUST,
        "one bit flipped in the peer's LoginInitiate / LoginOk",
        _tampered(0),
        _must_refuse("a tampered handshake message"),
    ),
    ClientScenario(
        "tampered-message-1",
        _MSC4108_CHANNEL,
        Level.MUST,
        "one bit flipped in the peer's login message 1",
        _tampered(1),
        _must_refuse("a tampered ciphertext"),
    ),
    ClientScenario(
        "tampered-message-2",
        _MSC4108_CHANNEL,
        Level.MUST,
        "one bit flipped in the peer's login message 2",
        _tampered(2),
        _must_refuse("a tampered ciphertext"),
    ),
    ClientScenario(
        "tampered-message-3",
        _MSC4108_CHANNEL,
        Level.MUST,
        "one bit flipped in the peer's login message 3",
        _tampered(3),
        _must_refuse("a tampered ciphertext"),
    ),
    ClientScenario(
        "replayed-payload",
        f"{_MSC4108_CHANNEL}, nonces",
        Level.MUST,
        "the peer's login message 2 replaced by its message 1, replayed",
        _one(Plan(write_hook=_rewrite_at(2, _replay))),
        _must_refuse("a replayed payload"),
    ),
    ClientScenario(
        "truncated-payload",
        _MSC4108_CHANNEL,
        Level.MUST,
        "the peer's login message 1 cut in half",
        _one(Plan(write_hook=_rewrite_at(1, lambda write, run: faults.truncate(write.payload)))),
        _must_refuse("a truncated payload"),
    ),
    ClientScenario(
        "oversized-payload",
        f"{_MSC4108_RENDEZVOUS} (payloads are at most 4096 bytes)",
        Level.MUST,
        "the client reads an 8192-byte payload in place of the peer's message 1",
        _oversized,
        _judge_oversized,
    ),
    ClientScenario(
        "plaintext-not-json",
        _MSC4108_MESSAGES,
        Level.MUST,
        "the peer's message 1 sealed properly but not JSON",
        _one(Plan(write_hook=_rewrite_at(1, _reseal_raw(b"this is not JSON")))),
        _must_refuse("a plaintext that is not JSON"),
    ),
    ClientScenario(
        "unknown-message-type",
        _MSC4108_MESSAGES,
        Level.MUST,
        "the peer's message 1 has an unknown type",
        _one(Plan(write_hook=_rewrite_at(1, _reseal({"type": "org.example.unknown"})))),
        _must_refuse("a message of unknown type"),
    ),
    ClientScenario(
        "unexpected-message-1",
        _MSC4108_MESSAGES,
        Level.MUST,
        "each other login message type in place of the peer's message 1",
        _unexpected_at(1),
        _must_refuse("an unexpected message"),
    ),
    ClientScenario(
        "unexpected-message-2",
        _MSC4108_MESSAGES,
        Level.MUST,
        "each other login message type in place of the peer's message 2",
        _unexpected_at(2),
        _must_refuse("an unexpected message"),
    ),
    ClientScenario(
        "unexpected-message-3",
        _MSC4108_MESSAGES,
        Level.MUST,
        "each other login message type in place of the peer's message 3",
        _unexpected_at(3),
        _must_refuse("an unexpected message"),
    ),
    ClientScenario(
        "failure-at-message-1",
        f"{_MSC4108_MESSAGES}, m.login.failure",
        Level.MUST,
        "m.login.failure with each reason in place of the peer's message 1",
        _failure_at(1, _ALL_REASONS),
        _judge_failure_received,
    ),
    ClientScenario(
        "failure-at-message-2",
        f"{_MSC4108_MESSAGES}, m.login.failure",
        Level.MUST,
        "m.login.failure in place of the peer's message 2",
        _failure_at(2, ["user_cancelled", "authorization_expired", "unexpected_message_received"]),
        _judge_failure_received,
    ),
    ClientScenario(
        "failure-at-message-3",
        f"{_MSC4108_MESSAGES}, m.login.failure",
        Level.MUST,
        "m.login.failure in place of the peer's message 3",
        _failure_at(3, ["user_cancelled", "device_not_found"]),
        _judge_failure_received,
    ),
    ClientScenario(
        "wrong-check-code",
        "MSC4108 §Secure channel, establishment (the check code)",
        Level.MUST,
        "the user types a wrong check code on the device that shows the QR code",
        _wrong_code,
        _judge_wrong_code,
    ),
    ClientScenario(
        "attacker-races-initiate",
        "MSC4108 §Secure channel, establishment; MSC4108 §Threat analysis",
        Level.MUST,
        "an attacker's LoginInitiate lands first; the user's code does not match it",
        _race,
        _judge_race,
    ),
    ClientScenario(
        "peer-falls-silent",
        _MSC4108_RENDEZVOUS + " (the session expires)",
        Level.MUST,
        "the peer stops after its message 1: the client ends by itself",
        _silent,
        _judge_ends_alone("the peer fell silent", 20.0),
    ),
    ClientScenario(
        "rendezvous-expires",
        _MSC4108_RENDEZVOUS + " (the session expires)",
        Level.MUST,
        "nobody scans (or the creator vanishes): the client ends at expiry",
        _never_scanned,
        _judge_ends_alone("the rendezvous expired", 14.0),
    ),
    ClientScenario(
        "rendezvous-deleted",
        _MSC4108_RENDEZVOUS + " (404 once deleted)",
        Level.MUST,
        "the rendezvous is deleted after the peer's message 1",
        _one(Plan(intercept=_deleted_after(1), deadline_s=20)),
        _judge_deleted,
    ),
    ClientScenario(
        "stale-token-write",
        _MSC4108_RENDEZVOUS + " (409 / 412: re-read, never overwrite)",
        Level.MUST,
        "the client's first write is answered with a conflict",
        _stale,
        _judge_stale,
    ),
    ClientScenario(
        "write-answer-lost",
        _MSC4108_RENDEZVOUS + "; MSC4108 §Secure channel (nonces)",
        Level.SHOULD,
        "the client's first write lands but is answered 502",
        _lost_answer,
        _judge_lost_answer,
    ),
    ClientScenario(
        "server-errors-then-recovery",
        _MSC4108_RENDEZVOUS,
        Level.SHOULD,
        "two polls answered 503, then the server recovers",
        _server_errors,
        _should_recover("two 503 answers"),
    ),
    ClientScenario(
        "rate-limited",
        "Matrix client-server API §Rate limiting (retry_after_ms)",
        Level.SHOULD,
        "a poll answered 429 with retry_after_ms 2000",
        _rate_limited,
        _judge_rate_limited,
    ),
    ClientScenario(
        "token-slow-down",
        "RFC 8628 §3.5 (slow_down: the interval MUST grow by 5 s)",
        Level.MUST,
        "the first token poll is answered slow_down",
        _token_answers("slow_down"),
        _judge_slow_down,
    ),
    ClientScenario(
        "token-authorization-declined",
        "RFC 8628 §3.5 (access_denied); MSC4108 m.login.declined",
        Level.MUST,
        "the user declines: access_denied, or the texts' authorization_declined",
        _declined,
        _judge_token_stop("authorization_declined"),
    ),
    ClientScenario(
        "token-expired",
        "RFC 8628 §3.5 (expired_token); MSC4108 m.login.failure authorization_expired",
        Level.MUST,
        "the token endpoint answers expired_token",
        _token_answers("expired_token"),
        _judge_token_stop("expired_token"),
    ),
    ClientScenario(
        "token-poll-interval",
        "RFC 8628 §3.2 / §3.5 (wait interval seconds between polls)",
        Level.SHOULD,
        "three authorization_pending answers",
        _poll_interval,
        _judge_poll_interval,
    ),
    ClientScenario(
        "device-already-exists",
        f"{_MSC4108_LOGIN}, step 3 (200: device_already_exists)",
        Level.MUST,
        "the new device's id is already taken on the account",
        _device_exists,
        _judge_device_exists,
    ),
    ClientScenario(
        "device-check-error",
        f"{_MSC4108_LOGIN}, step 3 (only 404 means free, only 200 means taken)",
        Level.SHOULD,
        "the device check is answered 500 once",
        _device_check_error,
        _judge_device_check_error,
    ),
    ClientScenario(
        "device-not-found",
        f"{_MSC4108_LOGIN}, step 5 (no device: m.login.failure device_not_found)",
        Level.MUST,
        "the new device never appears after m.login.success",
        _device_not_found,
        _judge_device_not_found,
    ),
    ClientScenario(
        "malformed-secrets",
        "MSC4108 §Secret sharing and device verification",
        Level.MUST,
        "m.login.secrets with keys of the wrong types",
        _malformed_secrets,
        _judge_malformed_secrets,
    ),
    ClientScenario(
        "unsupported-protocol",
        f"{_MSC4108_LOGIN}, step 1 (m.login.failure unsupported_protocol)",
        Level.MUST,
        "m.login.protocols offers no protocol the client speaks",
        _unsupported_protocol,
        _judge_unsupported,
    ),
    ClientScenario(
        "cancel-tells-peer",
        "MSC4108 §Message reference (m.login.failure user_cancelled)",
        Level.SHOULD,
        "the user cancels on the client mid-flow: does the peer hear of it before expiry?",
        _cancel,
        _judge_cancel,
    ),
    ClientScenario(
        "gives-up-tells-peer",
        "MSC4108 §Message reference (m.login.failure); §Insecure rendezvous session",
        Level.SHOULD,
        "after a payload it cannot open, the client tells its peer (a failure or a deletion)",
        _gives_up,
        _judge_gives_up,
    ),
    ClientScenario(
        "creator-deletes-rendezvous",
        _MSC4108_RENDEZVOUS + " (the creator deletes the session)",
        Level.SHOULD,
        "the client that created the rendezvous deletes it when it is done",
        _creator_deletes,
        _judge_creator_deletes,
    ),
    ClientScenario(
        "nonce-unique",
        "MSC4108 §Secure channel; RFC 8439 §4 (a nonce is never reused under one key)",
        Level.MUST,
        "no two ciphertexts the client writes open under one nonce",
        _nonces,
        _judge_nonces,
    ),
)
