"""RFC 9180 key schedule, contexts and the RFC 9458 response context against published vectors."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import hpke
from qrlogin._secret import Secret
from qrlogin.errors import AuthenticationError, LocalProtocolError, NonContributoryKeyError

VECTORS = Path(__file__).resolve().parent.parent / "spec_vectors"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    assert "_provenance" in data
    return data


RFC9180 = _load("hpke_rfc9180_base_x25519_hkdfsha256_chacha20poly1305.json")["vectors"]
OHTTP = _load("ohttp_rfc9458_appendix_a.json")
CHACHA_VECTOR = next(v for v in RFC9180 if v["aead_id"] == 0x0003)
AEADS = {0x0003: hpke.CHACHA20_POLY1305, 0xFFFF: hpke.EXPORT_ONLY}
X = bytes.fromhex


def test_vector_file_holds_what_the_issue_promises() -> None:
    assert sum(len(v["encryptions"] or []) for v in RFC9180) == 257
    assert sum(len(v["exports"]) for v in RFC9180) == 6
    assert {v["aead_id"] for v in RFC9180} == set(AEADS)


@pytest.mark.parametrize("vector", RFC9180, ids=lambda v: f"aead-{v['aead_id']:#06x}")
def test_key_schedule_reproduces_every_intermediate_value(vector: dict[str, Any]) -> None:
    aead = AEADS[vector["aead_id"]]
    sk_e, pk_e = hpke.derive_key_pair(X(vector["ikmE"]))
    sk_r, pk_r = hpke.derive_key_pair(X(vector["ikmR"]))
    assert (sk_e.hex(), pk_e.hex(), sk_r.hex(), pk_r.hex()) == (
        vector["skEm"],
        vector["pkEm"],
        vector["skRm"],
        vector["pkRm"],
    )
    shared_secret, enc = hpke.encap(pk_r, ephemeral_secret=sk_e)
    assert enc.hex() == vector["enc"]
    assert shared_secret.value.hex() == vector["shared_secret"]
    assert hpke.decap(enc, recipient_secret=sk_r) == shared_secret

    schedule = hpke.key_schedule(shared_secret, X(vector["info"]), aead=aead)
    assert schedule.key_schedule_context.hex() == vector["key_schedule_context"]
    assert schedule.secret.value.hex() == vector["secret"]
    assert schedule.key.value.hex() == vector["key"]
    assert schedule.base_nonce.value.hex() == vector["base_nonce"]
    assert schedule.exporter_secret.value.hex() == vector["exporter_secret"]


@pytest.mark.parametrize("vector", RFC9180, ids=lambda v: f"aead-{v['aead_id']:#06x}")
def test_exports_from_both_roles(vector: dict[str, Any]) -> None:
    aead = AEADS[vector["aead_id"]]
    enc, sender = hpke.setup_base_s(X(vector["pkRm"]), X(vector["info"]), ephemeral_secret=X(vector["skEm"]), aead=aead)
    recipient = hpke.setup_base_r(enc, X(vector["skRm"]), X(vector["info"]), aead=aead)
    for export in vector["exports"]:
        for context in (sender, recipient):
            value = context.export(X(export["exporter_context"]), export["L"])
            assert value.hex() == export["exported_value"]


def test_all_257_encryptions_in_sequence_from_both_roles() -> None:
    v = CHACHA_VECTOR
    enc, sender = hpke.setup_base_s(X(v["pkRm"]), X(v["info"]), ephemeral_secret=X(v["skEm"]))
    recipient = hpke.setup_base_r(enc, X(v["skRm"]), X(v["info"]))
    for seq, case in enumerate(v["encryptions"]):
        assert sender.seq == recipient.seq == seq
        assert sender.nonce().hex() == case["nonce"]
        ct, sender = sender.seal(X(case["pt"]), aad=X(case["aad"]))
        assert ct.hex() == case["ct"]
        pt, recipient = recipient.open(ct, aad=X(case["aad"]))
        assert pt.hex() == case["pt"]
    assert sender.seq == 257


def test_sequence_numbers_are_positional_not_implicit() -> None:
    # Jumping straight to sequence number 256 gives the 257th ciphertext (nonce ...557f: the carry).
    v = CHACHA_VECTOR
    base = hpke.setup_base_r(X(v["enc"]), X(v["skRm"]), X(v["info"]))
    case = v["encryptions"][256]
    at_256 = hpke.Context(
        aead=base.aead,
        key=base.key,
        base_nonce=base.base_nonce,
        seq=256,
        exporter_secret=base.exporter_secret,
    )
    assert at_256.nonce().hex() == case["nonce"]
    assert at_256.open(X(case["ct"]), aad=X(case["aad"]))[0].hex() == case["pt"]
    with pytest.raises(AuthenticationError):
        base.open(X(case["ct"]), aad=X(case["aad"]))


def test_open_failure_leaves_the_context_usable() -> None:
    v = CHACHA_VECTOR
    recipient = hpke.setup_base_r(X(v["enc"]), X(v["skRm"]), X(v["info"]))
    first = v["encryptions"][0]
    with pytest.raises(AuthenticationError):
        recipient.open(X(first["ct"]), aad=b"wrong aad")
    assert recipient.open(X(first["ct"]), aad=X(first["aad"]))[0].hex() == first["pt"]


def test_sequence_number_never_wraps() -> None:
    v = CHACHA_VECTOR
    base = hpke.setup_base_r(X(v["enc"]), X(v["skRm"]), X(v["info"]))
    last_usable = hpke.Context(
        aead=base.aead,
        key=base.key,
        base_nonce=base.base_nonce,
        seq=base.max_seq - 1,
        exporter_secret=base.exporter_secret,
    )
    ct, exhausted = last_usable.seal(b"last", aad=b"")
    assert exhausted.seq == base.max_seq == 2**96 - 1
    with pytest.raises(hpke.MessageLimitReachedError):
        exhausted.seal(b"one more", aad=b"")
    with pytest.raises(hpke.MessageLimitReachedError):
        exhausted.open(ct, aad=b"")
    with pytest.raises(LocalProtocolError):
        hpke.Context(aead=base.aead, key=base.key, base_nonce=base.base_nonce, seq=2**96, exporter_secret=None)


def test_sealing_is_refused_for_key_schedule_only_aeads() -> None:
    ss = Secret(bytes(32))
    for aead in (hpke.EXPORT_ONLY, hpke.AES_128_GCM):
        context = hpke.key_schedule(ss, b"", aead=aead).context()
        with pytest.raises(LocalProtocolError):
            context.seal(b"x", aad=b"")


def test_low_order_public_key_is_a_remote_error() -> None:
    secret = bytes(range(32))
    with pytest.raises(NonContributoryKeyError):
        hpke.encap(bytes(32), ephemeral_secret=secret)
    with pytest.raises(NonContributoryKeyError):
        hpke.decap(bytes(32), recipient_secret=secret)


def test_repr_never_shows_key_material() -> None:
    v = CHACHA_VECTOR
    context = hpke.setup_base_r(X(v["enc"]), X(v["skRm"]), X(v["info"]))
    text = repr(context) + repr(hpke.key_schedule(Secret(X(v["shared_secret"])), X(v["info"])))
    for name in ("key", "base_nonce", "exporter_secret", "secret", "shared_secret"):
        assert v[name] not in text
    assert "redacted" in text


def test_cross_check_with_pyca_single_shot_hpke() -> None:
    # An independent implementation: cryptography's own single-shot HPKE opens our sequence-0, empty-AAD seal.
    recipient_key = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    recipient_public = recipient_key.public_key().public_bytes_raw()
    info = b"MATRIX_QR_CODE_LOGIN"
    enc, context = hpke.setup_base_s(recipient_public, info, ephemeral_secret=bytes(range(100, 132)))
    ct, _ = context.seal(b"MATRIX_QR_CODE_LOGIN_INITIATE", aad=b"")
    suite = pyca_hpke.Suite(pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.CHACHA20_POLY1305)
    assert suite.decrypt(enc + ct, recipient_key, info=info) == b"MATRIX_QR_CODE_LOGIN_INITIATE"


@settings(max_examples=50, deadline=None)
@given(
    plaintext=st.binary(max_size=200),
    info=st.binary(max_size=64),
    sk_r=st.binary(min_size=32, max_size=32),
    sk_e=st.binary(min_size=32, max_size=32),
)
def test_pyca_opens_ours_and_we_open_pycas(plaintext: bytes, info: bytes, sk_r: bytes, sk_e: bytes) -> None:
    recipient_key = X25519PrivateKey.from_private_bytes(sk_r)
    recipient_public = recipient_key.public_key().public_bytes_raw()
    suite = pyca_hpke.Suite(pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256, pyca_hpke.AEAD.CHACHA20_POLY1305)
    try:
        enc, context = hpke.setup_base_s(recipient_public, info, ephemeral_secret=sk_e)
    except NonContributoryKeyError:  # pragma: no cover - a random key is low-order with negligible odds
        return
    ct, _ = context.seal(plaintext, aad=b"")
    assert suite.decrypt(enc + ct, recipient_key, info=info) == plaintext

    theirs = suite.encrypt(plaintext, recipient_key.public_key(), info=info)
    opened, _ = hpke.setup_base_r(theirs[:32], sk_r, info).open(theirs[32:], aad=b"")
    assert opened == plaintext


def test_ohttp_response_context_reproduces_rfc9458_appendix_a() -> None:
    v = OHTTP
    request = X(v["encapsulated_request"])
    header, enc, request_ct = request[:7], request[7:39], request[39:]
    assert enc.hex() == v["client_ephemeral_public_enc"]
    skr = X(v["gateway_secret_key_skR"])
    # The request side: decap + key schedule under AES-128-GCM, checked with pyca's AESGCM.
    shared = hpke.decap(enc, recipient_secret=skr)
    schedule = hpke.key_schedule(shared, X(v["hpke_info"]), aead=hpke.AES_128_GCM)
    base = schedule.context()
    assert AESGCM(schedule.key.value).decrypt(base.nonce(), request_ct, b"").hex() == v["request_bhttp"]
    assert header == X(v["hpke_info"])[-7:]
    # The response side: export, salt, key and nonce, then the response itself.
    label = v["export_label"].encode()
    assert base.export(label, 16).hex() == v["exported_secret"]
    response = hpke.response_context(base, label=label, enc=enc, response_nonce=X(v["response_nonce"]))
    assert response.key.value.hex() == v["aead_key"]
    assert response.base_nonce.value.hex() == v["aead_nonce"]
    encapsulated = X(v["encapsulated_response"])
    assert encapsulated[:16].hex() == v["response_nonce"]
    opened = AESGCM(response.key.value).decrypt(response.nonce(), encapsulated[16:], b"")
    assert opened.hex() == v["response_bhttp"]


def test_response_context_is_a_usable_chacha_context_without_an_exporter() -> None:
    v = CHACHA_VECTOR
    enc, sender = hpke.setup_base_s(X(v["pkRm"]), X(v["info"]), ephemeral_secret=X(v["skEm"]))
    recipient = hpke.setup_base_r(enc, X(v["skRm"]), X(v["info"]))
    nonce = bytes(range(32))
    g_send = hpke.response_context(recipient, label=b"L", enc=enc, response_nonce=nonce)
    s_recv = hpke.response_context(sender, label=b"L", enc=enc, response_nonce=nonce)
    assert g_send.key == s_recv.key and g_send.base_nonce == s_recv.base_nonce
    assert g_send.key != recipient.key
    ct, g_send = g_send.seal(b"ok", aad=b"a")
    assert s_recv.open(ct, aad=b"a")[0] == b"ok"
    with pytest.raises(LocalProtocolError):
        g_send.export(b"", 32)
    other = hpke.response_context(recipient, label=b"L", enc=enc, response_nonce=bytes(32))
    assert other.key != s_recv.key
    with pytest.raises(LocalProtocolError):
        hpke.response_context(recipient, label=b"L", enc=enc, response_nonce=bytes(16))


def test_labeled_expand_refuses_impossible_lengths() -> None:
    with pytest.raises(LocalProtocolError):
        hpke.labeled_expand(b"", prk=bytes(32), label=b"", info=b"", length=255 * 32 + 1)


def test_context_key_seals_at_the_sequence_numbers_a_context_would() -> None:
    v = CHACHA_VECTOR
    schedule = hpke.key_schedule(hpke.decap(X(v["enc"]), recipient_secret=X(v["skRm"])), X(v["info"]))
    key = hpke.ContextKey(schedule.key.value, schedule.base_nonce.value)
    for seq in (0, 1, 255, 256):
        case = v["encryptions"][seq]
        assert key.nonce(seq).hex() == case["nonce"]
        assert key.seal(seq, X(case["pt"]), X(case["aad"])).hex() == case["ct"]
        assert key.open(seq, X(case["ct"]), X(case["aad"])).hex() == case["pt"]
    with pytest.raises(AuthenticationError):
        key.open(1, X(v["encryptions"][0]["ct"]), X(v["encryptions"][0]["aad"]))
    for exhausted in (hpke.MAX_SEQ, -1):
        with pytest.raises(hpke.MessageLimitReachedError):
            key.seal(exhausted, b"x", b"")
        with pytest.raises(hpke.MessageLimitReachedError):
            key.open(exhausted, X(v["encryptions"][0]["ct"]), b"")
    assert schedule.key.value.hex() not in repr(key) and "redacted" in repr(key)
    assert key == hpke.ContextKey(schedule.key.value, schedule.base_nonce.value)
    assert key not in (schedule.key.value, "ContextKey(<redacted>)")  # equal only to a key of the same bytes
    assert copy.copy(key) is key and copy.deepcopy(key) is key  # immutable: a copy is the same key
    with pytest.raises(LocalProtocolError, match="base nonce"):
        hpke.ContextKey(schedule.key.value, schedule.base_nonce.value + b"\0")
    with pytest.raises(AttributeError):
        key.key = Secret(bytes(32))


def test_a_context_seals_once_whatever_is_kept_or_copied() -> None:
    v = CHACHA_VECTOR
    enc, sender = hpke.setup_base_s(X(v["pkRm"]), X(v["info"]), ephemeral_secret=X(v["skEm"]))
    recipient = hpke.setup_base_r(enc, X(v["skRm"]), X(v["info"]))
    twins = [copy.copy(sender), copy.deepcopy(sender), dataclasses.replace(sender)]
    ct, following = sender.seal(b"one", aad=b"")
    for stale in (sender, *twins):
        with pytest.raises(LocalProtocolError, match="used already"):
            stale.seal(b"two", aad=b"")
    following.seal(b"two", aad=b"")
    opened, after = recipient.open(ct, aad=b"")
    assert opened == b"one"
    with pytest.raises(LocalProtocolError, match="used already"):
        recipient.open(ct, aad=b"")
    with pytest.raises(TypeError):
        pickle.dumps(after)


def test_an_expand_longer_than_one_block_is_plain_hkdf_expand() -> None:
    # HPKE's own expands fit one SHA-256 block and take a single HMAC; a longer export takes the general path, and
    # both agree with RFC 5869 as cryptography implements it (the first block is a prefix of the longer output).
    prk = bytes(range(32))
    long = hpke._expand(prk, b"info", 80)
    assert long == HKDFExpand(hashes.SHA256(), 80, b"info").derive(prk)
    assert long[:32] == hpke._expand(prk, b"info", 32)


def test_a_response_context_needs_an_enc_and_a_nonce_of_the_suite_sizes() -> None:
    secret = bytes(32)
    with pytest.raises(LocalProtocolError, match="response nonce"):
        hpke.response_key_nonce(secret, enc=bytes(hpke.N_ENC), response_nonce=bytes(31))
    with pytest.raises(LocalProtocolError, match="enc must be"):
        hpke.response_key_nonce(secret, enc=bytes(hpke.N_ENC - 1), response_nonce=bytes(32))
    key, nonce = hpke.response_key_nonce(secret, enc=bytes(hpke.N_ENC), response_nonce=bytes(32))
    assert (len(key), len(nonce)) == (hpke.CHACHA20_POLY1305.nk, hpke.CHACHA20_POLY1305.nn)
