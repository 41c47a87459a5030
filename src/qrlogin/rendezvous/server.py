"""The rendezvous server: a pure request handler over frozen sessions, and a store it can share.

Theory of operation
-------------------
A rendezvous session (docs/protocol.md §6; MSC4108 "Insecure rendezvous session"; MSC4388 §Insecure rendezvous
session) is one mutable slot: a payload, a token naming its current revision, and an expiry. Two devices take turns
overwriting it with a compare-and-swap on the token. This module answers the HTTP requests of all three API
generations without doing any I/O itself:

* :func:`plan` looks only at the request and the configuration: it finds the mount (which prefix, which
  generations, stable or unstable error codes), rejects oversize bodies *before anything else*, and says whether the
  request creates a session (:class:`Create`), touches one (:class:`Access`) or is answered at once (a
  :class:`HttpResponse`: discovery, CORS pre-flight, unknown path, wrong method).
* :func:`create` and :func:`handle` are the pure core: ``handle(config, session, request, now_ms=..., entropy=...)
  -> (session, response)``. The session is a frozen :class:`Session` or None (absent, expired or deleted); the
  result is the session to store (None deletes it) and the response. Time and randomness are arguments: ids and
  tokens are made from ``entropy`` bytes the caller draws, and expiry compares ``now_ms`` with the stored deadline.
* :class:`RendezvousServer` runs them over a :class:`Store`. A write is a read of the current session, a pure
  step, and an atomic :meth:`Store.compare_and_set` from exactly that session to the new one; if another process got
  there first, the step is recomputed on the fresh value. Because the pure step never has side effects, recomputing
  is always safe, and every successful write has a single linearization point: its compare-and-set.

Token rules: a token is ``<revision>.<base64url(16 random bytes)>``, so it follows the opaque identifier grammar and
changes on every successful write even when the data (or, in a test, the entropy) repeats. v1 serves it as a strong
``ETag`` (unlike Synapse, whose v1 ETag is a hash of the body). v3 additionally accepts a stale token when the data is
byte-for-byte the current payload (an idempotent retry of a PUT whose response was lost) and answers with the current
token without writing anything.
"""

from __future__ import annotations

import base64
import heapq
import hmac
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Protocol

from ..errors import LocalProtocolError
from ..http import HttpRequest, HttpResponse
from ._http import (
    MAX_JSON_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    ApiGeneration,
    MalformedJsonError,
    is_opaque_id,
    json_response,
    media_type,
    parse_json_object,
)

__all__ = [
    "DEFAULT_TTL_MS",
    "MAX_JSON_BODY_BYTES",
    "STABLE_PREFIX",
    "V1_V2_UNSTABLE_PREFIX",
    "V3_UNSTABLE_PREFIX",
    "Access",
    "Create",
    "InMemoryStore",
    "Mount",
    "Prepared",
    "RendezvousServer",
    "ServerConfig",
    "Session",
    "Store",
    "create",
    "default_mounts",
    "handle",
    "plan",
]

STABLE_PREFIX = "/_matrix/client/v1/rendezvous"
V1_V2_UNSTABLE_PREFIX = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
V3_UNSTABLE_PREFIX = "/_matrix/client/unstable/io.element.msc4388/rendezvous"

DEFAULT_TTL_MS = 120_000
ENTROPY_BYTES = 32

_JSON_GENERATIONS = frozenset({ApiGeneration.V2, ApiGeneration.V3})
_CORS_HEADERS = (
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, POST, PUT, DELETE, OPTIONS"),
    (
        "access-control-allow-headers",
        "X-Requested-With, Content-Type, Authorization, If-Match, If-None-Match",
    ),
    ("access-control-expose-headers", "ETag"),
)
_NO_CACHE = (("cache-control", "no-store"), ("pragma", "no-cache"))
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


# --------------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One URL prefix and the generations served under it.

    v1 and one JSON generation may share a prefix: a POST is then dispatched on its ``Content-Type`` (``text/plain``
    is v1, ``application/json`` the JSON generation). v2 and v3 cannot share one: their requests look the same.
    ``stable`` selects the stable error codes (``M_CONCURRENT_WRITE``) over the unstable ones.
    """

    prefix: str
    generations: frozenset[ApiGeneration]
    stable: bool = False

    def __post_init__(self) -> None:
        if not self.generations:
            raise LocalProtocolError("a mount needs at least one generation")
        if len(self.generations & _JSON_GENERATIONS) > 1:
            raise LocalProtocolError("v2 and v3 cannot share a prefix: their requests are indistinguishable")
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise LocalProtocolError("a prefix starts with '/' and does not end with one")

    @property
    def json_generation(self) -> ApiGeneration | None:
        for generation in self.generations & _JSON_GENERATIONS:
            return generation
        return None


def default_mounts(
    generations: Iterable[ApiGeneration] = tuple(ApiGeneration), *, stable: ApiGeneration | None = None
) -> tuple[Mount, ...]:
    """Unstable prefixes for ``generations`` (v1 and v2 share one), plus ``stable`` at the stable prefix."""
    wanted = frozenset(generations)
    mounts = []
    legacy = wanted & {ApiGeneration.V1, ApiGeneration.V2}
    if legacy:
        mounts.append(Mount(prefix=V1_V2_UNSTABLE_PREFIX, generations=legacy))
    if ApiGeneration.V3 in wanted:
        mounts.append(Mount(prefix=V3_UNSTABLE_PREFIX, generations=frozenset({ApiGeneration.V3})))
    if stable is not None:
        mounts.append(Mount(prefix=STABLE_PREFIX, generations=frozenset({stable}), stable=True))
    return tuple(mounts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """What the server serves and its limits.

    ``ttl_ms`` is fixed at creation and not extended by writes. The seed text asks for 120-300 s; shorter values
    are allowed (down to 1 s) for tests of expiry. ``public_base_url`` makes the v1 session URL absolute; without it
    the request's ``Host`` header is used over plain ``http``.
    """

    mounts: tuple[Mount, ...] = field(default_factory=default_mounts)
    ttl_ms: int = DEFAULT_TTL_MS
    max_sessions: int = 100_000
    public_base_url: str | None = None
    create_available: bool = True

    def __post_init__(self) -> None:
        if not 1_000 <= self.ttl_ms <= 300_000:
            raise LocalProtocolError("ttl_ms must be within 1 s .. 300 s (the texts recommend 120-300 s)")
        if self.max_sessions < 1:
            raise LocalProtocolError("max_sessions must be positive")
        prefixes = [mount.prefix for mount in self.mounts]
        if len(set(prefixes)) != len(prefixes):
            raise LocalProtocolError("two mounts share a prefix")


# ------------------------------------------------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One rendezvous slot. ``revision`` counts successful writes; ``token`` names the current revision.

    A server holds one of these per live session, so it is kept small: the token is not stored as text but as its
    two parts, the revision and the 16 random bytes drawn for it (``nonce``, as an int: 48 bytes of heap rather than
    80 for the string), and spelled out when asked for. ``generation`` and ``prefix`` point at shared objects.
    """

    id: str
    generation: ApiGeneration
    prefix: str
    data: bytes = field(repr=False)
    revision: int
    nonce: int = field(repr=False)
    modified_ms: int
    expires_ms: int

    @property
    def token(self) -> str:
        return _token(self.revision, self.nonce)

    def is_live(self, now_ms: int) -> bool:
        return now_ms < self.expires_ms


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _nonce(entropy: bytes) -> int:
    return int.from_bytes(entropy[:16], "big")


def _token(revision: int, nonce: int) -> str:
    return f"{revision}.{_b64url(nonce.to_bytes(16, 'big'))}"


def _check_entropy(entropy: bytes) -> None:
    if len(entropy) < ENTROPY_BYTES:
        raise LocalProtocolError(f"entropy must be at least {ENTROPY_BYTES} bytes")


# ------------------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    """The request creates a session of ``generation`` under ``mount``."""

    mount: Mount
    generation: ApiGeneration


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """The request reads, writes or deletes session ``session_id`` under ``mount``."""

    mount: Mount
    session_id: str


def _error(
    status: int,
    errcode: str,
    message: str,
    *,
    generation: ApiGeneration | None,
    stable: bool,
    extra: Iterable[tuple[str, str]] = (),
) -> HttpResponse:
    body: dict[str, object] = {"errcode": errcode, "error": message}
    if errcode == "M_CONCURRENT_WRITE" and not stable:
        # New errcodes travel as M_UNKNOWN while unstable (MSC4108 §Unstable prefix); MSC4388 names its own.
        if generation is ApiGeneration.V3:
            body["errcode"] = "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"
        else:
            body["errcode"] = "M_UNKNOWN"
            body["org.matrix.msc4108.errcode"] = "M_CONCURRENT_WRITE"
    return json_response(status, body, (*_CORS_HEADERS, *_NO_CACHE, *extra))


def _unrecognized(status: int = 404, *, allow: str | None = None) -> HttpResponse:
    extra = () if allow is None else (("allow", allow),)  # a 405 names the methods the resource has (RFC 9110 §15.5.6)
    return _error(status, "M_UNRECOGNIZED", "Unrecognized request", generation=None, stable=True, extra=extra)


def _split_target(target: str) -> str:
    return target.split("?", 1)[0]


def plan(config: ServerConfig, request: HttpRequest) -> HttpResponse | Create | Access:
    """Classify ``request``; answer at once whatever needs no session."""
    path = _split_target(request.target)
    for mount in config.mounts:
        if path == mount.prefix:
            return _plan_collection(config, mount, request)
        if path.startswith(mount.prefix + "/"):
            session_id = path[len(mount.prefix) + 1 :]
            if "/" in session_id or not session_id:
                return _unrecognized()
            return _plan_session(mount, session_id, request)
    return _unrecognized()


def _oversize(request: HttpRequest, generation: ApiGeneration | None, stable: bool) -> HttpResponse | None:
    limit = MAX_PAYLOAD_BYTES if generation is ApiGeneration.V1 else MAX_JSON_BODY_BYTES
    if len(request.body) > limit:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=generation, stable=stable)
    return None


def _plan_collection(config: ServerConfig, mount: Mount, request: HttpRequest) -> HttpResponse | Create:
    if request.method == "OPTIONS":
        return HttpResponse(status=204, headers=(*_CORS_HEADERS, *_NO_CACHE))
    if request.method == "GET":
        if ApiGeneration.V3 not in mount.generations:
            return _unrecognized(405, allow="POST, OPTIONS")
        return json_response(200, {"create_available": config.create_available}, (*_CORS_HEADERS, *_NO_CACHE))
    if request.method != "POST":
        return _unrecognized(
            405, allow="GET, POST, OPTIONS" if ApiGeneration.V3 in mount.generations else "POST, OPTIONS"
        )
    # The body limit comes first: nothing about an oversize request is looked at.
    if len(request.body) > MAX_JSON_BODY_BYTES:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=None, stable=mount.stable)
    kind = media_type(request.header("content-type"))
    json_generation = mount.json_generation
    if ApiGeneration.V1 in mount.generations and kind != "application/json":
        # Anything that is not JSON here is (or claims to be) v1, whose body limit is the payload limit, and it
        # comes before the content-type checks.
        oversize = _oversize(request, ApiGeneration.V1, mount.stable)
        if oversize is not None:
            return oversize
    if ApiGeneration.V1 in mount.generations and (json_generation is None or kind == "text/plain"):
        if kind is None:
            return _error(
                400,
                "M_MISSING_PARAM",
                "Content-Type is required",
                generation=ApiGeneration.V1,
                stable=mount.stable,
            )
        if kind != "text/plain":
            return _error(
                400,
                "M_INVALID_PARAM",
                "Content-Type must be text/plain",
                generation=ApiGeneration.V1,
                stable=mount.stable,
            )
        return Create(mount=mount, generation=ApiGeneration.V1)
    assert json_generation is not None
    if ApiGeneration.V1 in mount.generations and kind != "application/json":
        # v1 and a JSON generation share this prefix: the content type is the only way to tell them apart.
        if kind is None:
            return _error(400, "M_MISSING_PARAM", "Content-Type is required", generation=None, stable=mount.stable)
        return _error(
            400,
            "M_INVALID_PARAM",
            "Content-Type must be text/plain or application/json",
            generation=None,
            stable=mount.stable,
        )
    return Create(mount=mount, generation=json_generation)


def _plan_session(mount: Mount, session_id: str, request: HttpRequest) -> HttpResponse | Access:
    if request.method == "OPTIONS":
        return HttpResponse(status=204, headers=(*_CORS_HEADERS, *_NO_CACHE))
    if request.method not in ("GET", "PUT", "DELETE"):
        return _unrecognized(405, allow="GET, PUT, DELETE, OPTIONS")
    if len(request.body) > MAX_JSON_BODY_BYTES:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=None, stable=mount.stable)
    return Access(mount=mount, session_id=session_id)


# ------------------------------------------------------------------------------------------------------- the core


def _http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


def _v1_headers(session: Session) -> tuple[tuple[str, str], ...]:
    return (
        ("etag", f'"{session.token}"'),
        ("expires", _http_date(session.expires_ms)),
        ("last-modified", _http_date(session.modified_ms)),
        *_CORS_HEADERS,
        *_NO_CACHE,
    )


def _json_ok(body: dict[str, object]) -> HttpResponse:
    return json_response(200, body, (*_CORS_HEADERS, *_NO_CACHE))


def _expiry_field(session: Session, now_ms: int) -> dict[str, object]:
    if session.generation is ApiGeneration.V2:
        return {"expires_ts": session.expires_ms}
    return {"expires_in_ms": max(0, session.expires_ms - now_ms)}


def _read_json_payload(
    body: bytes, *, need_token: bool, generation: ApiGeneration, stable: bool
) -> tuple[bytes, str | None] | HttpResponse:
    """``(data as UTF-8, sequence_token)`` from a POST/PUT body, or the error response."""
    try:
        content = parse_json_object(body)
    except MalformedJsonError as exc:
        return _error(400, "M_NOT_JSON", str(exc), generation=generation, stable=stable)
    names = ("sequence_token", "data") if need_token else ("data",)
    for name in names:
        if name not in content:
            return _error(400, "M_MISSING_PARAM", f"Missing '{name}'", generation=generation, stable=stable)
        if not isinstance(content[name], str):
            return _error(400, "M_INVALID_PARAM", f"'{name}' must be a string", generation=generation, stable=stable)
    try:
        data = content["data"].encode("utf-8")
    except UnicodeEncodeError:
        return _error(400, "M_INVALID_PARAM", "'data' is not valid Unicode", generation=generation, stable=stable)
    if len(data) > MAX_PAYLOAD_BYTES:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=generation, stable=stable)
    token = content["sequence_token"] if need_token else None
    return data, token


def _base_url(config: ServerConfig, request: HttpRequest) -> str:
    if config.public_base_url is not None:
        return config.public_base_url.rstrip("/")
    host = request.header("host")
    if host is None or _HOST.fullmatch(host) is None:
        host = "localhost"
    return f"http://{host}"


def create(
    config: ServerConfig, step: Create, request: HttpRequest, *, now_ms: int, entropy: bytes
) -> tuple[Session | None, HttpResponse]:
    """Build a new session from a create request (``plan`` returned ``step``), or the error response."""
    _check_entropy(entropy)
    generation = step.generation
    if generation is ApiGeneration.V1:
        data: bytes = request.body
    else:
        parsed = _read_json_payload(request.body, need_token=False, generation=generation, stable=step.mount.stable)
        if isinstance(parsed, HttpResponse):
            return None, parsed
        data = parsed[0]
    session = Session(
        id=_b64url(entropy[16:32]),
        generation=generation,
        prefix=step.mount.prefix,
        data=data,
        revision=0,
        nonce=_nonce(entropy),
        modified_ms=now_ms,
        expires_ms=now_ms + config.ttl_ms,
    )
    if generation is ApiGeneration.V1:
        url = f"{_base_url(config, request)}{step.mount.prefix}/{session.id}"
        return session, json_response(201, {"url": url}, _v1_headers(session))
    return session, _json_ok({"id": session.id, "sequence_token": session.token, **_expiry_field(session, now_ms)})


def capacity_error(config: ServerConfig, step: Create) -> HttpResponse:
    """The answer when the store is full: 429, with a message that says why."""
    errcode = "M_UNKNOWN" if step.generation is ApiGeneration.V1 else "M_LIMIT_EXCEEDED"
    return _error(
        429,
        errcode,
        f"Rendezvous capacity reached ({config.max_sessions} live sessions); retry later",
        generation=step.generation,
        stable=step.mount.stable,
        extra=(("retry-after", "1"),),
    )


def _etags(header: str) -> list[str]:
    return [item.strip().removeprefix("W/") for item in header.split(",") if item.strip()]


def _same_token(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _navigation(request: HttpRequest) -> bool:
    """Fetch metadata of a top-level browser navigation (MSC4388 §GET: unsafe content)."""
    dest = request.header("sec-fetch-dest")
    return (
        (dest is not None and dest != "empty")
        or request.header("sec-fetch-mode") == "navigate"
        or request.header("sec-fetch-user") == "?1"
        or request.header("sec-fetch-site") == "none"
    )


def handle(
    config: ServerConfig,
    step: Access,
    session: Session | None,
    request: HttpRequest,
    *,
    now_ms: int,
    entropy: bytes,
) -> tuple[Session | None, HttpResponse]:
    """The pure core: answer a GET/PUT/DELETE on ``session`` (None: never existed, or deleted).

    Returns the session to store afterwards (the same object when nothing changed, None to delete it).
    """
    _check_entropy(entropy)
    mount = step.mount
    stored = session
    if session is not None and session.prefix != mount.prefix:
        session = None  # a session lives under the prefix (and generation) that created it, and nowhere else
    generation = session.generation if session is not None else None
    looks_v1 = generation is ApiGeneration.V1 or (
        generation is None and media_type(request.header("content-type")) == "text/plain"
    )
    if looks_v1 and len(request.body) > MAX_PAYLOAD_BYTES:
        # The limit comes before the session lookup, as it does in plan().
        return stored, _error(413, "M_TOO_LARGE", "Payload too large", generation=ApiGeneration.V1, stable=mount.stable)
    if generation is ApiGeneration.V3 and request.method == "GET" and _navigation(request):
        return stored, _error(
            403,
            "M_FORBIDDEN",
            "Top-level navigation is not allowed",
            generation=generation,
            stable=mount.stable,
        )
    if session is None or not session.is_live(now_ms):
        # An expired session is dropped as soon as anyone touches it; another mount's session is left alone.
        return (stored if session is None else None), _error(
            404, "M_NOT_FOUND", "Rendezvous session not found", generation=generation, stable=mount.stable
        )
    if session.generation is ApiGeneration.V1:
        return _handle_v1(session, request, mount, now_ms=now_ms, entropy=entropy)
    return _handle_json(session, request, mount, now_ms=now_ms, entropy=entropy)


def _handle_v1(
    session: Session, request: HttpRequest, mount: Mount, *, now_ms: int, entropy: bytes
) -> tuple[Session | None, HttpResponse]:
    stable = mount.stable
    gen = ApiGeneration.V1
    if request.method == "GET":
        condition = request.header("if-none-match")
        if condition is not None:
            tags = _etags(condition)
            if "*" in tags or f'"{session.token}"' in tags:
                return session, HttpResponse(status=304, headers=_v1_headers(session))
        return session, HttpResponse(
            status=200, headers=(("content-type", "text/plain"), *_v1_headers(session)), body=session.data
        )
    if request.method == "DELETE":
        return None, HttpResponse(status=204, headers=(*_CORS_HEADERS, *_NO_CACHE))
    kind = media_type(request.header("content-type"))
    if kind is None:
        return session, _error(400, "M_MISSING_PARAM", "Content-Type is required", generation=gen, stable=stable)
    if kind != "text/plain":
        return session, _error(400, "M_INVALID_PARAM", "Content-Type must be text/plain", generation=gen, stable=stable)
    condition = request.header("if-match")
    if condition is None:
        return session, _error(400, "M_MISSING_PARAM", "If-Match is required", generation=gen, stable=stable)
    condition = condition.strip()
    # Only strong, single-valued ETags are accepted (MSC4108 2024 §The send mechanism).
    if len(condition) < 3 or condition[0] != '"' or condition[-1] != '"' or not is_opaque_id(condition[1:-1]):
        return session, _error(
            400, "M_INVALID_PARAM", "If-Match must be one strong ETag", generation=gen, stable=stable
        )
    if not _same_token(condition[1:-1], session.token):
        return session, _error(
            412,
            "M_CONCURRENT_WRITE",
            "ETag does not match",
            generation=gen,
            stable=stable,
            extra=_v1_headers(session)[:3],
        )
    updated = _advance(session, request.body, now_ms=now_ms, entropy=entropy)
    return updated, HttpResponse(status=202, headers=_v1_headers(updated))


def _advance(session: Session, data: bytes, *, now_ms: int, entropy: bytes) -> Session:
    revision = session.revision + 1
    return replace(session, data=data, revision=revision, nonce=_nonce(entropy), modified_ms=now_ms)


def _handle_json(
    session: Session, request: HttpRequest, mount: Mount, *, now_ms: int, entropy: bytes
) -> tuple[Session | None, HttpResponse]:
    gen = session.generation
    if request.method == "GET":
        return session, _json_ok(
            {
                "data": session.data.decode("utf-8"),
                "sequence_token": session.token,
                **_expiry_field(session, now_ms),
            }
        )
    if request.method == "DELETE":
        return None, _json_ok({})
    parsed = _read_json_payload(request.body, need_token=True, generation=gen, stable=mount.stable)
    if isinstance(parsed, HttpResponse):
        return session, parsed
    data, token = parsed
    assert token is not None
    if _same_token(token, session.token):
        updated = _advance(session, data, now_ms=now_ms, entropy=entropy)
        return updated, _json_ok({"sequence_token": updated.token})
    if gen is ApiGeneration.V3 and hmac.compare_digest(data, session.data):
        # Idempotent retry (MSC4388 §The send mechanism): acknowledge again, write nothing, keep the token.
        return session, _json_ok({"sequence_token": session.token})
    return session, _error(
        409, "M_CONCURRENT_WRITE", "sequence_token does not match", generation=gen, stable=mount.stable
    )


# ---------------------------------------------------------------------------------------------------------- store


class Store(Protocol):
    """Where sessions live. Several server processes may share one store; its two writes are atomic."""

    def get(self, session_id: str) -> Session | None:
        """The stored session (possibly expired), or None."""
        ...

    def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        """Add a new session unless ``capacity`` live sessions exist already (expired ones do not count)."""
        ...

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        """Atomically replace ``expected`` by ``new`` (None deletes); False if the stored value is not ``expected``."""
        ...


class InMemoryStore:
    """A dict behind a lock: the embedded default for ``qrlogin serve``, and the reference for tests.

    Expiry is fixed at creation, so the expired sessions can be found in order without scanning the live ones. A
    server with one ``ttl_ms`` and a clock that does not step back creates sessions in expiry order: those go into
    two parallel queues, of ids and of their ``expires_ms`` (the session's own int object, so an entry costs two
    pointers and allocates nothing). A session that would break the order (a clock stepped back, stores shared by
    servers with different TTLs) goes into a heap of ``(expires_ms, id)`` instead. Purging pops from the front of
    both while the front has expired: O(1) per expired session, O(log n) for the rare heap entry. Entries of
    sessions deleted early stay until their time comes and are then skipped; if they outnumber the live sessions
    the index is rebuilt, so it stays proportional to the live set.
    """

    __slots__ = ("_heap", "_lock", "_queue_expiries", "_queue_ids", "_sessions")

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._queue_ids: deque[str] = deque()
        self._queue_expiries: deque[int] = deque()
        self._heap: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        with self._lock:
            if session.id in self._sessions:
                return False
            if len(self._sessions) >= capacity:
                self._purge(now_ms)
                if len(self._sessions) >= capacity:
                    return False
            self._sessions[session.id] = session
            self._index(session.id, session.expires_ms)
            return True

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        with self._lock:
            if self._sessions.get(session_id) is not expected:
                return False
            if new is None:
                self._sessions.pop(session_id, None)
            else:
                if expected is None or new.expires_ms != expected.expires_ms:
                    self._index(session_id, new.expires_ms)
                self._sessions[session_id] = new
            return True

    def purge_expired(self, now_ms: int) -> int:
        """Drop every expired session; returns how many went."""
        with self._lock:
            return self._purge(now_ms)

    def _index(self, session_id: str, expires_ms: int) -> None:
        if not self._queue_expiries or self._queue_expiries[-1] <= expires_ms:
            self._queue_ids.append(session_id)
            self._queue_expiries.append(expires_ms)
        else:
            heapq.heappush(self._heap, (expires_ms, session_id))

    def _drop_if_expired(self, session_id: str, now_ms: int) -> int:
        session = self._sessions.get(session_id)
        if session is not None and not session.is_live(now_ms):
            del self._sessions[session_id]
            return 1
        return 0

    def _purge(self, now_ms: int) -> int:
        dropped = 0
        ids, expiries, heap = self._queue_ids, self._queue_expiries, self._heap
        while expiries and expiries[0] <= now_ms:
            expiries.popleft()
            dropped += self._drop_if_expired(ids.popleft(), now_ms)
        while heap and heap[0][0] <= now_ms:
            dropped += self._drop_if_expired(heapq.heappop(heap)[1], now_ms)
        if len(ids) + len(heap) > 2 * len(self._sessions) + 1024:
            # Many sessions were deleted before expiring: rebuild so the index stays proportional to the live set.
            live = sorted(self._sessions.items(), key=lambda item: item[1].expires_ms)
            self._queue_ids = deque(key for key, _ in live)
            self._queue_expiries = deque(value.expires_ms for _, value in live)
            self._heap = []
        return dropped


# --------------------------------------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """One attempt at an access: the session it read, the session it wants stored, and the answer."""

    step: Access
    read: Session | None
    write: Session | None
    response: HttpResponse

    @property
    def changes(self) -> bool:
        return self.write is not self.read


class RendezvousServer:
    """The core over a store: what an HTTP adapter calls with each request, the time and fresh entropy."""

    MAX_ATTEMPTS = 16

    __slots__ = ("config", "store")

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self.config = config
        self.store = store

    def respond(self, request: HttpRequest, *, now_ms: int, entropy: bytes) -> HttpResponse:
        step = plan(self.config, request)
        if isinstance(step, HttpResponse):
            return step
        if isinstance(step, Create):
            session, response = create(self.config, step, request, now_ms=now_ms, entropy=entropy)
            if session is None:
                return response
            if not self.store.insert(session, now_ms=now_ms, capacity=self.config.max_sessions):
                return capacity_error(self.config, step)
            return response
        for _ in range(self.MAX_ATTEMPTS):
            attempt = self.prepare(step, request, now_ms=now_ms, entropy=entropy)
            if self.commit(attempt):
                return attempt.response
        return _error(503, "M_UNKNOWN", "Too much contention on this session; retry", generation=None, stable=True)

    def prepare(self, step: Access, request: HttpRequest, *, now_ms: int, entropy: bytes) -> Prepared:
        """Read the session and compute the pure step (no write yet)."""
        read = self.store.get(step.session_id)
        write, response = handle(self.config, step, read, request, now_ms=now_ms, entropy=entropy)
        return Prepared(step=step, read=read, write=write, response=response)

    def commit(self, attempt: Prepared) -> bool:
        """Store the attempt's result if the session is still what it read; True when the response stands.

        An attempt that writes nothing (a read, or an error answer) still checks that the session is unchanged, so
        that its answer is linearized at the commit like a write's: a read prepared before a concurrent write and
        committed after it must not return the older payload.
        """
        if not attempt.changes:
            return self.store.get(attempt.step.session_id) == attempt.read
        return self.store.compare_and_set(attempt.step.session_id, attempt.read, attempt.write)
