"""The strict JSON reader: every gap of ``json.loads`` closed, and only JsonError ever escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin._json import DEFAULT_MAX_DEPTH, JsonError, JsonSyntaxError, dumps, loads_object
from qrlogin.errors import RemoteProtocolError


def test_accepts_a_plain_object() -> None:
    assert loads_object(b'{"a": [1, 2.5, "x", null, true], "b": {"c": {}}}', max_bytes=4096) == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": {}},
    }


@pytest.mark.parametrize(
    "text",
    [
        b'{"type": "a", "type": "b"}',  # duplicate keys: json.loads would keep the last
        b'{"a": {"k": 1, "k": 1}}',  # even nested, even with equal values
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',  # overflows to inf
        b'{"a": "\\ud800"}',  # lone surrogate
        b'{"\\udfff": 1}',
        b"[1, 2]",  # not an object
        b'"text"',
        b"",
        b"{",
        b'{"a": 1} trailing',
        b"\xff\xfe{}",  # not UTF-8
        b'\xef\xbb\xbf{"a": 1}',  # a BOM is not JSON text
        b'{"a": 1,}',
    ],
)
def test_rejects(text: bytes) -> None:
    with pytest.raises(JsonError):
        loads_object(text, max_bytes=4096)


def test_size_is_checked_before_parsing() -> None:
    body = b'{"a": "' + b"x" * 4090 + b'"}'
    assert len(body) > 4096
    with pytest.raises(JsonError, match="exceeds"):
        loads_object(body, max_bytes=4096)
    loads_object(body, max_bytes=len(body))


def test_depth_limit_is_exact() -> None:
    ok = b'{"a":' * (DEFAULT_MAX_DEPTH - 1) + b"{}" + b"}" * (DEFAULT_MAX_DEPTH - 1)
    loads_object(ok, max_bytes=10_000)
    too_deep = b'{"a":' * DEFAULT_MAX_DEPTH + b"{}" + b"}" * DEFAULT_MAX_DEPTH
    with pytest.raises(JsonError, match="nesting"):
        loads_object(too_deep, max_bytes=10_000)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = b'{"a": "' + b"[[[[{{{{" * 10 + b'\\"[[["}'
    assert loads_object(text, max_bytes=4096)["a"].startswith("[[[[")


def test_many_sibling_brackets_are_not_nesting() -> None:
    # More brackets than the depth limit, in containers only 3 deep.
    wide = b'{"a":[' + b",".join([b"{}", b"[]"] * 50) + b"]}"
    assert len(loads_object(wide, max_bytes=4096)["a"]) == 100


def test_a_recursion_bomb_never_raises_recursion_error() -> None:
    # 200k brackets make json.loads raise RecursionError; here that is refused as nesting, whatever the container.
    for bomb in (b"[" * 200_000, b'{"a":' + b"[" * 200_000, b'{"a":' * 200_000, b'{"a":[' * 100_000 + b"]}" * 100_000):
        with pytest.raises(JsonSyntaxError, match="nesting deeper than"):
            loads_object(bomb, max_bytes=2_000_000)


def test_nesting_within_the_limit_but_wide_and_deep_is_measured_exactly() -> None:
    # Arrays and objects mixed, the deepest branch last: only the deepest counts.
    def nested(depth: int) -> bytes:
        return b"[" * (depth - 1) + b"]" * (depth - 1)

    at_limit = b'{"a":[1,{"b":2}],"c":' + nested(DEFAULT_MAX_DEPTH) + b"}"
    assert loads_object(at_limit, max_bytes=4096)["a"] == [1, {"b": 2}]
    with pytest.raises(JsonSyntaxError, match="nesting deeper than"):
        loads_object(b'{"a":[1,{"b":2}],"c":' + nested(DEFAULT_MAX_DEPTH + 1) + b"}", max_bytes=4096)


def test_str_input_with_surrogates_is_rejected_not_crashing() -> None:
    with pytest.raises(JsonError):
        loads_object('{"a": "\ud800"}', max_bytes=4096)


def test_dumps_is_compact_and_refuses_nan() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    with pytest.raises(ValueError, match="JSON"):
        dumps({"a": float("nan")})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)


@settings(max_examples=100)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_round_trip(value: dict[str, object]) -> None:
    text = dumps(value)
    try:
        assert loads_object(text, max_bytes=1 << 20) == value
    except JsonError as exc:  # only for values deeper than the limit or with surrogates from st.text()
        assert "nesting" in str(exc) or "surrogate" in str(exc) or "UTF-8" in str(exc)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_only_remote_protocol_errors_escape(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        loads_object(data, max_bytes=256)
