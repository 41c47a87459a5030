"""One scenario run: the served homeserver, the counterpart and the client under test, played until the end.

Theory of operation
-------------------
:func:`play` builds a fresh world for every run: a homeserver model seeded from the scenario's name (so a run is
repeatable as far as the client allows), a counterpart in the role and on the side opposite the client's, and the
shim process, started once the placeholders are known (a client that scans gets the counterpart's QR code). Then
one loop, every 20 ms, until the client's ``done`` and a scenario's ``linger`` after it, the shim's exit, or the
deadline:

* the counterpart performs its pending HTTP and due timers; what it shows, the suite reacts to as its user would
  (a check code is remembered for the client's prompt, a verification URI is consented to at the model);
* the next line of the client is read and answered as its user would (the counterpart scans a QR code, a prompt for
  the check code gets the code the counterpart shows, a prompt to open a URI is consented to at the model).

The :class:`Plan` says what differs from an honest run: faults on the client's HTTP (an intercept), rewrites of
what the counterpart writes (a write hook), the user's mistakes (a wrong code, a declined consent, a cancel), a
counterpart that falls silent or never scans. Everything seen is kept in :class:`ClientRun` for the judge.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import device as dv
from .. import qr
from ..login.messages import message_to_json
from ..sim.world import CLIENT_METADATA, user_secrets
from ..vocabulary import (
    CheckCodeEntered,
    DeviceRole,
    OpenVerificationUri,
    PromptForCheckCode,
    QrSide,
    ShowCheckCode,
    VerificationUriOpened,
)
from . import faults
from .counterpart import Counterpart, WriteHook
from .homeserver import ACCOUNT, EXISTING_DEVICE_ID, PASSWORD, Exchange, Intercept, ServedHomeserver, now_ms
from .shim import Shim, ShimEvent, fill_template
from .wire import payload_of

__all__ = [
    "CLIENT_NEW_DEVICE_ID",
    "COUNTERPART_NEW_DEVICE_ID",
    "ClientRun",
    "Plan",
    "Target",
    "play",
    "wrong_code",
]

CLIENT_NEW_DEVICE_ID = "CHECKEDPHONE"
COUNTERPART_NEW_DEVICE_ID = "SUITEPHONE"
_TICK_S = 0.02
_COUNTERPART_GRACE_S = 3.0  # after the client's end, how long the counterpart gets to finish


@dataclass(frozen=True, slots=True)
class Target:
    """What the client under test is: which device, which side of the QR code, which generation."""

    role: DeviceRole
    side: QrSide
    generation: qr.Generation

    def __str__(self) -> str:
        return f"{self.role.value}/{self.side.value}/{self.generation.name.lower()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How a run differs from an honest one. The hooks are built per run (they may need the run's state)."""

    ttl_ms: int = 25_000
    deadline_s: float = 30.0
    linger_s: float = 0.0  # keep watching after the client's ``done`` (what it still writes, deletes)
    intercept: Callable[[ClientRun], Intercept] | None = None
    write_hook: Callable[[ClientRun], WriteHook] | None = None
    setup: Callable[[ServedHomeserver], None] | None = None
    counterpart_scans: bool = True  # False: nobody scans the client's QR code
    counterpart_silent_after: int | None = None  # the counterpart vanishes once it wrote payload N (0: handshake)
    wrong_code_on_client: bool = False
    code_after_counterpart_writes: int | None = None  # the user types the code into the client only after this
    wrong_code_on_counterpart: bool = False
    approve: bool = True  # the user's answer on the consent page
    cancel_on_client_after: str | None = None  # a client event kind ("check_code", "prompt", ...) after which to cancel
    counterpart_seed: bytes = b"check-client counterpart"


@dataclass
class ClientRun:
    """Everything seen in one run."""

    target: Target
    plan: Plan
    served: ServedHomeserver
    counterpart: Counterpart
    events: list[ShimEvent] = field(default_factory=list)
    started_ms: int = 0
    ended_ms: int = 0
    done: ShimEvent | None = None
    exit_status: int | None = None
    exited_without_done: bool = False
    timed_out: bool = False
    cancelled_at_ms: int | None = None
    client_code: str | None = None
    counterpart_code: str | None = None
    log_tail: str = ""
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------- client side

    @property
    def outcome(self) -> str | None:
        """The client's ``done`` outcome ("success" or its reason), or None when it gave none."""
        if self.done is None:
            return None
        value = self.done.get("outcome")
        return value if isinstance(value, str) else repr(value)

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def done_device_id(self) -> str:
        """The device id the client said it signed in as (or the one it was asked to use)."""
        value = self.done.get("device_id") if self.done is not None else None
        return value if isinstance(value, str) else CLIENT_NEW_DEVICE_ID

    def event(self, kind: str) -> ShimEvent | None:
        return next((e for e in self.events if e.kind == kind), None)

    def prompts(self, ask: str) -> list[ShimEvent]:
        return [e for e in self.events if e.kind == "prompt" and e.get("ask") == ask]

    @property
    def exchanges(self) -> list[Exchange]:
        return self.served.exchanges

    def requests_to(self, path_part: str, method: str | None = None) -> list[Exchange]:
        return [x for x in self.exchanges if path_part in x.path and (method is None or x.method == method.upper())]

    @property
    def rendezvous_writes(self) -> list[str]:
        """Every payload the client put on the wire to the rendezvous, in order, duplicates kept."""
        writes = []
        for exchange in self.requests_to("/rendezvous"):
            if exchange.method in ("PUT", "POST"):
                payload = payload_of(exchange.request.body)
                if payload:
                    writes.append(payload)
        return writes

    def summary(self) -> str:
        """How the client ended, in a few words (evidence)."""
        if self.done is not None:
            detail = self.done.get("detail")
            return f"done: {self.outcome}" + (f" ({str(detail)[:80]})" if detail else "")
        if self.exited_without_done:
            return f"exited with status {self.exit_status} without a done event"
        if self.timed_out:
            return f"no done event within {self.plan.deadline_s:.0f} s"
        return "no done event"

    def trail(self, last: int = 6) -> str:
        """The client's last progress step and its last rendezvous requests with their answers (the evidence of a
        run that should have succeeded: where it stopped, and what the server told it)."""
        steps = [str(event.get("step")) for event in self.events if event.kind == "progress"]
        exchanges = [f"{x.method} {x.response.status}" for x in self.exchanges if faults.is_rendezvous(x.request)]
        return "; ".join(
            [
                f"last step: {steps[-1] if steps else 'none'}",
                f"last rendezvous requests: {', '.join(exchanges[-last:]) if exchanges else 'none'}",
            ]
        )

    @property
    def crashed(self) -> bool:
        return self.exited_without_done

    @property
    def hung(self) -> bool:
        return self.timed_out and self.done is None

    def ended_after_ms(self, since_ms: int) -> int | None:
        return None if self.done is None else self.done.at_ms - since_ms


def wrong_code(code: str) -> str:
    """A well-formed code that is not ``code``."""
    return f"{(int(code) + 1) % 100:02d}" if code.isdigit() else "00"


def _counterpart_config(target: Target, served: ServedHomeserver, seed: bytes) -> dv.DeviceConfig:
    """qrlogin's device in the role the client is not."""
    if target.role is DeviceRole.EXISTING:
        kind, device_id, metadata, secrets = DeviceRole.NEW, COUNTERPART_NEW_DEVICE_ID, CLIENT_METADATA, None
    else:
        kind, device_id, metadata, secrets = DeviceRole.EXISTING, "", None, user_secrets(ACCOUNT)
    return dv.DeviceConfig(
        kind=kind,
        generation=target.generation,
        seed=seed,
        base_url=served.base_url,
        server_name=served.server_name,
        device_id=device_id,
        client_metadata=metadata,
        secrets=secrets,
        poll_interval_ms=250,
        allow_http=True,
    )


def secrets_json() -> dict[str, object]:
    """The ``m.login.secrets`` content (no ``type``) an existing device under test hands over."""
    content = dict(message_to_json(user_secrets(ACCOUNT)))
    del content["type"]
    return content


def play(template: str, target: Target, plan: Plan, *, name: str, workdir: Path | None = None) -> ClientRun:
    """Run the client under test once under ``plan``."""
    seed = hashlib.sha256(f"{name} {target}".encode()).digest()
    with tempfile.TemporaryDirectory(prefix="qrlogin-check-", dir=workdir) as scratch_dir:
        scratch = Path(scratch_dir)
        with ServedHomeserver(seed=seed, ttl_ms=plan.ttl_ms) as served:
            if plan.setup is not None:
                plan.setup(served)
            counterpart = Counterpart(
                _counterpart_config(target, served, hashlib.sha256(plan.counterpart_seed + seed).digest()),
                served,
                access_token=served.access_token if target.role is DeviceRole.NEW else None,
            )
            run = ClientRun(target=target, plan=plan, served=served, counterpart=counterpart)
            if plan.intercept is not None:
                served.intercept = plan.intercept(run)
            if plan.write_hook is not None:
                counterpart.write_hook = plan.write_hook(run)
            qr_hex = ""
            if target.side is QrSide.SCANS:
                counterpart.generate()
                qr_hex = _await_qr(counterpart)
            secrets_file = scratch / "secrets.json"
            secrets_file.write_text(json.dumps(secrets_json()), encoding="utf-8")
            values = {
                "homeserver": served.base_url,
                "server_name": served.server_name,
                "role": target.role.value,
                "side": target.side.value,
                "generation": target.generation.name.lower(),
                "qr_hex": qr_hex,
                "user": ACCOUNT,
                "password": PASSWORD,
                "user_id": served.user_id,
                "access_token": served.access_token if target.role is DeviceRole.EXISTING else "",
                "device_id": CLIENT_NEW_DEVICE_ID if target.role is DeviceRole.NEW else EXISTING_DEVICE_ID,
                "secrets_file": str(secrets_file),
                "workdir": str(scratch),
            }
            run.started_ms = now_ms()
            shim = Shim(fill_template(template, values), log_path=scratch / "client.log", cwd=None)
            try:
                _loop(run, shim)
            finally:
                shim.close()
                run.exit_status = shim.exit_status
                run.log_tail = shim.log_tail()
                run.ended_ms = now_ms()
    return run


def _await_qr(counterpart: Counterpart) -> str:
    for _ in range(50):
        shown = counterpart.of_type(dv.ShowQrCode)
        if shown:
            return bytes(shown[0].payload).hex()
        counterpart.step()
    outcome = counterpart.outcome
    raise RuntimeError(f"the counterpart could not create its rendezvous session: {outcome}")


class _User:
    """The suite as the user of both devices."""

    def __init__(self, run: ClientRun, shim: Shim) -> None:
        self.run = run
        self.shim = shim
        self.client_wants_code = False
        self.counterpart_wants_code = False
        self.seen_effects = 0
        self.started = time.monotonic()

    def on_client(self, event: ShimEvent) -> None:
        run, plan = self.run, self.run.plan
        cancel_at = plan.cancel_on_client_after
        if (
            cancel_at is not None
            and run.cancelled_at_ms is None
            and cancel_at in (event.kind, f"prompt:{event.get('ask')}")
        ):
            run.cancelled_at_ms = now_ms()
            self.shim.act("cancel")
            return
        if event.kind == "qr" and plan.counterpart_scans and run.counterpart.state is None:
            try:
                run.counterpart.scan(bytes.fromhex(str(event.get("hex"))))
            except ValueError:
                run.notes.append("the qr event's hex did not decode")
        elif event.kind == "check_code":
            run.client_code = str(event.get("code"))
        elif event.kind == "prompt" and event.get("ask") == "check_code":
            self.client_wants_code = True
        elif event.kind == "prompt" and event.get("ask") in ("open_uri", "consent"):
            uri = event.get("uri")
            if isinstance(uri, str):
                run.served.consent(uri, approve=plan.approve)
            if event.get("ask") == "consent":
                self.shim.act("consent", approve=plan.approve)
            else:
                self.shim.act("opened")

    def on_counterpart(self) -> None:
        run, plan = self.run, self.run.plan
        effects = run.counterpart.effects
        while self.seen_effects < len(effects):
            effect = effects[self.seen_effects]
            self.seen_effects += 1
            if isinstance(effect, ShowCheckCode):
                run.counterpart_code = effect.code
            elif isinstance(effect, PromptForCheckCode):
                self.counterpart_wants_code = True
            elif isinstance(effect, OpenVerificationUri):
                run.served.consent(effect.uri, approve=plan.approve)
                run.counterpart.feed(VerificationUriOpened())

    def type_codes(self) -> None:
        run, plan = self.run, self.run.plan
        held = plan.code_after_counterpart_writes
        if held is not None and len(run.counterpart.writes) < held and time.monotonic() < self.started + 3:
            return
        if self.client_wants_code and run.counterpart_code is not None:
            self.client_wants_code = False
            code = run.counterpart_code
            self.shim.act("check_code", code=wrong_code(code) if plan.wrong_code_on_client else code)
        if self.counterpart_wants_code and run.client_code is not None:
            self.counterpart_wants_code = False
            code = run.client_code
            entered = wrong_code(code) if plan.wrong_code_on_counterpart else code
            run.counterpart.feed(CheckCodeEntered(code=entered))


def _loop(run: ClientRun, shim: Shim) -> None:
    plan = run.plan
    user = _User(run, shim)
    deadline = time.monotonic() + plan.deadline_s
    ended: float | None = None  # when the client's done (or exit) was read
    while True:
        now = time.monotonic()
        lingered = ended is not None and now >= ended + plan.linger_s
        if lingered and (_counterpart_done(run) or (ended is not None and now >= ended + _COUNTERPART_GRACE_S)):
            break
        if now >= deadline:
            run.timed_out = run.done is None
            break
        silent_after = plan.counterpart_silent_after
        if silent_after is not None and len(run.counterpart.writes) > silent_after:
            run.counterpart.silent = True
        run.counterpart.step()
        user.on_counterpart()
        user.type_codes()
        event = shim.next_event(_TICK_S)
        if event is None:
            continue
        if event.kind == "exited":
            if run.done is None:
                run.exited_without_done = True
                run.exit_status = event.get("status")
            ended = ended if ended is not None else time.monotonic()
            continue
        run.events.append(event)
        if event.kind == "done" and run.done is None:
            run.done = event
            ended = time.monotonic()
            continue
        user.on_client(event)


def _counterpart_done(run: ClientRun) -> bool:
    state = run.counterpart.state
    return state is None or dv.is_done(state) or run.counterpart.silent
