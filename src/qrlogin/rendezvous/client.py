"""The client side of a rendezvous session: a pure machine that decides every HTTP request a device makes.

Theory of operation
-------------------
A rendezvous session is one shared slot (docs/protocol.md §6), so the two devices play ping-pong: the creator POSTs its
first payload and then polls until the slot changes; the joiner GETs the creator's payload and answers with a PUT;
and so on. This machine plays one side. It never touches the network: it emits :class:`SendHttpRequest` effects carrying
plain :class:`~qrlogin.http.HttpRequest` values and is fed :class:`HttpResponseReceived` (or
:class:`HttpRequestFailed` when no response came back) and :class:`TimerFired` when :func:`deadline` is due.
At most one request is in flight; every request carries an id, and a response to any other id is ignored.

States are named for what they wait for. The creator starts in ``Creating`` (its POST), the joiner in ``Reading``
(its first GET); then each side alternates between ``AwaitingPeer`` (the next poll) and ``Reading`` until a new
payload arrives (``ReadyToSend``), and ``SendRequested`` writes its answer (``Writing``), which is re-read
(``Reconciling``) on a conflict. Any request can pause in ``BackingOff``; ``CloseRequested`` deletes the session
(``Deleting``). ``MACHINE`` is the transitions table; docs/rendezvous.md draws it.

Rules the machine keeps:

* Tokens. v1 sends the last ETag it saw in ``If-None-Match`` (poll) and ``If-Match`` (write); v2/v3 send the last
  ``sequence_token`` in the PUT body. Every successful write yields :class:`ReportWriteConfirmed` with the token the
  server returned, and every new peer payload yields :class:`DeliverPayload` with the token of the GET that carried
  it: the two tokens the HPKE channel binds into its AAD (docs/protocol.md §5).
* Own echo. A GET whose token is the one we last saw (our own write, or the peer payload we already delivered) is
  "nothing new": each peer payload is surfaced exactly once.
* Conflicts. 409/412 is never answered by a blind overwrite: the machine re-reads. If the slot holds our own data,
  an earlier attempt of this very PUT landed (its response was lost) and the write is confirmed; otherwise the peer
  wrote first: its payload is delivered and our payload is reported back in :class:`ReportWriteRejected`.
* A write whose response was lost may have landed; if the re-read then finds the peer's data, the peer has
  already answered it (ping-pong), so the write is confirmed without a token and the reply delivered.
* Retries resend the identical request bytes (a v3 server acknowledges a repeated PUT; v1/v2 servers answer with
  a conflict and the re-read sorts it out). 429 and 5xx back off exponentially, honouring ``retry_after_ms`` or
  ``Retry-After``. 404 means the session is gone: terminal. So is the caller's own deadline.
* Expiry. The session's end shortens that deadline as soon as the machine learns it: ``expires_in_ms`` (v3) and
  ``expires_ts`` (v2) from the JSON bodies; for v1, the lifetime ``Expires`` minus ``Last-Modified`` of a response,
  two dates from the server's own clock, so no clock comparison between client and server is needed. A 404 that
  comes within :data:`EXPIRY_MARGIN_MS` of that end is reported as ``"expired"``, any other as ``"gone"`` (deleted):
  this client learns the end late by a response's latency (v3), by the time since the slot's last write (v1) or by
  the skew between the clocks (v2), so the server may drop the session a little before this client's deadline.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar
from urllib.parse import urljoin

from .._json import dumps
from .._machine import Machine, stay
from ..errors import LocalProtocolError, RemoteProtocolError
from ..http import HttpRequest, HttpResponse, split_url
from ..vocabulary import HttpRequestFailed, HttpResponseReceived, SendHttpRequest, TimerFired
from ._http import (
    MAX_PAYLOAD_BYTES,
    ApiGeneration,
    MalformedJsonError,
    is_opaque_id,
    media_type,
    parse_json_object,
)

__all__ = [
    "EXPIRY_MARGIN_MS",
    "MACHINE",
    "AwaitingPeer",
    "BackingOff",
    "ClientConfig",
    "CloseRequested",
    "Creating",
    "Deleting",
    "DeliverPayload",
    "Effect",
    "Event",
    "Link",
    "MalformedResponseError",
    "Reading",
    "ReadyToSend",
    "Reconciling",
    "ReportSessionClosed",
    "ReportSessionCreated",
    "ReportSessionFailure",
    "ReportWriteConfirmed",
    "ReportWriteRejected",
    "SendRequested",
    "SessionClosed",
    "SessionFailed",
    "State",
    "Writing",
    "create_session",
    "deadline",
    "is_finished",
    "join_session",
    "session_deadline",
    "transition",
]


#: A 404 this close to the session's announced end (or later) means it expired rather than that it was deleted.
EXPIRY_MARGIN_MS = 5_000


class MalformedResponseError(RemoteProtocolError):
    """A rendezvous server answered with something that does not follow its API."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Which API to speak and where.

    ``endpoint`` is the rendezvous collection URL: for v1 the URL to POST to; for v2/v3 the prefix under which
    ``/{id}`` names a session (e.g. ``https://hs/_matrix/client/unstable/io.element.msc4388/rendezvous``).
    ``timeout_ms`` is the caller's own deadline, counted from :func:`create_session` / :func:`join_session`.
    ``authenticated_create`` marks the creating POST ``authenticated`` (the adapter adds the signed-in user's access
    token), for servers that require it to create a session (MSC4388's default ``authenticated`` mode).
    """

    generation: ApiGeneration
    endpoint: str
    poll_interval_ms: int = 1_000
    timeout_ms: int = 300_000
    retry_base_ms: int = 250
    retry_max_ms: int = 8_000
    authenticated_create: bool = False

    def __post_init__(self) -> None:
        endpoint = split_url(self.endpoint)
        if endpoint is None or endpoint.scheme not in ("http", "https"):
            raise LocalProtocolError("endpoint must be an absolute http(s) URL")
        if min(self.poll_interval_ms, self.timeout_ms, self.retry_base_ms, self.retry_max_ms) <= 0:
            raise LocalProtocolError("intervals and timeouts must be positive")


# ---------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequested:
    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRequested:
    pass


Event = HttpResponseReceived | HttpRequestFailed | TimerFired | SendRequested | CloseRequested

# --------------------------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSessionCreated:
    """Our POST created the session: ``url`` always, ``rendezvous_id`` for v2/v3 (what goes into the QR)."""

    url: str
    rendezvous_id: str | None
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverPayload:
    """A new payload from the peer, delivered once, with the token of the GET that carried it."""

    data: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportWriteConfirmed:
    """Our payload reached the slot; ``token`` is what the server returned for it.

    ``token`` is None in one case only: an attempt whose response was lost landed, and the peer answered it before
    the machine could look, so the slot now holds the peer's reply (delivered next) and our write's token was never
    seen. A layer that needs that token (the v3 AAD) cannot continue and must abort.
    """

    token: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportWriteRejected:
    """The peer wrote first; ``payload`` (ours) was not stored. Its payload came in the DeliverPayload before."""

    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSessionClosed:
    """``reason``: "gone" (404: deleted), "expired" (404 at its announced end), "deleted" (our DELETE), "cancelled"
    (closed before creation finished)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSessionFailure:
    reason: str  # "deadline", "malformed_response", "unexpected_status", "too_large", "conflict_without_change"
    detail: str


Effect = (
    SendHttpRequest
    | ReportSessionCreated
    | DeliverPayload
    | ReportWriteConfirmed
    | ReportWriteRejected
    | ReportSessionClosed
    | ReportSessionFailure
)

# ---------------------------------------------------------------------------------------------------- states


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """What every state after creation knows about the session."""

    config: ClientConfig
    url: str
    deadline_ms: int
    seen_token: str | None  # token of the last revision observed (our write or a GET)
    last_request_id: int
    expires_ms: int | None = None  # the session's end as the server announced it (on this client's clock)


@dataclass(frozen=True, slots=True, kw_only=True)
class Creating:
    config: ClientConfig
    deadline_ms: int
    request: HttpRequest
    request_id: int
    attempts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    link: Link
    request: HttpRequest
    request_id: int
    attempts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingPeer:
    link: Link
    poll_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyToSend:
    link: Link


@dataclass(frozen=True, slots=True, kw_only=True)
class Writing:
    link: Link
    payload: str
    request: HttpRequest
    request_id: int
    attempts: int = 0
    maybe_applied: bool = False  # an earlier attempt got no answer (or a 5xx, not a 429): it may have landed


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciling:
    link: Link
    payload: str
    request: HttpRequest
    request_id: int
    attempts: int = 0
    maybe_applied: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleting:
    link: Link
    request: HttpRequest
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BackingOff:
    """Waiting to resend ``resume.request`` (the identical bytes) at ``until_ms``."""

    resume: Creating | Reading | Writing | Reconciling
    until_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFailed:
    reason: str
    detail: str


State = (
    Creating
    | Reading
    | AwaitingPeer
    | ReadyToSend
    | Writing
    | Reconciling
    | Deleting
    | BackingOff
    | SessionClosed
    | SessionFailed
)

Effects = tuple[Effect, ...]
Result = tuple[State, Effects]

# ------------------------------------------------------------------------------------------------- requests


def _check_payload(payload: str) -> bytes:
    try:
        encoded = payload.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("payload is not valid Unicode") from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise LocalProtocolError(f"payload is {len(encoded)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return encoded


def _post(config: ClientConfig, payload: bytes) -> HttpRequest:
    if config.generation is ApiGeneration.V1:
        return HttpRequest(
            method="POST",
            target=config.endpoint,
            headers=(("content-type", "text/plain"),),
            body=payload,
            authenticated=config.authenticated_create,
        )
    return HttpRequest(
        method="POST",
        target=config.endpoint,
        headers=(("content-type", "application/json"),),
        body=dumps({"data": payload.decode("utf-8")}),
        authenticated=config.authenticated_create,
    )


def _get(link: Link, *, conditional: bool) -> HttpRequest:
    headers: tuple[tuple[str, str], ...] = ()
    if conditional and link.config.generation is ApiGeneration.V1 and link.seen_token is not None:
        headers = (("if-none-match", link.seen_token),)
    return HttpRequest(method="GET", target=link.url, headers=headers)


def _put(link: Link, payload: bytes) -> HttpRequest:
    assert link.seen_token is not None
    if link.config.generation is ApiGeneration.V1:
        return HttpRequest(
            method="PUT",
            target=link.url,
            headers=(("content-type", "text/plain"), ("if-match", link.seen_token)),
            body=payload,
        )
    return HttpRequest(
        method="PUT",
        target=link.url,
        headers=(("content-type", "application/json"),),
        body=dumps({"sequence_token": link.seen_token, "data": payload.decode("utf-8")}),
    )


def _delete(link: Link) -> HttpRequest:
    return HttpRequest(method="DELETE", target=link.url)


# ------------------------------------------------------------------------------------------------ entry points


def create_session(config: ClientConfig, payload: str, *, now_ms: int) -> Result:
    """Start as the creator: POST ``payload``. The first request has id 1."""
    request = _post(config, _check_payload(payload))
    state = Creating(config=config, deadline_ms=now_ms + config.timeout_ms, request=request, request_id=1)
    return state, (SendHttpRequest(request_id=1, request=request),)


def join_session(config: ClientConfig, session: str, *, now_ms: int) -> Result:
    """Start as the joiner of ``session``: a v1 session URL, or a v2/v3 rendezvous id. GETs the current payload."""
    if config.generation is ApiGeneration.V1:
        parts = split_url(session)
        if parts is None or parts.scheme not in ("http", "https"):
            raise LocalProtocolError("a v1 session is named by an absolute http(s) URL")
        url = session
    else:
        if not is_opaque_id(session):
            raise LocalProtocolError("a rendezvous id follows the opaque identifier grammar")
        url = f"{config.endpoint.rstrip('/')}/{session}"
    link = Link(config=config, url=url, deadline_ms=now_ms + config.timeout_ms, seen_token=None, last_request_id=1)
    request = _get(link, conditional=False)
    return Reading(link=link, request=request, request_id=1), (SendHttpRequest(request_id=1, request=request),)


def deadline(state: State) -> int | None:
    """When the caller should feed :class:`TimerFired` next (None: no timer, in a terminal state or while deleting).

    A DELETE in flight ends on its answer or its loss, never on the clock (``(Deleting, TimerFired)`` is ``stay``).
    """
    if isinstance(state, SessionClosed | SessionFailed | Deleting):
        return None
    ends_ms = session_deadline(state)
    if isinstance(state, BackingOff):
        return min(state.until_ms, ends_ms)
    if isinstance(state, AwaitingPeer):
        return min(state.poll_at_ms, ends_ms)
    return ends_ms


def session_deadline(state: State) -> int:
    """When the session ends for this machine: the caller's deadline, shortened by the server's expiry."""
    if isinstance(state, Creating):
        return state.deadline_ms
    if isinstance(state, BackingOff):
        return session_deadline(state.resume)
    assert not isinstance(state, SessionClosed | SessionFailed), "a terminal state has no deadline"
    return state.link.deadline_ms


# ---------------------------------------------------------------------------------------------------- steps


def _fail(reason: str, detail: str) -> tuple[SessionFailed, Effects]:
    return SessionFailed(reason=reason, detail=detail), (ReportSessionFailure(reason=reason, detail=detail),)


def _closed(reason: str) -> tuple[SessionClosed, Effects]:
    return SessionClosed(reason=reason), (ReportSessionClosed(reason=reason),)


def _next_id(state: Creating | Reading | Writing | Reconciling) -> int:
    if isinstance(state, Creating):
        return state.request_id + 1
    return max(state.request_id, state.link.last_request_id) + 1


def _start_read(link: Link, *, conditional: bool) -> tuple[Reading, Effects]:
    request_id = link.last_request_id + 1
    request = _get(link, conditional=conditional)
    link = replace(link, last_request_id=request_id)
    return Reading(link=link, request=request, request_id=request_id), (
        SendHttpRequest(request_id=request_id, request=request),
    )


def _start_write(link: Link, payload: str) -> tuple[Writing, Effects]:
    request_id = link.last_request_id + 1
    request = _put(link, payload.encode("utf-8"))
    link = replace(link, last_request_id=request_id)
    return Writing(link=link, payload=payload, request=request, request_id=request_id), (
        SendHttpRequest(request_id=request_id, request=request),
    )


def _start_delete(link: Link) -> tuple[Deleting, Effects]:
    request_id = link.last_request_id + 1
    request = _delete(link)
    link = replace(link, last_request_id=request_id)
    return Deleting(link=link, request=request, request_id=request_id), (
        SendHttpRequest(request_id=request_id, request=request),
    )


def _await_peer(link: Link, now_ms: int) -> AwaitingPeer:
    return AwaitingPeer(link=link, poll_at_ms=now_ms + link.config.poll_interval_ms)


def _back_off(
    state: Creating | Reading | Writing | Reconciling, now_ms: int, response: HttpResponse | None
) -> tuple[BackingOff, Effects]:
    config = state.config if isinstance(state, Creating) else state.link.config
    delay = min(config.retry_base_ms * 2 ** min(state.attempts, 16), config.retry_max_ms)
    if response is not None:
        delay = max(delay, _retry_after_ms(response))
    resume = replace(state, attempts=state.attempts + 1)
    if isinstance(resume, Writing) and (response is None or response.status != 429):
        # No answer, or a 5xx (perhaps from a proxy whose upstream took the write): it may have landed. A 429 says
        # the server refused the request before acting on it.
        resume = replace(resume, maybe_applied=True)
    return BackingOff(resume=resume, until_ms=now_ms + delay), ()


_DELAY_SECONDS = re.compile(r"[0-9]{1,6}")


def _retry_after_ms(response: HttpResponse) -> int:
    try:
        value = parse_json_object(response.body).get("retry_after_ms")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3_600_000:
            return value
    except MalformedJsonError:
        pass
    # Retry-After as delay-seconds (RFC 9110 §10.2.3): ASCII digits only, between optional spaces or tabs. The
    # HTTP-date form and anything else count as absent (str.isdigit would admit "²", which int() refuses).
    header = response.header("retry-after")
    seconds = None if header is None else _DELAY_SECONDS.fullmatch(header.strip(" \t"))
    return int(seconds[0]) * 1000 if seconds is not None else 0


# ---------------------------------------------------------------------------------------------------- responses


def _retry_later(response: HttpResponse) -> bool:
    return response.status == 429 or 500 <= response.status <= 599


def _refused(
    state: Reading | Writing | Reconciling, response: HttpResponse, now_ms: int
) -> tuple[BackingOff | SessionClosed | SessionFailed, Effects] | None:
    """What an answer means whatever the request was (try later, the session is gone, too large), or ``None``."""
    if _retry_later(response):
        return _back_off(state, now_ms, response)
    if response.status == 404:
        expires_ms = state.link.expires_ms
        return _closed("expired" if expires_ms is not None and now_ms >= expires_ms - EXPIRY_MARGIN_MS else "gone")
    if response.status == 413:
        return _fail("too_large", "the server refused the payload as too large")
    return None


_RequestT = TypeVar("_RequestT", Creating, Reading, Writing, Reconciling)
_ParsedT = TypeVar("_ParsedT")


def _parsed(
    parse: Callable[[_RequestT, HttpResponse, int], tuple[_ParsedT, Effects]],
    state: _RequestT,
    response: HttpResponse,
    now_ms: int,
) -> tuple[_ParsedT | SessionFailed, Effects]:
    """``parse(state, response, now_ms)``; a response that does not follow the API fails the session."""
    try:
        return parse(state, response, now_ms)
    except (MalformedResponseError, MalformedJsonError) as exc:
        return _fail("malformed_response", str(exc))


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise MalformedResponseError(message)


def _string_field(content: dict[str, Any], name: str) -> str:
    value = content.get(name)
    _expect(isinstance(value, str), f"'{name}' is missing or not a string")
    assert isinstance(value, str)
    return value


def _token_field(content: dict[str, Any]) -> str:
    token = _string_field(content, "sequence_token")
    _expect(0 < len(token) <= 1024, "'sequence_token' is empty or too long")
    return token


def _etag(response: HttpResponse) -> str:
    etag = response.header("etag")
    _expect(etag is not None and 0 < len(etag) <= 1024, "no ETag header")
    assert etag is not None
    return etag


def _expiry(config: ClientConfig, content: dict[str, Any], now_ms: int) -> int | None:
    name = "expires_in_ms" if config.generation is ApiGeneration.V3 else "expires_ts"
    value = content.get(name)
    if value is None:
        return None
    _expect(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"'{name}' is not an integer")
    assert isinstance(value, int)
    return now_ms + value if config.generation is ApiGeneration.V3 else value


def _v1_lifetime_ms(response: HttpResponse) -> int | None:
    """A new v1 session's lifetime: ``Expires`` minus ``Last-Modified`` of the creating response.

    Both dates come from the server's clock and, on creation, ``Last-Modified`` is the creation time, so their
    difference is the session's lifetime whatever the skew between the two clocks; the absolute dates are never
    compared with ``now_ms``. Missing or malformed headers leave the caller's own deadline in force.
    """
    expires, modified = response.header("expires"), response.header("last-modified")
    if expires is None or modified is None:
        return None
    try:
        lifetime = parsedate_to_datetime(expires) - parsedate_to_datetime(modified)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    milliseconds = int(lifetime.total_seconds() * 1000)
    return milliseconds if milliseconds > 0 else None


def _unexpected(response: HttpResponse) -> tuple[SessionFailed, Effects]:
    return _fail("unexpected_status", f"HTTP {response.status}")


def _on_created(state: Creating, response: HttpResponse, now_ms: int) -> tuple[AwaitingPeer | SessionFailed, Effects]:
    config = state.config
    deadline = state.deadline_ms
    if config.generation is ApiGeneration.V1:
        if response.status not in (200, 201):
            return _unexpected(response)
        url = _string_field(parse_json_object(response.body), "url")
        # urljoin raises where urlsplit does; once the reference splits, so does the joined URL (the port aside).
        _expect(split_url(url) is not None, "'url' does not parse")
        url = urljoin(config.endpoint, url)
        parts = split_url(url)
        _expect(parts is not None and parts.scheme in ("http", "https"), "'url' is not an http(s) URL")
        token = _etag(response)
        rendezvous_id = None
        lifetime = _v1_lifetime_ms(response)
        expires = None if lifetime is None else now_ms + lifetime
    else:
        if response.status != 200:
            return _unexpected(response)
        content = parse_json_object(response.body)
        rendezvous_id = _string_field(content, "id")
        _expect(is_opaque_id(rendezvous_id), "'id' does not follow the opaque identifier grammar")
        url = f"{config.endpoint.rstrip('/')}/{rendezvous_id}"
        token = _token_field(content)
        expires = _expiry(config, content, now_ms)
    link = Link(config=config, url=url, deadline_ms=deadline, seen_token=token, last_request_id=state.request_id)
    if expires is not None:
        link = _learn_expiry(link, expires)
    return _await_peer(link, now_ms), (
        ReportSessionCreated(url=url, rendezvous_id=rendezvous_id, token=token),
        ReportWriteConfirmed(token=token),
    )


def _read_slot(link: Link, response: HttpResponse, now_ms: int) -> tuple[str | None, str | None, Link]:
    """``(data, token, link)`` from a 200 GET; ``(None, None, link)`` for a 304.

    The returned ``link`` may carry a shorter deadline learnt from the response (v1 expiry headers, v2/v3 fields).
    """
    if link.config.generation is ApiGeneration.V1:
        # Last-Modified is the time of the last write, not of this read, so this bound errs late: it never ends a
        # session that is still alive, and it ends a joiner's wait within one lifetime of its first read.
        lifetime = _v1_lifetime_ms(response)
        if lifetime is not None:
            link = _learn_expiry(link, now_ms + lifetime)
        if response.status == 304:
            return None, None, link
        _expect(response.status == 200, f"HTTP {response.status}")
        _expect(media_type(response.header("content-type")) == "text/plain", "payload is not text/plain")
        try:
            data = response.body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedResponseError("payload is not UTF-8") from None
        return data, _etag(response), link
    _expect(response.status == 200, f"HTTP {response.status}")
    content = parse_json_object(response.body)
    data = _string_field(content, "data")
    token = _token_field(content)
    expiry = _expiry(link.config, content, now_ms)
    if expiry is not None:
        link = _learn_expiry(link, expiry)
    return data, token, link


def _learn_expiry(link: Link, expires_ms: int) -> Link:
    """The session ends at ``expires_ms`` at the latest: it bounds the deadline, and a 404 from then on is expiry."""
    if link.expires_ms is not None and link.expires_ms <= expires_ms:
        return link
    return replace(link, deadline_ms=min(link.deadline_ms, expires_ms), expires_ms=expires_ms)


def _on_read(
    state: Reading, response: HttpResponse, now_ms: int
) -> tuple[AwaitingPeer | ReadyToSend | SessionFailed, Effects]:
    if response.status not in (200, 304):
        return _unexpected(response)
    data, token, link = _read_slot(state.link, response, now_ms)
    if data is None or token is None or token == state.link.seen_token:
        return _await_peer(link, now_ms), ()  # nothing new: a 304, our echo, or old news
    link = replace(link, seen_token=token)
    return ReadyToSend(link=link), (DeliverPayload(data=data, token=token),)


def _on_written(
    state: Writing, response: HttpResponse, now_ms: int
) -> tuple[Reconciling | AwaitingPeer | SessionFailed, Effects]:
    link = state.link
    if response.status in (409, 412):
        request_id = _next_id(state)
        request = _get(link, conditional=False)
        link = replace(link, last_request_id=request_id)
        reconciling = Reconciling(
            link=link, payload=state.payload, request=request, request_id=request_id, maybe_applied=state.maybe_applied
        )
        return reconciling, (SendHttpRequest(request_id=request_id, request=request),)
    if link.config.generation is ApiGeneration.V1:
        if response.status not in (200, 202, 204):
            return _unexpected(response)
        token = _etag(response)
    else:
        if response.status != 200:
            return _unexpected(response)
        token = _token_field(parse_json_object(response.body))
    link = replace(link, seen_token=token)
    return _await_peer(link, now_ms), (ReportWriteConfirmed(token=token),)


def _on_reconciled(
    state: Reconciling, response: HttpResponse, now_ms: int
) -> tuple[AwaitingPeer | ReadyToSend | SessionFailed, Effects]:
    if response.status != 200:
        return _unexpected(response)
    data, token, link = _read_slot(state.link, response, now_ms)
    assert data is not None and token is not None  # a 200 always carries both
    if data == state.payload:
        # An earlier attempt of this PUT landed and only its response was lost.
        return _await_peer(replace(link, seen_token=token), now_ms), (ReportWriteConfirmed(token=token),)
    if token == link.seen_token:
        return _fail("conflict_without_change", "the server refused our write but the slot did not change")
    link = replace(link, seen_token=token)
    received = DeliverPayload(data=data, token=token)
    if state.maybe_applied:
        # Ping-pong: a peer writes only after reading our write, so foreign data after a lost response is its reply.
        return ReadyToSend(link=link), (ReportWriteConfirmed(token=None), received)
    return ReadyToSend(link=link), (received, ReportWriteRejected(payload=state.payload))


# ----------------------------------------------------------------------------------------------------- moves
#
# One handler per move, annotated with the states it can lead to: the diagram in docs/rendezvous.md is drawn from
# those annotations, and mypy holds each handler to its own. Every state but Deleting (already ending) fails once the
# session's deadline has passed, whatever the event; an answer whose request id is not the awaited one is stale.

_LiveT = TypeVar("_LiveT", Creating, Reading, AwaitingPeer, ReadyToSend, Writing, Reconciling, BackingOff)


def _expired(
    state: Creating | Reading | AwaitingPeer | ReadyToSend | Writing | Reconciling | BackingOff, now_ms: int
) -> bool:
    return now_ms >= session_deadline(state)


def _expire() -> tuple[SessionFailed, Effects]:
    return _fail("deadline", "the session's deadline passed")


def _unchanged(state: _LiveT, event: object, now_ms: int) -> tuple[_LiveT | SessionFailed, Effects]:
    """Nothing happens (an early timer, a late answer) unless the deadline has passed."""
    if _expired(state, now_ms):
        return _expire()
    return state, ()


def _poll(
    state: AwaitingPeer, event: TimerFired, now_ms: int
) -> tuple[AwaitingPeer | Reading | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    if now_ms < state.poll_at_ms:
        return state, ()
    return _start_read(state.link, conditional=True)


def _resume(
    state: BackingOff, event: TimerFired, now_ms: int
) -> tuple[BackingOff | Creating | Reading | Writing | Reconciling | SessionFailed, Effects]:
    """Send the identical request again, under a new id."""
    if _expired(state, now_ms):
        return _expire()
    if now_ms < state.until_ms:
        return state, ()
    resume = state.resume
    request_id = _next_id(resume)
    if isinstance(resume, Creating):
        resumed: Creating | Reading | Writing | Reconciling = replace(resume, request_id=request_id)
    else:
        resumed = replace(resume, request_id=request_id, link=replace(resume.link, last_request_id=request_id))
    return resumed, (SendHttpRequest(request_id=request_id, request=resume.request),)


def _send(state: ReadyToSend, event: SendRequested, now_ms: int) -> tuple[Writing | SessionFailed, Effects]:
    _check_payload(event.payload)  # the caller's mistake raises, whatever the time
    if _expired(state, now_ms):
        return _expire()
    return _start_write(state.link, event.payload)


def _cancel_creation(
    state: Creating, event: CloseRequested, now_ms: int
) -> tuple[SessionClosed | SessionFailed, Effects]:
    """No session exists yet (or none that anyone knows the id of): nothing to delete."""
    if _expired(state, now_ms):
        return _expire()
    return _closed("cancelled")


def _close(
    state: Reading | AwaitingPeer | ReadyToSend | Writing | Reconciling, event: CloseRequested, now_ms: int
) -> tuple[Deleting | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    return _start_delete(state.link)


def _close_backing_off(
    state: BackingOff, event: CloseRequested, now_ms: int
) -> tuple[SessionClosed | Deleting | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    if isinstance(state.resume, Creating):
        return _closed("cancelled")
    return _start_delete(state.resume.link)


_RetriedT = TypeVar("_RetriedT", Creating, Reading, Writing, Reconciling)


def _lost(
    state: _RetriedT, event: HttpRequestFailed, now_ms: int
) -> tuple[_RetriedT | BackingOff | SessionFailed, Effects]:
    """No answer came: the request may or may not have landed; send the same bytes again after a pause."""
    if _expired(state, now_ms):
        return _expire()
    if event.request_id != state.request_id:
        return state, ()
    return _back_off(state, now_ms, None)


def _created(
    state: Creating, event: HttpResponseReceived, now_ms: int
) -> tuple[Creating | AwaitingPeer | BackingOff | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    if event.request_id != state.request_id:
        return state, ()
    if _retry_later(event.response):
        return _back_off(state, now_ms, event.response)
    return _parsed(_on_created, state, event.response, now_ms)


def _read(
    state: Reading, event: HttpResponseReceived, now_ms: int
) -> tuple[Reading | AwaitingPeer | ReadyToSend | BackingOff | SessionClosed | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    if event.request_id != state.request_id:
        return state, ()
    return _refused(state, event.response, now_ms) or _parsed(_on_read, state, event.response, now_ms)


def _written(
    state: Writing, event: HttpResponseReceived, now_ms: int
) -> tuple[Writing | Reconciling | AwaitingPeer | BackingOff | SessionClosed | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    if event.request_id != state.request_id:
        return state, ()
    return _refused(state, event.response, now_ms) or _parsed(_on_written, state, event.response, now_ms)


def _reconciled(
    state: Reconciling, event: HttpResponseReceived, now_ms: int
) -> tuple[Reconciling | AwaitingPeer | ReadyToSend | BackingOff | SessionClosed | SessionFailed, Effects]:
    if _expired(state, now_ms):
        return _expire()
    if event.request_id != state.request_id:
        return state, ()
    return _refused(state, event.response, now_ms) or _parsed(_on_reconciled, state, event.response, now_ms)


def _deleted(
    state: Deleting, event: HttpResponseReceived | HttpRequestFailed, now_ms: int
) -> tuple[Deleting | SessionClosed, Effects]:
    """Any answer to the DELETE, or none, closes the session: deleting is best effort, the session expires anyway."""
    if event.request_id != state.request_id:
        return state, ()
    return _closed("deleted")


_ANSWERS = (HttpResponseReceived, HttpRequestFailed)

MACHINE: Final = Machine[State, Event, Effect](
    "rendezvous client",
    {
        (Creating, HttpResponseReceived): _created,
        (Creating, HttpRequestFailed): _lost,
        (Creating, TimerFired): _unchanged,
        (Creating, CloseRequested): _cancel_creation,
        (Reading, HttpResponseReceived): _read,
        (Reading, HttpRequestFailed): _lost,
        (Reading, TimerFired): _unchanged,
        (AwaitingPeer, TimerFired): _poll,
        **{(AwaitingPeer, answer): _unchanged for answer in _ANSWERS},
        (ReadyToSend, SendRequested): _send,
        **{(ReadyToSend, event): _unchanged for event in (*_ANSWERS, TimerFired)},
        (Writing, HttpResponseReceived): _written,
        (Writing, HttpRequestFailed): _lost,
        (Writing, TimerFired): _unchanged,
        (Reconciling, HttpResponseReceived): _reconciled,
        (Reconciling, HttpRequestFailed): _lost,
        (Reconciling, TimerFired): _unchanged,
        (BackingOff, TimerFired): _resume,
        **{(BackingOff, answer): _unchanged for answer in _ANSWERS},
        (BackingOff, CloseRequested): _close_backing_off,
        **{(state, CloseRequested): _close for state in (Reading, AwaitingPeer, ReadyToSend, Writing, Reconciling)},
        **{(Deleting, answer): _deleted for answer in _ANSWERS},
        (Deleting, TimerFired): stay,
    },
    initial=(Creating, Reading),
)


def transition(state: State, event: Event, *, now_ms: int) -> Result:
    """The pure step: ``MACHINE``'s move for ``(state, event)``. A pair not in it raises LocalProtocolError before
    anything changes; so does a payload over the limit."""
    return MACHINE.transition(state, event, now_ms)


def is_finished(state: State) -> bool:
    """True once the machine has ended (:class:`SessionClosed`, :class:`SessionFailed`)."""
    return MACHINE.is_terminal(state)
