"""Conversations between qrlogin's ECIES machines and the wasm peer, as data.

:func:`converse` runs one complete channel (handshake, check codes, application messages both ways) with qrlogin in
one role and a :class:`~tests.node_peer.NodeEciesPeer` in the other, and returns the transcript: every wire payload
with its sender and plaintext. With the peer's RNG seeded and qrlogin's secret fixed, the transcript is a constant;
:func:`capture_all` produces the ones stored in ``spec_vectors/ecies_wasm_transcript.json`` and :func:`replay`
checks qrlogin against a stored transcript without node.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from qrlogin.channel import ecies
from qrlogin.channel._common import (
    DeliverPlaintext,
    InitiateRequested,
    PayloadReceived,
    Profile,
    ReportEstablished,
    SealRequested,
    SendPayload,
)
from qrlogin.encoding import b64decode, b64encode
from qrlogin.vocabulary import CheckCodeEntered, QrSide, ShowCheckCode
from tests.node_peer import ROOT, NodeEciesPeer, node_problem

INITIATE = ecies.LOGIN_INITIATE.decode()
OK = ecies.LOGIN_OK.decode()

# Application payloads: JSON like the login layer's, one with non-ASCII text (the wasm API carries strings).
S_MESSAGES = [
    '{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"example.org"}',
    '{"type":"m.login.protocol_accepted"}',
    '{"type":"m.login.secrets","note":"Grüße, 秘密"}',
    "",
]
G_MESSAGES = [
    '{"type":"m.login.protocol","protocol":"device_authorization_grant","device_id":"ABCDEFGH"}',
    '{"type":"m.login.success"}',
    '{"type":"m.login.failure","reason":"user_cancelled","detail":"ünïcödé"}',
    "x" * 1000,
]

FIXED_SECRETS = {
    "g": hashlib.sha256(b"qrlogin ecies transcript: qrlogin is G").digest(),
    "s": hashlib.sha256(b"qrlogin ecies transcript: qrlogin is S").digest(),
}
PEER_SEEDS = {
    "g": hashlib.sha256(b"qrlogin ecies transcript: wasm is S").digest(),
    "s": hashlib.sha256(b"qrlogin ecies transcript: wasm is G").digest(),
}


class ChannelFailed(Exception):
    """qrlogin's machine ended in ``ChannelFailed``; ``reason`` is the typed reason."""

    def __init__(self, state: Any) -> None:
        super().__init__(state.reason.value)
        self.reason = state.reason


def _step(state: Any, event: Any) -> tuple[Any, tuple[Any, ...]]:
    new_state, effects = ecies.transition(state, event, now_ms=0)
    if isinstance(new_state, ecies.ChannelFailed):
        raise ChannelFailed(new_state)
    return new_state, effects


def _payload(effects: tuple[Any, ...]) -> str:
    (payload,) = [e.payload for e in effects if isinstance(e, SendPayload)]
    return payload


def _delivered(effects: tuple[Any, ...]) -> str:
    (plaintext,) = [e.plaintext for e in effects if isinstance(e, DeliverPlaintext)]
    return bytes(plaintext).decode("utf-8")


def converse(peer: NodeEciesPeer, role: str, secret: bytes, *, profile: Profile = Profile.DEPLOYED) -> dict[str, Any]:
    """qrlogin plays ``role`` ("g" or "s") with ``secret``; the peer plays the other role."""
    wire: list[dict[str, str]] = []
    peer_key = peer.request("new")["public_key"]
    if role == "g":
        state: Any = ecies.start_showing(secret, profile=profile)
        initiate = peer.request("outbound", public_key=b64encode(state.public_key), plaintext=INITIATE)
        wire.append({"from": "wasm", "plaintext": INITIATE, "payload": initiate["message"]})
        state, effects = _step(state, PayloadReceived(payload=initiate["message"]))
        login_ok = _payload(effects)
        wire.append({"from": "qrlogin", "plaintext": OK, "payload": login_ok})
        assert peer.request("decrypt", message=login_ok)["plaintext"] == OK
        peer_code = initiate["check_code"]
        state, effects = _step(state, CheckCodeEntered(code=f"{peer_code:02d}"))
        assert effects == (ReportEstablished(role=QrSide.SHOWS),)
    else:
        state = ecies.start_scanning(b64decode(peer_key), secret, profile=profile)
        state, effects = _step(state, InitiateRequested())
        initiate_payload = _payload(effects)
        wire.append({"from": "qrlogin", "plaintext": INITIATE, "payload": initiate_payload})
        inbound = peer.request("inbound", message=initiate_payload)
        assert inbound["plaintext"] == INITIATE
        login_ok = peer.request("encrypt", plaintext=OK)["message"]
        wire.append({"from": "wasm", "plaintext": OK, "payload": login_ok})
        state, effects = _step(state, PayloadReceived(payload=login_ok))
        (show,) = [e for e in effects if isinstance(e, ShowCheckCode)]
        peer_code = inbound["check_code"]
        assert show.code == f"{peer_code:02d}"
    assert ecies.check_code(state) == f"{peer_code:02d}"
    # Application messages, alternating as the rendezvous's ping-pong forces: S speaks first.
    from_s, from_g = (S_MESSAGES, G_MESSAGES)
    for s_text, g_text in zip(from_s, from_g, strict=True):
        for sender, text in (("s", s_text), ("g", g_text)):
            if sender == role:
                state, effects = _step(state, SealRequested(plaintext=text.encode("utf-8")))
                payload = _payload(effects)
                wire.append({"from": "qrlogin", "plaintext": text, "payload": payload})
                assert peer.request("decrypt", message=payload)["plaintext"] == text
            else:
                payload = peer.request("encrypt", plaintext=text)["message"]
                wire.append({"from": "wasm", "plaintext": text, "payload": payload})
                state, effects = _step(state, PayloadReceived(payload=payload))
                assert _delivered(effects) == text
    return {
        "qrlogin_role": role.upper(),
        "profile": profile.value,
        "qrlogin_secret_hex": secret.hex(),
        "qrlogin_public_b64": b64encode(state.public_key),
        "wasm_public_b64": peer_key,
        "check_code": f"{peer_code:02d}",
        "wire": wire,
    }


def capture_all() -> dict[str, Any]:
    """Both seeded conversations, with provenance, as stored in ``spec_vectors/ecies_wasm_transcript.json``."""
    transcripts = []
    for role in ("g", "s"):
        with NodeEciesPeer(seed=PEER_SEEDS[role]) as peer:
            versions = peer.request("versions")["versions"]
            transcript = converse(peer, role, FIXED_SECRETS[role])
        transcript["wasm_seed_hex"] = PEER_SEEDS[role].hex()
        transcripts.append(transcript)
    return {
        "_provenance": {
            "how": (
                "Captured by `python -m tests.channel.ecies_transcript`: qrlogin's ECIES machines (profile deployed) "
                "against npm @matrix-org/matrix-sdk-crypto-wasm@18.9.0 run in node by interop/node/ecies_peer.cjs, "
                "with the wasm RNG seeded (crypto.getRandomValues replaced by SHA-256(seed || counter) before the "
                "module loads) and qrlogin's ephemeral secret fixed. Every 'wasm' payload was produced by vodozemac; "
                "every 'qrlogin' payload was accepted by it."
            ),
            "wasm_versions": versions,
            "license": "generated by this project; Apache-2.0",
        },
        "transcripts": transcripts,
    }


def replay(transcript: dict[str, Any]) -> None:
    """Check qrlogin against a stored transcript, offline: qrlogin re-produces its own payloads byte for byte and
    opens every wasm payload to the recorded plaintext."""
    role = transcript["qrlogin_role"].lower()
    secret = bytes.fromhex(transcript["qrlogin_secret_hex"])
    profile = Profile(transcript["profile"])
    wire = transcript["wire"]
    if role == "g":
        state: Any = ecies.start_showing(secret, profile=profile)
    else:
        state = ecies.start_scanning(b64decode(transcript["wasm_public_b64"]), secret, profile=profile)
        state, effects = _step(state, InitiateRequested())
        assert _payload(effects) == wire[0]["payload"]
    assert b64encode(state.public_key) == transcript["qrlogin_public_b64"]
    for index, entry in enumerate(wire):
        if role == "s" and index == 0:
            continue
        if entry["from"] == "wasm":
            state, effects = _step(state, PayloadReceived(payload=entry["payload"]))
            if index == 0:  # qrlogin G just answered with LoginOk: it must be the recorded one
                assert _payload(effects) == wire[1]["payload"]
                state, _ = _step(state, CheckCodeEntered(code=transcript["check_code"]))
            elif index == 1:  # qrlogin S opened LoginOk and shows the code
                assert ecies.check_code(state) == transcript["check_code"]
            else:
                assert _delivered(effects) == entry["plaintext"]
        elif index >= 2:
            state, effects = _step(state, SealRequested(plaintext=entry["plaintext"].encode("utf-8")))
            assert _payload(effects) == entry["payload"]
    assert ecies.check_code(state) == transcript["check_code"]


def main() -> int:
    problem = node_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    path = ROOT / "spec_vectors" / "ecies_wasm_transcript.json"
    path.write_text(json.dumps(capture_all(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
