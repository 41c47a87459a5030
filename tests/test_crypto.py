"""Known-answer tests for the primitives in qrlogin._crypto: RFC appendices and Wycheproof."""

from __future__ import annotations

from typing import Any

import pytest

from qrlogin import _crypto
from qrlogin.errors import AuthenticationError, InvalidKeyError, LocalProtocolError, NonContributoryKeyError
from tests.vectors import load, wycheproof_tests

X25519_CASES = wycheproof_tests("wycheproof_x25519_test.json")
CHACHA_CASES = wycheproof_tests("wycheproof_chacha20_poly1305_test.json")
HKDF_CASES = [("sha256", *case) for case in wycheproof_tests("wycheproof_hkdf_sha256_test.json")] + [
    ("sha512", *case) for case in wycheproof_tests("wycheproof_hkdf_sha512_test.json")
]
RFC = load("rfc_kat_x25519_hkdf_chacha20poly1305.json")


def _tc_id(case: tuple[Any, ...]) -> str:
    return str(case[-1]["tcId"])


@pytest.mark.parametrize(("group", "test"), X25519_CASES, ids=[_tc_id(c) for c in X25519_CASES])
def test_wycheproof_x25519(group: dict[str, Any], test: dict[str, Any]) -> None:
    private, public = bytes.fromhex(test["private"]), bytes.fromhex(test["public"])
    if "ZeroSharedSecret" in test["flags"]:
        with pytest.raises(NonContributoryKeyError):
            _crypto.x25519(private, public)
    else:
        assert test["result"] in ("valid", "acceptable")
        assert _crypto.x25519(private, public).hex() == test["shared"]


def test_all_31_zero_output_cases_are_refused() -> None:
    zero_cases = [test for _, test in X25519_CASES if "ZeroSharedSecret" in test["flags"]]
    assert len(zero_cases) == 31
    refused = 0
    for test in zero_cases:
        with pytest.raises(NonContributoryKeyError):
            _crypto.x25519(bytes.fromhex(test["private"]), bytes.fromhex(test["public"]))
        refused += 1
    assert refused == 31


def test_rfc7748_scalar_multiplication_and_dh() -> None:
    for case in RFC["x25519"]:
        assert _crypto.x25519(bytes.fromhex(case["scalar"]), bytes.fromhex(case["u"])).hex() == case["output"]
    dh = RFC["x25519_dh"]
    alice, bob = bytes.fromhex(dh["alice_private"]), bytes.fromhex(dh["bob_private"])
    assert _crypto.x25519_public_key(alice).hex() == dh["alice_public"]
    assert _crypto.x25519_public_key(bob).hex() == dh["bob_public"]
    assert _crypto.x25519(alice, bytes.fromhex(dh["bob_public"])).hex() == dh["shared"]
    assert _crypto.x25519(bob, bytes.fromhex(dh["alice_public"])).hex() == dh["shared"]


def test_rfc7748_iterated_1000() -> None:
    iterated = RFC["x25519_iterated"]
    k = u = bytes.fromhex(iterated["start_k"])
    for _ in range(1000):
        k, u = _crypto.x25519(k, u), k
    assert k.hex() == iterated["after"]["1000"]


def test_x25519_rejects_wrong_lengths() -> None:
    with pytest.raises(InvalidKeyError):
        _crypto.x25519(bytes(32), bytes(31))
    with pytest.raises(LocalProtocolError):
        _crypto.x25519(bytes(31), bytes(32))


@pytest.mark.parametrize(("hash_name", "group", "test"), HKDF_CASES, ids=[f"{c[0]}-{c[2]['tcId']}" for c in HKDF_CASES])
def test_wycheproof_hkdf(hash_name: _crypto.HashName, group: dict[str, Any], test: dict[str, Any]) -> None:
    ikm, salt, info = (bytes.fromhex(test[k]) for k in ("ikm", "salt", "info"))
    if test["result"] == "invalid":
        assert "SizeTooLarge" in test["flags"]
        with pytest.raises(LocalProtocolError):
            _crypto.hkdf(hash_name, ikm, salt=salt, info=info, length=test["size"])
        return
    assert _crypto.hkdf(hash_name, ikm, salt=salt, info=info, length=test["size"]).hex() == test["okm"]
    # The split form computes the same thing; an empty salt means HashLen zero bytes.
    prk = _crypto.hkdf_extract(hash_name, salt=salt, ikm=ikm)
    assert _crypto.hkdf_expand(hash_name, prk=prk, info=info, length=test["size"]).hex() == test["okm"]


def test_rfc5869_appendix_a() -> None:
    for case in RFC["hkdf_sha256"]:
        salt = bytes.fromhex(case["salt"]) if case["salt"] is not None else None
        ikm, info = bytes.fromhex(case["ikm"]), bytes.fromhex(case["info"])
        assert _crypto.hkdf_extract("sha256", salt=salt or b"", ikm=ikm).hex() == case["prk"]
        assert _crypto.hkdf("sha256", ikm, salt=salt, info=info, length=case["L"]).hex() == case["okm"]


def test_absent_salt_equals_zero_salt() -> None:
    ikm = b"\x01" * 32
    sha256_zero, sha512_zero = bytes(32), bytes(64)
    assert _crypto.hkdf("sha256", ikm, salt=None, info=b"x", length=32) == _crypto.hkdf(
        "sha256", ikm, salt=sha256_zero, info=b"x", length=32
    )
    assert _crypto.hkdf("sha512", ikm, salt=None, info=b"x", length=32) == _crypto.hkdf(
        "sha512", ikm, salt=sha512_zero, info=b"x", length=32
    )


@pytest.mark.parametrize(("group", "test"), CHACHA_CASES, ids=[_tc_id(c) for c in CHACHA_CASES])
def test_wycheproof_chacha20_poly1305(group: dict[str, Any], test: dict[str, Any]) -> None:
    key, nonce, aad, msg = (bytes.fromhex(test[k]) for k in ("key", "iv", "aad", "msg"))
    sealed = bytes.fromhex(test["ct"] + test["tag"])
    if "InvalidNonceSize" in test["flags"]:
        with pytest.raises(LocalProtocolError):
            _crypto.aead_open(key, nonce, sealed, aad)
        return
    if test["result"] == "invalid":
        with pytest.raises(AuthenticationError):
            _crypto.aead_open(key, nonce, sealed, aad)
        return
    assert _crypto.aead_seal(key, nonce, msg, aad) == sealed
    assert _crypto.aead_open(key, nonce, sealed, aad) == msg


def test_rfc8439_aead() -> None:
    for case in RFC["chacha20_poly1305"]:
        key, nonce, aad = (bytes.fromhex(case[k]) for k in ("key", "nonce", "aad"))
        sealed = bytes.fromhex(case["ciphertext"] + case["tag"])
        assert _crypto.aead_open(key, nonce, sealed, aad).hex() == case["plaintext"]
        assert _crypto.aead_seal(key, nonce, bytes.fromhex(case["plaintext"]), aad) == sealed


def test_aead_short_ciphertext_is_an_authentication_error() -> None:
    with pytest.raises(AuthenticationError):
        _crypto.aead_open(bytes(32), bytes(12), b"short")
