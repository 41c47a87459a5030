"""An independent, straight-line derivation of the MSC4388 channel transcripts in ``spec_vectors/``.

This file does not import qrlogin. It computes every value of one MSC4388 session (steps 4 to 7 and two application
messages each way) with :mod:`hmac`/:mod:`hashlib` for HKDF and ``cryptography``'s raw X25519 and
ChaCha20-Poly1305, writing RFC 9180's formulas out longhand. The tests compare its output with the committed JSON
(so the files cannot drift from the formulas) and then drive qrlogin's state machines from the same inputs, checking
that they produce every payload byte for byte (so qrlogin agrees with a second implementation).

Regenerate the files with ``python -m tests.channel.hpke_transcript_reference`` from the repository root.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

OUT = Path(__file__).resolve().parents[2] / "spec_vectors"

# Fixed inputs. Secrets are SHA-256 of a label so that anyone can re-derive them; tokens follow the rendezvous:
# POST -> "1"; S's GET sees "1"; S's PUT -> "2"; G's GET sees "2"; G's PUT -> "3"; S's GET sees "3"; and so on.
INPUTS: dict[str, Any] = {
    "g_secret": hashlib.sha256(b"qrlogin MSC4388 transcript: device G ephemeral secret").hexdigest(),
    "s_secret": hashlib.sha256(b"qrlogin MSC4388 transcript: device S ephemeral secret").hexdigest(),
    "response_nonce": hashlib.sha256(b"qrlogin MSC4388 transcript: response nonce").hexdigest(),
    "base_url_in_qr": "https://matrix-client.matrix.org",
    "rendezvous_id": "e8da6355-550b-4a32-a193-1619d9830668",
    "info": "MATRIX_QR_CODE_LOGIN",
    "tokens": {"post": "1", "s_put_1": "2", "g_put_1": "3", "s_put_2": "4", "g_put_2": "5", "s_put_3": "6"},
    "messages": [
        {"from": "S", "plaintext": '{"type":"m.login.protocols","protocols":["device_authorization_grant"]}'},
        {"from": "G", "plaintext": '{"type":"m.login.protocol_accepted"}'},
        {"from": "S", "plaintext": '{"type":"m.login.success"}'},
        {"from": "G", "plaintext": ""},
    ],
}

PROFILES: dict[str, dict[str, Any]] = {
    "spec_text": {
        "response_label": "MATRIX_QR_CODE_LOGIN response",
        "check_context": "raw",
        "normalise_base_url": False,
        "library_profile": "Profile.SPEC_TEXT",
    },
    "vodozemac": {
        "response_label": "MATRIX_QR_CODE_LOGIN_RESPONSE",
        "check_context": "base64",
        "normalise_base_url": True,
        "library_profile": "Profile.DEPLOYED",
    },
}


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


KEM_SUITE = b"KEM\x00\x20"
HPKE_SUITE = b"HPKE\x00\x20\x00\x01\x00\x03"


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return _expand(prk, length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info, length)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _pub(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def _aad(base_url: str, rendezvous_id: str, token: str) -> bytes:
    u, r, t = base_url.encode(), rendezvous_id.encode(), token.encode()
    return len(u).to_bytes(2, "big") + u + bytes([len(r)]) + r + bytes([len(t)]) + t


def _nonce(base_nonce: bytes, seq: int) -> bytes:
    return bytes(a ^ b for a, b in zip(base_nonce, seq.to_bytes(12, "big"), strict=True))


def transcript(profile_name: str) -> dict[str, Any]:
    profile = PROFILES[profile_name]
    gs, ss = bytes.fromhex(INPUTS["g_secret"]), bytes.fromhex(INPUTS["s_secret"])
    gp, sp = _pub(gs), _pub(ss)
    rn = bytes.fromhex(INPUTS["response_nonce"])
    info = INPUTS["info"].encode()
    tokens = INPUTS["tokens"]
    base_url = INPUTS["base_url_in_qr"]
    aad_url = base_url + "/" if profile["normalise_base_url"] and base_url.count("/") == 2 else base_url
    rid = INPUTS["rendezvous_id"]

    # DHKEM(X25519): S encapsulates to Gp with Ss as the ephemeral key, so enc = Sp.
    dh = X25519PrivateKey.from_private_bytes(ss).exchange(X25519PublicKey.from_public_bytes(gp))
    eae_prk = _labeled_extract(KEM_SUITE, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", sp + gp, 32)
    # KeySchedule, mode_base.
    psk_id_hash = _labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(HPKE_SUITE, b"", b"info_hash", info)
    ks_context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(HPKE_SUITE, shared_secret, b"secret", b"")
    key = _labeled_expand(HPKE_SUITE, secret, b"key", ks_context, 32)
    base_nonce = _labeled_expand(HPKE_SUITE, secret, b"base_nonce", ks_context, 12)
    exporter_secret = _labeled_expand(HPKE_SUITE, secret, b"exp", ks_context, 32)

    def export(context: bytes, length: int) -> bytes:
        return _labeled_expand(HPKE_SUITE, exporter_secret, b"sec", context, length)

    # Check code (base context exporter, G's key first).
    if profile["check_context"] == "raw":
        check_context = b"MATRIX_QR_CODE_LOGIN_CHECKCODE" + gp + sp
    else:
        check_context = f"MATRIX_QR_CODE_LOGIN_CHECKCODE|{_b64(gp)}|{_b64(sp)}".encode()
    check_bytes = export(check_context, 2)
    check_code = f"{check_bytes[0] % 9 + 1}{check_bytes[1] % 10}"

    # Response context (RFC 9458 §4.4): plain HKDF over the exported secret.
    response_secret = export(profile["response_label"].encode(), 32)
    salt = sp + rn
    response_prk = _extract(salt, response_secret)
    response_key = _expand(response_prk, b"key", 32)
    response_base_nonce = _expand(response_prk, b"nonce", 12)

    forward, backward = ChaCha20Poly1305(key), ChaCha20Poly1305(response_key)
    aad_initiate = _aad(aad_url, rid, tokens["post"])
    initiate_ct = forward.encrypt(_nonce(base_nonce, 0), b"MATRIX_QR_CODE_LOGIN_INITIATE", aad_initiate)
    aad_ok = _aad(aad_url, rid, tokens["s_put_1"])
    ok_ct = backward.encrypt(_nonce(response_base_nonce, 0), b"MATRIX_QR_CODE_LOGIN_OK", aad_ok)

    # Application messages: the slot's token before each write is the one the previous write returned.
    token_order = ["g_put_1", "s_put_2", "g_put_2", "s_put_3"]
    seq = {"S": 1, "G": 1}
    messages = []
    for index, message in enumerate(INPUTS["messages"]):
        sender = message["from"]
        token = tokens[token_order[index]]
        aad = _aad(aad_url, rid, token)
        aead, nonce_base = (forward, base_nonce) if sender == "S" else (backward, response_base_nonce)
        nonce = _nonce(nonce_base, seq[sender])
        ct = aead.encrypt(nonce, message["plaintext"].encode(), aad)
        messages.append(
            {
                "from": sender,
                "sequence_token": token,
                "seq": seq[sender],
                "aad": aad.hex(),
                "nonce": nonce.hex(),
                "plaintext": message["plaintext"],
                "payload": _b64(ct),
            }
        )
        seq[sender] += 1

    return {
        "_provenance": {
            "source": "generated by tests/channel/hpke_transcript_reference.py (independent of qrlogin's code: "
            "hashlib/hmac HKDF, pyca X25519 and ChaCha20-Poly1305, RFC 9180 formulas written out) and reproduced by "
            "tests/channel/test_hpke.py through qrlogin's G and S machines",
            "specs": "MSC4388 as of July 2026 (https://github.com/matrix-org/matrix-spec-proposals/pull/4388) "
            "'Secure channel' steps 4-7 and 'Secure operations'; "
            "RFC 9180 §4.1, §5.1, §5.2, §5.3 (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, "
            "ChaCha20-Poly1305); RFC 9458 §4.4 (response context); docs/protocol.md §5 (profile differences)",
            "profile": profile_name,
            "library_profile": profile["library_profile"],
            "license": "generated by the qrlogin project; Apache-2.0",
        },
        "how_to_check": [
            "All byte strings are lowercase hex unless the key says b64 (standard alphabet, unpadded).",
            "dh = X25519(s_secret, g_public) = X25519(g_secret, s_public); enc = s_public.",
            "shared_secret = LabeledExpand(LabeledExtract('', 'eae_prk', dh), 'shared_secret', enc || g_public, 32) "
            "with suite_id 'KEM' || 0x0020.",
            "key schedule: suite_id 'HPKE' || 0x0020 || 0x0001 || 0x0003, mode 0, info as given, empty psk.",
            "check_bytes = Export(check_context, 2) on the base context; check_code = (b0 % 9 + 1, b1 % 10).",
            "response_secret = Export(response_label, 32); response_prk = HKDF-Extract(salt = enc || "
            "response_nonce, response_secret); response_key / response_base_nonce = HKDF-Expand(prk, 'key', 32) / "
            "(prk, 'nonce', 12).",
            "aad = u16be(len base_url) || base_url || u8(len rendezvous_id) || rendezvous_id || u8(len token) || "
            "token, with aad_base_url; nonce(seq) = base_nonce XOR seq (big-endian, 12 bytes).",
            "login_initiate = b64(enc || Seal(key, nonce 0, 'MATRIX_QR_CODE_LOGIN_INITIATE', aad(post token))).",
            "login_ok = b64(response_nonce || Seal(response_key, nonce 0, 'MATRIX_QR_CODE_LOGIN_OK', "
            "aad(s_put_1 token))).",
            "messages: S seals with (key, base_nonce) from seq 1, G with (response_key, response_base_nonce) from "
            "seq 1; each is sealed with the token the slot had before the write (the sender's last GET) and opened "
            "with the same token (the receiver's own last PUT); payload = b64(ciphertext).",
        ],
        "inputs": {
            **{k: v for k, v in INPUTS.items() if k != "messages"},
            "response_label": profile["response_label"],
        },
        "intermediate": {
            "g_public": gp.hex(),
            "s_public": sp.hex(),
            "dh": dh.hex(),
            "shared_secret": shared_secret.hex(),
            "key_schedule_context": ks_context.hex(),
            "secret": secret.hex(),
            "key": key.hex(),
            "base_nonce": base_nonce.hex(),
            "exporter_secret": exporter_secret.hex(),
            "check_context": check_context.hex(),
            "check_bytes": check_bytes.hex(),
            "check_code": check_code,
            "response_secret": response_secret.hex(),
            "response_salt": salt.hex(),
            "response_prk": response_prk.hex(),
            "response_key": response_key.hex(),
            "response_base_nonce": response_base_nonce.hex(),
            "aad_base_url": aad_url,
            "aad_login_initiate": aad_initiate.hex(),
            "aad_login_ok": aad_ok.hex(),
        },
        "payloads": {
            "login_initiate_b64": _b64(sp + initiate_ct),
            "login_ok_b64": _b64(rn + ok_ct),
            "messages": messages,
        },
    }


def render(profile_name: str) -> str:
    return json.dumps(transcript(profile_name), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    for name in PROFILES:
        (OUT / f"hpke_channel_transcript_{name}.json").write_text(render(name), encoding="utf-8")


if __name__ == "__main__":
    main()
