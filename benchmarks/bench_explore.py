"""Benchmark: the exhaustive explorer against the explorer it replaced, on the same scenarios, in one run.

The baseline below is the previous explorer, kept here as it was: depth first, a SHA-256 fingerprint whose memo
keeps every sub-value it ever saw for the whole run, and a fork of the whole world for every branch but one. It
steps the same simulator (:mod:`qrlogin.sim.world`), so the two differ only in the search. The new explorer
(:func:`qrlogin.sim.explore.explore`) reads pending items as a multiset, so it has somewhat fewer states to visit;
rates are therefore compared per transition (and per state).

Each measurement runs in a fresh forked process, alternating baseline and new ``--rounds`` times; reported per
scenario: distinct states, transitions, CPU seconds (the best round), transitions and states per CPU second, and
memory per distinct state (peak resident memory of the process minus its resident memory before the search, over
the distinct states). Ratios are new / baseline for rates, baseline / new for memory (>1: the new one is ahead).
CPU time rather than wall time, because the machine may be shared; one process at a time.

    python benchmarks/bench_explore.py [--rounds 2] [--faults drops=1 --faults cancels=1 --faults attacker:delays=1]

About a minute per round with the defaults. Not part of pytest.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from qrlogin._crypto import AeadKey, X25519Secret
from qrlogin._machine import ForkCache, fork_for_exploration
from qrlogin._secret import Secret
from qrlogin.homeserver._frozenmap import FrozenMap
from qrlogin.sim.explore import explore
from qrlogin.sim.matrix import parse_faults
from qrlogin.sim.run import MAX_STEPS
from qrlogin.sim.world import Scenario, World, actions, new_world, step

# ------------------------------------------------------------------------------------------- the previous explorer


class _BaselineFingerprinter:
    def __init__(self) -> None:
        self._memo: dict[int, tuple[object, bytes]] = {}

    def __call__(self, value: object) -> bytes:
        key = id(value)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        digest = hashlib.sha256(self._walk(value)).digest()
        if not isinstance(value, int | str | bytes | bool | type(None)):
            self._memo[key] = (value, digest)
        return digest

    def _walk(self, value: object) -> bytes:
        if value is None or isinstance(value, bool | int | float):
            return repr(value).encode()
        if isinstance(value, str):
            return b"s" + value.encode("utf-8", "surrogatepass")
        if isinstance(value, bytes):
            return b"b" + value
        if isinstance(value, Secret):
            return b"S" + hashlib.sha256(value.value).digest()
        if isinstance(value, AeadKey):
            return b"K" + hashlib.sha256(value._key).digest()
        if isinstance(value, X25519Secret):
            return b"X" + value.public_key
        if isinstance(value, enum.Enum):
            return b"E" + type(value).__name__.encode() + repr(value.value).encode()
        if isinstance(value, tuple | list):
            return b"T" + b"".join(self(item) for item in value)
        if isinstance(value, FrozenMap | dict):
            items = sorted((self(k), self(v)) for k, v in value.items())
            return b"M" + b"".join(k + v for k, v in items)
        if isinstance(value, frozenset | set):
            return b"F" + b"".join(sorted(self(item) for item in value))
        if dataclasses.is_dataclass(value):
            parts = [type(value).__qualname__.encode()]
            for field in dataclasses.fields(value):
                if field.compare:
                    parts.append(self(getattr(value, field.name)))
            return b"D" + b"".join(parts)
        slots = getattr(type(value), "__slots__", None)
        if slots is not None:
            return b"O" + type(value).__qualname__.encode() + b"".join(self(getattr(value, s)) for s in slots)
        raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def _baseline_finish(world: World) -> World:
    for _ in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        world = step(world, options[0])
    return world


@dataclass(frozen=True, slots=True)
class _Counts:
    distinct_states: int
    transitions: int


def baseline_explore(scenario: Scenario, *, max_depth: int = 1_000, max_states: int = 5_000_000) -> _Counts:
    """The previous explorer's search; it judges terminal states with today's invariants, as the new one does."""
    from qrlogin.sim.invariants import check
    from qrlogin.sim.run import Run
    from qrlogin.sim.world import is_finished

    fp = _BaselineFingerprinter()
    forks = ForkCache()
    seen: set[bytes] = set()
    transitions = 0
    stack: list[tuple[World, int]] = [(new_world(scenario), 0)]
    while stack:
        world, depth = stack.pop()
        key = fp(world)
        if key in seen:
            continue
        seen.add(key)
        options = actions(world)
        if not options:
            check(Run(world=world, trace=(), finished=is_finished(world)))
            continue
        if depth >= max_depth or len(seen) >= max_states:
            final = _baseline_finish(world)
            check(Run(world=final, trace=(), finished=is_finished(final)))
            continue
        for remaining, action in enumerate(reversed(options), start=1 - len(options)):
            transitions += 1
            branch = world if remaining == 0 else fork_for_exploration(world, cache=forks)
            stack.append((step(branch, action), depth + 1))
    return _Counts(distinct_states=len(seen), transitions=transitions)


def new_explore(scenario: Scenario) -> _Counts:
    result = explore(scenario, max_states=5_000_000)
    assert result.cut_off == 0
    return _Counts(distinct_states=result.distinct_states, transitions=result.transitions)


# ------------------------------------------------------------------------------------------------- measurement


def _kib(line: str) -> int:
    return int(line.split()[1])


def _memory() -> tuple[int, int]:
    """(resident, peak resident) of this process, in KiB."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            fields[name] = rest
    return _kib("x " + fields["VmRSS"]), _kib("x " + fields["VmHWM"])


def _measure(search: Callable[[Scenario], _Counts], scenario: Scenario, sender: Connection) -> None:
    before, _ = _memory()
    started = time.process_time()
    counts = search(scenario)
    seconds = time.process_time() - started
    _, peak = _memory()
    sender.send((counts, seconds, (peak - before) * 1024))


def _in_fresh_process(search: Callable[[Scenario], _Counts], scenario: Scenario) -> tuple[_Counts, float, int]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_measure, args=(search, scenario, sender))
    process.start()
    result: tuple[_Counts, float, int] = receiver.recv()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="the explorer against the previous one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--faults",
        action="append",
        default=None,
        help="fault budgets to explore (v3, QR on new), e.g. drops=1; attacker:delays=1 adds the attacker",
    )
    args = parser.parse_args()
    budgets = args.faults or ["drops=1", "cancels=1", "attacker:delays=1"]
    new_world(Scenario())  # warm up imports and caches before the first fork
    print("scenario              explorer  distinct  transitions   CPU s  transitions/s  states/s  bytes/state")
    for budget in budgets:
        attacker, _, faults = budget.rpartition(":")
        scenario = Scenario(faults=parse_faults(faults), attacker=attacker == "attacker")
        best: dict[str, tuple[_Counts, float, int]] = {}
        for _ in range(args.rounds):
            for name, search in (("baseline", baseline_explore), ("new", new_explore)):
                counts, seconds, grown = _in_fresh_process(search, scenario)
                if name not in best or seconds < best[name][1]:
                    best[name] = (counts, seconds, grown)
        for name, (counts, seconds, grown) in best.items():
            print(
                f"v3 {budget:<18} {name:<9} {counts.distinct_states:>8,} {counts.transitions:>12,} {seconds:>7.2f} "
                f"{counts.transitions / seconds:>14,.0f} {counts.distinct_states / seconds:>9,.0f} "
                f"{grown / counts.distinct_states:>12,.0f}"
            )
        (old, old_s, old_mem), (new, new_s, new_mem) = best["baseline"], best["new"]
        rate = (new.transitions / new_s) / (old.transitions / old_s)
        memory = (old_mem / old.distinct_states) / max(new_mem / new.distinct_states, 1)
        print(f"  ratio new/baseline: transitions per CPU second x{rate:.2f}; memory per state x{memory:.1f} less\n")


if __name__ == "__main__":
    main()
