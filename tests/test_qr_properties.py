"""Round-trip properties of the QR codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import qr
from tests.strategies import qr_codes


@given(qr_codes())
def test_decode_inverts_encode(code: qr.QrCode) -> None:
    assert qr.decode(qr.encode(code)) == code


@settings(max_examples=300)
@given(st.data())
def test_encode_inverts_decode_on_every_accepted_payload(data: st.DataObject) -> None:
    # Start from a valid payload and mutate it; whenever the mutant is accepted, it must re-encode to itself.
    payload = bytearray(qr.encode(data.draw(qr_codes())))
    for _ in range(data.draw(st.integers(0, 3))):
        if not payload:
            break
        position = data.draw(st.integers(0, len(payload) - 1))
        payload[position] = data.draw(st.integers(0, 255))
    try:
        decoded = qr.decode(bytes(payload), allow_http=True)
    except qr.QrDecodeError:
        return
    assert qr.encode(decoded) == bytes(payload)


@given(qr_codes(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_always_rejected(code: qr.QrCode, extra: bytes) -> None:
    # Every field is length-prefixed or fixed-size, so extra bytes can only ever trail.
    with pytest.raises(qr.QrTrailingBytesError):
        qr.decode(qr.encode(code) + extra, allow_http=True)


@given(qr_codes())
def test_every_strict_prefix_is_truncated(code: qr.QrCode) -> None:
    payload = qr.encode(code)
    for end in range(len(payload)):
        with pytest.raises(qr.QrTruncatedError):
            qr.decode(payload[:end], allow_http=True)
