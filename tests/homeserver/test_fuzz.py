"""Runs the homeserver fuzz target (fuzz/fuzz_homeserver.py) under hypothesis, plus a corpus of hostile inputs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_PATH = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_homeserver.py"
_SPEC = importlib.util.spec_from_file_location("fuzz_homeserver", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
_MODULE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MODULE)
one_input: Callable[[bytes], None] = _MODULE.one_input


def request(method: int, path: int, flags: int, body: bytes) -> bytes:
    return bytes([method, path, flags]) + body


POLL = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=@D&client_id=@C"
CORPUS = [
    b"",
    b"\n\n\n\n",
    request(1, 0, 0, b'{"type":"m.login.password","user":"alice","password":"pw","device_id":"FUZZDEVICE"}'),
    request(1, 0, 0, b"[" * 50_000),
    request(1, 1, 0, b"x" * (1 << 20)),
    request(1, 1, 0, b'{"a":1,"a":2}'),
    request(1, 1, 0, b'{"a":NaN}'),
    request(3, 3, 0x10, b"")
    + b"\n\n"
    + request(3, 3, 0x10, b'{"auth":{"type":"m.login.password","user":"alice","password":"pw"}}'),
    request(1, 9, 1, b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=@D&client_id=@C")
    + b"\n\n"
    + request(
        1, 9, 1, b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=@D&client_id=@C"
    ),
    request(1, 8, 1, b"client_id=@C&scope=urn%3Amatrix%3Aclient%3Aapi%3A%2A%20urn%3Amatrix%3Aclient%3Adevice%3A%FF"),
    request(1, 9, 1, b"client_id=@C&client_id=@C"),
    request(0, 255, 0x10, b"/_matrix/client/v3/devices/%ff%fe"),
    request(0, 255, 0x20, b"/_matrix/client/v3/devices/ Bearer\x00\x01"),
    request(2, 3, 0x10, b'{"display_name":' + b'"x"' * 3 + b"}"),
]


@pytest.mark.parametrize("data", CORPUS)
def test_corpus(data: bytes) -> None:
    one_input(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    one_input(data)


FRAGMENTS = st.sampled_from(
    [
        b'{"type":"m.login.password","user":"alice","password":"pw"}',
        b'{"auth":{"type":"m.login.password","user":"alice","password":"pw"}}',
        b'{"auth":{"type":"m.login.password","password":"pw","session":"x"}}',
        b'{"display_name":"TV"}',
        b'{"client_uri":"https://c.example"}',
        b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=@D&client_id=@C",
        b"grant_type=refresh_token&refresh_token=@T&client_id=@C",
        b"client_id=@C&scope=urn%3Amatrix%3Aclient%3Aapi%3A%2A+urn%3Amatrix%3Aclient%3Adevice%3AABC",
        b"",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 21), st.integers(0, 255), FRAGMENTS, st.binary(max_size=8)),
        max_size=8,
    )
)
def test_structured_sequences(steps: list[tuple[int, int, int, bytes, bytes]]) -> None:
    one_input(b"\n\n".join(request(m, p, f, body + noise) for m, p, f, body, noise in steps))
