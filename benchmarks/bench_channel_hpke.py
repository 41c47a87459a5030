"""Benchmark: one MSC4388 HPKE session, both sides, plus 10 application messages each way.

Measured in one run, on the same machine, with the same work:

* ``qrlogin``: ``start_showing``/``start_scanning`` and ``transition`` for the handshake (sequence tokens included),
  the check code and 20 messages;
* ``floor``: the same protocol written straight through against ``cryptography``, ``hmac`` and stdlib base64, no
  state machine and no HPKE structure: two X25519 key loads and two exchanges, 22 HMAC-SHA256 computations (the
  DHKEM, key schedule, exports and response context of both sides; the key-schedule context, which depends only on
  constants, computed once per process as qrlogin does), one ChaCha20-Poly1305 object per key, the AAD of every
  message built from the base URL and rendezvous id (normalised once per session) and the message's token. It
  produces exactly qrlogin's payloads (``tests/channel/test_fuzz_hpke.py`` checks);
* ``primitives``: the crypto calls alone, as the earlier version of this benchmark measured them (fixed keys, 26
  HMACs, no base64, no AAD building), printed for comparison with figures taken that way.

Prints CPU microseconds per session and the ratios. The contenders are timed one session at a time, back to back on
the same secrets, rotating which goes first; the ratio is the median over those pairs, so the slow spells of a shared
virtual machine hit both contenders of a pair alike. Usage::

    python benchmarks/bench_channel_hpke.py [--rounds 100] [--repeats 20]

Target: qrlogin within 1.8x of the floor.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from qrlogin.channel import hpke
from qrlogin.channel._common import DeliverPlaintext, InitiateRequested, PayloadReceived, SealRequested, SendPayload
from qrlogin.vocabulary import CheckCodeEntered, ShowCheckCode

BASE_URL = "https://matrix.example.org"
RID = "bench-session-0123456789"
MESSAGE = b'{"type":"m.login.protocol","protocol":"device_authorization_grant","device_id":"ABCDEFGHIJ"}'
MESSAGES_EACH_WAY = 10
#: The rendezvous tokens each message is bound to, as the server would hand them over (strings, not built per use).
TOKENS = [(str(3 + 2 * i), str(4 + 2 * i)) for i in range(MESSAGES_EACH_WAY)]

Wire = list[str] | None
Session = Callable[[bytes, bytes, bytes, Wire], None]


def _sent(effects: tuple[Any, ...]) -> str:
    (send,) = [e for e in effects if type(e) is SendPayload]
    payload: str = send.payload
    return payload


def qrlogin_session(g_secret: bytes, s_secret: bytes, response_nonce: bytes, wire: Wire = None) -> None:
    """The session through qrlogin's machines; appends every payload to ``wire`` if given."""
    transition: Callable[..., Any] = hpke.transition
    g: Any = hpke.start_showing(g_secret, base_url=BASE_URL, rendezvous_id=RID, response_nonce=response_nonce)
    s: Any = hpke.start_scanning(s_secret, peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID)
    s, effects = transition(s, InitiateRequested(sequence_token="1"), now_ms=0)
    initiate = _sent(effects)
    g, effects = transition(
        g, PayloadReceived(payload=initiate, sequence_token="1", reply_sequence_token="2"), now_ms=0
    )
    login_ok = _sent(effects)
    s, effects = transition(s, PayloadReceived(payload=login_ok, sequence_token="2"), now_ms=0)
    (shown,) = [e for e in effects if isinstance(e, ShowCheckCode)]
    g, _ = transition(g, CheckCodeEntered(code=shown.code), now_ms=0)
    if wire is not None:
        wire += [initiate, login_ok, shown.code]
    for s_token, g_token in TOKENS:
        s, (sent,) = transition(s, SealRequested(plaintext=MESSAGE, sequence_token=s_token), now_ms=0)
        g, (got,) = transition(g, PayloadReceived(payload=sent.payload, sequence_token=s_token), now_ms=0)
        assert type(got) is DeliverPlaintext and got.plaintext == MESSAGE
        if wire is not None:
            wire.append(sent.payload)
        g, (sent,) = transition(g, SealRequested(plaintext=MESSAGE, sequence_token=g_token), now_ms=0)
        s, (got,) = transition(s, PayloadReceived(payload=sent.payload, sequence_token=g_token), now_ms=0)
        assert type(got) is DeliverPlaintext and got.plaintext == MESSAGE
        if wire is not None:
            wire.append(sent.payload)


# --- The floor: the same protocol, straight through ------------------------------------------------------------

_VERSION = b"HPKE-v1"
_KEM = b"KEM\x00\x20"
_SUITE = b"HPKE\x00\x20\x00\x01\x00\x03"
_INFO = b"MATRIX_QR_CODE_LOGIN"
_RESPONSE_LABEL = b"MATRIX_QR_CODE_LOGIN_RESPONSE"
_CHECK_LABEL = b"MATRIX_QR_CODE_LOGIN_CHECKCODE"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt or bytes(32), ikm, "sha256")


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + _VERSION + suite + label + info, length)


#: mode_base || LabeledExtract("", "psk_id_hash", "") || LabeledExtract("", "info_hash", info): constants only.
_SCHEDULE_CONTEXT = (
    b"\x00"
    + _extract(b"", _VERSION + _SUITE + b"psk_id_hash")
    + _extract(b"", _VERSION + _SUITE + b"info_hash" + _INFO)
)


def _schedule(dh: bytes, kem_context: bytes) -> tuple[bytes, bytes, bytes]:
    """DHKEM's shared secret and the key schedule: (key, base nonce, exporter secret)."""
    shared = _labeled_expand(_KEM, _extract(b"", _VERSION + _KEM + b"eae_prk" + dh), b"shared_secret", kem_context, 32)
    secret = _extract(shared, _VERSION + _SUITE + b"secret")
    return (
        _labeled_expand(_SUITE, secret, b"key", _SCHEDULE_CONTEXT, 32),
        _labeled_expand(_SUITE, secret, b"base_nonce", _SCHEDULE_CONTEXT, 12),
        _labeled_expand(_SUITE, secret, b"exp", _SCHEDULE_CONTEXT, 32),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _aad_prefix(base_url: str, rendezvous_id: str) -> bytes:
    # The base URL as vodozemac's url::Url serialises it: scheme and host lower-cased, no default port, path "/".
    parts = urlsplit(base_url)
    scheme, netloc = parts.scheme.lower(), parts.netloc
    netloc = netloc if "@" in netloc else netloc.lower()
    default_port = {"https": ":443", "http": ":80"}.get(scheme)
    if default_port and netloc.endswith(default_port):
        netloc = netloc[: -len(default_port)]
    url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment)).encode()
    rid = rendezvous_id.encode()
    return len(url).to_bytes(2, "big") + url + bytes((len(rid),)) + rid


def _token(token: str) -> bytes:
    raw = token.encode()
    return bytes((len(raw),)) + raw


def _code(check: bytes) -> str:
    return f"{check[0] % 9 + 1}{check[1] % 10}"


def floor_session(g_secret: bytes, s_secret: bytes, response_nonce: bytes, wire: Wire = None) -> None:
    """The same session written directly against the primitives; appends every payload to ``wire`` if given."""
    g_private = X25519PrivateKey.from_private_bytes(g_secret)
    gp = g_private.public_key().public_bytes_raw()
    g_aad = _aad_prefix(BASE_URL, RID)
    s_private = X25519PrivateKey.from_private_bytes(s_secret)
    sp = s_private.public_key().public_bytes_raw()
    s_aad = _aad_prefix(BASE_URL, RID)
    # S: encapsulate to G, seal LoginInitiate at sequence number 0.
    s_key, s_nonce, s_exporter = _schedule(s_private.exchange(X25519PublicKey.from_public_bytes(gp)), sp + gp)
    check_context = _CHECK_LABEL + f"|{_b64(gp)}|{_b64(sp)}".encode()
    s_check = _labeled_expand(_SUITE, s_exporter, b"sec", check_context, 2)
    s_response = _labeled_expand(_SUITE, s_exporter, b"sec", _RESPONSE_LABEL, 32)
    s_seal = ChaCha20Poly1305(s_key)
    s_seal_nonce = int.from_bytes(s_nonce, "big")
    initiate = _b64(sp + s_seal.encrypt(s_nonce, b"MATRIX_QR_CODE_LOGIN_INITIATE", s_aad + _token("1")))
    # G: decapsulate, open it, derive the response context, seal LoginOk.
    data = _unb64(initiate)
    enc, ciphertext = data[:32], data[32:]
    g_key, g_nonce, g_exporter = _schedule(g_private.exchange(X25519PublicKey.from_public_bytes(enc)), enc + gp)
    g_open = ChaCha20Poly1305(g_key)
    g_open_nonce = int.from_bytes(g_nonce, "big")
    assert hmac.compare_digest(
        g_open.decrypt(g_nonce, ciphertext, g_aad + _token("1")), b"MATRIX_QR_CODE_LOGIN_INITIATE"
    )
    g_check = _labeled_expand(_SUITE, g_exporter, b"sec", _CHECK_LABEL + f"|{_b64(gp)}|{_b64(enc)}".encode(), 2)
    prk = _extract(enc + response_nonce, _labeled_expand(_SUITE, g_exporter, b"sec", _RESPONSE_LABEL, 32))
    g_seal = ChaCha20Poly1305(_expand(prk, b"key", 32))
    g_response_nonce = _expand(prk, b"nonce", 12)
    g_seal_nonce = int.from_bytes(g_response_nonce, "big")
    login_ok = _b64(response_nonce + g_seal.encrypt(g_response_nonce, b"MATRIX_QR_CODE_LOGIN_OK", g_aad + _token("2")))
    # S: open LoginOk with the response context; the user types S's code on G.
    data = _unb64(login_ok)
    prk = _extract(sp + data[:32], s_response)
    s_open = ChaCha20Poly1305(_expand(prk, b"key", 32))
    s_open_base = _expand(prk, b"nonce", 12)
    s_open_nonce = int.from_bytes(s_open_base, "big")
    assert s_open.decrypt(s_open_base, data[32:], s_aad + _token("2")) == b"MATRIX_QR_CODE_LOGIN_OK"
    shown = _code(s_check)
    assert hmac.compare_digest(shown.encode(), _code(g_check).encode())
    if wire is not None:
        wire += [initiate, login_ok, shown]
    for seq, (s_token, g_token) in enumerate(TOKENS, start=1):
        sent = _b64(s_seal.encrypt((s_seal_nonce ^ seq).to_bytes(12, "big"), MESSAGE, s_aad + _token(s_token)))
        assert (
            g_open.decrypt((g_open_nonce ^ seq).to_bytes(12, "big"), _unb64(sent), g_aad + _token(s_token)) == MESSAGE
        )
        if wire is not None:
            wire.append(sent)
        sent = _b64(g_seal.encrypt((g_seal_nonce ^ seq).to_bytes(12, "big"), MESSAGE, g_aad + _token(g_token)))
        assert (
            s_open.decrypt((s_open_nonce ^ seq).to_bytes(12, "big"), _unb64(sent), s_aad + _token(g_token)) == MESSAGE
        )
        if wire is not None:
            wire.append(sent)


# --- The crypto calls alone, as earlier figures were taken --------------------------------------------------------

_KEY = hashlib.sha256(b"floor key").digest()
_NONCE = bytes(12)
_AAD = b"\x00\x1ahttps://matrix.example.org\x18bench-session-0123456789\x011"


def primitives_session(g_secret: bytes, s_secret: bytes, response_nonce: bytes, wire: Wire = None) -> None:
    """X25519, 26 HMACs and 44 AEAD operations on fixed keys: no base64, no AAD building, nothing checked."""
    g_private = X25519PrivateKey.from_private_bytes(g_secret)
    s_private = X25519PrivateKey.from_private_bytes(s_secret)
    g_public, s_public = g_private.public_key(), s_private.public_key()
    s_private.exchange(g_public)
    g_private.exchange(s_public)
    for _ in range(26):
        hmac.digest(_KEY, _AAD, "sha256")
    keys = [ChaCha20Poly1305(_KEY), ChaCha20Poly1305(_KEY)]
    for aead in keys:  # LoginInitiate and LoginOk
        aead.decrypt(_NONCE, aead.encrypt(_NONCE, b"MATRIX_QR_CODE_LOGIN_INITIATE", _AAD), _AAD)
    for _ in range(MESSAGES_EACH_WAY):
        for aead in keys:
            aead.decrypt(_NONCE, aead.encrypt(_NONCE, MESSAGE, _AAD), _AAD)


def rotated_microseconds(
    contenders: list[Session], secrets: list[tuple[bytes, bytes, bytes]], repeats: int
) -> list[list[float]]:
    """CPU microseconds of every session of every contender, timed back to back on the same secrets, the order
    rotating from one session to the next."""
    clock = time.process_time_ns
    times: list[list[float]] = [[] for _ in contenders]
    for repeat in range(repeats):
        for index, (g_secret, s_secret, response_nonce) in enumerate(secrets):
            shift = (index + repeat) % len(contenders)
            for position in range(len(contenders)):
                which = (position + shift) % len(contenders)
                start = clock()
                contenders[which](g_secret, s_secret, response_nonce, None)
                times[which].append((clock() - start) / 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=100, help="sessions (distinct secrets) per repeat")
    parser.add_argument("--repeats", type=int, default=20, help="passes over those sessions")
    args = parser.parse_args()
    secrets = [(os.urandom(32), os.urandom(32), os.urandom(32)) for _ in range(args.rounds)]
    contenders: list[Session] = [qrlogin_session, floor_session, primitives_session]
    for g_secret, s_secret, response_nonce in secrets[:10]:  # warm up, and check the floor is the same protocol
        ours: list[str] = []
        theirs: list[str] = []
        qrlogin_session(g_secret, s_secret, response_nonce, ours)
        floor_session(g_secret, s_secret, response_nonce, theirs)
        assert ours == theirs, "the floor no longer does what qrlogin does"
        primitives_session(g_secret, s_secret, response_nonce)
    ours_us, floor_us, primitives_us = rotated_microseconds(contenders, secrets, args.repeats)
    ratios = [mine / theirs for mine, theirs in zip(ours_us, floor_us, strict=True)]
    old_ratios = [mine / theirs for mine, theirs in zip(ours_us, primitives_us, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4)
    sessions = len(ratios)
    print(f"HPKE channel: establishment (both sides) + {MESSAGES_EACH_WAY} messages each way; CPU, {sessions} sessions")
    for name, times in (("same protocol, straight (floor)", floor_us), ("qrlogin", ours_us)):
        print(f"  {name:31}: {statistics.median(times):8.1f} us median ({min(times):.1f} best)")
    print(
        f"  {'qrlogin / floor':31}: {statistics.median(ratios):8.2f}x median of paired sessions"
        f" (quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}x; target <= 1.8x)"
    )
    print(
        f"  {'crypto calls alone':31}: {statistics.median(primitives_us):8.1f} us median;"
        f" qrlogin / that {statistics.median(old_ratios):.2f}x (the earlier floor)"
    )


if __name__ == "__main__":
    main()
