"""Holding any machine to its transitions table with sample inputs (shared by the layers' every-pair tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qrlogin import Driver, LocalProtocolError, Machine


def try_every_pair(
    machine: Machine[Any, Any, Any],
    transition: Callable[..., tuple[Any, tuple[Any, ...]]],
    states: Sequence[object],
    events: Sequence[object],
    times: Sequence[int],
) -> int:
    """Feed every sample event to every sample state, at every time in ``times``, and hold ``machine`` to its table.

    * A pair that is not in the table raises :class:`LocalProtocolError`, and a :class:`Driver` holding the state
      still holds it afterwards: nothing changed.
    * A pair in the table leads to one of the states ``machine.targets`` names for it.
    * Every such target is reached by some sample, so no handler's annotation is wider than what it does.

    Needs a sample of every state and event class. Returns the number of transitions tried.
    """
    assert {type(state) for state in states} == machine.states, "give a sample of every state class"
    assert {type(event) for event in events} == machine.events, "give a sample of every event class"
    reached: dict[tuple[type, type], set[type]] = {pair: set() for pair in machine.transitions}
    tried = 0
    for state in states:
        for event in events:
            pair = (type(state), type(event))
            if pair not in machine.transitions:
                driver = Driver(state, transition)
                try:
                    driver.handle(event, now_ms=times[0])
                except LocalProtocolError:
                    pass
                else:
                    raise AssertionError(f"{pair[1].__name__} in {pair[0].__name__} did not raise")
                assert driver.state is state
                tried += 1
                continue
            for now_ms in times:
                after, effects = transition(state, event, now_ms=now_ms)
                assert type(after) in machine.targets(*pair), (state, event, now_ms, after)
                assert isinstance(effects, tuple)
                reached[pair].add(type(after))
                tried += 1
    unreached = {
        f"{state.__name__} --{event.__name__}--> {target.__name__}"
        for (state, event), seen in reached.items()
        for target in machine.targets(state, event) - seen
    }
    assert not unreached, f"no sample reaches: {sorted(unreached)}"
    return tried
