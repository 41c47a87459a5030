"""Benchmark: the longest event-loop stall of the in-memory store's housekeeping, sliced against all at once.

Two situations a server meets, each built afresh for every measurement:

* ``expire``: 100,000 live sessions whose expiry has all passed (a burst of creates two minutes ago);
* ``compact``: 100,000 live sessions plus 250,000 created and deleted early, whose index entries now outnumber the
  live sessions enough to compact the index.

For each, the baseline does the work in one call (a slice with no budget: what the store did before it was sliced;
for ``compact`` also the former rebuild, sorting the live sessions by expiry), and qrlogin calls
:meth:`InMemoryStore.purge_slice` with the default budget until nothing is left, timing every call. The longest
call is the stall the event loop sees (the ASGI app runs at most one slice per request). Baseline and sliced runs
alternate, ``--trials`` times each; medians are printed with the ratio. Usage::

    python benchmarks/bench_store_purge.py [--trials 3] [--sessions 100000]

Target: no slice over 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque
from collections.abc import Callable

from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import PURGE_SLICE, V3_UNSTABLE_PREFIX, InMemoryStore, Session

NOW_MS = 1_700_000_000_000


def filled(live: int, deleted: int, *, expired: bool) -> InMemoryStore:
    store = InMemoryStore()
    data = b"x" * 256
    base = NOW_MS - 200_000 if expired else NOW_MS
    for n in range(live + deleted):
        session = Session(id=f"{n:022d}", generation=ApiGeneration.V3, prefix=V3_UNSTABLE_PREFIX, data=data,
                          revision=0, nonce=n, modified_ms=base, expires_ms=base + 120_000 + n // 1_000)  # fmt: skip
        store.insert(session, now_ms=base, capacity=10**9)
    for n in range(live, live + deleted):
        store.compare_and_set(f"{n:022d}", store.get(f"{n:022d}"), None)
    return store


def all_at_once(store: InMemoryStore) -> float:
    start = time.perf_counter()
    store.purge_slice(NOW_MS, budget=10**9)
    return time.perf_counter() - start


def former_rebuild(store: InMemoryStore) -> float:
    """What the store did before compaction was sliced: sort the live sessions by expiry, in one go."""
    sessions = store._sessions
    start = time.perf_counter()
    live = sorted(sessions.items(), key=lambda item: item[1].expires_ms)
    ids = deque(key for key, _ in live)
    expiries = deque(value.expires_ms for _, value in live)
    elapsed = time.perf_counter() - start
    assert len(ids) == len(expiries) == len(sessions)
    return elapsed


def sliced(store: InMemoryStore) -> list[tuple[float, float]]:
    """(wall, CPU) time of every slice until nothing is left to do.

    On a shared machine the wall time of a slice now and then includes a time slice given to another process; the
    CPU time of this thread does not, and is what the slice itself costs.
    """
    times = []
    more = True
    while more:
        start, start_cpu = time.perf_counter(), time.thread_time()
        _, more = store.purge_slice(NOW_MS)
        times.append((time.perf_counter() - start, time.thread_time() - start_cpu))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    n = args.sessions
    situations: dict[str, Callable[[], InMemoryStore]] = {
        "expire": lambda: filled(n, 0, expired=True),
        "compact": lambda: filled(n, n * 5 // 2, expired=False),
    }
    print(f"{n:,} sessions; slice budget {PURGE_SLICE:,} index entries; {args.trials} trials each, alternating")
    print("| situation | all at once | former rebuild | slices | median slice | p99 slice | longest slice (CPU) "
          "| longest slice (wall) | total sliced |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, build in situations.items():
        once, rebuild, slices = [], [], []
        for _ in range(args.trials):
            if name == "compact":
                rebuild.append(former_rebuild(build()))
            once.append(all_at_once(build()))
            slices.append(sliced(build()))
        wall = sorted(w for trial in slices for w, _ in trial)
        cpu = [c for trial in slices for _, c in trial]
        rebuilt = f"{statistics.median(rebuild) * 1000:.1f} ms" if rebuild else "-"
        print(f"| {name} | {statistics.median(once) * 1000:.1f} ms | {rebuilt} | {len(slices[0])} | "
              f"{statistics.median(wall) * 1000:.2f} ms | {wall[len(wall) * 99 // 100] * 1000:.2f} ms | "
              f"{max(cpu) * 1000:.2f} ms | {wall[-1] * 1000:.2f} ms | "
              f"{statistics.median(sum(w for w, _ in trial) for trial in slices) * 1000:.1f} ms |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
