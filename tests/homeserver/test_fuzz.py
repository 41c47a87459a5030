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

# Path indices of the OAuth surface in the target's PATHS, and the flags of a same-origin form from a signed-in browser.
METADATA_UNSTABLE, REVOKE, AUTHORIZE, LOGIN_PAGE, LINK_PAGE, LOGOUT = 11, 12, 13, 14, 15, 16
SIGNED_IN_FORM = 0x01 | 0x40 | 0x80
EXCHANGE = (
    b"grant_type=authorization_code&code=@K&redirect_uri=https%3A%2F%2Fc.example%2Fcb&client_id=@W&code_verifier="
)
AUTHORIZE_QUERY = (
    b"response_type=code&client_id=@W&redirect_uri=https%3A%2F%2Fc.example%2Fcb"
    b"&scope=urn%3Amatrix%3Aclient%3Aapi%3A%2A&code_challenge=@H&code_challenge_method=S256"
)
OAUTH_CORPUS = [
    request(0, METADATA_UNSTABLE, 0, b""),
    request(1, 9, 1, EXCHANGE + b"@V") + b"\n\n" + request(1, 9, 1, EXCHANGE + b"@V"),
    request(1, 9, 1, EXCHANGE + b"wrong-verifier-" + b"w" * 40),
    request(1, 9, 1, b"grant_type=refresh_token&refresh_token=@R&client_id=@C")
    + b"\n\n"
    + request(1, 9, 1, b"grant_type=refresh_token&refresh_token=@R&client_id=@W"),
    request(1, REVOKE, 1, b"token=@A&client_id=@C") + b"\n\n" + request(1, REVOKE, 1, b"token=@R&client_id=@W"),
    request(1, REVOKE, 1, b"token=@T&client_id=@C&token_type_hint=id_token"),
    request(0, 255, 0x40, b"/oauth2/authorize?" + AUTHORIZE_QUERY + b" "),
    request(0, 255, 0x00, b"/oauth2/authorize?" + AUTHORIZE_QUERY + b"&state=a&state=b "),
    request(0, 255, 0x40, b"/oauth2/authorize?" + AUTHORIZE_QUERY.replace(b"S256", b"plain") + b" "),
    request(1, AUTHORIZE, SIGNED_IN_FORM, b"csrf=@X&action=allow&request=" + AUTHORIZE_QUERY.replace(b"&", b"%26")),
    request(1, AUTHORIZE, SIGNED_IN_FORM, b"csrf=@X&action=deny&request=" + AUTHORIZE_QUERY.replace(b"&", b"%26")),
    request(1, AUTHORIZE, 0x41, b"csrf=@X&action=allow&request=" + AUTHORIZE_QUERY.replace(b"&", b"%26")),
    request(1, LINK_PAGE, SIGNED_IN_FORM, b"csrf=@X&action=approve&user_code=@U")
    + b"\n\n"
    + request(
        1, 9, 1, b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=@D&client_id=@C"
    ),
    request(0, 255, 0x40, b"/link?user_code=@U "),
    request(0, LINK_PAGE, 0x40, b""),
    request(1, LOGIN_PAGE, SIGNED_IN_FORM, b"csrf=nope&username=alice&password=pw&next=//evil.example"),
    request(0, 255, 0, b"/login?next=%2F%2Fevil.example "),
    request(1, LOGOUT, 0x10, b"{}") + b"\n\n" + request(0, 4, 0x10, b""),
    request(1, LOGOUT + 1, 0x10, b""),
    request(
        1,
        7,
        0,
        b'{"client_uri":"https://c.example/","application_type":"native","redirect_uris":["example.c.app:/cb"]}',
    ),
    request(
        1, 7, 0, b'{"client_uri":"https://c.example/","redirect_uris":["https://c.example/#f"],"client_name#x y":"n"}'
    ),
]
CORPUS += OAUTH_CORPUS


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
        b"client_id=@C&scope=openid+urn%3Amatrix%3Aorg.matrix.msc2967.client%3Aapi%3A%2A",
        EXCHANGE + b"@V",
        b"grant_type=refresh_token&refresh_token=@R&client_id=@C",
        b"token=@A&client_id=@C",
        b"csrf=@X&action=approve&user_code=@U",
        b"csrf=@X&action=allow&request=" + AUTHORIZE_QUERY.replace(b"&", b"%26"),
        b"csrf=@X&username=alice&password=pw&next=/link",
        b'{"client_uri":"https://c.example/","redirect_uris":["https://c.example/cb"]}',
        b"",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 35), st.integers(0, 255), FRAGMENTS, st.binary(max_size=8)),
        max_size=8,
    )
)
def test_structured_sequences(steps: list[tuple[int, int, int, bytes, bytes]]) -> None:
    one_input(b"\n\n".join(request(m, p, f, body + noise) for m, p, f, body, noise in steps))
