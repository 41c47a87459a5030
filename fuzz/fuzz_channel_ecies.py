"""Fuzz target: arbitrary strings into every network-facing input of the ECIES machines, in every reachable state.

Run with atheris: ``python fuzz/fuzz_channel_ecies.py fuzz/corpus/channel_ecies -max_total_time=60`` (``scripts/fuzz``
runs every target for a bounded budget); ``tests/channel/test_fuzz_ecies.py`` runs the same :func:`target` under
hypothesis.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qrlogin._machine import fork_for_exploration as fork
from qrlogin.channel import ecies
from qrlogin.channel._common import InitiateRequested, PayloadReceived, Profile, SealRequested
from qrlogin.vocabulary import CheckCodeEntered

# The harness sits beside this file; make it importable the same way under atheris and when tests load this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from channel_harness import exercise


def reachable_states() -> list[Any]:
    """One state of every kind each role can reach, for both profiles (fixed secrets: this is a fixture). Where the
    fixture goes on from a state it keeps, it goes on from a fork, so every state listed is still current."""
    transition: Callable[..., Any] = functools.partial(ecies.transition, now_ms=0)
    states: list[Any] = []
    for profile in Profile:
        g: Any = ecies.start_showing(bytes(range(1, 33)), profile=profile)
        s: Any = ecies.start_scanning(g.public_key, bytes(range(33, 65)), profile=profile)
        states += [g, s]
        s, (send,) = transition(fork(s), InitiateRequested())
        states.append(s)
        g, effects = transition(fork(g), PayloadReceived(payload=send.payload))
        states.append(g)
        s, shown = transition(fork(s), PayloadReceived(payload=effects[0].payload))
        states.append(s)
        s_after, (early,) = transition(fork(s), SealRequested(plaintext=b"early"))
        held, _ = transition(fork(g), PayloadReceived(payload=early.payload))
        states.append(held)
        g, _ = transition(fork(g), CheckCodeEntered(code=shown[0].code))
        states += [g, s_after]
    return states


STATES = reachable_states()


def target(text: str) -> None:
    exercise(ecies.MACHINE, ecies.transition, STATES, text)


def one_input(data: bytes) -> None:
    """The atheris entry point: the bytes as text, bytes that are not UTF-8 becoming lone surrogates."""
    target(data.decode("utf-8", "surrogateescape"))


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
