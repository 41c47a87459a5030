"""The shared plain HTTP values: header normalisation, target splitting, redacted reprs, strict JSON."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin._json import JsonError
from qrlogin.http import HttpRequest, HttpResponse, origin_form

TEXT = st.text(max_size=12)  # hypothesis leaves out lone surrogates by default


def test_header_names_are_lower_cased_on_construction_and_looked_up_case_insensitively() -> None:
    request = HttpRequest(
        method="GET", target="/", headers=(("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2"))
    )
    assert request.headers == (("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2"))
    assert request.header("CONTENT-TYPE") == "text/plain" and request.header("X-a") == "1"
    assert request.header("missing") is None
    response = HttpResponse(status=200, headers=(("ETag", '"1"'),))
    assert response.headers == (("etag", '"1"'),) and response.header("etag") == '"1"'
    assert HttpRequest(method="GET", target="/", headers=(("A", "b"),)) == HttpRequest(
        method="GET", target="/", headers=(("a", "b"),)
    )


def test_authenticated_defaults_to_false_and_takes_part_in_equality() -> None:
    plain = HttpRequest(method="GET", target="https://hs.example/x")
    assert plain.authenticated is False
    assert plain != HttpRequest(method="GET", target="https://hs.example/x", authenticated=True)


def test_repr_hides_authorization_query_and_body() -> None:
    request = HttpRequest.json(
        "PUT", "/_matrix/client/v3/devices/D", {"password": "hunter2"}, access_token="syt_secret", query=(("a", "q1"),)
    )
    shown = repr(request)
    assert "syt_secret" not in shown and "hunter2" not in shown and "q1" not in shown
    assert "authorization" in shown and "/_matrix/client/v3/devices/D" in shown and "content-type" in shown
    response = HttpResponse(status=200, headers=(("authorization", "Bearer leak"),), body=b'{"access_token":"t0k"}')
    assert "leak" not in repr(response) and "t0k" not in repr(response) and "200" in repr(response)


def test_path_and_query_of_origin_form_and_absolute_targets() -> None:
    origin = HttpRequest(method="GET", target="/a/b%2Fc?kind=guest&x=&x=2")
    assert origin.path == "/a/b%2Fc" and origin.query == (("kind", "guest"), ("x", ""), ("x", "2"))
    absolute = HttpRequest(method="GET", target="https://hs.example:8448/p/q?access_token=t")
    assert absolute.path == "/p/q" and absolute.query == (("access_token", "t"),)
    assert HttpRequest(method="GET", target="https://hs.example").path == ""
    assert HttpRequest(method="GET", target="https://hs.example?k=v").query == (("k", "v"),)


@settings(max_examples=100, deadline=None)
@given(target=st.text(max_size=40))
def test_path_and_query_are_total_on_any_target(target: str) -> None:
    request = HttpRequest(method="GET", target=target)
    assert isinstance(request.path, str) and isinstance(request.query, tuple)
    assert "?" not in request.path


@settings(max_examples=100, deadline=None)
@given(
    path=st.text(st.characters(exclude_characters="?"), max_size=12).map(lambda p: "/" + p),
    query=st.lists(st.tuples(TEXT, TEXT), max_size=4).map(tuple),
)
def test_origin_form_round_trips_path_and_query(path: str, query: tuple[tuple[str, str], ...]) -> None:
    request = HttpRequest(method="GET", target=origin_form(path, query))
    assert request.path == path and request.query == query


def test_constructors_build_the_bodies_and_headers_a_client_sends() -> None:
    posted = HttpRequest.json("POST", "/r", {"b": 1, "a": [True]}, access_token="tok")
    assert posted.body == b'{"b":1,"a":[true]}' and posted.header("authorization") == "Bearer tok"
    assert posted.header("content-type") == "application/json"
    got = HttpRequest.get("/w")
    assert (got.method, got.headers, got.body) == ("GET", (), b"")
    form = HttpRequest.form("/oauth2/token", {"grant_type": "x y", "c": "&"})
    assert form.body == b"grant_type=x+y&c=%26"
    assert form.header("content-type") == "application/x-www-form-urlencoded"


def test_response_json_is_the_strict_reader() -> None:
    assert HttpResponse(status=200, body=b'{"a": [1]}').json() == {"a": [1]}
    for bad in (b'{"a": 1, "a": 2}', b'{"a": NaN}', b"[1]", b"\xff", b"{"):
        with pytest.raises(JsonError):
            HttpResponse(status=200, body=bad).json()
    with pytest.raises(JsonError):
        HttpResponse(status=200, body=b'{"a": "' + b"x" * 100 + b'"}').json(max_bytes=50)
