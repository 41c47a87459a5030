"""Benchmark: one MSC4388 HPKE session through qrlogin's machines against the raw-primitive floor, same process.

A session is the full establishment (both start states, ``LoginInitiate``, ``LoginOk``, the check code) plus ten
application messages each way, each sealed by one side and opened by the other. The floor performs the same
cryptographic operations directly on ``cryptography``/``hmac`` with no HPKE structure, state objects, AAD building
or base64: two X25519 key derivations and two exchanges, 26 HMAC-SHA256 computations (every HKDF extract and
every single-block expand the two key schedules, exports and response contexts perform) and 44 ChaCha20-Poly1305
operations. The ratio is what the protocol core costs on top of the unavoidable crypto. (qrlogin now computes the
two key-schedule-context HMACs per key schedule once per process, as they depend only on public constants, so
the floor's 26 are slightly generous; it also builds two ChaCha20-Poly1305 objects where the two devices build
four. Neither is changed, so ratios stay comparable with earlier measurements.)

Run: ``python benchmarks/bench_channel_hpke.py [rounds]`` from the repository root. Prints microseconds per session
and the ratio; asserts nothing about time.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import timeit
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from qrlogin.channel import hpke
from qrlogin.channel._common import DeliverPlaintext, InitiateRequested, PayloadReceived, SealRequested, SendPayload
from qrlogin.vocabulary import CheckCodeEntered, ShowCheckCode

G_SECRET = hashlib.sha256(b"bench G").digest()
S_SECRET = hashlib.sha256(b"bench S").digest()
RESPONSE_NONCE = hashlib.sha256(b"bench rn").digest()
BASE_URL = "https://matrix.example.org"
RID = "bench-session-0123456789"
MESSAGE = b'{"type":"m.login.protocol","protocol":"device_authorization_grant","device_id":"ABCDEFGHIJ"}'
MESSAGES_EACH_WAY = 10


#: The rendezvous tokens each message is bound to, as the server would hand them over (strings, not built per use).
TOKENS = [(str(3 + 2 * i), str(4 + 2 * i)) for i in range(MESSAGES_EACH_WAY)]


def _sent(effects: tuple[Any, ...]) -> str:
    (send,) = [e for e in effects if type(e) is SendPayload]
    payload: str = send.payload
    return payload


def machine_session() -> None:
    g: Any = hpke.start_showing(G_SECRET, base_url=BASE_URL, rendezvous_id=RID, response_nonce=RESPONSE_NONCE)
    s: Any = hpke.start_scanning(S_SECRET, peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID)
    s, effects = hpke.transition(s, InitiateRequested(sequence_token="1"))
    g, effects = hpke.transition(
        g, PayloadReceived(payload=_sent(effects), sequence_token="1", reply_sequence_token="2")
    )
    s, effects = hpke.transition(s, PayloadReceived(payload=_sent(effects), sequence_token="2"))
    (shown,) = [e for e in effects if isinstance(e, ShowCheckCode)]
    g, _ = hpke.transition(g, CheckCodeEntered(code=shown.code))
    for s_token, g_token in TOKENS:
        s, effects = hpke.transition(s, SealRequested(plaintext=MESSAGE, sequence_token=s_token))
        g, delivered = hpke.transition(g, PayloadReceived(payload=_sent(effects), sequence_token=s_token))
        assert type(delivered[0]) is DeliverPlaintext
        g, effects = hpke.transition(g, SealRequested(plaintext=MESSAGE, sequence_token=g_token))
        s, delivered = hpke.transition(s, PayloadReceived(payload=_sent(effects), sequence_token=g_token))
        assert type(delivered[0]) is DeliverPlaintext


_KEY = hashlib.sha256(b"floor key").digest()
_NONCE = bytes(12)
_AAD = b"\x00\x1ahttps://matrix.example.org\x18bench-session-0123456789\x011"


def floor_session() -> None:
    g_private = X25519PrivateKey.from_private_bytes(G_SECRET)
    s_private = X25519PrivateKey.from_private_bytes(S_SECRET)
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


def best_microseconds(function: Any, rounds: int) -> float:
    return min(timeit.repeat(function, number=rounds, repeat=5)) / rounds * 1e6


def main(argv: list[str]) -> None:
    rounds = int(argv[1]) if len(argv) > 1 else 200
    machine_session()  # warm up, and fail loudly if the session is broken
    floor = best_microseconds(floor_session, rounds)
    machine = best_microseconds(machine_session, rounds)
    print(f"HPKE session (establishment + {MESSAGES_EACH_WAY} messages each way), best of 5 x {rounds} rounds")
    print(f"  raw primitives floor: {floor:9.1f} us")
    print(f"  qrlogin machines:     {machine:9.1f} us")
    print(f"  ratio:                {machine / floor:9.2f}x")


if __name__ == "__main__":
    main(sys.argv)
