"""Strict base64 (docs/threats.md T7): one spelling per byte string, padding only by explicit policy."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrlogin.encoding import PaddingPolicy, b64decode, b64encode
from qrlogin.errors import Base64DecodeError, RemoteProtocolError


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    text = b64encode(data)
    assert "=" not in text
    assert b64decode(text) == data
    padded = base64.b64encode(data).decode()
    assert b64decode(padded, padding="allow") == data
    assert b64decode(padded, padding="require") == data


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2IZoarIZe3gOMAqdSiFHSAcA15KfOasxueUUNwJI7Ws=", "padding is forbidden by default"),
        ("2IZoarIZe3gOMAqdSiFHSAcA15KfOasxueUUNwJI7Wt", "non-zero trailing bits"),
        ("AB==", "trailing bits of a 1-byte value must be zero: 'AB' is not canonical"),
        ("QQ=", "wrong padding length"),
        ("Q===", "three padding characters"),
        ("QUJD=", "padding on a complete quantum"),
        ("QU=JD", "padding in the middle"),
        ("QUJD-_", "url-safe alphabet"),
        ("QUJD\n", "whitespace"),
        (" QUJD", "leading whitespace"),
        ("QUJDR", "impossible length (1 mod 4)"),
        ("QUJDé", "non-ASCII"),
        ("QUJ\x00", "NUL"),
    ],
)
def test_rejects_non_canonical_spellings(text: str, why: str) -> None:
    with pytest.raises(Base64DecodeError):
        b64decode(text, padding="allow" if "=" in text and "forbidden" not in why else "forbid")


def test_padding_policies() -> None:
    assert b64decode("QQ") == b"A"
    assert b64decode("QQ==", padding="allow") == b"A"
    with pytest.raises(Base64DecodeError):
        b64decode("QQ==")
    with pytest.raises(Base64DecodeError):
        b64decode("QQ", padding="require")
    assert b64decode("QUJD", padding="require") == b"ABC"  # a full quantum needs no padding


def test_length_limit_is_checked_first() -> None:
    with pytest.raises(Base64DecodeError, match="longer than"):
        b64decode("*" * 4097, max_length=4096)


def test_bytes_input_and_error_type() -> None:
    assert b64decode(b"QUJD") == b"ABC"
    with pytest.raises(Base64DecodeError):
        b64decode(b"\xff\xfe")
    assert issubclass(Base64DecodeError, RemoteProtocolError)


@given(st.text(max_size=40))
def test_only_base64_errors_escape(text: str) -> None:
    policies: tuple[PaddingPolicy, ...] = ("forbid", "allow", "require")
    for policy in policies:
        try:
            data = b64decode(text, padding=policy)
        except Base64DecodeError:
            continue
        assert b64encode(data) == text.rstrip("=")
