"""The client session machine against the real server core on a virtual clock, plus its edge cases."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous import client as c
from qrlogin.vocabulary import HttpRequestFailed, HttpResponseReceived, SendHttpRequest, TimerFired
from tests.machines import try_every_pair
from tests.rendezvous.rendezvous_util import ALL, BASE, PREFIX, Device, Loopback

V1, V2, V3 = ApiGeneration.V1, ApiGeneration.V2, ApiGeneration.V3


def config(generation: ApiGeneration, **overrides: Any) -> c.ClientConfig:
    return c.ClientConfig(generation=generation, endpoint=BASE + PREFIX[generation], **overrides)


def pair(net: Loopback, generation: ApiGeneration, initial: str = "") -> tuple[Device, Device]:
    creator = Device(net, c.create_session(config(generation), initial, now_ms=net.now_ms))
    creator.deliver()
    assert creator.created is not None
    name = creator.created.url if generation is V1 else creator.created.rendezvous_id
    assert name is not None
    joiner = Device(net, c.join_session(config(generation), name, now_ms=net.now_ms))
    return creator, joiner


def run(net: Loopback, devices: list[Device], script: dict[int, list[str]], limit: int = 2_000) -> None:
    """Run until every script is sent and delivered; each device sends its next line when it is its turn."""
    for _ in range(limit):
        progressed = False
        for index, device in enumerate(devices):
            if device.in_flight is not None:
                device.deliver()
                progressed = True
            elif isinstance(device.state, c.ReadyToSend) and script[index]:
                device.feed(c.SendRequested(payload=script[index].pop(0)))
                progressed = True
        if not progressed:
            idle = all(isinstance(d.state, c.ReadyToSend | c.AwaitingPeer) for d in devices)
            if idle and all(not lines for lines in script.values()) and _settled(devices):
                return
            # Nothing to deliver or send: the clock jumps to the earliest deadline and the due timers fire.
            when = net.harness.next_deadline()
            assert when is not None, "nothing to wait for"
            net.harness.advance_to(when)
            net.harness.fire_due_timers()
            while net.harness.step() is not None:
                pass
    raise AssertionError("did not settle")


def _settled(devices: list[Device]) -> bool:
    sent = sum(len(d.confirmed) for d in devices)
    received = sum(len(d.delivered) for d in devices)
    # Creation counts as a confirmed write that the joiner delivered too.
    return received >= sent


@pytest.mark.parametrize("generation", ALL)
def test_ping_pong_delivers_each_payload_once_in_order(generation: ApiGeneration) -> None:
    net = Loopback()
    creator, joiner = pair(net, generation, initial="hello")
    g_lines = [f"g{i}" for i in range(6)]
    s_lines = [f"s{i}" for i in range(6)]
    run(net, [creator, joiner], {0: list(g_lines), 1: list(s_lines)})
    assert [p.data for p in joiner.delivered] == ["hello", *g_lines]
    assert [p.data for p in creator.delivered] == s_lines
    # The token a receiver gets with a payload is the token its sender got back for that write (the AAD inputs).
    assert [p.token for p in joiner.delivered] == [w.token for w in creator.confirmed]
    assert [p.token for p in creator.delivered] == [w.token for w in joiner.confirmed]
    if generation is V1:
        polls = [r for r in creator.sent if r.method == "GET"]
        assert polls and all(r.header("if-none-match") for r in polls)
        puts = [r for r in joiner.sent if r.method == "PUT"]
        assert all(r.header("if-match") and r.header("content-type") == "text/plain" for r in puts)
    else:
        bodies = [json.loads(r.body) for r in joiner.sent if r.method == "PUT"]
        # Each PUT is based on the payload just delivered (the joiner's last delivery has no answer).
        assert [p["sequence_token"] for p in bodies] == [d.token for d in joiner.delivered][:-1]


@pytest.mark.parametrize("generation", ALL)
def test_lost_put_response_is_resent_identically_and_delivered_once(generation: ApiGeneration) -> None:
    net = Loopback()
    creator, joiner = pair(net, generation)
    joiner.deliver()  # reads the creator's empty payload
    joiner.feed(c.SendRequested(payload="initiate"))
    put = joiner.sent[-1]
    joiner.deliver(lose_response=True)  # applied by the server, response lost
    assert isinstance(joiner.state, c.BackingOff)
    timer = joiner.timer()
    assert timer is not None
    net.now_ms = timer
    joiner.feed(TimerFired())
    assert joiner.sent[-1] == put  # the very same bytes, never rebuilt
    joiner.deliver()
    if generation is not V3:
        assert isinstance(joiner.state, c.Reconciling)  # v1/v2 answer 412/409; the re-read sorts it out
        joiner.deliver()
    assert isinstance(joiner.state, c.AwaitingPeer)
    assert len(joiner.confirmed) == 1 and not joiner.rejected
    run(net, [creator, joiner], {0: [], 1: []})
    assert [p.data for p in creator.delivered] == ["initiate"]


@pytest.mark.parametrize("generation", ALL)
def test_conflict_rereads_and_never_overwrites(generation: ApiGeneration) -> None:
    net = Loopback()
    creator, first = pair(net, generation)
    assert creator.created is not None
    name = creator.created.url if generation is V1 else creator.created.rendezvous_id
    assert name is not None
    second = Device(net, c.join_session(config(generation), name, now_ms=net.now_ms))
    first.deliver()
    second.deliver()
    first.feed(c.SendRequested(payload="from-first"))
    second.feed(c.SendRequested(payload="from-second"))
    first.deliver()
    second.deliver()  # 409/412
    assert isinstance(second.state, c.Reconciling)
    assert second.sent[-1].method == "GET"
    second.deliver()
    assert [p.data for p in second.delivered][-1] == "from-first"
    assert [r.payload for r in second.rejected] == ["from-second"]
    assert isinstance(second.state, c.ReadyToSend)
    creator.feed(TimerFired()) if creator.timer() == net.now_ms else None
    net.now_ms += 1_000
    creator.feed(TimerFired())
    creator.deliver()
    assert [p.data for p in creator.delivered] == ["from-first"]


@pytest.mark.parametrize("generation", ALL)
def test_gone_is_terminal(generation: ApiGeneration) -> None:
    net = Loopback()
    creator, joiner = pair(net, generation)
    joiner.deliver()
    joiner.feed(c.CloseRequested())
    assert joiner.sent[-1].method == "DELETE"
    assert isinstance(joiner.state, c.Deleting) and c.deadline(joiner.state) is None  # the DELETE's answer ends it
    joiner.deliver()
    assert joiner.ended == c.ReportSessionClosed(reason="deleted")
    net.now_ms += 1_000
    creator.feed(TimerFired())
    creator.deliver()
    assert creator.state == c.SessionClosed(reason="gone")
    assert creator.ended == c.ReportSessionClosed(reason="gone")
    assert c.deadline(creator.state) is None
    with pytest.raises(LocalProtocolError):
        creator.feed(TimerFired())


def _fake(device: Device, response: HttpResponse) -> None:
    assert device.in_flight is not None
    request_id = device.in_flight.request_id
    device.in_flight = None
    device.feed(HttpResponseReceived(request_id=request_id, response=response))


def test_429_backs_off_honouring_retry_after_then_resends() -> None:
    net = Loopback()
    creator = Device(net, c.create_session(config(V3), "x", now_ms=net.now_ms))
    post = creator.sent[-1]
    _fake(creator, HttpResponse(status=429, body=b'{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":3000}'))
    assert isinstance(creator.state, c.BackingOff)
    assert creator.timer() == net.now_ms + 3_000
    net.now_ms += 2_999
    creator.feed(TimerFired())  # early: nothing happens
    assert creator.in_flight is None
    net.now_ms += 1
    creator.feed(TimerFired())
    assert creator.sent[-1] == post
    _fake(creator, HttpResponse(status=503))
    assert isinstance(creator.state, c.BackingOff)
    assert creator.timer() == net.now_ms + 2 * config(V3).retry_base_ms


@pytest.mark.parametrize(("status", "maybe_applied"), [(429, False), (500, True), (503, True)])
def test_a_write_refused_by_a_rate_limit_is_known_not_to_have_landed(status: int, maybe_applied: bool) -> None:
    net = Loopback()
    _creator, joiner = pair(net, V3)
    joiner.deliver()
    joiner.feed(c.SendRequested(payload="initiate"))
    _fake(joiner, HttpResponse(status=status, body=b'{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":10}'))
    assert isinstance(joiner.state, c.BackingOff)
    assert isinstance(joiner.state.resume, c.Writing)
    assert joiner.state.resume.maybe_applied is maybe_applied


def _backoff_after_429(headers: tuple[tuple[str, str], ...], body: bytes = b"") -> int:
    """How long the creator backs off after a 429 with ``headers`` (its first retry, at t=0)."""
    state, _ = c.create_session(config(V3), "x", now_ms=0)
    response = HttpResponse(status=429, headers=headers, body=body)
    backing_off, effects = c.transition(state, HttpResponseReceived(request_id=1, response=response), now_ms=0)
    assert isinstance(backing_off, c.BackingOff) and effects == ()
    return backing_off.until_ms


BASE_DELAY_MS = config(V3).retry_base_ms


@pytest.mark.parametrize(
    ("value", "delay_ms"),
    [
        ("7", 7_000),
        (" 7\t", 7_000),
        ("0", BASE_DELAY_MS),
        ("999999", 999_999_000),
        ("1000000", BASE_DELAY_MS),  # more than six digits: absent
        ("²", BASE_DELAY_MS),  # str.isdigit() is true, int() refuses it
        ("١٢", BASE_DELAY_MS),  # Arabic-Indic digits: int() would take them, HTTP does not
        ("７", BASE_DELAY_MS),  # fullwidth digit
        ("\u00a07", BASE_DELAY_MS),  # no-break space is not HTTP whitespace
        ("-7", BASE_DELAY_MS),
        ("+7", BASE_DELAY_MS),
        ("7.5", BASE_DELAY_MS),
        ("", BASE_DELAY_MS),
        ("Wed, 21 Oct 2015 07:28:00 GMT", BASE_DELAY_MS),  # the HTTP-date form is not used
    ],
)
def test_retry_after_header_counts_only_ascii_delay_seconds(value: str, delay_ms: int) -> None:
    assert _backoff_after_429((("retry-after", value),)) == delay_ms


def test_retry_after_ms_in_the_body_wins_over_the_header() -> None:
    assert _backoff_after_429((("retry-after", "9"),), b'{"retry_after_ms":1234}') == 1_234
    assert _backoff_after_429((("retry-after", "²"),), b'{"retry_after_ms":-1}') == BASE_DELAY_MS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12) | st.text(alphabet="0123456789²³¹٠١٢３ \t\u00a0", max_size=8))
def test_any_retry_after_header_backs_off_without_raising(value: str) -> None:
    delay_ms = _backoff_after_429((("retry-after", value),))
    digits = value.strip(" \t")
    if 1 <= len(digits) <= 6 and all(ch in "0123456789" for ch in digits):
        assert delay_ms == max(BASE_DELAY_MS, int(digits) * 1000)
    else:
        assert delay_ms == BASE_DELAY_MS


def test_413_fails_and_oversize_send_is_refused_locally() -> None:
    net = Loopback()
    _, joiner = pair(net, V3)
    joiner.deliver()
    before = joiner.state
    with pytest.raises(LocalProtocolError):
        joiner.feed(c.SendRequested(payload="x" * 4097))
    assert joiner.state is before
    joiner.feed(c.SendRequested(payload="ok"))
    _fake(joiner, HttpResponse(status=413, body=b'{"errcode":"M_TOO_LARGE"}'))
    assert isinstance(joiner.state, c.SessionFailed) and joiner.state.reason == "too_large"
    with pytest.raises(LocalProtocolError):
        c.create_session(config(V3), "é" * 2049, now_ms=0)


def test_deadline_is_terminal() -> None:
    net = Loopback()
    creator, _ = pair(net, V3)
    net.now_ms += 300_000
    creator.feed(TimerFired())
    assert isinstance(creator.state, c.SessionFailed) and creator.state.reason == "deadline"


def test_server_expiry_shortens_the_deadline() -> None:
    net = Loopback()
    creator, _ = pair(net, V3)
    assert c.session_deadline(creator.state) == net.now_ms + 120_000


def test_stale_response_ids_are_ignored() -> None:
    net = Loopback()
    creator = Device(net, c.create_session(config(V3), "x", now_ms=net.now_ms))
    state = creator.state
    creator.feed(HttpResponseReceived(request_id=99, response=HttpResponse(status=200)))
    assert creator.state is state


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8"])
def test_v1_reads_text_plain(content_type: str) -> None:
    net = Loopback()
    joiner = Device(net, c.join_session(config(V1), BASE + "/s/abc", now_ms=net.now_ms))
    _fake(joiner, HttpResponse(status=200, headers=(("content-type", content_type), ("etag", '"e1"')), body=b"hi"))
    assert joiner.delivered == [c.DeliverPayload(data="hi", token='"e1"')]


def test_v1_refuses_other_content_types() -> None:
    net = Loopback()
    joiner = Device(net, c.join_session(config(V1), BASE + "/s/abc", now_ms=net.now_ms))
    _fake(joiner, HttpResponse(status=200, headers=(("content-type", "application/json"), ("etag", '"e"')), body=b"{}"))
    assert isinstance(joiner.state, c.SessionFailed) and joiner.state.reason == "malformed_response"


def test_join_validates_its_input() -> None:
    with pytest.raises(LocalProtocolError):
        c.join_session(config(V3), "../escape", now_ms=0)
    with pytest.raises(LocalProtocolError):
        c.join_session(config(V1), "not-a-url", now_ms=0)
    with pytest.raises(LocalProtocolError):
        c.ClientConfig(generation=V3, endpoint="ftp://x")


# ------------------------------------------------------------------------------------------- transitions table

_LINK = c.Link(config=config(V3), url=BASE + "/r/x", deadline_ms=10_000, seen_token="t", last_request_id=1)
_REQ = HttpRequest(method="GET", target=BASE + "/r/x")
_CREATING = c.Creating(config=config(V3), deadline_ms=10_000, request=_REQ, request_id=1)
_READING = c.Reading(link=_LINK, request=_REQ, request_id=1)
_WRITING = c.Writing(link=_LINK, payload="p", request=_REQ, request_id=1)
_RECONCILING = c.Reconciling(link=_LINK, payload="p", request=_REQ, request_id=1)
SAMPLE_STATES: list[c.State] = [
    _CREATING,
    _READING,
    c.AwaitingPeer(link=_LINK, poll_at_ms=500),
    c.ReadyToSend(link=_LINK),
    _WRITING,
    _RECONCILING,
    c.Deleting(link=_LINK, request=_REQ, request_id=1),
    *(c.BackingOff(resume=resume, until_ms=500) for resume in (_READING, _CREATING, _WRITING, _RECONCILING)),
    c.SessionClosed(reason="gone"),
    c.SessionFailed(reason="deadline", detail=""),
]


def _answer(status: int, body: bytes = b"", request_id: int = 1) -> HttpResponseReceived:
    return HttpResponseReceived(request_id=request_id, response=HttpResponse(status=status, body=body))


SAMPLE_EVENTS: list[c.Event] = [
    _answer(404),
    _answer(409),
    _answer(400),
    _answer(503),
    _answer(200, b'{"id":"abc","sequence_token":"t1","expires_in_ms":60000}'),  # created
    _answer(200, b'{"data":"p","sequence_token":"t"}'),  # our own echo
    _answer(200, b'{"data":"p","sequence_token":"t2"}'),  # our payload landed
    _answer(200, b'{"data":"q","sequence_token":"t3"}'),  # the peer's payload
    _answer(200, b'{"sequence_token":"t4"}'),  # written
    _answer(200, b"{}", request_id=2),  # stale: no state waits for request 2
    HttpRequestFailed(request_id=1),
    HttpRequestFailed(request_id=2),
    TimerFired(),
    c.SendRequested(payload="p"),
    c.CloseRequested(),
]

# Before the poll and the retry are due; after; after the session's deadline.
TIMES = (0, 1_000, 20_000)


def test_every_state_event_pair() -> None:
    """Pairs outside MACHINE raise before anything changes; pairs in it lead where their handler's annotation says,
    and every state that annotation names is reached by some sample."""
    tried = try_every_pair(c.MACHINE, c.transition, SAMPLE_STATES, SAMPLE_EVENTS, TIMES)
    assert tried >= len(c.MACHINE.states) * len(c.MACHINE.events)


def test_only_closed_and_failed_are_terminal() -> None:
    terminal = {state for state in c.MACHINE.states if not c.MACHINE.legal_events(state)}
    assert terminal == {c.SessionClosed, c.SessionFailed}
    assert all(c.is_finished(state) is (type(state) in terminal) for state in SAMPLE_STATES)


def test_an_oversized_payload_raises_before_anything_changes() -> None:
    with pytest.raises(LocalProtocolError):
        c.transition(c.ReadyToSend(link=_LINK), c.SendRequested(payload="x" * 5_000), now_ms=20_000)


# ------------------------------------------------------------------------------- arbitrary responses never raise

responses = st.builds(
    HttpResponse,
    status=st.sampled_from([200, 201, 202, 204, 304, 400, 404, 409, 412, 413, 429, 500, 503]) | st.integers(100, 599),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["content-type", "etag", "retry-after"]),
            st.sampled_from(["text/plain", '"e"', "5", "x" * 2000, ""]),
        )
    ).map(tuple),
    body=st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [
                b'{"id":"abc","sequence_token":"t","expires_in_ms":5}',
                b'{"id":"../x","sequence_token":"t"}',
                b'{"url":"http://h/x"}',
                b'{"url":"javascript:alert(1)"}',
                b'{"data":"d","sequence_token":"t2","expires_in_ms":true}',
                b'{"data":1,"sequence_token":""}',
                b'{"sequence_token":"new"}',
                b'{"retry_after_ms":99999999999}',
                b"[" * 3000,
            ]
        ),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from([s for s in SAMPLE_STATES if not c.is_finished(s)]),
    generation=st.sampled_from(ALL),
    response=responses,
)
def test_arbitrary_responses_only_move_the_machine(
    state: c.State, generation: ApiGeneration, response: HttpResponse
) -> None:
    cfg = config(generation)
    state = replace(state, config=cfg) if isinstance(state, c.Creating) else state
    new_state, effects = c.transition(state, HttpResponseReceived(request_id=1, response=response), now_ms=1_000)
    assert type(new_state) in c.MACHINE.targets(type(state), HttpResponseReceived)
    for effect in effects:
        assert isinstance(
            effect,
            SendHttpRequest
            | c.ReportSessionCreated
            | c.DeliverPayload
            | c.ReportWriteConfirmed
            | c.ReportWriteRejected
            | c.ReportSessionClosed
            | c.ReportSessionFailure,
        )


@pytest.mark.parametrize("generation", ALL)
def test_lost_put_response_after_which_the_peer_already_answered(generation: ApiGeneration) -> None:
    net = Loopback()
    creator, joiner = pair(net, generation)
    joiner.deliver()
    joiner.feed(c.SendRequested(payload="initiate"))
    joiner.deliver(lose_response=True)  # applied, response lost
    # Before the joiner retries, the creator reads the write and replies.
    net.now_ms += 1_000
    creator.feed(TimerFired())
    creator.deliver()
    assert [p.data for p in creator.delivered] == ["initiate"]
    creator.feed(c.SendRequested(payload="ok"))
    creator.deliver()
    timer = joiner.timer()
    assert timer is not None
    net.now_ms = max(net.now_ms, timer)
    joiner.feed(TimerFired())
    joiner.deliver()  # the identical PUT: conflict, since the slot moved on
    assert isinstance(joiner.state, c.Reconciling)
    joiner.deliver()
    assert joiner.confirmed == [c.ReportWriteConfirmed(token=None)]
    assert [p.data for p in joiner.delivered][-1] == "ok"
    assert not joiner.rejected
    assert isinstance(joiner.state, c.ReadyToSend)


@pytest.mark.parametrize(
    ("headers", "expected_deadline"),
    [
        # Lifetime = Expires - Last-Modified of the creating response, added to the caller's clock (skew-free).
        (
            (("expires", "Thu, 01 Jan 2026 00:01:00 GMT"), ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")),
            5_000 + 60_000,
        ),
        # Missing, malformed or non-positive lifetimes leave the caller's own deadline in force.
        ((("expires", "Thu, 01 Jan 2026 00:01:00 GMT"),), 5_000 + 300_000),
        ((("expires", "soon"), ("last-modified", "Thu, 01 Jan 2026 00:00:00 GMT")), 5_000 + 300_000),
        (
            (("expires", "Thu, 01 Jan 2026 00:00:00 GMT"), ("last-modified", "Thu, 01 Jan 2026 00:01:00 GMT")),
            5_000 + 300_000,
        ),
    ],
)
def test_v1_creator_learns_the_session_lifetime(headers: tuple[tuple[str, str], ...], expected_deadline: int) -> None:
    config = c.ClientConfig(generation=ApiGeneration.V1, endpoint="https://hs.example/rendezvous")
    state, (post,) = c.create_session(config, "", now_ms=5_000)
    assert isinstance(post, SendHttpRequest)
    response = HttpResponse(
        status=201,
        headers=(("content-type", "application/json"), ("etag", '"1"'), *headers),
        body=json.dumps({"url": "https://hs.example/rendezvous/abc"}).encode(),
    )
    state, _ = c.transition(state, HttpResponseReceived(request_id=post.request_id, response=response), now_ms=5_000)
    assert _link_deadline(state) == expected_deadline


def _link_deadline(state: Any) -> int:
    deadline: int = state.link.deadline_ms
    return deadline


@pytest.mark.parametrize("generation", ALL)
def test_a_404_at_the_announced_end_is_expiry_and_before_it_deletion(generation: ApiGeneration) -> None:
    """The server may drop a session a little before this client's idea of its end (latency, clock skew): a 404
    within the margin of that end reports "expired"; an earlier one, "gone" (deleted)."""
    for before_end_ms, reason in ((c.EXPIRY_MARGIN_MS, "expired"), (c.EXPIRY_MARGIN_MS + 1, "gone")):
        net = Loopback()
        creator, _ = pair(net, generation)
        end = c.session_deadline(creator.state)
        net.now_ms = end - before_end_ms
        creator.feed(TimerFired())  # a poll
        _fake(creator, HttpResponse(status=404, body=b'{"errcode":"M_NOT_FOUND"}'))
        assert creator.ended == c.ReportSessionClosed(reason=reason), (generation, before_end_ms)
