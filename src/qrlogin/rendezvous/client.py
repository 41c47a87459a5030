"""The client side of a rendezvous session: a pure machine that decides every HTTP request a device makes.

Theory of operation
-------------------
A rendezvous session is one shared slot (PROTOCOL.md §6), so the two devices play ping-pong: the creator POSTs its
first payload and then polls until the slot changes; the joiner GETs the creator's payload and answers with a PUT;
and so on. This machine plays one side. It never touches the network: it emits :class:`SendRequest` effects carrying
plain :class:`~qrlogin.http.HttpRequest` values and is fed :class:`ResponseReceived` (or
:class:`RequestFailed` when no response came back) and :class:`TimerFired` when :func:`next_timer` is due.
At most one request is in flight; every request carries an id, and a response to any other id is ignored.

States are named for what they wait for::

    create_session ─► Creating ──201/200──► AwaitingPeer ◄──── poll ────► Reading ─new payload─► ReadyToSend
    join_session ─────────────────────────────────────────────► Reading                           │ SendRequested
                                                      AwaitingPeer ◄──200/202── Writing ◄──────────┘
                                                                          409/412 │  lost response: same bytes again
                                                                                  ▼
                                               Reconciling (GET): our data there? confirmed : peer's payload + rejected

Rules the machine keeps:

* Tokens. v1 sends the last ETag it saw in ``If-None-Match`` (poll) and ``If-Match`` (write); v2/v3 send the last
  ``sequence_token`` in the PUT body. Every successful write yields :class:`WriteConfirmed` with the token the
  server returned, and every new peer payload yields :class:`PayloadReceived` with the token of the GET that carried
  it: the two tokens the HPKE channel binds into its AAD (PROTOCOL.md §5).
* Own echo. A GET whose token is the one we last saw (our own write, or the peer payload we already delivered) is
  "nothing new": each peer payload is surfaced exactly once.
* Conflicts. 409/412 is never answered by a blind overwrite: the machine re-reads. If the slot holds our own data,
  an earlier attempt of this very PUT landed (its response was lost) and the write is confirmed; otherwise the peer
  wrote first: its payload is delivered and our payload is reported back in :class:`WriteRejected`.
* A write whose response was lost may have landed; if the re-read then finds the peer's data, the peer has
  already answered it (ping-pong), so the write is confirmed without a token and the reply delivered.
* Retries resend the identical request bytes (a v3 server acknowledges a repeated PUT; v1/v2 servers answer with
  a conflict and the re-read sorts it out). 429 and 5xx back off exponentially, honouring ``retry_after_ms`` or
  ``Retry-After``. 404 means the session is gone: terminal. So is the caller's own deadline.
* Expiry. The session's end shortens that deadline as soon as the machine learns it: ``expires_in_ms`` (v3) and
  ``expires_ts`` (v2) from the JSON bodies; for v1, the lifetime ``Expires`` minus ``Last-Modified`` of a response,
  two dates from the server's own clock, so no clock comparison between client and server is needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from .._machine import LegalMoves, is_terminal, require_legal
from ..errors import LocalProtocolError, RemoteProtocolError
from ..http import HttpRequest, HttpResponse, split_url
from ._http import (
    MAX_PAYLOAD_BYTES,
    ApiGeneration,
    MalformedJsonError,
    is_opaque_id,
    media_type,
    parse_json_object,
)

__all__ = [
    "LEGAL_MOVES",
    "AwaitingPeer",
    "BackingOff",
    "ClientConfig",
    "CloseRequested",
    "Closed",
    "Creating",
    "Deleting",
    "Effect",
    "Event",
    "Failed",
    "Link",
    "MalformedResponseError",
    "PayloadReceived",
    "Reading",
    "ReadyToSend",
    "Reconciling",
    "RequestFailed",
    "ResponseReceived",
    "SendRequest",
    "SendRequested",
    "SessionClosed",
    "SessionCreated",
    "SessionFailed",
    "State",
    "TimerFired",
    "WriteConfirmed",
    "WriteRejected",
    "Writing",
    "create_session",
    "is_finished",
    "join_session",
    "next_deadline",
    "next_timer",
    "transition",
]


class MalformedResponseError(RemoteProtocolError):
    """A rendezvous server answered with something that does not follow its API."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Which API to speak and where.

    ``endpoint`` is the rendezvous collection URL: for v1 the URL to POST to; for v2/v3 the prefix under which
    ``/{id}`` names a session (e.g. ``https://hs/_matrix/client/unstable/io.element.msc4388/rendezvous``).
    ``timeout_ms`` is the caller's own deadline, counted from :func:`create_session` / :func:`join_session`.
    """

    generation: ApiGeneration
    endpoint: str
    poll_interval_ms: int = 1_000
    timeout_ms: int = 300_000
    retry_base_ms: int = 250
    retry_max_ms: int = 8_000

    def __post_init__(self) -> None:
        endpoint = split_url(self.endpoint)
        if endpoint is None or endpoint.scheme not in ("http", "https"):
            raise LocalProtocolError("endpoint must be an absolute http(s) URL")
        if min(self.poll_interval_ms, self.timeout_ms, self.retry_base_ms, self.retry_max_ms) <= 0:
            raise LocalProtocolError("intervals and timeouts must be positive")


# ---------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    request_id: int
    response: HttpResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFailed:
    """No response came back for ``request_id`` (connection error, timeout): it may or may not have been applied."""

    request_id: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequested:
    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRequested:
    pass


Event = ResponseReceived | RequestFailed | TimerFired | SendRequested | CloseRequested

# --------------------------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    request_id: int
    request: HttpRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCreated:
    """Our POST created the session: ``url`` always, ``rendezvous_id`` for v2/v3 (what goes into the QR)."""

    url: str
    rendezvous_id: str | None
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadReceived:
    """A new payload from the peer, delivered once, with the token of the GET that carried it."""

    data: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteConfirmed:
    """Our payload reached the slot; ``token`` is what the server returned for it.

    ``token`` is None in one case only: an attempt whose response was lost landed, and the peer answered it before
    the machine could look, so the slot now holds the peer's reply (delivered next) and our write's token was never
    seen. A layer that needs that token (the v3 AAD) cannot continue and must abort.
    """

    token: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRejected:
    """The peer wrote first; ``payload`` (ours) was not stored. Its payload came in the PayloadReceived before."""

    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed:
    reason: str  # "gone" (404), "deleted" (our DELETE), "cancelled" (closed before creation finished)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFailed:
    reason: str  # "deadline", "malformed_response", "unexpected_status", "too_large", "conflict_without_change"
    detail: str


Effect = SendRequest | SessionCreated | PayloadReceived | WriteConfirmed | WriteRejected | SessionClosed | SessionFailed

# ---------------------------------------------------------------------------------------------------- states


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """What every state after creation knows about the session."""

    config: ClientConfig
    url: str
    deadline_ms: int
    seen_token: str | None  # token of the last revision observed (our write or a GET)
    last_request_id: int


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
    maybe_applied: bool = False  # an earlier attempt got no answer (or a 5xx): it may have landed


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


InFlight = Creating | Reading | Writing | Reconciling | Deleting


@dataclass(frozen=True, slots=True, kw_only=True)
class BackingOff:
    """Waiting to resend ``resume.request`` (the identical bytes) at ``until_ms``."""

    resume: Creating | Reading | Writing | Reconciling
    until_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    reason: str
    detail: str


State = (
    Creating | Reading | AwaitingPeer | ReadyToSend | Writing | Reconciling | Deleting | BackingOff | Closed | Failed
)

_NETWORK = frozenset({ResponseReceived, RequestFailed, TimerFired})
LEGAL_MOVES: LegalMoves = {
    Creating: _NETWORK | {CloseRequested},
    Reading: _NETWORK | {CloseRequested},
    AwaitingPeer: _NETWORK | {CloseRequested},
    ReadyToSend: _NETWORK | {SendRequested, CloseRequested},
    Writing: _NETWORK | {CloseRequested},
    Reconciling: _NETWORK | {CloseRequested},
    Deleting: _NETWORK,
    BackingOff: _NETWORK | {CloseRequested},
    Closed: frozenset(),
    Failed: frozenset(),
}

Result = tuple[State, tuple[Effect, ...]]

# ------------------------------------------------------------------------------------------------- requests


def _check_payload(payload: str) -> bytes:
    try:
        encoded = payload.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("payload is not valid Unicode") from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise LocalProtocolError(f"payload is {len(encoded)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    return encoded


def _json_body(body: dict[str, str]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _post(config: ClientConfig, payload: bytes) -> HttpRequest:
    if config.generation is ApiGeneration.V1:
        return HttpRequest(
            method="POST", target=config.endpoint, headers=(("content-type", "text/plain"),), body=payload
        )
    return HttpRequest(
        method="POST",
        target=config.endpoint,
        headers=(("content-type", "application/json"),),
        body=_json_body({"data": payload.decode("utf-8")}),
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
        body=_json_body({"sequence_token": link.seen_token, "data": payload.decode("utf-8")}),
    )


def _delete(link: Link) -> HttpRequest:
    return HttpRequest(method="DELETE", target=link.url)


# ------------------------------------------------------------------------------------------------ entry points


def create_session(config: ClientConfig, payload: str, *, now_ms: int) -> Result:
    """Start as the creator: POST ``payload``. The first request has id 1."""
    request = _post(config, _check_payload(payload))
    state = Creating(config=config, deadline_ms=now_ms + config.timeout_ms, request=request, request_id=1)
    return state, (SendRequest(request_id=1, request=request),)


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
    return Reading(link=link, request=request, request_id=1), (SendRequest(request_id=1, request=request),)


def next_timer(state: State) -> int | None:
    """When the caller should feed :class:`TimerFired` next (None: no timer; terminal states)."""
    if isinstance(state, Closed | Failed):
        return None
    if isinstance(state, Creating):
        return state.deadline_ms
    if isinstance(state, BackingOff):
        return min(state.until_ms, _deadline(state.resume))
    if isinstance(state, AwaitingPeer):
        return min(state.poll_at_ms, state.link.deadline_ms)
    return state.link.deadline_ms


def _deadline(state: Creating | Reading | Writing | Reconciling) -> int:
    return state.deadline_ms if isinstance(state, Creating) else state.link.deadline_ms


# -------------------------------------------------------------------------------------------------- transition


def transition(state: State, event: Event, *, now_ms: int) -> Result:
    """The pure step. Illegal events raise LocalProtocolError before anything changes."""
    require_legal(LEGAL_MOVES, state, event)
    if isinstance(event, SendRequested):
        _check_payload(event.payload)
    if not isinstance(state, Deleting) and now_ms >= next_deadline(state):
        return _fail("deadline", "the session's deadline passed")
    if isinstance(event, CloseRequested):
        return _close(state)
    if isinstance(event, TimerFired):
        return _on_timer(state, now_ms)
    if isinstance(event, SendRequested):
        assert isinstance(state, ReadyToSend)
        return _start_write(state.link, event.payload)
    in_flight = _in_flight(state)
    if in_flight is None or event.request_id != in_flight.request_id:
        return state, ()  # a late answer to a request this machine has already given up on
    if isinstance(event, RequestFailed):
        return _back_off(in_flight, now_ms, None)
    try:
        return _on_response(in_flight, event.response, now_ms)
    except (MalformedResponseError, MalformedJsonError) as exc:
        return _fail("malformed_response", str(exc))


def next_deadline(state: State) -> int:
    if isinstance(state, Creating):
        return state.deadline_ms
    if isinstance(state, BackingOff):
        return _deadline(state.resume)
    assert not isinstance(state, Closed | Failed)
    return state.link.deadline_ms


def _in_flight(state: State) -> InFlight | None:
    if isinstance(state, Creating | Reading | Writing | Reconciling | Deleting):
        return state
    return None


def _fail(reason: str, detail: str) -> Result:
    return Failed(reason=reason, detail=detail), (SessionFailed(reason=reason, detail=detail),)


def _close(state: State) -> Result:
    link = _link_of(state)
    if link is None:
        return Closed(reason="cancelled"), (SessionClosed(reason="cancelled"),)
    request_id = link.last_request_id + 1
    request = _delete(link)
    link = replace(link, last_request_id=request_id)
    return Deleting(link=link, request=request, request_id=request_id), (
        SendRequest(request_id=request_id, request=request),
    )


def _link_of(state: State) -> Link | None:
    if isinstance(state, BackingOff):
        return _link_of(state.resume)
    if isinstance(state, Creating | Closed | Failed):
        return None
    return state.link


def _on_timer(state: State, now_ms: int) -> Result:
    if isinstance(state, AwaitingPeer) and now_ms >= state.poll_at_ms:
        return _start_read(state.link, conditional=True)
    if isinstance(state, BackingOff) and now_ms >= state.until_ms:
        resume = state.resume
        request_id = _next_id(resume)
        if isinstance(resume, Creating):
            resumed: Creating | Reading | Writing | Reconciling = replace(resume, request_id=request_id)
        else:
            resumed = replace(resume, request_id=request_id, link=replace(resume.link, last_request_id=request_id))
        return resumed, (SendRequest(request_id=request_id, request=resume.request),)
    return state, ()  # spurious or early timer


def _next_id(state: InFlight) -> int:
    if isinstance(state, Creating):
        return state.request_id + 1
    return max(state.request_id, state.link.last_request_id) + 1


def _start_read(link: Link, *, conditional: bool) -> Result:
    request_id = link.last_request_id + 1
    request = _get(link, conditional=conditional)
    link = replace(link, last_request_id=request_id)
    return Reading(link=link, request=request, request_id=request_id), (
        SendRequest(request_id=request_id, request=request),
    )


def _start_write(link: Link, payload: str) -> Result:
    request_id = link.last_request_id + 1
    request = _put(link, payload.encode("utf-8"))
    link = replace(link, last_request_id=request_id)
    return Writing(link=link, payload=payload, request=request, request_id=request_id), (
        SendRequest(request_id=request_id, request=request),
    )


def _await_peer(link: Link, now_ms: int) -> AwaitingPeer:
    return AwaitingPeer(link=link, poll_at_ms=now_ms + link.config.poll_interval_ms)


def _back_off(state: InFlight, now_ms: int, response: HttpResponse | None) -> Result:
    if isinstance(state, Deleting):
        # Best effort: the session expires anyway.
        return Closed(reason="deleted"), (SessionClosed(reason="deleted"),)
    config = state.config if isinstance(state, Creating) else state.link.config
    delay = min(config.retry_base_ms * 2 ** min(state.attempts, 16), config.retry_max_ms)
    if response is not None:
        delay = max(delay, _retry_after_ms(response))
    resume = replace(state, attempts=state.attempts + 1)
    if isinstance(resume, Writing):
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


def _on_response(state: InFlight, response: HttpResponse, now_ms: int) -> Result:
    status = response.status
    if isinstance(state, Deleting):
        return Closed(reason="deleted"), (SessionClosed(reason="deleted"),)
    if status == 429 or 500 <= status <= 599:
        return _back_off(state, now_ms, response)
    if isinstance(state, Creating):
        return _on_created(state, response, now_ms)
    if status == 404:
        return Closed(reason="gone"), (SessionClosed(reason="gone"),)
    if status == 413:
        return _fail("too_large", "the server refused the payload as too large")
    if isinstance(state, Reading):
        return _on_read(state, response, now_ms)
    if isinstance(state, Writing):
        return _on_written(state, response, now_ms)
    return _on_reconciled(state, response, now_ms)


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


def _unexpected(response: HttpResponse) -> Result:
    return _fail("unexpected_status", f"HTTP {response.status}")


def _on_created(state: Creating, response: HttpResponse, now_ms: int) -> Result:
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
        if lifetime is not None:
            deadline = min(deadline, now_ms + lifetime)
    else:
        if response.status != 200:
            return _unexpected(response)
        content = parse_json_object(response.body)
        rendezvous_id = _string_field(content, "id")
        _expect(is_opaque_id(rendezvous_id), "'id' does not follow the opaque identifier grammar")
        url = f"{config.endpoint.rstrip('/')}/{rendezvous_id}"
        token = _token_field(content)
        expiry = _expiry(config, content, now_ms)
        if expiry is not None:
            deadline = min(deadline, expiry)
    link = Link(config=config, url=url, deadline_ms=deadline, seen_token=token, last_request_id=state.request_id)
    return _await_peer(link, now_ms), (
        SessionCreated(url=url, rendezvous_id=rendezvous_id, token=token),
        WriteConfirmed(token=token),
    )


def _read_slot(link: Link, response: HttpResponse, now_ms: int) -> tuple[str | None, str | None, Link]:
    """``(data, token, link)`` from a 200 GET; ``(None, None, link)`` for a 304.

    The returned ``link`` may carry a shorter deadline learnt from the response (v1 expiry headers, v2/v3 fields).
    """
    if link.config.generation is ApiGeneration.V1:
        # Last-Modified is the time of the last write, not of this read, so this bound errs late: it never ends a
        # session that is still alive, and it ends a joiner's wait within one lifetime of its first read.
        lifetime = _v1_lifetime_ms(response)
        if lifetime is not None and now_ms + lifetime < link.deadline_ms:
            link = replace(link, deadline_ms=now_ms + lifetime)
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
    if expiry is not None and expiry < link.deadline_ms:
        link = replace(link, deadline_ms=expiry)
    return data, token, link


def _on_read(state: Reading, response: HttpResponse, now_ms: int) -> Result:
    if response.status not in (200, 304):
        return _unexpected(response)
    data, token, link = _read_slot(state.link, response, now_ms)
    if data is None or token is None or token == state.link.seen_token:
        return _await_peer(link, now_ms), ()  # nothing new: a 304, our echo, or old news
    link = replace(link, seen_token=token)
    return ReadyToSend(link=link), (PayloadReceived(data=data, token=token),)


def _on_written(state: Writing, response: HttpResponse, now_ms: int) -> Result:
    link = state.link
    if response.status in (409, 412):
        request_id = _next_id(state)
        request = _get(link, conditional=False)
        link = replace(link, last_request_id=request_id)
        reconciling = Reconciling(
            link=link, payload=state.payload, request=request, request_id=request_id, maybe_applied=state.maybe_applied
        )
        return reconciling, (SendRequest(request_id=request_id, request=request),)
    if link.config.generation is ApiGeneration.V1:
        if response.status not in (200, 202, 204):
            return _unexpected(response)
        token = _etag(response)
    else:
        if response.status != 200:
            return _unexpected(response)
        token = _token_field(parse_json_object(response.body))
    link = replace(link, seen_token=token)
    return _await_peer(link, now_ms), (WriteConfirmed(token=token),)


def _on_reconciled(state: Reconciling, response: HttpResponse, now_ms: int) -> Result:
    if response.status != 200:
        return _unexpected(response)
    data, token, link = _read_slot(state.link, response, now_ms)
    assert data is not None and token is not None  # a 200 always carries both
    if data == state.payload:
        # An earlier attempt of this PUT landed and only its response was lost.
        return _await_peer(replace(link, seen_token=token), now_ms), (WriteConfirmed(token=token),)
    if token == link.seen_token:
        return _fail("conflict_without_change", "the server refused our write but the slot did not change")
    link = replace(link, seen_token=token)
    received = PayloadReceived(data=data, token=token)
    if state.maybe_applied:
        # Ping-pong: a peer writes only after reading our write, so foreign data after a lost response is its reply.
        return ReadyToSend(link=link), (WriteConfirmed(token=None), received)
    return ReadyToSend(link=link), (received, WriteRejected(payload=state.payload))


def is_finished(state: State) -> bool:
    return is_terminal(LEGAL_MOVES, state)
