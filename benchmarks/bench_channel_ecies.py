"""Benchmark: one ECIES channel, both sides, plus 10 application messages each way.

Measured in one run, on the same machine, with the same work:

* ``qrlogin``: ``start_showing``/``start_scanning`` and ``transition`` for the handshake, the check code and 20
messages;
* ``raw``: the floor, the same protocol written directly against ``cryptography`` (X25519, HKDF-SHA512 via one
  extract and three expands, one ChaCha20-Poly1305 object per key, stdlib base64), no state machine at all;
* ``wasm``: vodozemac 0.11.0 in npm matrix-sdk-crypto-wasm 18.9.0 doing the same in node (timed inside node), if
  ``interop/node`` is installed.

Prints CPU microseconds per handshake and the ratios. qrlogin and the floor are timed one handshake at a time,
back to back on the same secrets, alternating which goes first; the ratio is the median over all those pairs. Each
pair is timed within a millisecond, so the slow spells of a shared virtual machine (whole batches here vary by 20% and
more) hit both contenders of a pair alike instead of deciding the result. Usage::

    python benchmarks/bench_channel_ecies.py [--rounds 100] [--repeats 20]

Targets: qrlogin within 1.6x of the raw floor, and faster than the wasm peer.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from qrlogin.channel import ecies
from qrlogin.channel._common import InitiateRequested, PayloadReceived, SealRequested
from qrlogin.vocabulary import CheckCodeEntered

MESSAGES = 10
S_TEXTS = [b'{"type":"m.login.protocols","n":%d}' % n for n in range(MESSAGES)]
G_TEXTS = [b'{"type":"m.login.protocol","n":%d}' % n for n in range(MESSAGES)]
NODE_PROJECT = Path(__file__).resolve().parent.parent / "interop" / "node"


def qrlogin_channel(g_secret: bytes, s_secret: bytes) -> None:
    transition: Callable[..., Any] = ecies.transition
    g = ecies.start_showing(g_secret)
    s = ecies.start_scanning(g.public_key, s_secret)
    s1, (initiate,) = transition(s, InitiateRequested(), now_ms=0)
    g1, (login_ok, _) = transition(g, PayloadReceived(payload=initiate.payload), now_ms=0)
    s2, (shown, _) = transition(s1, PayloadReceived(payload=login_ok.payload), now_ms=0)
    g2, _ = transition(g1, CheckCodeEntered(code=shown.code), now_ms=0)
    g_state, s_state = g2, s2
    for s_text, g_text in zip(S_TEXTS, G_TEXTS, strict=True):
        s_state, (sent,) = transition(s_state, SealRequested(plaintext=s_text), now_ms=0)
        g_state, (got,) = transition(g_state, PayloadReceived(payload=sent.payload), now_ms=0)
        assert got.plaintext == s_text
        g_state, (sent,) = transition(g_state, SealRequested(plaintext=g_text), now_ms=0)
        s_state, (got,) = transition(s_state, PayloadReceived(payload=sent.payload), now_ms=0)
        assert got.plaintext == g_text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _keys(shared: bytes, gp: bytes, sp: bytes) -> tuple[ChaCha20Poly1305, ChaCha20Poly1305, bytes]:
    tail = f"|{_b64(gp)}|{_b64(sp)}".encode()
    prk = HKDF.extract(hashes.SHA512(), None, shared)
    enc_s = HKDFExpand(hashes.SHA512(), 32, b"MATRIX_QR_CODE_LOGIN_ENCKEY_S" + tail).derive(prk)
    enc_g = HKDFExpand(hashes.SHA512(), 32, b"MATRIX_QR_CODE_LOGIN_ENCKEY_G" + tail).derive(prk)
    check = HKDFExpand(hashes.SHA512(), 2, b"MATRIX_QR_CODE_LOGIN_CHECKCODE" + tail).derive(prk)
    return ChaCha20Poly1305(enc_s), ChaCha20Poly1305(enc_g), check


def raw_channel(g_secret: bytes, s_secret: bytes) -> None:
    g_private = X25519PrivateKey.from_private_bytes(g_secret)
    gp = g_private.public_key().public_bytes_raw()
    s_private = X25519PrivateKey.from_private_bytes(s_secret)
    sp = s_private.public_key().public_bytes_raw()
    # S
    s_seal, s_open, s_check = _keys(s_private.exchange(X25519PublicKey.from_public_bytes(gp)), gp, sp)
    initiate = _b64(s_seal.encrypt(bytes(12), b"MATRIX_QR_CODE_LOGIN_INITIATE", None)) + "|" + _b64(sp)
    # G
    ciphertext, _, key = initiate.partition("|")
    peer = _unb64(key)
    g_open, g_seal, g_check = _keys(g_private.exchange(X25519PublicKey.from_public_bytes(peer)), gp, peer)
    assert hmac.compare_digest(g_open.decrypt(bytes(12), _unb64(ciphertext), None), b"MATRIX_QR_CODE_LOGIN_INITIATE")
    login_ok = _b64(g_seal.encrypt(bytes(12), b"MATRIX_QR_CODE_LOGIN_OK", None))
    # S
    assert s_open.decrypt(bytes(12), _unb64(login_ok), None) == b"MATRIX_QR_CODE_LOGIN_OK"
    shown = f"{s_check[0] % 10}{s_check[1] % 10}"
    assert hmac.compare_digest(shown.encode(), f"{g_check[0] % 10}{g_check[1] % 10}".encode())
    for n, (s_text, g_text) in enumerate(zip(S_TEXTS, G_TEXTS, strict=True), start=1):
        nonce = n.to_bytes(12, "little")
        sent = _b64(s_seal.encrypt(nonce, s_text, None))
        assert g_open.decrypt(nonce, _unb64(sent), None) == s_text
        sent = _b64(g_seal.encrypt(nonce, g_text, None))
        assert s_open.decrypt(nonce, _unb64(sent), None) == g_text


def paired_microseconds(
    qrlogin: Callable[[bytes, bytes], None],
    raw: Callable[[bytes, bytes], None],
    secrets: list[tuple[bytes, bytes]],
    repeats: int,
) -> tuple[list[float], list[float], list[float]]:
    """CPU microseconds of every qrlogin handshake and of the floor's on the same secrets, and their ratios."""
    clock = time.process_time_ns
    ours: list[float] = []
    floor: list[float] = []
    for repeat in range(repeats):
        for index, (g_secret, s_secret) in enumerate(secrets):
            first, second = (qrlogin, raw) if (index + repeat) % 2 else (raw, qrlogin)
            start = clock()
            first(g_secret, s_secret)
            middle = clock()
            second(g_secret, s_secret)
            end = clock()
            ours_ns, floor_ns = (middle - start, end - middle) if first is qrlogin else (end - middle, middle - start)
            ours.append(ours_ns / 1e3)
            floor.append(floor_ns / 1e3)
    return ours, floor, [mine / theirs for mine, theirs in zip(ours, floor, strict=True)]


def wasm_microseconds(rounds: int, repeats: int) -> float | None:
    node = shutil.which("node")
    if node is None or not (NODE_PROJECT / "node_modules").exists():
        return None
    requests = [json.dumps({"op": "time", "rounds": rounds, "messages": MESSAGES}) for _ in range(repeats + 1)]
    output = subprocess.run(
        [node, "ecies_peer.cjs"],
        cwd=NODE_PROJECT,
        input="\n".join(requests) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    replies = [json.loads(line) for line in output.splitlines()]
    return min(float(reply["microseconds_per_handshake"]) for reply in replies[1:])  # the first one warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=100, help="handshakes (distinct secrets) per repeat")
    parser.add_argument("--repeats", type=int, default=20, help="passes over those handshakes")
    args = parser.parse_args()
    secrets = [(os.urandom(32), os.urandom(32)) for _ in range(args.rounds)]
    for g_secret, s_secret in secrets[:10]:  # warm up both
        qrlogin_channel(g_secret, s_secret)
        raw_channel(g_secret, s_secret)
    ours, floor, ratios = paired_microseconds(qrlogin_channel, raw_channel, secrets, args.repeats)
    wasm = wasm_microseconds(args.rounds, args.repeats)
    median_ours, median_floor = statistics.median(ours), statistics.median(floor)
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"ECIES channel: establishment (both sides) + {MESSAGES} messages each way; CPU time over {len(ratios)} pairs"
    )
    print(f"  raw cryptography (floor): {median_floor:9.1f} us/handshake median ({min(floor):.1f} best)")
    print(f"  qrlogin                 : {median_ours:9.1f} us/handshake median ({min(ours):.1f} best)")
    print(
        f"  qrlogin / floor         : {statistics.median(ratios):9.2f}x median of paired handshakes"
        f" (quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f}x; target <= 1.6x)"
    )
    if wasm is None:
        print("  wasm (node)             :  not installed (run scripts/peers.d/node-wasm.sh)")
    else:
        # Like against like: node reports the mean of its best batch of --rounds handshakes, so qrlogin's figure here
        # is the mean of its best pass over the same number.
        rounds = len(secrets)
        best_pass = min(statistics.fmean(ours[i : i + rounds]) for i in range(0, len(ours), rounds))
        print(
            f"  wasm vodozemac (node)   : {wasm:9.1f} us/handshake, best batch of {rounds};"
            f" qrlogin's best pass {best_pass:.1f}: {wasm / best_pass:4.2f}x faster"
        )


if __name__ == "__main__":
    main()
