"""Explore many configurations to completion and check their counts against docs/simulation.md.

    python scripts/explore.py [--combined] [--jobs N] [--write] [--only TEXT] [--max-states N]

Without ``--combined`` it explores every single-fault configuration (:func:`qrlogin.sim.matrix.single_fault_scenarios`:
each generation, both QR directions, honest and with the attacker, no fault and each fault kind alone with a budget
of one), which CI does on every run (``scripts/test``). ``--combined`` explores the combined budgets (one of each
kind at once, and two drops) for longer runs. Configurations are spread over ``--jobs`` processes; when there are
fewer configurations than processes, each configuration's states are spread over them instead. It prints the
table of counts and fails (exit 1) when an invariant is violated, when an exploration is cut short, or when a count
falls more than 10% below the table the docs keep; ``--write`` records the counts in the docs instead (the combined
table is only ever written, not checked). ``--only`` keeps the configurations whose row contains TEXT (e.g.
``"honest | v3"``; repeated, every TEXT), for a quick look; the floor is then checked for those rows only, and
``--write`` replaces those rows and keeps the others.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from functools import partial
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from qrlogin.sim.explore import Exploration, explore
from qrlogin.sim.matrix import (
    combined_scenarios,
    floor_failures,
    format_table,
    merge_table,
    read_table,
    row_key,
    single_fault_scenarios,
)
from qrlogin.sim.world import Scenario

DOC = Path(__file__).resolve().parent.parent / "docs" / "simulation.md"
MAX_STATES = 5_000_000


def _explore(scenario: Scenario, max_states: int, jobs: int = 1) -> Exploration:
    return explore(scenario, max_states=max_states, jobs=jobs)


def _collect(explorations: Iterable[Exploration], results: list[Exploration], total: int) -> None:
    for done in explorations:
        results.append(done)
        print(
            f"  [{len(results)}/{total}] {' '.join(row_key(done.scenario))}: "
            f"{done.distinct_states:,} states, {done.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--combined", action="store_true", help="the combined budgets instead of single faults")
    parser.add_argument("--jobs", type=int, default=1, help="processes to spread the configurations over")
    parser.add_argument("--write", action="store_true", help="record the counts in docs/simulation.md")
    parser.add_argument(
        "--max-states",
        type=int,
        default=MAX_STATES,
        help=f"distinct states at which one exploration is cut short, and fails (default {MAX_STATES:,})",
    )
    parser.add_argument(
        "--only", action="append", default=[], help="only the configurations whose row contains this text (repeatable)"
    )
    args = parser.parse_args()
    name = "combined" if args.combined else "single"
    scenarios = combined_scenarios() if args.combined else single_fault_scenarios()
    scenarios = [s for s in scenarios if all(text in "| " + " | ".join(row_key(s)) + " |" for text in args.only)]
    document = DOC.read_text(encoding="utf-8")
    recorded = read_table(document, name)
    # Largest first (by the recorded counts), so that the last process does not start the biggest one last.
    scenarios.sort(key=lambda s: -(row.distinct_states if (row := recorded.get(row_key(s))) else 10**9))
    started = time.perf_counter()
    results: list[Exploration] = []
    if len(scenarios) < args.jobs:
        explorations: Iterable[Exploration] = map(
            partial(_explore, max_states=args.max_states, jobs=args.jobs), scenarios
        )
        _collect(explorations, results, len(scenarios))
    else:
        with get_context("fork").Pool(max(1, args.jobs)) as pool:
            explorations = pool.imap_unordered(partial(_explore, max_states=args.max_states), scenarios)
            _collect(explorations, results, len(scenarios))
    wall = time.perf_counter() - started
    every = combined_scenarios() if args.combined else single_fault_scenarios()
    order = {row_key(s): i for i, s in enumerate(every)}
    results.sort(key=lambda r: order[row_key(r.scenario)])
    table = format_table(results)
    print(table, end="")
    states = sum(r.distinct_states for r in results)
    transitions = sum(r.transitions for r in results)
    cpu = sum(r.seconds for r in results)
    print(
        f"\n{len(results)} configurations, {states:,} distinct states, {transitions:,} transitions in {wall:.0f} s "
        f"({cpu:.0f} s in explorations, {transitions / cpu if cpu else 0:,.0f} transitions/s per process, "
        f"{args.jobs} processes)"
    )
    status = 0
    for result in results:
        if result.cut_off:
            print(f"{' '.join(row_key(result.scenario))}: incomplete, cut off at --max-states {args.max_states:,}")
            status = 1
        for violation in result.violations:
            print(f"{' '.join(row_key(result.scenario))}: invariant violated: {violation}")
            print(f"  schedule: {list(violation.choices)}")
            status = 1
    if args.write:
        # Only explorations that ran to completion are recorded: a cut-off count is not a count of the configuration.
        complete = [result for result in results if not result.cut_off]
        DOC.write_text(merge_table(document, name, complete, every), encoding="utf-8")
        print(f"recorded in {DOC}")
        return status
    if not args.combined:
        failures = floor_failures(results, recorded)
        for failure in failures:
            print(f"floor: {failure}")
        if failures:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
