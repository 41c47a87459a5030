"""The QR codec against every case in spec_vectors/qr_codes.json, plus the rules the vectors do not pin."""

from __future__ import annotations

from typing import Any

import pytest

from qrlogin import qr
from qrlogin.encoding import b64decode
from qrlogin.errors import LocalProtocolError, RemoteProtocolError
from qrlogin.vocabulary import DeviceRole
from tests.vectors import load

CASES: list[dict[str, Any]] = load("qr_codes.json")["cases"]
KEY = bytes(range(32))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_vector(case: dict[str, Any]) -> None:
    payload = bytes.fromhex(case["hex"])
    expected = case["expected"]
    if not expected["ok"]:
        with pytest.raises(qr.QrDecodeError) as caught:
            qr.decode(payload)
        assert type(caught.value).__name__ == expected["error"]
        return
    decoded = qr.decode(payload)
    assert decoded.generation.value == expected["generation"]
    assert decoded.intent is {"new_device": DeviceRole.NEW, "existing_device": DeviceRole.EXISTING}[expected["intent"]]
    assert decoded.public_key == b64decode(expected["public_key_b64"])
    for field in ("rendezvous_url", "rendezvous_id", "server_name", "base_url"):
        assert getattr(decoded, field) == expected.get(field)
    if decoded.generation is qr.Generation.V3:
        assert decoded.unstable_prefix == expected["unstable_prefix"]
        assert decoded.id_length_layout is not None
        assert decoded.id_length_layout.value == expected["id_length_layout"]
    assert qr.encode(decoded) == payload


def test_vector_file_covers_what_the_issue_names() -> None:
    assert len(CASES) == 39
    assert {c["expected"]["generation"] for c in CASES if c["expected"]["ok"]} == {"v1", "v2", "v3"}
    assert sum(1 for c in CASES if "msc_text_example" in c) == 7
    # Every case where qrlogin and the Rust parser disagree on accept/reject is explained.
    for case in CASES:
        if case["expected"]["ok"] != case["rust_parser_wasm_18_9_0"]["ok"]:
            assert case.get("differs_from_rust_parser"), case["id"]


def test_every_decode_error_is_a_remote_protocol_error() -> None:
    assert issubclass(qr.QrDecodeError, RemoteProtocolError)
    for name in qr.__all__:
        obj = getattr(qr, name)
        if isinstance(obj, type) and name.startswith("Qr") and name.endswith("Error"):
            assert issubclass(obj, qr.QrDecodeError), name


def _v3(**overrides: Any) -> qr.QrCode:
    fields: dict[str, Any] = {
        "generation": qr.Generation.V3,
        "intent": DeviceRole.NEW,
        "public_key": KEY,
        "rendezvous_id": "abc",
        "base_url": "https://matrix.example.org",
        "id_length_layout": qr.IdLengthLayout.U8,
    }
    fields.update(overrides)
    return qr.QrCode(**fields)


def test_http_urls_need_explicit_permission() -> None:
    payload = qr.encode(_v3(base_url="http://127.0.0.1:8008"))
    with pytest.raises(qr.QrInsecureUrlError):
        qr.decode(payload)
    assert qr.decode(payload, allow_http=True).base_url == "http://127.0.0.1:8008"
    v1 = qr.QrCode(
        generation=qr.Generation.V1,
        intent=DeviceRole.NEW,
        public_key=KEY,
        rendezvous_url="http://127.0.0.1/r/1",
    )
    with pytest.raises(qr.QrInsecureUrlError):
        qr.decode(qr.encode(v1))


@pytest.mark.parametrize(
    ("base_url", "error"),
    [
        ("matrix.example.org", qr.QrInvalidUrlError),
        ("/relative", qr.QrInvalidUrlError),
        ("ftp://example.org", qr.QrInvalidUrlError),
        ("https://", qr.QrInvalidUrlError),
        ("https://exa mple.org", qr.QrInvalidUrlError),
        ("https://example.org:99999", qr.QrInvalidUrlError),
        ("https://[::1", qr.QrInvalidUrlError),
    ],
)
def test_v3_base_url_must_be_absolute(base_url: str, error: type[Exception]) -> None:
    good = qr.encode(_v3())
    prefix_end = len(good) - len(b"https://matrix.example.org") - 2
    raw = base_url.encode()
    payload = good[:prefix_end] + len(raw).to_bytes(2, "big") + raw
    with pytest.raises(error):
        qr.decode(payload)


def test_rendezvous_id_limits() -> None:
    assert qr.decode(qr.encode(_v3(rendezvous_id="a" * 255))).rendezvous_id == "a" * 255
    long_id = _v3(rendezvous_id="a" * 255, id_length_layout=qr.IdLengthLayout.U16)
    payload = bytearray(qr.encode(long_id))
    length_at = len(qr.MATRIX_PREFIX) + 2 + 32
    payload[length_at : length_at + 2] = (256).to_bytes(2, "big")
    payload[length_at + 2 : length_at + 2] = b"a"
    with pytest.raises(qr.QrInvalidRendezvousIdError):
        qr.decode(bytes(payload))
    for bad in ("", "a" * 256, "a/b", "a b", "é"):
        with pytest.raises(LocalProtocolError):
            _v3(rendezvous_id=bad)


def test_construction_rejects_inconsistent_fields() -> None:
    with pytest.raises(LocalProtocolError):
        _v3(server_name="example.org")
    with pytest.raises(LocalProtocolError):
        _v3(id_length_layout=None)
    with pytest.raises(LocalProtocolError):
        _v3(public_key=bytes(31))
    with pytest.raises(LocalProtocolError):
        qr.QrCode(
            generation=qr.Generation.V1,
            intent=DeviceRole.NEW,
            public_key=KEY,
            rendezvous_url="https://r.example.org/1",
            server_name="example.org",  # only an existing-device v1 code carries a server name
        )
    with pytest.raises(LocalProtocolError):
        qr.QrCode(
            generation=qr.Generation.V2,
            intent=DeviceRole.NEW,
            public_key=KEY,
            rendezvous_id="abc",
            server_name="example.org",
            unstable_prefix=True,
        )


def test_unstable_prefix_requires_type_3() -> None:
    payload = bytearray(qr.encode(_v3(unstable_prefix=True)))
    payload[len(qr.MSC4388_UNSTABLE_PREFIX)] = 0x02
    with pytest.raises(qr.QrUnknownTypeError):
        qr.decode(bytes(payload))


@pytest.mark.parametrize("mode", [0x00, 0x01, 0x02])
def test_device_verification_codes_have_their_own_error(mode: int) -> None:
    with pytest.raises(qr.QrDeviceVerificationError):
        qr.decode(b"MATRIX\x02" + bytes([mode]) + bytes(40))


def test_require_intent() -> None:
    shown_by_new = _v3(intent=DeviceRole.NEW)
    shown_by_existing = _v3(intent=DeviceRole.EXISTING)
    assert qr.require_intent(shown_by_new, scanner_is_new_device=False) is shown_by_new
    assert qr.require_intent(shown_by_existing, scanner_is_new_device=True) is shown_by_existing
    with pytest.raises(qr.WrongIntentError):
        qr.require_intent(shown_by_new, scanner_is_new_device=True)
    with pytest.raises(qr.WrongIntentError):
        qr.require_intent(shown_by_existing, scanner_is_new_device=False)
    assert not issubclass(qr.WrongIntentError, qr.QrDecodeError)
    assert issubclass(qr.WrongIntentError, RemoteProtocolError)


def test_misuse_is_local() -> None:
    with pytest.raises(LocalProtocolError):
        qr.decode("MATRIX")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        qr.encode(b"MATRIX")  # type: ignore[arg-type]
