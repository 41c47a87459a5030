"""The other device: one :mod:`qrlogin.device` machine, driven by the suite, with hooks on what it writes.

Theory of operation
-------------------
The counterpart is qrlogin's own device in the role opposite the client's (a new device for a client that is an
existing one, the side of the QR code the client is not). Its HTTP is performed in-process against the served model
(:meth:`~qrlogin.check_client.homeserver.ServedHomeserver.respond_to_counterpart`): any host it names reaches the
model, so the discovery of a v2 code and the model's absolute URLs need no name resolution.

Every rendezvous write it makes passes through the scenario's :data:`WriteHook` before it reaches the model. The
hook sees a :class:`PendingWrite`: the payload exactly as the channel sealed it, its index among this device's
distinct payloads (0 is the channel's handshake message, 1.. the login messages), the login message type it
carries, and :meth:`PendingWrite.seal`, which seals any other plaintext at the same nonce with this device's key
(ECIES only; the message it replaces is never sent, so no nonce is used twice on the wire). The hook returns the
payload to write instead, or None to write it unchanged. A retry of a payload is rewritten the same way as the
first attempt, so the rendezvous client's conflict handling sees one story.

The counterpart does not know it was tampered with: it goes on as if its message had arrived. That is the point.
Its channel keys stay readable (:meth:`Counterpart.receiver_open`), so the suite can open every payload the client
wrote and check the nonces it used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import device as dv
from ..channel import ecies
from ..encoding import b64decode, b64encode
from ..errors import AuthenticationError, Base64DecodeError
from ..http import HttpRequest, HttpResponse
from ..login.events import ReportLoginSuccess
from ..vocabulary import HttpResponseReceived, SendHttpRequest, TimerFired
from .homeserver import ServedHomeserver, now_ms
from .wire import payload_of, with_payload

__all__ = ["Counterpart", "PendingWrite", "WriteHook"]


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """A payload the counterpart is about to write."""

    index: int  # 0: the channel handshake message; 1..: the login messages, in order
    label: str  # "handshake" or the login message type (a failure's reason included)
    payload: str
    _keys: ecies.EciesKeys | None = field(default=None, repr=False)
    _counter: int | None = None

    def seal(self, plaintext: bytes) -> str | None:
        """``plaintext`` sealed as this message would be (same key, same nonce); None where that is not possible."""
        if self._keys is None or self._counter is None:
            return None
        return b64encode(self._keys.sender.seal(ecies.nonce(self._counter), plaintext))

    def seal_json(self, message: Mapping[str, Any]) -> str | None:
        return self.seal(json.dumps(message).encode())


WriteHook = Callable[[PendingWrite], str | None]


class Counterpart:
    """One device machine in the suite's hands."""

    def __init__(
        self,
        config: dv.DeviceConfig,
        served: ServedHomeserver,
        *,
        access_token: str | None,
        write_hook: WriteHook | None = None,
    ) -> None:
        self.config = config
        self.served = served
        self.access_token = access_token
        self.write_hook = write_hook
        self.state: dv.State | None = None
        self.effects: list[dv.Effect] = []
        self.silent = False  # a silent counterpart performs nothing more: it has vanished
        self.held = False  # a held counterpart waits (performs nothing) until released
        self.writes: list[PendingWrite] = []  # every distinct payload it wrote (after the hook)
        self.tampered = False  # a hook changed a payload
        self._todo: list[SendHttpRequest] = []
        self._rewritten: dict[str, str] = {}
        self._labels: list[str] = []
        self._keys: ecies.EciesKeys | None = None  # kept once known: a finished device no longer shows its channel

    # ---------------------------------------------------------------------------------------------- driving

    def generate(self) -> None:
        self._apply(dv.generate(self.config, now_ms=now_ms()))

    def scan(self, payload: bytes) -> None:
        self._apply(dv.scan(self.config, payload, now_ms=now_ms()))

    def feed(self, event: dv.Event) -> None:
        if self.state is not None and not dv.is_done(self.state):
            self._apply(dv.transition(self.state, event, now_ms=now_ms()))

    def step(self) -> None:
        """Perform what is pending, fire a due timer."""
        if self.silent or self.held or self.state is None:
            return
        while self._todo and not self.silent:
            effect = self._todo.pop(0)
            self.feed(HttpResponseReceived(request_id=effect.request_id, response=self._perform(effect.request)))
        due = dv.deadline(self.state)
        if due is not None and due <= now_ms():
            self.feed(TimerFired())

    def _apply(self, result: tuple[dv.State, tuple[dv.Effect, ...]]) -> None:
        self.state, effects = result
        keys = getattr(dv.channel(self.state), "keys", None)
        if isinstance(keys, ecies.EciesKeys):
            self._keys = keys
        self.effects.extend(effects)
        for effect in effects:
            if isinstance(effect, SendHttpRequest):
                self._todo.append(effect)
            elif isinstance(effect, dv.ReportMessageSent):
                self._labels.append(effect.message_type)

    def _perform(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        headers = list(request.headers)
        if request.authenticated and self.access_token is not None:
            headers.append(("authorization", f"Bearer {self.access_token}"))
        body = request.body
        if request.method in ("PUT", "POST") and "/rendezvous" in parts.path:
            body = self._rewrite(request)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.served.respond_to_counterpart(
            HttpRequest(method=request.method, target=target, headers=tuple(headers), body=body)
        )

    def _rewrite(self, request: HttpRequest) -> bytes:
        payload = payload_of(request.body)
        if not payload:
            return request.body
        if payload in self._rewritten:  # a retry: the same story as the first attempt
            return with_payload(request.body, self._rewritten[payload])
        index = len(self.writes)
        label = "handshake" if index == 0 else (self._labels[index - 1] if index - 1 < len(self._labels) else "?")
        channel = dv.channel(self.state) if self.state is not None else None
        keys = counter = None
        if index > 0 and isinstance(channel, ecies.Established):
            keys, counter = channel.keys, channel.send_counter - 1
        pending = PendingWrite(index=index, label=label, payload=payload, _keys=keys, _counter=counter)
        replacement = self.write_hook(pending) if self.write_hook is not None else None
        sent = payload if replacement is None else replacement
        self.tampered = self.tampered or sent != payload
        self._rewritten[payload] = sent
        self.writes.append(PendingWrite(index=index, label=label, payload=sent))
        return with_payload(request.body, sent)

    # ---------------------------------------------------------------------------------------------- what it saw

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [effect for effect in self.effects if isinstance(effect, kind)]

    @property
    def outcome(self) -> dv.ReportOutcome | None:
        done = self.of_type(dv.ReportOutcome)
        return done[0] if done else None

    @property
    def succeeded(self) -> bool:
        outcome = self.outcome
        return outcome is not None and isinstance(outcome.result, ReportLoginSuccess)

    @property
    def received(self) -> list[str]:
        """The login message types it received from the client, in order (a failure's reason included)."""
        return [note.message_type for note in self.of_type(dv.ReportMessageReceived)]

    @property
    def sent(self) -> list[str]:
        return list(self._labels)

    def receiver_open(self, payload: str, counter: int) -> bytes | None:
        """``payload`` opened with the client's sending key at ``counter``, or None (ECIES only)."""
        keys = self._keys
        if keys is None:
            return None
        try:
            return keys.receiver.open(ecies.nonce(counter), b64decode(payload, padding="allow"))
        except (AuthenticationError, Base64DecodeError):
            return None

    @property
    def keys_known(self) -> bool:
        return self._keys is not None
