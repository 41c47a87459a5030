"""qrlogin's ECIES channel against the deployed one: vodozemac 0.11.0 in npm matrix-sdk-crypto-wasm 18.9.0, in node.

These tests run in CI (scripts/peers.d/node-wasm.sh installs the pinned package); without node they fail under
``CI=true`` and are skipped elsewhere (see :func:`tests.node_peer.require_node_peer`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from qrlogin.channel import ecies
from qrlogin.channel._common import FailureReason, InitiateRequested, PayloadReceived, Profile, SealRequested
from qrlogin.encoding import b64decode, b64encode
from qrlogin.vocabulary import CheckCodeEntered
from tests.channel.channel_helpers import load_vectors, payload_of
from tests.channel.ecies_transcript import G_MESSAGES, INITIATE, S_MESSAGES, ChannelFailed, capture_all, converse
from tests.node_peer import NodeEciesPeer, PeerError, require_node_peer

pytestmark = pytest.mark.interop


@pytest.fixture
def peer() -> Iterator[NodeEciesPeer]:
    require_node_peer()
    with NodeEciesPeer() as running:
        yield running


def test_peer_is_the_pinned_version(peer: NodeEciesPeer) -> None:
    assert peer.request("versions")["versions"] == {
        "git_description": "v18.9.0",
        "vodozemac": "0.11.0",
        "matrix_sdk_crypto": "0.19.1",
    }


@pytest.mark.parametrize("role", ["g", "s"])
def test_full_channel_against_wasm(peer: NodeEciesPeer, role: str) -> None:
    transcript = converse(peer, role, os.urandom(32))
    assert len(transcript["check_code"]) == 2
    application = transcript["wire"][2:]
    assert [m["plaintext"] for m in application if m["from"] == ("wasm" if role == "g" else "qrlogin")] == S_MESSAGES
    assert [m["plaintext"] for m in application if m["from"] == ("qrlogin" if role == "g" else "wasm")] == G_MESSAGES
    assert len(S_MESSAGES) >= 3 and len(G_MESSAGES) >= 3


def test_spec_text_g_fails_against_wasm_with_the_typed_error(peer: NodeEciesPeer) -> None:
    with pytest.raises(ChannelFailed) as failure:
        converse(peer, "g", os.urandom(32), profile=Profile.SPEC_TEXT)
    assert failure.value.reason is FailureReason.AUTHENTICATION_FAILED


def test_spec_text_s_is_refused_by_wasm(peer: NodeEciesPeer) -> None:
    with pytest.raises(PeerError, match="Failed decrypting"):
        converse(peer, "s", os.urandom(32), profile=Profile.SPEC_TEXT)


def test_wasm_refuses_a_tampered_qrlogin_payload(peer: NodeEciesPeer) -> None:
    g_key = b64decode(peer.request("new")["public_key"])
    _, effects = ecies.transition(ecies.start_scanning(g_key, os.urandom(32)), InitiateRequested(), now_ms=0)
    ciphertext, key = payload_of(effects).split("|")
    raw = bytearray(b64decode(ciphertext))
    raw[0] ^= 1
    with pytest.raises(PeerError, match="Failed decrypting"):
        peer.request("inbound", message=f"{b64encode(bytes(raw))}|{key}")


def test_qrlogin_refuses_a_replayed_wasm_payload(peer: NodeEciesPeer) -> None:
    g = ecies.start_showing(os.urandom(32))
    peer.request("new")
    initiate = peer.request("outbound", public_key=b64encode(g.public_key), plaintext=INITIATE)
    state, effects = ecies.transition(g, PayloadReceived(payload=initiate["message"]), now_ms=0)
    peer.request("decrypt", message=payload_of(effects))
    state, _ = ecies.transition(state, CheckCodeEntered(code=f"{initiate['check_code']:02d}"), now_ms=0)
    message = peer.request("encrypt", plaintext="once")["message"]
    state, _ = ecies.transition(state, PayloadReceived(payload=message), now_ms=0)
    state, effects = ecies.transition(state, SealRequested(plaintext=b"reply"), now_ms=0)
    assert peer.request("decrypt", message=payload_of(effects))["plaintext"] == "reply"
    failed, _ = ecies.transition(state, PayloadReceived(payload=message), now_ms=0)
    assert isinstance(failed, ecies.ChannelFailed) and failed.reason is FailureReason.AUTHENTICATION_FAILED


def test_seeded_wasm_run_equals_the_stored_transcript() -> None:
    """Re-running the seeded capture reproduces spec_vectors/ecies_wasm_transcript.json exactly, so the offline
    replay in tests/channel/test_ecies.py pins what the deployed peer really does."""
    require_node_peer()
    assert capture_all() == load_vectors("ecies_wasm_transcript.json")
