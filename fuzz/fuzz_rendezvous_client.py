"""Fuzz target: arbitrary HTTP responses into the rendezvous client machine; it may only change state.

Run with atheris (``python fuzz/fuzz_rendezvous_client.py fuzz/corpus/rendezvous_client``; ``scripts/fuzz`` runs every
target for a bounded budget); ``tests/rendezvous/test_fuzz.py`` runs the same :func:`fuzz_one` under hypothesis.

The input bytes pick a generation and a state that waits for a response, then become the response's status, headers
and body. ``transition`` must return a state of the machine and well-typed effects; it must never raise.
"""

from __future__ import annotations

from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous import client as c
from qrlogin.vocabulary import HttpResponseReceived, SendHttpRequest

HEADER_NAMES = ("content-type", "etag", "retry-after", "location")
STATUSES = (200, 201, 202, 204, 304, 400, 403, 404, 409, 412, 413, 429, 500, 503)
EFFECTS = (
    SendHttpRequest,
    c.ReportSessionCreated,
    c.DeliverPayload,
    c.ReportWriteConfirmed,
    c.ReportWriteRejected,
    c.ReportSessionClosed,
    c.ReportSessionFailure,
)


def _states(generation: ApiGeneration) -> list[c.State]:
    config = c.ClientConfig(generation=generation, endpoint="https://hs.example/rendezvous")
    link = c.Link(
        config=config, url="https://hs.example/rendezvous/x", deadline_ms=10_000, seen_token="t", last_request_id=1
    )
    request = HttpRequest(method="GET", target=link.url)
    return [
        c.Creating(config=config, deadline_ms=10_000, request=request, request_id=1),
        c.Reading(link=link, request=request, request_id=1),
        c.Writing(link=link, payload="p", request=request, request_id=1),
        c.Writing(link=link, payload="p", request=request, request_id=1, maybe_applied=True),
        c.Reconciling(link=link, payload="p", request=request, request_id=1),
        c.Deleting(link=link, request=request, request_id=1),
    ]


def fuzz_one(data: bytes) -> None:
    if len(data) < 4:
        return
    generation = list(ApiGeneration)[data[0] % 3]
    states = _states(generation)
    state = states[data[1] % len(states)]
    status = STATUSES[data[2] % len(STATUSES)] if data[2] < 200 else 100 + data[2]
    header_count = data[3] % 4
    headers = []
    rest = data[4:]
    for _ in range(header_count):
        if len(rest) < 2:
            break
        size = rest[1] % 40
        value = rest[2 : 2 + size].decode("latin-1")
        headers.append((HEADER_NAMES[rest[0] % len(HEADER_NAMES)], value))
        rest = rest[2 + size :]
    response = HttpResponse(status=status, headers=tuple(headers), body=bytes(rest))
    new_state, effects = c.transition(state, HttpResponseReceived(request_id=1, response=response), now_ms=1_000)
    assert type(new_state) in c.MACHINE.targets(type(state), HttpResponseReceived)
    assert all(isinstance(effect, EFFECTS) for effect in effects)


one_input = fuzz_one  # the atheris entry point


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
