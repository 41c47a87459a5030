"""Every (state, event) pair of both channel machines, from their transitions tables (``MACHINE``).

* A pair that is not in the table raises :class:`LocalProtocolError`, and the state is still usable afterwards: it
  equals what it was and takes its next legal event.
* A pair in the table leads only to the states ``MACHINE.targets`` names (read off the handler's annotation).
* Every one of those targets is reached by some input below, so the diagrams in the docs show no impossible edge.

Each case takes its own fork of a fixture state (a channel state takes one event; see ``ChannelCursor``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from qrlogin import hpke as rfc9180
from qrlogin.channel import ecies, hpke
from qrlogin.channel._common import (
    ChannelFailed,
    FailureReason,
    InitiateRequested,
    PayloadReceived,
    RetryRequested,
    SealRequested,
)
from qrlogin.errors import LocalProtocolError
from qrlogin.vocabulary import CheckCodeEntered
from tests.channel.channel_helpers import fork, moved_to, payload_of

BASE_URL = "https://matrix.example.org"
RID = "every-pair"


def _key(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclasses.dataclass(frozen=True)
class Generation:
    """A channel module and, for every state class, fixture states with the inputs to try on each."""

    name: str
    module: Any
    cases: Callable[[], list[tuple[Any, list[Any]]]]
    #: One event of every class of the channel vocabulary, for the pairs outside the table.
    samples: tuple[Any, ...]

    def transition(self, state: Any, event: Any) -> tuple[Any, tuple[Any, ...]]:
        result: tuple[Any, tuple[Any, ...]] = self.module.transition(state, event, now_ms=0)
        return result


def _ecies_cases() -> list[tuple[Any, list[Any]]]:
    def step(state: Any, event: Any) -> tuple[Any, tuple[Any, ...]]:
        return ecies.transition(fork(state), event, now_ms=0)

    g0 = ecies.start_showing(_key("g"))
    s0 = ecies.start_scanning(g0.public_key, _key("s"))
    s1, effects = step(s0, InitiateRequested())
    initiate = payload_of(effects)
    g1, effects = step(g0, PayloadReceived(payload=initiate))
    login_ok = payload_of(effects)
    s2, effects = step(s1, PayloadReceived(payload=login_ok))
    code = effects[0].code
    g2, _ = step(g1, CheckCodeEntered(code=code))
    held, _ = step(g1, PayloadReceived(payload="AAAA"))
    _, effects = step(s2, SealRequested(plaintext=b"from S"))
    from_s = payload_of(effects)
    garbage = [PayloadReceived(payload="AAAA"), PayloadReceived(payload="x" * 4097)]
    return [
        (s0, [InitiateRequested()]),
        (ecies.start_scanning(bytes(32), _key("s")), [InitiateRequested()]),  # a low-order key: fails
        (g0, [PayloadReceived(payload=initiate), *garbage]),
        (s1, [PayloadReceived(payload=login_ok), *garbage, RetryRequested()]),
        (g1, [CheckCodeEntered(code=code), CheckCodeEntered(code="xx"), *garbage, RetryRequested()]),
        (held, [CheckCodeEntered(code=code), *garbage, RetryRequested()]),
        (g2, [PayloadReceived(payload=from_s), SealRequested(plaintext=b"from G"), *garbage, RetryRequested()]),
        (s2, [SealRequested(plaintext=b"from S"), *garbage, RetryRequested()]),
        (moved_to(s2, send_counter=ecies.COUNTER_LIMIT), [SealRequested(plaintext=b"one too many")]),
        (ChannelFailed(profile=g0.profile, role=g1.role, reason=FailureReason.AUTHENTICATION_FAILED, detail="x"), []),
    ]


def _hpke_cases() -> list[tuple[Any, list[Any]]]:
    def step(state: Any, event: Any) -> tuple[Any, tuple[Any, ...]]:
        return hpke.transition(fork(state), event, now_ms=0)

    g0 = hpke.start_showing(_key("g"), base_url=BASE_URL, rendezvous_id=RID, response_nonce=_key("rn"))
    s0 = hpke.start_scanning(_key("s"), peer_public_key=g0.public_key, base_url=BASE_URL, rendezvous_id=RID)
    s1, effects = step(s0, InitiateRequested(sequence_token="1"))
    initiate = PayloadReceived(payload=payload_of(effects), sequence_token="1", reply_sequence_token="2")
    g1, effects = step(g0, initiate)
    login_ok = PayloadReceived(payload=payload_of(effects), sequence_token="2")
    s2, _ = step(s1, login_ok)
    code = hpke.check_code(s2)
    g2, _ = step(g1, CheckCodeEntered(code=code))
    held, _ = step(g1, PayloadReceived(payload="AAAA", sequence_token="3"))
    _, effects = step(s2, SealRequested(plaintext=b"from S", sequence_token="3"))
    from_s = PayloadReceived(payload=payload_of(effects), sequence_token="3")
    garbage = [
        PayloadReceived(payload="AAAA", sequence_token="3", reply_sequence_token="4"),
        PayloadReceived(payload="x" * 4097, sequence_token="3", reply_sequence_token="4"),
    ]
    low_order = hpke.start_scanning(_key("s"), peer_public_key=bytes(32), base_url=BASE_URL, rendezvous_id=RID)
    return [
        (s0, [InitiateRequested(sequence_token="1"), InitiateRequested(sequence_token="")]),
        (low_order, [InitiateRequested(sequence_token="1")]),
        (g0, [initiate, *garbage]),
        (s1, [login_ok, *garbage, RetryRequested()]),
        (g1, [CheckCodeEntered(code=code), CheckCodeEntered(code="00"), *garbage, RetryRequested()]),
        (held, [CheckCodeEntered(code=code), *garbage, RetryRequested()]),
        (g2, [from_s, SealRequested(plaintext=b"from G", sequence_token="4"), *garbage, RetryRequested()]),
        (s2, [SealRequested(plaintext=b"from S", sequence_token="3"), *garbage, RetryRequested()]),
        (moved_to(s2, send_seq=rfc9180.MAX_SEQ), [SealRequested(plaintext=b"one too many", sequence_token="5")]),
        (ChannelFailed(profile=g0.profile, role=g1.role, reason=FailureReason.AUTHENTICATION_FAILED, detail="x"), []),
    ]


GENERATIONS = [
    Generation(
        name="ecies",
        module=ecies,
        cases=_ecies_cases,
        samples=(
            InitiateRequested(),
            PayloadReceived(payload="AAAA"),
            SealRequested(plaintext=b"x"),
            CheckCodeEntered(code="12"),
            RetryRequested(),
        ),
    ),
    Generation(
        name="hpke",
        module=hpke,
        cases=_hpke_cases,
        samples=(
            InitiateRequested(sequence_token="1"),
            PayloadReceived(payload="AAAA", sequence_token="1", reply_sequence_token="2"),
            SealRequested(plaintext=b"x", sequence_token="1"),
            CheckCodeEntered(code="12"),
            RetryRequested(),
        ),
    ),
]


@pytest.fixture(params=GENERATIONS, ids=lambda g: g.name)
def generation(request: pytest.FixtureRequest) -> Generation:
    result: Generation = request.param
    return result


def test_the_fixture_has_every_state_and_the_samples_every_event(generation: Generation) -> None:
    machine = generation.module.MACHINE
    assert {type(state) for state, _ in generation.cases()} == machine.states
    assert {type(event) for event in generation.samples} == machine.events


def test_every_pair_outside_the_table_raises_and_leaves_the_state_usable(generation: Generation) -> None:
    machine = generation.module.MACHINE
    tried = 0
    for state, inputs in generation.cases():
        for event in generation.samples:
            if type(event) in machine.legal_events(type(state)):
                continue
            mine = fork(state)
            with pytest.raises(LocalProtocolError):
                generation.transition(mine, event)
            tried += 1
            assert mine == state
            for follow_up in inputs[:1]:  # still usable: the state takes its next event
                generation.transition(mine, follow_up)
    # 5 events x 6 state classes, minus the 10 pairs of the table, over the fixture's states
    assert tried >= 5 * 6 - 10


def test_every_pair_in_the_table_leads_only_to_its_targets_and_each_target_is_reached(
    generation: Generation,
) -> None:
    machine = generation.module.MACHINE
    reached: set[tuple[type, type, type]] = set()
    for state, inputs in generation.cases():
        for event in inputs:
            assert type(event) in machine.legal_events(type(state)), (type(state), type(event))
            new_state, effects = generation.transition(fork(state), event)
            assert type(new_state) in machine.targets(type(state), type(event)), (state, event, new_state)
            assert isinstance(effects, tuple)
            reached.add((type(state), type(event), type(new_state)))
    declared = {
        (state, event, target) for state, event in machine.transitions for target in machine.targets(state, event)
    }
    assert reached == declared
    assert any(target is ChannelFailed for _, _, target in reached)
