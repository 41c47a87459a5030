"""A conformance checker for live rendezvous servers (``qrlogin check-server``).

Theory of operation
-------------------
The checker plays a careful client against a real server and compares every answer with the texts
(docs/protocol.md §6; MSC4108 2024 for v1, the seed-era MSC4108 for v2, MSC4388 for v3). It runs one scripted session
per generation: create, read, conditional read (v1), write, a write of identical data (the token must still
change), a stale write, an idempotent retry (v3), the size limit, a navigation-style GET (v3), delete, read after
delete, and optionally expiry. Each step yields a :class:`Finding`:

* ``fail``: a MUST of the text (or a behaviour deployed clients depend on) is broken;
* ``warn``: a SHOULD is not met, or the answer is legal but unusual (Synapse's v1 ETag is a hash of the body, so
  identical payloads get identical ETags; its v3 ``DELETE`` answers ``[]`` instead of ``{}``);
* ``pass`` and ``skip``.

Steps that need an earlier step's result are skipped when it failed, so one fault is reported once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin

import httpx

from ..rendezvous._http import MAX_PAYLOAD_BYTES, ApiGeneration, is_opaque_id, media_type
from ..rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX

__all__ = ["Finding", "check_server", "default_prefix", "render_table"]

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


class _Run:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.findings: list[Finding] = []

    def record(self, check: str, status: Status, detail: str = "") -> None:
        self.findings.append(Finding(check=check, status=status, detail=detail))

    def step(self, check: str, body: Callable[[], tuple[Status, str]]) -> bool:
        try:
            status, detail = body()
        except _Skip as exc:
            status, detail = "skip", str(exc)
        except httpx.HTTPError as exc:
            status, detail = "fail", f"request failed: {type(exc).__name__}: {exc}"
        except (ValueError, KeyError, TypeError) as exc:
            status, detail = "fail", f"unexpected answer: {type(exc).__name__}: {exc}"
        self.record(check, status, detail)
        return status in ("pass", "warn")


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content)


def _errcode(response: httpx.Response) -> str:
    try:
        content = _json(response)
    except ValueError:
        return "(no JSON body)"
    if not isinstance(content, dict):
        return "(not a JSON object)"
    return str(content.get("errcode"))


def _concurrent_errcode_ok(response: httpx.Response, generation: ApiGeneration, stable: bool) -> bool:
    try:
        content = _json(response)
    except ValueError:
        return False
    if not isinstance(content, dict):
        return False
    if stable:
        return content.get("errcode") == "M_CONCURRENT_WRITE"
    if generation is ApiGeneration.V3:
        return content.get("errcode") == "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"
    return content.get("errcode") == "M_UNKNOWN" and content.get("org.matrix.msc4108.errcode") == "M_CONCURRENT_WRITE"


def _expect_status(response: httpx.Response, *wanted: int) -> None:
    if response.status_code not in wanted:
        raise ValueError(
            f"HTTP {response.status_code} ({_errcode(response)}), expected {' or '.join(map(str, wanted))}"
        )


def _gone(response: httpx.Response) -> tuple[Status, str]:
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
    http: httpx.Client | None = None,
) -> list[Finding]:
    """Exercise the server at ``base_url`` and return one finding per check, in order."""
    own = http is None
    client = http or httpx.Client(timeout=10.0)
    try:
        run = _Run(client)
        endpoint = base_url.rstrip("/") + (prefix or default_prefix(generation))
        if generation is ApiGeneration.V1:
            _check_v1(run, endpoint, stable=stable, expiry=expiry, max_wait_s=max_wait_s)
        else:
            _check_json(run, endpoint, generation, stable=stable, expiry=expiry, max_wait_s=max_wait_s)
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
        response = http.get(s["url"], headers={"origin": "https://client.example"})
        exposed = response.headers.get("access-control-expose-headers", "").lower()
        origin = response.headers.get("access-control-allow-origin")
        if "etag" not in exposed or origin != "*":
            return (
                "fail",
                f"a browser client cannot read the ETag (Allow-Origin {origin!r}, Expose-Headers {exposed!r})",
            )
        return "pass", "Allow-Origin *, ETag exposed"

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

    def put(token: str, data: str) -> httpx.Response:
        return http.put(s["url"], json={"sequence_token": token, "data": data})

    def discovery() -> tuple[Status, str]:
        if not v3:
            raise _Skip("v3 only")
        response = http.get(endpoint)
        _expect_status(response, 200)
        content = _json(response)
        if not isinstance(content, dict) or not isinstance(content.get("create_available"), bool):
            return "fail", f"expected {{'create_available': bool}}, got {response.text[:200]}"
        return "pass", f"create_available: {content['create_available']}"

    def create() -> tuple[Status, str]:
        response = http.post(endpoint, json={"data": "conformance-1"})
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
        except ValueError:
            return "warn", f"200 but the body is not JSON: {response.text[:50]!r}"
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


def render_table(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = [f"{'check'.ljust(width)}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{f.check.ljust(width)}  {f.status.upper().ljust(6)}  {f.detail}" for f in findings]
    return "\n".join(lines)
