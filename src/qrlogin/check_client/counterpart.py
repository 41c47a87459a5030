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
carries, and :meth:`PendingWrite.seal`, which seals any other plaintext exactly as the message it replaces was
sealed (the message it replaces is never sent, so no nonce is used twice on the wire). The hook returns the
payload to write instead, or None to write it unchanged. A retry of a payload is rewritten the same way as the
first attempt, so the rendezvous client's conflict handling sees one story.

The counterpart does not know it was tampered with: it goes on as if its message had arrived. That is the point.
Its channel keys stay readable (:meth:`Counterpart.receiver_open`), so the suite can open every payload the client
wrote and check the nonces it used.

Where the keys come from
------------------------
The suite owns this device's seed and so its whole side of the channel; it needs no accessor on the cores. The
established channel state of either generation already holds its keys as plain fields (``ecies.Established.keys``,
``hpke.HpkeKeys.sender`` / ``receiver`` with the AAD prefix), and the counterpart reads them from the state its own
machine returned, as any holder of that state could. Only the suite does this; an application never holds the
counterpart's state. One nonce still carries one ciphertext on the wire: a reseal is written instead of a payload
the machine sealed, at that payload's key and nonce, and the payload it replaces is never written.

* ECIES (v1, v2): the sender key at the channel's last send counter.
* HPKE (v3): ``keys.sender`` at ``send_seq - 1`` with ``aad_prefix || u8(len token) || token``. The token is
  the one of the device's last GET (:mod:`qrlogin.channel.hpke`), which the channel state does not keep, so the
  counterpart takes it from the rendezvous answers it has seen, newest first, and keeps the first that opens the
  original payload: the reseal is proven to use the very key, nonce and AAD of the message it replaces, or it is
  not made (None).
  Opening what the client wrote works the same way in the other direction, with ``keys.receiver``; a handshake
  payload (``LoginInitiate``'s ``enc`` or ``LoginOk``'s response nonce before the ciphertext, both 32 bytes) is
  opened at sequence number 0 after its prefix.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import device as dv
from .._json import JsonError, loads_object
from ..channel import ecies, hpke
from ..encoding import b64decode, b64encode
from ..errors import AuthenticationError, Base64DecodeError, LocalProtocolError
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
    _sealer: Callable[[bytes], bytes] | None = field(default=None, repr=False, compare=False)

    def seal(self, plaintext: bytes) -> str | None:
        """``plaintext`` sealed as this message was (same key, nonce and, for HPKE, AAD); None where that is not
        possible (the handshake message, or no channel)."""
        if self._sealer is None:
            return None
        return b64encode(self._sealer(plaintext))

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
        # Kept once known: a finished device no longer shows its channel.
        self._keys: ecies.EciesKeys | hpke.HpkeKeys | None = None
        self._tokens: list[str] = []  # every sequence token a rendezvous answer gave it, newest last

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
        if isinstance(keys, ecies.EciesKeys | hpke.HpkeKeys):
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
        response = self.served.respond_to_counterpart(
            HttpRequest(method=request.method, target=target, headers=tuple(headers), body=body)
        )
        if "/rendezvous" in parts.path:
            self._note_token(response.body)
        return response

    def _note_token(self, body: bytes) -> None:
        if not body.startswith(b"{"):
            return
        try:
            token = loads_object(body, max_bytes=1 << 20).get("sequence_token")
        except JsonError:
            return
        if isinstance(token, str) and (not self._tokens or self._tokens[-1] != token):
            self._tokens.append(token)

    def _rewrite(self, request: HttpRequest) -> bytes:
        payload = payload_of(request.body)
        if not payload:
            return request.body
        if payload in self._rewritten:  # a retry: the same story as the first attempt
            return with_payload(request.body, self._rewritten[payload])
        index = len(self.writes)
        label = "handshake" if index == 0 else (self._labels[index - 1] if index - 1 < len(self._labels) else "?")
        channel = dv.channel(self.state) if self.state is not None else None
        sealer = self._sealer(channel, payload) if index > 0 else None
        pending = PendingWrite(index=index, label=label, payload=payload, _sealer=sealer)
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

    def _sealer(self, channel: object, payload: str) -> Callable[[bytes], bytes] | None:
        """How to seal in place of ``payload``, which the channel in state ``channel`` has just sealed."""
        if isinstance(channel, ecies.Established):
            sender, nonce = channel.keys.sender, ecies.nonce(channel.send_counter - 1)
            return lambda plaintext: sender.seal(nonce, plaintext)
        if isinstance(channel, hpke.Established):
            return hpke_resealer(channel, payload, self._tokens)
        return None

    def receiver_open(self, payload: str, counter: int) -> bytes | None:
        """``payload`` opened with the client's sending key at ``counter`` (for HPKE, under any AAD the rendezvous
        tokens allow; at 0, a handshake payload after its 32-byte prefix), or None."""
        keys = self._keys
        if keys is None:
            return None
        try:
            sealed = b64decode(payload, padding="allow")
        except Base64DecodeError:
            return None
        if isinstance(keys, ecies.EciesKeys):
            try:
                return keys.receiver.open(ecies.nonce(counter), sealed)
            except AuthenticationError:
                return None
        return hpke_open(keys, sealed, counter, self._tokens)

    @property
    def keys_known(self) -> bool:
        return self._keys is not None


# ------------------------------------------------------------------------------------------------ HPKE (v3)


def _aad_candidates(keys: hpke.HpkeKeys, tokens: Sequence[str]) -> list[bytes]:
    """``aad_prefix || EncodeStringAsBytes8(token)`` for every token an AAD can carry, the newest (last) first."""
    candidates = []
    for token in reversed(tokens):
        encoded = token.encode("utf-8", errors="surrogatepass")
        if 1 <= len(encoded) <= hpke.MAX_IDENTIFIER_LENGTH:
            candidates.append(keys.aad_prefix + bytes((len(encoded),)) + encoded)
    return candidates


def hpke_resealer(channel: hpke.Established, payload: str, tokens: Sequence[str]) -> Callable[[bytes], bytes] | None:
    """How to seal any plaintext exactly as ``payload`` was sealed by ``channel`` (the state its last seal
    returned): ``keys.sender`` at ``send_seq - 1`` under the AAD of whichever of ``tokens`` opens ``payload``; None
    when none does."""
    keys, seq = channel.keys, channel.send_seq - 1
    try:
        sealed = b64decode(payload, padding="allow")
    except Base64DecodeError:
        return None
    for aad in _aad_candidates(keys, tokens):
        try:
            keys.sender.open(seq, sealed, aad)
        except (AuthenticationError, LocalProtocolError):
            continue
        return functools.partial(keys.sender.seal, seq, aad=aad)
    return None


def hpke_open(keys: hpke.HpkeKeys, sealed: bytes, seq: int, tokens: Sequence[str]) -> bytes | None:
    """``sealed`` opened with the peer's sending context at ``seq`` under the AAD of any of ``tokens``, or None.

    At 0 it may be the peer's handshake message, whose ciphertext follows a 32-byte prefix (``enc`` of
    ``LoginInitiate``, the response nonce of ``LoginOk``).
    """
    # An X25519 enc and a ChaCha20-Poly1305 response nonce are both 32 bytes.
    shapes = [sealed, sealed[hpke.RESPONSE_NONCE_LENGTH :]] if seq == 0 else [sealed]
    for aad in _aad_candidates(keys, tokens):
        for ciphertext in shapes:
            try:
                return keys.receiver.open(seq, ciphertext, aad)
            except (AuthenticationError, LocalProtocolError):
                continue
    return None
