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
* :func:`begin` and the ``after_*`` functions run a whole request over a store without calling it: each step
  returns either the answer or what the request waits for (:class:`Limiting`, :class:`Inserting`, :class:`Reading`,
  :class:`Committing`), one store operation described as a value; whoever drives the steps performs it and hands
  the result to the matching ``after_*`` function. A write is a read of the current session, a pure step, and an
  atomic compare-and-set from exactly that session to the new one; if another process got there first, the step is
  recomputed on the fresh value. Because the pure step never has side effects, recomputing is always safe, and every
  successful write has a single linearization point: its compare-and-set.
* An answer that writes nothing (a GET, a refused or conflicting write, a v3 retry acknowledged again, a 404) is
  given straight after its read, with no second store operation. It is linearizable at that read: the store reads
  one committed session atomically (one Redis ``GET``; the in-memory dict under the GIL), the read happens after the
  request arrived and before its answer leaves, and the answer is a pure function of what it read. So the request
  observes a committed value at one instant of its interval, and every history of such reads and compare-and-set
  writes orders by those instants. Such an answer may name a revision that a concurrent write replaced before the
  answer left: that write's interval overlapped the request's, so ordering the read first is allowed. A read is one
  round trip to the store; a write is two (read, compare-and-set), more only under contention.
  :meth:`RendezvousServer.commit` is different: it serves a caller that holds a prepared attempt for as long as it
  likes, so it confirms even a read-only attempt against the store and linearizes it at that confirmation.
* Two drivers: :class:`RendezvousServer` runs the steps synchronously over a :class:`SyncStore` in this process
  (:class:`InMemoryStore`; embedding, tests, the simulator), and the ASGI adapter awaits them on a :class:`Store`,
  the awaitable interface (:class:`EmbeddedStore` over the in-memory store; the Redis store in
  :mod:`qrlogin.adapters.redis_store`). A store that cannot be reached raises :class:`StoreUnavailableError`, which
  the adapter answers with :func:`store_unavailable_error`.
* Creates and writes draw on per-client token buckets (:mod:`qrlogin.rendezvous.limits`) when the driver names the
  client; ``max_sessions`` remains the bound on memory. ``create_available`` is both what v3 discovery announces and
  what ``POST`` does.

Token rules: a token is ``<revision>.<base64url(16 random bytes)>``, so it follows the opaque identifier grammar and
changes on every successful write even when the data (or, in a test, the entropy) repeats. v1 serves it as a strong
``ETag`` (unlike Synapse, whose v1 ETag is a hash of the body). v3 additionally accepts a stale token when the data is
byte-for-byte the current payload (an idempotent retry of a PUT whose response was lost) and answers with the current
token without writing anything.
"""

from __future__ import annotations

import binascii
import heapq
import hmac
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Protocol

from .._frozen import builds, fields_twin, new_object
from .._json import json_string
from ..errors import LocalProtocolError
from ..http import HttpRequest, HttpResponse, build_response, lowercase_headers
from ._http import (
    JSON_CONTENT_TYPE,
    MAX_JSON_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    ApiGeneration,
    MalformedJsonError,
    is_opaque_id,
    json_response,
    media_type,
    parse_json_object,
)
from .limits import DEFAULT_CREATE_LIMIT, DEFAULT_WRITE_LIMIT, LimitKind, RateLimit, idle_ms, take

__all__ = [
    "DEFAULT_TTL_MS",
    "MAX_ATTEMPTS",
    "MAX_JSON_BODY_BYTES",
    "PURGE_SLICE",
    "STABLE_PREFIX",
    "V1_V2_UNSTABLE_PREFIX",
    "V3_UNSTABLE_PREFIX",
    "Access",
    "Committing",
    "Create",
    "EmbeddedStore",
    "InMemoryStore",
    "Inserting",
    "Limiting",
    "Mount",
    "Pending",
    "Prepared",
    "Reading",
    "RendezvousServer",
    "ServerConfig",
    "Session",
    "Store",
    "StoreUnavailableError",
    "SyncStore",
    "after_commit",
    "after_insert",
    "after_limit",
    "after_read",
    "begin",
    "capacity_error",
    "create",
    "default_mounts",
    "handle",
    "plan",
    "rate_limited_error",
    "store_unavailable_error",
]

STABLE_PREFIX = "/_matrix/client/v1/rendezvous"
V1_V2_UNSTABLE_PREFIX = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
V3_UNSTABLE_PREFIX = "/_matrix/client/unstable/io.element.msc4388/rendezvous"

DEFAULT_TTL_MS = 120_000
ENTROPY_BYTES = 32

_JSON_GENERATIONS = frozenset({ApiGeneration.V2, ApiGeneration.V3})
# Enum members as module constants for the request path: on Python 3.11 each ``ApiGeneration.V3`` written in a
# function goes through the enum class's ``__getattr__`` hook, several hundred instructions a time.
_V1, _V2, _V3 = ApiGeneration.V1, ApiGeneration.V2, ApiGeneration.V3
_CREATE, _WRITE = LimitKind.CREATE, LimitKind.WRITE
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
_CORS_NO_CACHE = lowercase_headers((*_CORS_HEADERS, *_NO_CACHE))
_JSON_OK_HEADERS = lowercase_headers((JSON_CONTENT_TYPE, *_CORS_NO_CACHE))  # most answers: built once
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
    json_generation: ApiGeneration | None = field(init=False, repr=False, compare=False)
    """The JSON generation served here (v2 or v3), or None: derived from ``generations``."""

    def __post_init__(self) -> None:
        if not self.generations:
            raise LocalProtocolError("a mount needs at least one generation")
        json_generations = self.generations & _JSON_GENERATIONS
        if len(json_generations) > 1:
            raise LocalProtocolError("v2 and v3 cannot share a prefix: their requests are indistinguishable")
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise LocalProtocolError("a prefix starts with '/' and does not end with one")
        object.__setattr__(self, "json_generation", next(iter(json_generations), None))


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
    the request's ``Host`` header is used over plain ``http``. ``create_available`` is what v3 discovery announces,
    and every ``POST`` honours it (403 ``M_FORBIDDEN`` when false). ``create_limit`` and ``write_limit`` are the
    per-client token buckets (:mod:`qrlogin.rendezvous.limits`; None: unlimited), applied when the caller names the
    client; ``max_sessions`` stays the bound on memory whatever the clients do.
    """

    mounts: tuple[Mount, ...] = field(default_factory=default_mounts)
    ttl_ms: int = DEFAULT_TTL_MS
    max_sessions: int = 100_000
    public_base_url: str | None = None
    create_available: bool = True
    create_limit: RateLimit | None = DEFAULT_CREATE_LIMIT
    write_limit: RateLimit | None = DEFAULT_WRITE_LIMIT
    mount_at: dict[str, Mount] = field(init=False, repr=False, compare=False)
    """Each mount by its prefix: derived from ``mounts``, for routing."""

    def __post_init__(self) -> None:
        if not 1_000 <= self.ttl_ms <= 300_000:
            raise LocalProtocolError("ttl_ms must be within 1 s .. 300 s (the texts recommend 120-300 s)")
        if self.max_sessions < 1:
            raise LocalProtocolError("max_sessions must be positive")
        prefixes = [mount.prefix for mount in self.mounts]
        if len(set(prefixes)) != len(prefixes):
            raise LocalProtocolError("two mounts share a prefix")
        for prefix in prefixes:
            if any(prefix.startswith(other + "/") for other in prefixes):
                # Its collection path would also be a session path of the other mount.
                raise LocalProtocolError(f"the prefix {prefix} lies under another mount's prefix")
        object.__setattr__(self, "mount_at", {mount.prefix: mount for mount in self.mounts})


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


_SessionFields = fields_twin(Session)


@builds(Session)
def _build_session(
    *,
    id: str,
    generation: ApiGeneration,
    prefix: str,
    data: bytes,
    revision: int,
    nonce: int,
    modified_ms: int,
    expires_ms: int,
) -> Session:
    """``Session(...)``, built faster (:mod:`qrlogin._frozen`)."""
    session = new_object(_SessionFields)
    session.id = id
    session.generation = generation
    session.prefix = prefix
    session.data = data
    session.revision = revision
    session.nonce = nonce
    session.modified_ms = modified_ms
    session.expires_ms = expires_ms
    session.__class__ = Session
    return session  # type: ignore[no-any-return]  # a fields twin until the line above


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url(raw: bytes) -> str:
    # Unpadded: the padding and the newline, only ever at the end, are deleted by the same translate.
    return binascii.b2a_base64(raw).translate(_URLSAFE, b"=\n").decode()


def _nonce(entropy: bytes) -> int:
    return int.from_bytes(entropy[:16], "big")


def _token(revision: int, nonce: int) -> str:
    return _spell_token(revision, nonce.to_bytes(16, "big"))


def _spell_token(revision: int, nonce_bytes: bytes) -> str:
    """A sequence token: the revision and the 16 random bytes of the nonce, base64url."""
    return f"{revision}.{_b64url(nonce_bytes)}"


def _check_entropy(entropy: bytes) -> None:
    if len(entropy) < ENTROPY_BYTES:
        raise LocalProtocolError(f"entropy must be at least {ENTROPY_BYTES} bytes")


# ------------------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    """The request creates a session of ``generation`` under ``mount``."""

    mount: Mount
    generation: ApiGeneration


_CreateFields = fields_twin(Create)


@builds(Create)
def _build_create(*, mount: Mount, generation: ApiGeneration) -> Create:
    """``Create(...)``, built faster (:mod:`qrlogin._frozen`)."""
    create = new_object(_CreateFields)
    create.mount = mount
    create.generation = generation
    create.__class__ = Create
    return create  # type: ignore[no-any-return]  # a fields twin until the line above


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """The request reads, writes or deletes session ``session_id`` under ``mount``."""

    mount: Mount
    session_id: str


_AccessFields = fields_twin(Access)


@builds(Access)
def _build_access(*, mount: Mount, session_id: str) -> Access:
    """``Access(...)``, built faster (:mod:`qrlogin._frozen`)."""
    access = new_object(_AccessFields)
    access.mount = mount
    access.session_id = session_id
    access.__class__ = Access
    return access  # type: ignore[no-any-return]  # a fields twin until the line above


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
        if generation is _V3:
            body["errcode"] = "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"
        else:
            body["errcode"] = "M_UNKNOWN"
            body["org.matrix.msc4108.errcode"] = "M_CONCURRENT_WRITE"
    return json_response(status, body, (*_CORS_HEADERS, *_NO_CACHE, *extra))


def _unrecognized(status: int = 404, *, allow: str | None = None) -> HttpResponse:
    extra = () if allow is None else (("allow", allow),)  # a 405 names the methods the resource has (RFC 9110 §15.5.6)
    return _error(status, "M_UNRECOGNIZED", "Unrecognized request", generation=None, stable=True, extra=extra)


def plan(config: ServerConfig, request: HttpRequest) -> HttpResponse | Create | Access:
    """Classify ``request``; answer at once whatever needs no session."""
    path = request.target.partition("?")[0]
    mount = config.mount_at.get(path)
    if mount is not None:
        return _plan_collection(config, mount, request)
    # A session path is a mount's prefix, "/" and one non-empty segment. No prefix lies under another, so a path
    # whose last segment is cut off names at most one mount.
    collection, _, session_id = path.rpartition("/")
    mount = config.mount_at.get(collection)
    if mount is None or not session_id:
        return _unrecognized()
    return _plan_session(mount, session_id, request)


def _oversize(request: HttpRequest, generation: ApiGeneration | None, stable: bool) -> HttpResponse | None:
    limit = MAX_PAYLOAD_BYTES if generation is _V1 else MAX_JSON_BODY_BYTES
    if len(request.body) > limit:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=generation, stable=stable)
    return None


def _plan_collection(config: ServerConfig, mount: Mount, request: HttpRequest) -> HttpResponse | Create:
    if request.method == "OPTIONS":
        return HttpResponse(status=204, headers=_CORS_NO_CACHE)
    if request.method == "GET":
        if _V3 not in mount.generations:
            return _unrecognized(405, allow="POST, OPTIONS")
        return json_response(200, {"create_available": config.create_available}, _CORS_NO_CACHE)
    if request.method != "POST":
        return _unrecognized(405, allow="GET, POST, OPTIONS" if _V3 in mount.generations else "POST, OPTIONS")
    # The body limit comes first: nothing about an oversize request is looked at.
    if len(request.body) > MAX_JSON_BODY_BYTES:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=None, stable=mount.stable)
    if not config.create_available:
        # What v3 discovery announces is what POST does, in every generation.
        return _error(403, "M_FORBIDDEN", "Creating rendezvous sessions is not available", generation=None,
                      stable=mount.stable)  # fmt: skip
    kind = media_type(request.header("content-type"))
    json_generation = mount.json_generation
    if _V1 in mount.generations and kind != "application/json":
        # Anything that is not JSON here is (or claims to be) v1, whose body limit is the payload limit, and it
        # comes before the content-type checks.
        oversize = _oversize(request, _V1, mount.stable)
        if oversize is not None:
            return oversize
    if _V1 in mount.generations and (json_generation is None or kind == "text/plain"):
        if kind is None:
            return _error(
                400,
                "M_MISSING_PARAM",
                "Content-Type is required",
                generation=_V1,
                stable=mount.stable,
            )
        if kind != "text/plain":
            return _error(
                400,
                "M_INVALID_PARAM",
                "Content-Type must be text/plain",
                generation=_V1,
                stable=mount.stable,
            )
        return _build_create(mount=mount, generation=_V1)
    assert json_generation is not None
    if _V1 in mount.generations and kind != "application/json":
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
    return _build_create(mount=mount, generation=json_generation)


def _plan_session(mount: Mount, session_id: str, request: HttpRequest) -> HttpResponse | Access:
    if request.method == "OPTIONS":
        return HttpResponse(status=204, headers=_CORS_NO_CACHE)
    if request.method not in ("GET", "PUT", "DELETE"):
        return _unrecognized(405, allow="GET, PUT, DELETE, OPTIONS")
    if len(request.body) > MAX_JSON_BODY_BYTES:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=None, stable=mount.stable)
    return _build_access(mount=mount, session_id=session_id)


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


def _json_ok(body: bytes) -> HttpResponse:
    return build_response(status=200, headers=_JSON_OK_HEADERS, body=body)


# The JSON answers of v2 and v3 are written from fixed templates rather than through dumps, whose call costs several
# times the rest of an answer. Each holds only what needs no escaping (the fixed keys; the session id and the
# sequence token, base64url and digits by construction; integers) and the payload, escaped by the standard library's
# own escaper (json_string). The bytes are exactly what dumps writes for the same object (tests/rendezvous check it).


def _expiry_json(session: Session, now_ms: int) -> str:
    """The session's expiry as a JSON member, as its generation spells it."""
    if session.generation is _V2:
        return f'"expires_ts":{session.expires_ms}'
    return f'"expires_in_ms":{max(0, session.expires_ms - now_ms)}'


def created_json(session: Session, token: str, now_ms: int) -> bytes:
    """The answer to a v2 or v3 create: ``{"id", "sequence_token", expiry}`` (``token`` is ``session.token``)."""
    return f'{{"id":"{session.id}","sequence_token":"{token}",{_expiry_json(session, now_ms)}}}'.encode()


def read_json(session: Session, now_ms: int) -> bytes:
    """The answer to a v2 or v3 read: ``{"data", "sequence_token", expiry}``."""
    data = json_string(session.data.decode("utf-8"))
    return f'{{"data":{data},"sequence_token":"{session.token}",{_expiry_json(session, now_ms)}}}'.encode()


def token_json(session: Session) -> bytes:
    """The answer to a v2 or v3 write: ``{"sequence_token"}``."""
    return f'{{"sequence_token":"{session.token}"}}'.encode()


_ABSENT = object()


def _read_json_payload(
    body: bytes, *, need_token: bool, generation: ApiGeneration, stable: bool
) -> tuple[bytes, str | None] | HttpResponse:
    """``(data as UTF-8, sequence_token)`` from a POST/PUT body, or the error response."""
    try:
        content = parse_json_object(body)
    except MalformedJsonError as exc:
        return _error(400, "M_NOT_JSON", str(exc), generation=generation, stable=stable)
    token = None
    if need_token:  # checked first: a write names the revision it replaces before the data it brings
        token = content.get("sequence_token", _ABSENT)
        if type(token) is not str:
            return _parameter_error("sequence_token", token, generation, stable)
    text = content.get("data", _ABSENT)
    if type(text) is not str:
        return _parameter_error("data", text, generation, stable)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return _error(400, "M_INVALID_PARAM", "'data' is not valid Unicode", generation=generation, stable=stable)
    if len(data) > MAX_PAYLOAD_BYTES:
        return _error(413, "M_TOO_LARGE", "Payload too large", generation=generation, stable=stable)
    return data, token


def _parameter_error(name: str, value: object, generation: ApiGeneration, stable: bool) -> HttpResponse:
    if value is _ABSENT:
        return _error(400, "M_MISSING_PARAM", f"Missing '{name}'", generation=generation, stable=stable)
    return _error(400, "M_INVALID_PARAM", f"'{name}' must be a string", generation=generation, stable=stable)


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
    if generation is _V1:
        data: bytes = request.body
    else:
        parsed = _read_json_payload(request.body, need_token=False, generation=generation, stable=step.mount.stable)
        if isinstance(parsed, HttpResponse):
            return None, parsed
        data = parsed[0]
    nonce_bytes = entropy[:16]  # what _nonce(entropy) reads: the token below is spelled from the same bytes
    session = _build_session(
        id=_b64url(entropy[16:32]),
        generation=generation,
        prefix=step.mount.prefix,
        data=data,
        revision=0,
        nonce=int.from_bytes(nonce_bytes, "big"),
        modified_ms=now_ms,
        expires_ms=now_ms + config.ttl_ms,
    )
    if generation is _V1:
        url = f"{_base_url(config, request)}{step.mount.prefix}/{session.id}"
        return session, json_response(201, {"url": url}, _v1_headers(session))
    # session.token, spelled from the bytes at hand rather than from the nonce turned back into bytes
    return session, _json_ok(created_json(session, _spell_token(0, nonce_bytes), now_ms))


def _etags(header: str) -> list[str]:
    return [item.strip().removeprefix("W/") for item in header.split(",") if item.strip()]


def _same_token(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _navigation(request: HttpRequest) -> bool:
    """Fetch metadata of a top-level browser navigation (MSC4388 §GET: unsafe content)."""
    for name, _ in request.headers:
        if name.startswith("sec-fetch-"):
            break
    else:
        return False  # no fetch metadata at all: what every non-browser client sends
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
    looks_v1 = generation is _V1 or (generation is None and media_type(request.header("content-type")) == "text/plain")
    if looks_v1 and len(request.body) > MAX_PAYLOAD_BYTES:
        # The limit comes before the session lookup, as it does in plan().
        return stored, _error(413, "M_TOO_LARGE", "Payload too large", generation=_V1, stable=mount.stable)
    if generation is _V3 and request.method == "GET" and _navigation(request):
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
    if session.generation is _V1:
        return _handle_v1(session, request, mount, now_ms=now_ms, entropy=entropy)
    return _handle_json(session, request, mount, now_ms=now_ms, entropy=entropy)


def _handle_v1(
    session: Session, request: HttpRequest, mount: Mount, *, now_ms: int, entropy: bytes
) -> tuple[Session | None, HttpResponse]:
    stable = mount.stable
    gen = _V1
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
        return None, HttpResponse(status=204, headers=_CORS_NO_CACHE)
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
    return _build_session(
        id=session.id,
        generation=session.generation,
        prefix=session.prefix,
        data=data,
        revision=session.revision + 1,
        nonce=_nonce(entropy),
        modified_ms=now_ms,
        expires_ms=session.expires_ms,
    )


def _handle_json(
    session: Session, request: HttpRequest, mount: Mount, *, now_ms: int, entropy: bytes
) -> tuple[Session | None, HttpResponse]:
    gen = session.generation
    if request.method == "GET":
        return session, _json_ok(read_json(session, now_ms))
    if request.method == "DELETE":
        return None, _json_ok(b"{}")
    parsed = _read_json_payload(request.body, need_token=True, generation=gen, stable=mount.stable)
    if isinstance(parsed, HttpResponse):
        return session, parsed
    data, token = parsed
    assert token is not None
    if _same_token(token, session.token):
        updated = _advance(session, data, now_ms=now_ms, entropy=entropy)
        return updated, _json_ok(token_json(updated))
    if gen is _V3 and hmac.compare_digest(data, session.data):
        # Idempotent retry (MSC4388 §The send mechanism): acknowledge again, write nothing, keep the token.
        return session, _json_ok(token_json(session))
    return session, _error(
        409, "M_CONCURRENT_WRITE", "sequence_token does not match", generation=gen, stable=mount.stable
    )


# ------------------------------------------------------------------------------------------- one request, in steps


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Inserting:
    """A create waits for the store to add ``session`` (if fewer than ``capacity`` live sessions exist)."""

    step: Create
    session: Session
    capacity: int
    now_ms: int
    response: HttpResponse  # the answer if it is added


_InsertingFields = fields_twin(Inserting)


@builds(Inserting)
def _build_inserting(
    *, step: Create, session: Session, capacity: int, now_ms: int, response: HttpResponse
) -> Inserting:
    """``Inserting(...)``, built faster (:mod:`qrlogin._frozen`)."""
    inserting = new_object(_InsertingFields)
    inserting.step = step
    inserting.session = session
    inserting.capacity = capacity
    inserting.now_ms = now_ms
    inserting.response = response
    inserting.__class__ = Inserting
    return inserting  # type: ignore[no-any-return]  # a fields twin until the line above


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """An access waits for the store to read session ``step.session_id`` (attempt ``attempt`` of the request)."""

    step: Access
    request: HttpRequest
    now_ms: int
    entropy: bytes = field(repr=False)
    attempt: int = 0


_ReadingFields = fields_twin(Reading)


@builds(Reading)
def _build_reading(*, step: Access, request: HttpRequest, now_ms: int, entropy: bytes, attempt: int = 0) -> Reading:
    """``Reading(...)``, built faster (:mod:`qrlogin._frozen`)."""
    reading = new_object(_ReadingFields)
    reading.step = step
    reading.request = request
    reading.now_ms = now_ms
    reading.entropy = entropy
    reading.attempt = attempt
    reading.__class__ = Reading
    return reading  # type: ignore[no-any-return]  # a fields twin until the line above


@dataclass(frozen=True, slots=True, kw_only=True)
class Committing:
    """An access that changes the session waits for the store to compare-and-set from what it read to what it wants.

    Only attempts that write get here: a read-only answer stands on its read (:func:`after_read`).
    """

    reading: Reading
    prepared: Prepared


@dataclass(frozen=True, slots=True, kw_only=True)
class Limiting:
    """A create or write waits for the store to take a token from ``client``'s ``kind`` bucket, then goes on."""

    kind: LimitKind
    client: str
    limit: RateLimit
    now_ms: int
    then: Inserting | Reading


Pending = Limiting | Inserting | Reading | Committing
"""What a request waits for: each names one store operation; the matching ``after_*`` function resumes it."""

MAX_ATTEMPTS = 16


def begin(
    config: ServerConfig, request: HttpRequest, *, now_ms: int, entropy: bytes, client: str | None = None
) -> HttpResponse | Pending:
    """Start answering ``request``: the answer itself, or the first store operation it needs.

    ``client`` names the peer for the rate limits (:func:`qrlogin.rendezvous.limits.client_key`); None applies none.
    """
    step = plan(config, request)
    if isinstance(step, HttpResponse):
        return step
    then: Inserting | Reading
    if isinstance(step, Create):
        session, response = create(config, step, request, now_ms=now_ms, entropy=entropy)
        if session is None:
            return response
        then = _build_inserting(
            step=step, session=session, capacity=config.max_sessions, now_ms=now_ms, response=response
        )
        kind, limit = _CREATE, config.create_limit
    else:
        _check_entropy(entropy)
        then = _build_reading(step=step, request=request, now_ms=now_ms, entropy=entropy)
        kind, limit = _WRITE, (config.write_limit if request.method == "PUT" else None)
    if client is None or limit is None:
        return then
    return Limiting(kind=kind, client=client, limit=limit, now_ms=now_ms, then=then)


def after_limit(state: Limiting, retry_after_ms: int) -> HttpResponse | Inserting | Reading:
    """The bucket answered: go on (0), or refuse with 429 and how long to wait."""
    if retry_after_ms <= 0:
        return state.then
    return rate_limited_error(state.kind, retry_after_ms)


def after_insert(state: Inserting, inserted: bool) -> HttpResponse:
    """The store added the new session, or was full."""
    return state.response if inserted else capacity_error(state.capacity, state.step)


def _prepare(config: ServerConfig, state: Reading, session: Session | None) -> Prepared:
    write, response = handle(config, state.step, session, state.request, now_ms=state.now_ms, entropy=state.entropy)
    return Prepared(step=state.step, read=session, write=write, response=response)


def after_read(config: ServerConfig, state: Reading, session: Session | None) -> HttpResponse | Committing:
    """The store read the session: run the pure core on it.

    An answer that writes nothing is final here, linearized at the read (see the module docstring); one that writes
    waits for its compare-and-set.
    """
    write, response = handle(config, state.step, session, state.request, now_ms=state.now_ms, entropy=state.entropy)
    if write is session:
        return response
    return Committing(reading=state, prepared=Prepared(step=state.step, read=session, write=write, response=response))


def after_commit(state: Committing, committed: bool) -> HttpResponse | Reading:
    """The compare-and-set held (the answer stands) or lost to another writer (read again, boundedly often)."""
    if committed:
        return state.prepared.response
    attempt = state.reading.attempt + 1
    if attempt >= MAX_ATTEMPTS:
        return _error(503, "M_UNKNOWN", "Too much contention on this session; retry", generation=None, stable=True,
                      extra=(("retry-after", "1"),))  # fmt: skip
    return replace(state.reading, attempt=attempt)


def capacity_error(capacity: int, step: Create) -> HttpResponse:
    """The answer when the store is full: 429, with a message that says why."""
    errcode = "M_UNKNOWN" if step.generation is _V1 else "M_LIMIT_EXCEEDED"
    return _error(
        429,
        errcode,
        f"Rendezvous capacity reached ({capacity} live sessions); retry later",
        generation=step.generation,
        stable=step.mount.stable,
        extra=(("retry-after", "1"),),
    )


def rate_limited_error(kind: LimitKind, retry_after_ms: int) -> HttpResponse:
    """429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` (and ``Retry-After`` in whole seconds)."""
    body = {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": f"Too many {'creates' if kind is _CREATE else 'writes'} from this client; retry later",
        "retry_after_ms": retry_after_ms,
    }
    return json_response(429, body, (*_CORS_HEADERS, *_NO_CACHE, ("retry-after", str(-(-retry_after_ms // 1000)))))


def store_unavailable_error(retry_after_s: int = 1) -> HttpResponse:
    """503 ``M_UNKNOWN``: the store cannot be reached; nothing was changed that the client does not learn of."""
    body = {
        "errcode": "M_UNKNOWN",
        "error": "The rendezvous session store is unavailable; retry later",
        "retry_after_ms": retry_after_s * 1000,
    }
    return json_response(503, body, (*_CORS_HEADERS, *_NO_CACHE, ("retry-after", str(retry_after_s))))


# ---------------------------------------------------------------------------------------------------------- store


class StoreUnavailableError(Exception):
    """A store could not be reached or did not answer in time; the adapter answers 503."""


class SyncStore(Protocol):
    """A store in this process, called directly (no I/O): what :class:`RendezvousServer` drives."""

    def get(self, session_id: str) -> Session | None:
        """The stored session (possibly expired), or None."""
        ...

    def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        """Add a new session unless ``capacity`` live sessions exist already (expired ones do not count)."""
        ...

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        """Atomically replace ``expected`` by ``new`` (None deletes); False if the stored value is not ``expected``.

        ``new is expected`` only confirms that the stored value is still ``expected``.
        """
        ...

    def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int:
        """Take one token from the bucket; 0 if there was one, else the milliseconds until there is."""
        ...


class Store(Protocol):
    """Where sessions live, as the ASGI adapter awaits it. Several server processes may share one store.

    The same operations as :class:`SyncStore`, awaitable, plus :meth:`maintain`. Any of them may raise
    :class:`StoreUnavailableError`; an operation that raised may or may not have taken effect (a lost answer), which
    the protocol's retries absorb.
    """

    async def get(self, session_id: str) -> Session | None: ...

    async def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool: ...

    async def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool: ...

    async def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int: ...

    async def maintain(self, now_ms: int) -> bool:
        """One bounded slice of housekeeping (expired sessions, idle buckets); True if more is waiting."""
        ...

    async def close(self) -> None: ...


PURGE_SLICE = 1_000
"""Index entries one purge slice looks at: about 1 ms of work (benchmarks/bench_store_purge.py)."""


class InMemoryStore:
    """A dict behind a lock: the embedded default for ``qrlogin serve``, and the reference for tests.

    Expiry is fixed at creation, so the expired sessions can be found in order without scanning the live ones. A
    server with one ``ttl_ms`` and a clock that does not step back creates sessions in expiry order: those go into
    two parallel queues, of ids and of their ``expires_ms`` (the session's own int object, so an entry costs two
    pointers and allocates nothing). A session that would break the order (a clock stepped back, stores shared by
    servers with different TTLs) goes into a heap of ``(expires_ms, id)`` instead. Purging pops from the front of
    both while the front has expired: O(1) per expired session, O(log n) for the rare heap entry.

    Purging runs in slices of at most :data:`PURGE_SLICE` index entries (:meth:`purge_slice`), so expiring 100,000
    sessions at once never holds the event loop for long. Entries of sessions deleted early stay until their time
    comes and are then skipped; if they outnumber the live sessions the queue is compacted, also in slices: the
    front of the queue is scanned into a second queue that keeps only live entries (sessions created meanwhile are
    appended behind the unscanned part as usual), and when the scan is through, the two are joined again. Purging
    during a compaction pops the compacted part first, which is the front of the order.

    The store also keeps the per-client rate-limit buckets (:mod:`qrlogin.rendezvous.limits`): an ordered dict
    from bucket to ``(tokens, last_ms, forget_at_ms)``, most recently used last, so idle ones are forgotten from the
    front and at most ``max_buckets`` are kept (past that the longest unused goes first).
    """

    COMPACT_SLACK = 1024
    """Index entries beyond twice the live sessions that start a compaction."""

    __slots__ = (
        "_buckets",
        "_compacted_expiries",
        "_compacted_ids",
        "_compacting",
        "_heap",
        "_lock",
        "_queue_expiries",
        "_queue_ids",
        "_sessions",
        "_unscanned",
        "max_buckets",
    )

    def __init__(self, *, max_buckets: int = 65_536) -> None:
        self._sessions: dict[str, Session] = {}
        self._queue_ids: deque[str] = deque()
        self._queue_expiries: deque[int] = deque()
        self._compacted_ids: deque[str] = deque()
        self._compacted_expiries: deque[int] = deque()
        self._compacting = False
        self._unscanned = 0
        self._heap: list[tuple[int, str]] = []
        self._buckets: OrderedDict[str, tuple[float, int, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_buckets = max_buckets

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        with self._lock:
            if session.id in self._sessions:
                return False
            if len(self._sessions) >= capacity:
                self._purge(now_ms, PURGE_SLICE)  # one slice: a full store answers 429 rather than stall
                if len(self._sessions) >= capacity:
                    return False
            self._sessions[session.id] = session
            self._index(session.id, session.expires_ms)
            return True

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        with self._lock:
            if self._sessions.get(session_id) is not expected:
                return False
            if new is expected:
                return True
            if new is None:
                self._sessions.pop(session_id, None)
            else:
                if expected is None or new.expires_ms != expected.expires_ms:
                    self._index(session_id, new.expires_ms)
                self._sessions[session_id] = new
            return True

    def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int:
        key = f"{kind.value}:{client}"
        with self._lock:
            tokens, last_ms, _ = self._buckets.pop(key, (float(limit.burst), now_ms, 0))
            tokens, last_ms, retry_after_ms = take(tokens, last_ms, now_ms, limit)
            self._buckets[key] = (tokens, last_ms, last_ms + idle_ms(limit))
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
            return retry_after_ms

    def purge_slice(self, now_ms: int, *, budget: int = PURGE_SLICE) -> tuple[int, bool]:
        """Look at up to ``budget`` index entries (and as many buckets): ``(sessions dropped, more waiting)``."""
        with self._lock:
            dropped = self._purge(now_ms, budget)
            forgotten = 0
            buckets = self._buckets
            while buckets and forgotten < budget:
                key, (_, _, forget_at_ms) = next(iter(buckets.items()))
                if forget_at_ms > now_ms:
                    break
                del buckets[key]
                forgotten += 1
            return dropped, self._purge_due(now_ms) or forgotten == budget

    def purge_expired(self, now_ms: int) -> int:
        """Drop every expired session, slice after slice; returns how many went."""
        total, more = self.purge_slice(now_ms)
        while more:
            dropped, more = self.purge_slice(now_ms)
            total += dropped
        return total

    # The index: [compacted queue] + [queue] in expiry order, and the heap for the rare entry out of order.

    def _index(self, session_id: str, expires_ms: int) -> None:
        last = self._queue_expiries or self._compacted_expiries
        if not last or last[-1] <= expires_ms:
            self._queue_ids.append(session_id)
            self._queue_expiries.append(expires_ms)
        else:
            heapq.heappush(self._heap, (expires_ms, session_id))

    def _front_expiry(self) -> int | None:
        if self._compacted_expiries:
            return self._compacted_expiries[0]
        return self._queue_expiries[0] if self._queue_expiries else None

    def _pop_front(self) -> str:
        if self._compacted_ids:
            self._compacted_expiries.popleft()
            return self._compacted_ids.popleft()
        self._queue_expiries.popleft()
        session_id = self._queue_ids.popleft()
        if self._compacting:
            self._unscanned -= 1
            if self._unscanned == 0:
                self._finish_compaction()
        return session_id

    def _purge_due(self, now_ms: int) -> bool:
        front = self._front_expiry()
        return (
            (front is not None and front <= now_ms)
            or bool(self._heap and self._heap[0][0] <= now_ms)
            or self._compacting
        )

    def _drop_if_expired(self, session_id: str, now_ms: int) -> int:
        session = self._sessions.get(session_id)
        if session is not None and not session.is_live(now_ms):
            del self._sessions[session_id]
            return 1
        return 0

    def _purge(self, now_ms: int, budget: int) -> int:
        dropped = work = 0
        while work < budget:
            front = self._front_expiry()
            if front is None or front > now_ms:
                break
            dropped += self._drop_if_expired(self._pop_front(), now_ms)
            work += 1
        heap = self._heap
        while work < budget and heap and heap[0][0] <= now_ms:
            dropped += self._drop_if_expired(heapq.heappop(heap)[1], now_ms)
            work += 1
        indexed = len(self._queue_ids) + len(self._compacted_ids) + len(heap)
        if not self._compacting and indexed > 2 * len(self._sessions) + self.COMPACT_SLACK and self._queue_ids:
            # Many sessions were deleted before expiring: compact so the index stays proportional to the live set.
            self._compacting, self._unscanned = True, len(self._queue_ids)
            if len(heap) > len(self._sessions):
                # Only a stepped clock or mixed TTLs fill the heap: filtering it at once is acceptable.
                self._heap = [entry for entry in heap if entry[1] in self._sessions]
                heapq.heapify(self._heap)
        sessions = self._sessions
        ids, expiries = self._queue_ids, self._queue_expiries
        while work < budget and self._compacting:
            session_id, expires_ms = ids.popleft(), expiries.popleft()
            if session_id in sessions:
                self._compacted_ids.append(session_id)
                self._compacted_expiries.append(expires_ms)
            work += 1
            self._unscanned -= 1
            if self._unscanned == 0:
                self._finish_compaction()
        return dropped

    def _finish_compaction(self) -> None:
        # What was appended during the scan follows the compacted part; usually a few entries, so extend that.
        self._compacted_ids.extend(self._queue_ids)
        self._compacted_expiries.extend(self._queue_expiries)
        self._queue_ids, self._compacted_ids = self._compacted_ids, deque()
        self._queue_expiries, self._compacted_expiries = self._compacted_expiries, deque()
        self._compacting = False


class EmbeddedStore:
    """An :class:`InMemoryStore` behind the awaitable :class:`Store` interface (each call completes at once)."""

    __slots__ = ("memory",)

    def __init__(self, memory: InMemoryStore | None = None) -> None:
        self.memory = memory if memory is not None else InMemoryStore()

    async def get(self, session_id: str) -> Session | None:
        return self.memory.get(session_id)

    async def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        return self.memory.insert(session, now_ms=now_ms, capacity=capacity)

    async def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        return self.memory.compare_and_set(session_id, expected, new)

    async def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int:
        return self.memory.take(kind, client, limit, now_ms=now_ms)

    async def maintain(self, now_ms: int) -> bool:
        return self.memory.purge_slice(now_ms)[1]

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------------------------------------- server


class RendezvousServer:
    """The core over an in-process store, driven synchronously: for embedding, tests and the simulator.

    The ASGI adapter drives the same steps (:func:`begin` and the ``after_*`` functions) over an awaitable
    :class:`Store` instead.
    """

    MAX_ATTEMPTS = MAX_ATTEMPTS

    __slots__ = ("config", "store")

    def __init__(self, config: ServerConfig, store: SyncStore) -> None:
        self.config = config
        self.store = store

    def respond(self, request: HttpRequest, *, now_ms: int, entropy: bytes, client: str | None = None) -> HttpResponse:
        store, config = self.store, self.config
        state = begin(config, request, now_ms=now_ms, entropy=entropy, client=client)
        while True:
            if isinstance(state, HttpResponse):
                return state
            if isinstance(state, Limiting):
                state = after_limit(state, store.take(state.kind, state.client, state.limit, now_ms=state.now_ms))
            elif isinstance(state, Inserting):
                inserted = store.insert(state.session, now_ms=state.now_ms, capacity=state.capacity)
                state = after_insert(state, inserted)
            elif isinstance(state, Reading):
                state = after_read(config, state, store.get(state.step.session_id))
            else:
                attempt = state.prepared
                state = after_commit(state, store.compare_and_set(attempt.step.session_id, attempt.read, attempt.write))

    def prepare(self, step: Access, request: HttpRequest, *, now_ms: int, entropy: bytes) -> Prepared:
        """Read the session and compute the pure step (no write yet)."""
        reading = Reading(step=step, request=request, now_ms=now_ms, entropy=entropy)
        return _prepare(self.config, reading, self.store.get(step.session_id))

    def commit(self, attempt: Prepared) -> bool:
        """Store the attempt's result if the session is still what it read; True when the response stands.

        The two halves of a request, for a caller that holds an attempt between them for as long as it likes (a
        test interleaving requests, a driver of its own). Because this method cannot know whether the read still
        lies within the caller's request, an attempt that writes nothing (a read, or an error answer) also checks
        that the session is unchanged, and is linearized at the commit like a write: a read prepared before a
        concurrent write and committed after it does not stand. :meth:`respond`, which answers at once, stands a
        read-only answer on its read and skips this check.
        """
        return self.store.compare_and_set(attempt.step.session_id, attempt.read, attempt.write)
