"""A conformance checker for live rendezvous servers (``qrlogin check-server``).

Theory of operation
-------------------
The checker plays a careful client against a real server and compares every answer with the texts
(docs/protocol.md §6; MSC4108 2024 for v1, the seed-era MSC4108 for v2, MSC4388 for v3). It runs one scripted session
per generation: discovery against what POST does (v3), create, CORS as a browser does it (a real pre-flight for
every request a client makes, and the headers on the actual answers), read, conditional read (v1), write, a write of
identical data (the token must still change), a stale write, an idempotent retry (v3), the size limit, a
navigation-style GET (v3), delete, read after delete, and optionally expiry. Two optional parts follow: with a second
base URL of the same deployment (``other_url``) a session is created on one instance and read, written, conflicted
and deleted on the other, and rounds of concurrent writers spread over both must each have exactly one winner; with
``rate_limit_probe`` the checker writes and then creates as fast as it can, up to that many requests, and expects
``429 M_LIMIT_EXCEEDED`` with ``retry_after_ms`` (it runs last, since it spends this client's allowance). Each step
yields a :class:`Finding`:

* ``fail``: a MUST of the text (or a behaviour deployed clients depend on) is broken;
* ``warn``: a SHOULD is not met, or the answer is legal but unusual (Synapse's v1 ETag is a hash of the body, so
  identical payloads get identical ETags; its v3 ``DELETE`` answers ``[]`` instead of ``{}``);
* ``pass`` and ``skip``.

Steps that need an earlier step's result are skipped when it failed, so one fault is reported once.

The server under test is not trusted: every answer's body is read only up to :data:`MAX_ANSWER_BYTES` (after
content decoding, so a compressed bomb stops there too), JSON goes through the project's strict reader (size, depth
and duplicate keys checked before parsing, so 200,000 nested brackets are a finding, not a ``RecursionError``), and
anything else a step meets becomes a failed finding; the checker itself never raises on what a server sends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from .._json import JsonError, loads_object
from ..errors import RemoteProtocolError
from ..rendezvous._http import MAX_PAYLOAD_BYTES, ApiGeneration, is_opaque_id, media_type
from ..rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX

__all__ = ["MAX_ANSWER_BYTES", "Finding", "check_server", "default_prefix", "render_table"]

MAX_ANSWER_BYTES = 64 * 1024
"""The most of an answer's body the checker reads; a rendezvous answer is a few kilobytes at most."""

_ORIGIN = "https://client.example"
_DETAIL_CHARS = 300

Status = Literal["pass", "fail", "warn", "skip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    check: str
    status: Status
    detail: str


def default_prefix(generation: ApiGeneration) -> str:
    return V3_UNSTABLE_PREFIX if generation is ApiGeneration.V3 else V1_V2_UNSTABLE_PREFIX


class _Skip(Exception):
    pass


class _AnswerTooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    """What the checker keeps of an HTTP answer: status, headers, and a body of at most MAX_ANSWER_BYTES."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Http:
    """The requests the checker makes, each answer's body read up to :data:`MAX_ANSWER_BYTES` and no further."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> Answer:
        with self.client.stream(method, url, **kwargs) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _AnswerTooLarge(f"{method} answered with a body over {MAX_ANSWER_BYTES} bytes")
                chunks.append(chunk)
            return Answer(response.status_code, response.headers, b"".join(chunks))

    def get(self, url: str, **kwargs: Any) -> Answer:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Answer:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Answer:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Answer:
        return self.request("DELETE", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Answer:
        return self.request("OPTIONS", url, **kwargs)


class _Run:
    def __init__(self, http: _Http) -> None:
        self.http = http
        self.findings: list[Finding] = []

    def record(self, check: str, status: Status, detail: str = "") -> None:
        if len(detail) > _DETAIL_CHARS:
            detail = detail[:_DETAIL_CHARS] + "..."
        self.findings.append(Finding(check=check, status=status, detail=detail))

    def step(self, check: str, body: Callable[[], tuple[Status, str]]) -> bool:
        try:
            status, detail = body()
        except _Skip as exc:
            status, detail = "skip", str(exc)
        except (httpx.HTTPError, _AnswerTooLarge) as exc:
            status, detail = "fail", f"request failed: {type(exc).__name__}: {exc}"
        except (RemoteProtocolError, ValueError, KeyError, TypeError, AttributeError) as exc:
            status, detail = "fail", f"unexpected answer: {type(exc).__name__}: {exc}"
        except Exception as exc:  # whatever else a hostile answer provokes is a finding too, never a traceback
            status, detail = "fail", f"unexpected answer: {type(exc).__name__}"
        self.record(check, status, detail)
        return status in ("pass", "warn")


def _json(response: Answer) -> dict[str, Any]:
    """The answer's body as a JSON object, read strictly (:class:`JsonError` otherwise)."""
    return loads_object(response.content, max_bytes=MAX_ANSWER_BYTES)


def _errcode(response: Answer) -> str:
    try:
        content = _json(response)
    except JsonError:
        return "(no JSON object)"
    return str(content.get("errcode"))[:80]


def _concurrent_errcode_ok(response: Answer, generation: ApiGeneration, stable: bool) -> bool:
    try:
        content = _json(response)
    except JsonError:
        return False
    if stable:
        return content.get("errcode") == "M_CONCURRENT_WRITE"
    if generation is ApiGeneration.V3:
        return content.get("errcode") == "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"
    return content.get("errcode") == "M_UNKNOWN" and content.get("org.matrix.msc4108.errcode") == "M_CONCURRENT_WRITE"


def _expect_status(response: Answer, *wanted: int) -> None:
    if response.status_code not in wanted:
        raise ValueError(
            f"HTTP {response.status_code} ({_errcode(response)}), expected {' or '.join(map(str, wanted))}"
        )


def _gone(response: Answer) -> tuple[Status, str]:
    """A read after DELETE must be 404 ``M_NOT_FOUND`` in every generation."""
    _expect_status(response, 404)
    code = _errcode(response)
    return ("pass" if code == "M_NOT_FOUND" else "fail"), f"404 {code}"


def check_server(
    base_url: str,
    generation: ApiGeneration,
    *,
    prefix: str | None = None,
    stable: bool = False,
    expiry: bool = False,
    max_wait_s: float = 330.0,
    other_url: str | None = None,
    rate_limit_probe: int | None = None,
    http: httpx.Client | None = None,
) -> list[Finding]:
    """Exercise the server at ``base_url`` and return one finding per check, in order.

    ``other_url`` is a second instance of the same deployment (the multi-instance checks); ``rate_limit_probe`` is
    how many writes, then creates, to send at most while waiting for a 429 (None: no rate-limit checks).
    """
    own = http is None
    client = http or httpx.Client(timeout=10.0)
    try:
        run = _Run(_Http(client))
        path = prefix or default_prefix(generation)
        endpoint = base_url.rstrip("/") + path
        if generation is ApiGeneration.V1:
            _check_v1(run, endpoint, stable=stable, expiry=expiry, max_wait_s=max_wait_s)
        else:
            _check_json(run, endpoint, generation, stable=stable, expiry=expiry, max_wait_s=max_wait_s)
        if other_url is not None:
            _check_instances(run, _Protocol(run.http, generation, stable), endpoint, other_url.rstrip("/") + path)
        if rate_limit_probe is not None:
            _check_rate_limits(run, _Protocol(run.http, generation, stable), endpoint, rate_limit_probe)
        return run.findings
    finally:
        if own:
            client.close()


# ---------------------------------------------------------------------------------------------------------- v1


def _check_v1(run: _Run, endpoint: str, *, stable: bool, expiry: bool, max_wait_s: float) -> None:
    http = run.http
    gen = ApiGeneration.V1
    s: dict[str, Any] = {}

    def need(*keys: str) -> None:
        for key in keys:
            if key not in s:
                raise _Skip(f"needs an earlier step ({key})")

    def create() -> tuple[Status, str]:
        response = http.post(endpoint, content=b"conformance-1", headers={"content-type": "text/plain"})
        _expect_status(response, 201)
        url = _json(response)["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"'url' is not an absolute URL: {url!r}")
        etag = response.headers.get("etag")
        if etag is None:
            raise ValueError("no ETag header")
        s.update(url=url, etag1=etag)
        missing = [h for h in ("expires", "last-modified") if h not in response.headers]
        problems = []
        if missing:
            problems.append(f"missing required headers: {', '.join(missing)}")
        if "no-store" not in response.headers.get("cache-control", ""):
            problems.append("Cache-Control lacks no-store")
        if response.headers.get("pragma") != "no-cache":
            problems.append("Pragma is not no-cache")
        if problems:
            return "fail", "; ".join(problems)
        return "pass", f"201, url {url}"

    def cors() -> tuple[Status, str]:
        need("url")
        response = http.get(s["url"], headers={"origin": _ORIGIN})
        exposed = response.headers.get("access-control-expose-headers", "").lower()
        origin = response.headers.get("access-control-allow-origin")
        if "etag" not in exposed or origin not in ("*", _ORIGIN):
            return (
                "fail",
                f"a browser client cannot read the ETag (Allow-Origin {origin!r}, Expose-Headers {exposed!r})",
            )
        # POST with text/plain is a simple request; the rest needs a pre-flight.
        problems = _preflights(http, ((s["url"], "GET", ["if-none-match"]), (s["url"], "PUT", ["if-match"]),
                                      (s["url"], "DELETE", [])))  # fmt: skip
        if problems:
            return "fail", "; ".join(problems)
        return "pass", "Allow-Origin, ETag exposed; pre-flights for GET (If-None-Match), PUT (If-Match), DELETE"

    def read() -> tuple[Status, str]:
        need("url")
        response = http.get(s["url"])
        _expect_status(response, 200)
        kind = response.headers.get("content-type")
        if response.content != b"conformance-1":
            return "fail", "body is not the payload that was posted"
        if response.headers.get("etag") != s["etag1"]:
            return "fail", "ETag differs from the one the POST returned"
        if kind != "text/plain":
            status: Status = "warn" if media_type(kind) == "text/plain" else "fail"
            return status, f"Content-Type is {kind!r}: matrix-js-sdk only reads a payload under exactly 'text/plain'"
        return "pass", "200 text/plain, same ETag"

    def conditional() -> tuple[Status, str]:
        need("url")
        response = http.get(s["url"], headers={"if-none-match": s["etag1"]})
        _expect_status(response, 304)
        return "pass", "304 for If-None-Match with the current ETag"

    def write() -> tuple[Status, str]:
        need("url")
        response = http.put(
            s["url"], content=b"conformance-2", headers={"content-type": "text/plain", "if-match": s["etag1"]}
        )
        _expect_status(response, 202)
        etag = response.headers.get("etag")
        if etag is None or etag == s["etag1"]:
            return "fail", "the write did not return a new ETag"
        s["etag2"] = etag
        return "pass", "202 with a new ETag"

    def identical() -> tuple[Status, str]:
        need("etag2")
        response = http.put(
            s["url"], content=b"conformance-2", headers={"content-type": "text/plain", "if-match": s["etag2"]}
        )
        _expect_status(response, 202)
        etag = response.headers.get("etag")
        if etag is None:
            raise ValueError("no ETag header")
        s["etag3"] = etag
        if etag == s["etag2"]:
            return "warn", (
                "writing identical data gave the same ETag: the ETag is derived from the body, so a client cannot "
                "tell a peer's identical write from its own (the texts ask for a value unique per write)"
            )
        return "pass", "identical data, new ETag"

    def stale() -> tuple[Status, str]:
        need("etag3")
        response = http.put(
            s["url"], content=b"conformance-3", headers={"content-type": "text/plain", "if-match": s["etag1"]}
        )
        _expect_status(response, 412)
        if not _concurrent_errcode_ok(response, gen, stable):
            return "fail", f"412 but the errcode is wrong: {response.text[:200]}"
        return "pass", "412 M_CONCURRENT_WRITE"

    def missing_precondition() -> tuple[Status, str]:
        need("url")
        response = http.put(s["url"], content=b"conformance-4", headers={"content-type": "text/plain"})
        _expect_status(response, 400)
        code = _errcode(response)
        return ("pass" if code == "M_MISSING_PARAM" else "warn"), f"400 {code}"

    def limit() -> tuple[Status, str]:
        need("etag3")
        big = http.put(
            s["url"],
            content=b"x" * (MAX_PAYLOAD_BYTES + 1),
            headers={"content-type": "text/plain", "if-match": s["etag3"]},
        )
        _expect_status(big, 413)
        exact = http.put(
            s["url"], content=b"x" * MAX_PAYLOAD_BYTES, headers={"content-type": "text/plain", "if-match": s["etag3"]}
        )
        _expect_status(exact, 202)
        return ("pass" if _errcode(big) == "M_TOO_LARGE" else "warn"), f"4097 bytes: 413 {_errcode(big)}; 4096: 202"

    def delete() -> tuple[Status, str]:
        need("url")
        response = http.delete(s["url"])
        _expect_status(response, 204)
        s["deleted"] = True
        return "pass", "204"

    def after_delete() -> tuple[Status, str]:
        need("deleted")
        return _gone(http.get(s["url"]))

    def expires() -> tuple[Status, str]:
        if not expiry:
            raise _Skip("not requested (--expiry)")
        created = http.post(endpoint, content=b"expiry", headers={"content-type": "text/plain"})
        _expect_status(created, 201)
        url = _json(created)["url"]
        when = parsedate_to_datetime(created.headers["expires"]).timestamp()
        wait = when - time.time() + 1.5
        if wait > max_wait_s:
            raise _Skip(f"expiry is {wait:.0f} s away, beyond --max-wait")
        time.sleep(max(0.0, wait))
        response = http.get(url)
        _expect_status(response, 404)
        return "pass", f"404 after the Expires time ({wait:.0f} s)"

    for name, body in (
        ("create", create),
        ("cors", cors),
        ("read", read),
        ("conditional read", conditional),
        ("write", write),
        ("token changes on identical write", identical),
        ("stale write", stale),
        ("missing If-Match", missing_precondition),
        ("payload limit", limit),
        ("delete", delete),
        ("read after delete", after_delete),
        ("expiry", expires),
    ):
        run.step(name, body)


# ------------------------------------------------------------------------------------------------------- v2/v3


def _check_json(run: _Run, endpoint: str, gen: ApiGeneration, *, stable: bool, expiry: bool, max_wait_s: float) -> None:
    http = run.http
    v3 = gen is ApiGeneration.V3
    expiry_field = "expires_in_ms" if v3 else "expires_ts"
    s: dict[str, Any] = {}

    def need(*keys: str) -> None:
        for key in keys:
            if key not in s:
                raise _Skip(f"needs an earlier step ({key})")

    def put(token: str, data: str) -> Answer:
        return http.put(s["url"], json={"sequence_token": token, "data": data})

    def discovery() -> tuple[Status, str]:
        if not v3:
            raise _Skip("v3 only")
        response = http.get(endpoint)
        _expect_status(response, 200)
        content = _json(response)
        if not isinstance(content.get("create_available"), bool):
            return "fail", f"expected {{'create_available': bool}}, got {response.text[:200]}"
        s["create_available"] = content["create_available"]
        return "pass", f"create_available: {content['create_available']}"

    def create() -> tuple[Status, str]:
        response = http.post(endpoint, json={"data": "conformance-1"})
        s["post"] = (response.status_code, _errcode(response))
        if s.get("create_available") is False and response.status_code == 403:
            raise _Skip("creating is unavailable, as announced: nothing further to check")
        _expect_status(response, 200)
        content = _json(response)
        rid, token, ttl = content["id"], content["sequence_token"], content[expiry_field]
        if not isinstance(rid, str) or not is_opaque_id(rid):
            return "fail", f"id {rid!r} does not follow the opaque identifier grammar"
        s.update(url=f"{endpoint}/{rid}", token1=token)
        problems = []
        if not isinstance(token, str) or not is_opaque_id(token):
            problems.append(f"sequence_token {token!r} does not follow the opaque identifier grammar")
        if not isinstance(ttl, int):
            return "fail", f"{expiry_field} is not an integer"
        seconds = ttl / 1000 if v3 else (ttl - time.time() * 1000) / 1000
        s["ttl_s"] = seconds
        if problems:
            return "fail", "; ".join(problems)
        if not 110 <= seconds <= 310:
            return "warn", f"session lives {seconds:.0f} s; the texts ask for 120-300 s"
        return "pass", f"200, id {rid}, expires in {seconds:.0f} s"

    def availability() -> tuple[Status, str]:
        if not v3:
            raise _Skip("v3 only")
        need("create_available", "post")
        announced, (status, errcode) = s["create_available"], s["post"]
        if announced and status == 200:
            return "pass", "announced available, and POST created a session"
        if not announced and status == 403:
            return ("pass" if errcode == "M_FORBIDDEN" else "warn"), f"announced unavailable, and POST: 403 {errcode}"
        if not announced:
            return "fail", f"discovery announces create_available false, yet POST answered {status} ({errcode})"
        return "fail", f"discovery announces create_available true, yet POST answered {status} ({errcode})"

    def cors() -> tuple[Status, str]:
        need("url")
        problems = []
        answers = [("GET", s["url"]), ("POST", endpoint)] + ([("GET", endpoint)] if v3 else [])  # v3: discovery
        for method, url in answers:
            if method == "GET":
                response = http.get(url, headers={"origin": _ORIGIN})
            else:
                response = http.post(url, json={"data": "cors"}, headers={"origin": _ORIGIN})
                if response.status_code == 200:
                    with contextlib.suppress(JsonError, KeyError, TypeError):
                        http.delete(f"{endpoint}/{_json(response)['id']}")
            origin = response.headers.get("access-control-allow-origin")
            if origin not in ("*", _ORIGIN):
                problems.append(f"{method} answer: Allow-Origin {origin!r}")
        problems += _preflights(http, ((endpoint, "POST", ["content-type"]), (s["url"], "PUT", ["content-type"]),
                                       (s["url"], "DELETE", [])))  # fmt: skip
        if problems:
            return "fail", "; ".join(problems)
        return "pass", "Allow-Origin on answers; pre-flights for POST, PUT (Content-Type: application/json), DELETE"

    def read() -> tuple[Status, str]:
        need("url")
        response = http.get(s["url"])
        _expect_status(response, 200)
        content = _json(response)
        if content.get("data") != "conformance-1" or content.get("sequence_token") != s["token1"]:
            return "fail", f"expected the posted data and token, got {response.text[:200]}"
        if not isinstance(content.get(expiry_field), int):
            return "fail", f"{expiry_field} missing"
        return "pass", "200, same data and token"

    def write() -> tuple[Status, str]:
        need("url")
        response = put(s["token1"], "conformance-2")
        _expect_status(response, 200)
        token = _json(response)["sequence_token"]
        if token == s["token1"]:
            return "fail", "the write did not return a new sequence_token"
        s["token2"] = token
        return "pass", "200 with a new sequence_token"

    def identical() -> tuple[Status, str]:
        need("token2")
        response = put(s["token2"], "conformance-2")
        _expect_status(response, 200)
        token = _json(response)["sequence_token"]
        s["token3"] = token
        if token == s["token2"]:
            return "fail", "writing identical data kept the sequence_token: it must change on every write"
        return "pass", "identical data, new sequence_token"

    def stale() -> tuple[Status, str]:
        need("token3")
        response = put(s["token1"], "conformance-3")
        _expect_status(response, 409)
        if not _concurrent_errcode_ok(response, gen, stable):
            return "fail", f"409 but the errcode is wrong: {response.text[:200]}"
        return "pass", "409 " + _errcode(response)

    def retry() -> tuple[Status, str]:
        if not v3:
            raise _Skip("v3 only (v2 has no idempotent retry)")
        need("token3")
        response = put(s["token2"], "conformance-2")  # the identical request again, its response "lost"
        _expect_status(response, 200)
        token = _json(response)["sequence_token"]
        current = _json(http.get(s["url"]))["sequence_token"]
        if token != s["token3"] or current != s["token3"]:
            return "fail", "the retry was applied again or answered with another token"
        return "pass", "200 with the current token, nothing rewritten"

    def limit() -> tuple[Status, str]:
        need("token3")
        big = put(s["token3"], "x" * (MAX_PAYLOAD_BYTES + 1))
        _expect_status(big, 413)
        exact = put(s["token3"], "x" * MAX_PAYLOAD_BYTES)
        _expect_status(exact, 200)
        return ("pass" if _errcode(big) == "M_TOO_LARGE" else "warn"), f"4097 bytes: 413 {_errcode(big)}; 4096: 200"

    def navigation() -> tuple[Status, str]:
        if not v3:
            raise _Skip("v3 only")
        need("url")
        headers = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-user": "?1"}
        response = http.get(s["url"], headers=headers)
        if response.status_code != 403:
            return "warn", f"a top-level navigation got HTTP {response.status_code}, not 403 (SHOULD)"
        return "pass", "403 " + _errcode(response)

    def delete() -> tuple[Status, str]:
        need("url")
        response = http.delete(s["url"])
        _expect_status(response, 200)
        s["deleted"] = True
        try:
            content = _json(response)
        except JsonError:
            return "warn", f"200 but the body is {response.text[:50]} rather than {{}}: Matrix bodies are JSON objects"
        if content != {}:
            return "warn", f"200 but the body is {response.text[:50]} rather than {{}}: Matrix bodies are JSON objects"
        return "pass", "200 {}"

    def after_delete() -> tuple[Status, str]:
        need("deleted")
        return _gone(http.get(s["url"]))

    def expires() -> tuple[Status, str]:
        if not expiry:
            raise _Skip("not requested (--expiry)")
        need("ttl_s")
        created = http.post(endpoint, json={"data": "expiry"})
        _expect_status(created, 200)
        content = _json(created)
        wait = (content[expiry_field] / 1000 if v3 else content[expiry_field] / 1000 - time.time()) + 1.5
        if wait > max_wait_s:
            raise _Skip(f"expiry is {wait:.0f} s away, beyond --max-wait")
        time.sleep(max(0.0, wait))
        response = http.get(urljoin(endpoint + "/", content["id"]))
        _expect_status(response, 404)
        return "pass", f"404 after {wait:.0f} s"

    for name, body in (
        ("discovery", discovery),
        ("create", create),
        ("create_available matches POST", availability),
        ("cors", cors),
        ("read", read),
        ("write", write),
        ("token changes on identical write", identical),
        ("stale write", stale),
        ("idempotent retry", retry),
        ("payload limit", limit),
        ("navigation refused", navigation),
        ("delete", delete),
        ("read after delete", after_delete),
        ("expiry", expires),
    ):
        run.step(name, body)


# ------------------------------------------------------------------------------------------------------- CORS


def _header_tokens(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


def _preflights(http: _Http, requests: tuple[tuple[str, str, list[str]], ...]) -> list[str]:
    """What a browser's pre-flight (OPTIONS with Access-Control-Request-*) finds wrong for each request."""
    problems = []
    for url, method, headers in requests:
        asked = {"origin": _ORIGIN, "access-control-request-method": method}
        if headers:
            asked["access-control-request-headers"] = ",".join(headers)
        response = http.options(url, headers=asked)
        where = f"pre-flight of {method}"
        if response.status_code not in (200, 204):
            problems.append(f"{where}: HTTP {response.status_code}")
            continue
        origin = response.headers.get("access-control-allow-origin")
        if origin not in ("*", _ORIGIN):
            problems.append(f"{where}: Allow-Origin {origin!r}")
        methods = _header_tokens(response.headers.get("access-control-allow-methods"))
        # GET, HEAD and POST are CORS-safelisted methods: a browser does not need them listed.
        if method not in ("GET", "HEAD", "POST") and method.lower() not in methods and "*" not in methods:
            problems.append(f"{where}: {method} not in Allow-Methods")
        allowed = _header_tokens(response.headers.get("access-control-allow-headers"))
        missing = [name for name in headers if name not in allowed and "*" not in allowed]
        if missing:
            problems.append(f"{where}: {', '.join(missing)} not in Allow-Headers")
    return problems


# ----------------------------------------------------------------------------------- several instances, limits


class _Protocol:
    """The few requests the multi-instance and rate-limit checks make, for one generation."""

    def __init__(self, http: _Http, generation: ApiGeneration, stable: bool) -> None:
        self.http = http
        self.generation = generation
        self.stable = stable
        self.v1 = generation is ApiGeneration.V1
        self.written = 202 if self.v1 else 200
        self.conflict = 412 if self.v1 else 409

    def post(self, endpoint: str, data: str) -> Answer:
        if self.v1:
            return self.http.post(endpoint, content=data.encode(), headers={"content-type": "text/plain"})
        return self.http.post(endpoint, json={"data": data})

    def created(self, endpoint: str, answer: Answer) -> tuple[str, str]:
        """The session path and token of a successful create; ValueError otherwise."""
        _expect_status(answer, 201 if self.v1 else 200)
        content = _json(answer)
        if self.v1:
            etag = answer.headers.get("etag")
            if not isinstance(content["url"], str) or etag is None:
                raise ValueError("no session URL or no ETag")
            return urlsplit(content["url"]).path, etag
        if not isinstance(content["id"], str) or not isinstance(content["sequence_token"], str):
            raise ValueError("no id or no sequence_token")
        return f"{urlsplit(endpoint).path}/{content['id']}", content["sequence_token"]

    def create(self, endpoint: str, data: str) -> tuple[str, str]:
        return self.created(endpoint, self.post(endpoint, data))

    def read(self, url: str) -> tuple[str, str]:
        answer = self.http.get(url)
        _expect_status(answer, 200)
        if self.v1:
            etag = answer.headers.get("etag")
            if etag is None:
                raise ValueError("no ETag")
            return answer.text, etag
        content = _json(answer)
        return str(content["data"]), str(content["sequence_token"])

    def write(self, url: str, token: str, data: str) -> Answer:
        if self.v1:
            return self.http.put(url, content=data.encode(), headers={"content-type": "text/plain", "if-match": token})
        return self.http.put(url, json={"sequence_token": token, "data": data})

    def new_token(self, answer: Answer) -> str:
        if self.v1:
            etag = answer.headers.get("etag")
            if etag is None:
                raise ValueError("no ETag")
            return str(etag)
        return str(_json(answer)["sequence_token"])


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _check_instances(run: _Run, proto: _Protocol, endpoint: str, other_endpoint: str) -> None:
    """One deployment, two instances: what one did, the other sees; concurrent writes over both have one winner."""
    here, there = _origin(endpoint), _origin(other_endpoint)
    s: dict[str, Any] = {}

    def need(*keys: str) -> None:
        for key in keys:
            if key not in s:
                raise _Skip(f"needs an earlier step ({key})")

    def created_here_read_there() -> tuple[Status, str]:
        path, token = proto.create(endpoint, "instances-1")
        s.update(path=path, token=token)
        data, seen = proto.read(there + path)
        if (data, seen) != ("instances-1", token):
            return "fail", "the other instance does not return the payload and token just created"
        return "pass", "created on the first, read on the second"

    def written_there_read_here() -> tuple[Status, str]:
        need("path")
        answer = proto.write(there + s["path"], s["token"], "instances-2")
        _expect_status(answer, proto.written)
        token = proto.new_token(answer)
        s.update(old=s["token"], token=token)
        if proto.read(here + s["path"]) != ("instances-2", token):
            return "fail", "the first instance does not return what the second just wrote"
        return "pass", "written on the second, read on the first"

    def stale_here() -> tuple[Status, str]:
        need("old")
        answer = proto.write(here + s["path"], s["old"], "instances-3")
        _expect_status(answer, proto.conflict)
        if not _concurrent_errcode_ok(answer, proto.generation, proto.stable):
            return "fail", f"{proto.conflict} but the errcode is wrong: {answer.text[:200]}"
        return "pass", f"the first instance refuses the token the second replaced ({proto.conflict})"

    def deleted_there() -> tuple[Status, str]:
        need("path")
        _expect_status(run.http.delete(there + s["path"]), 204 if proto.v1 else 200)
        return _gone(run.http.get(here + s["path"]))

    def one_winner_per_round() -> tuple[Status, str]:
        rounds, writers = 5, 6
        path, token = proto.create(endpoint, "race")
        try:
            with ThreadPoolExecutor(max_workers=writers) as pool:
                for round_ in range(rounds):
                    urls = [(here, there)[n % 2] + path for n in range(writers)]
                    datas = [f"r{round_}w{n}" for n in range(writers)]
                    answers = list(pool.map(proto.write, urls, [token] * writers, datas))
                    statuses = [answer.status_code for answer in answers]
                    winners = [n for n, status in enumerate(statuses) if status == proto.written]
                    if len(winners) != 1 or statuses.count(proto.conflict) != writers - 1:
                        return "fail", f"round {round_ + 1}: answers {statuses}, expected one {proto.written}"
                    token = proto.new_token(answers[winners[0]])
                    for base in (here, there):
                        if proto.read(base + path) != (datas[winners[0]], token):
                            return "fail", f"round {round_ + 1}: an instance does not show the one winner's write"
        finally:
            with contextlib.suppress(httpx.HTTPError, _AnswerTooLarge):
                run.http.delete(here + path)
        return "pass", f"{rounds} rounds of {writers} concurrent writers over both instances: one winner each"

    for name, body in (
        ("instances: create here, read there", created_here_read_there),
        ("instances: write there, read here", written_there_read_here),
        ("instances: stale write here", stale_here),
        ("instances: delete there", deleted_there),
        ("instances: one winner per round", one_winner_per_round),
    ):
        run.step(name, body)


def _limited(answer: Answer, what: str, count: int) -> tuple[Status, str]:
    content = _json(answer)
    retry = content.get("retry_after_ms")
    if content.get("errcode") != "M_LIMIT_EXCEEDED" or not isinstance(retry, int) or isinstance(retry, bool):
        return "fail", f"429 after {count} {what}, but not M_LIMIT_EXCEEDED with retry_after_ms: {answer.text[:200]}"
    if retry < 0:
        return "fail", f"retry_after_ms is negative ({retry})"
    return "pass", f"429 M_LIMIT_EXCEEDED after {count} {what}, retry_after_ms {retry}"


def _check_rate_limits(run: _Run, proto: _Protocol, endpoint: str, probe: int) -> None:
    """Write, then create, as fast as one client can, up to ``probe`` requests each: a 429 must come, well formed."""
    here = _origin(endpoint)

    def writes() -> tuple[Status, str]:
        path, token = proto.create(endpoint, "limits-0")
        try:
            for count in range(1, probe + 1):
                answer = proto.write(here + path, token, f"limits-{count}")
                if answer.status_code == 429:
                    return _limited(answer, "writes", count - 1)
                _expect_status(answer, proto.written)
                token = proto.new_token(answer)
        finally:
            with contextlib.suppress(httpx.HTTPError, _AnswerTooLarge):
                run.http.delete(here + path)
        return "warn", f"no 429 after {probe} writes from one client: nothing stops one client from flooding"

    def creates() -> tuple[Status, str]:
        paths = []
        try:
            for count in range(1, probe + 1):
                answer = proto.post(endpoint, "limits")
                if answer.status_code == 429:
                    return _limited(answer, "creates", count - 1)
                paths.append(proto.created(endpoint, answer)[0])
        finally:
            for path in paths:
                with contextlib.suppress(httpx.HTTPError, _AnswerTooLarge):
                    run.http.delete(here + path)
        return "warn", f"no 429 after {probe} creates from one client: one client can fill the server"

    run.step("rate limit: writes", writes)
    run.step("rate limit: creates", creates)


def render_table(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = [f"{'check'.ljust(width)}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{f.check.ljust(width)}  {f.status.upper().ljust(6)}  {f.detail}" for f in findings]
    return "\n".join(lines)
