"""Rendezvous load benchmark: ``qrlogin serve`` against Synapse 1.163 on loopback, in one run.

Workload (the one a QR login makes): create a v3 session, 6 rounds of PUT by one device and GET by the other, then
DELETE; several such pairs run concurrently over keep-alive connections for a fixed time per server. Reported per
server: requests per second, p50/p99 latency, and resident memory.

Memory is measured the same way for both servers, in several fresh processes each (``--trials``): warm the process
up with half a second of the workload, read its RSS empty, create sessions with a 256-byte payload and read the RSS
holding them. Growth per session is (RSS holding N - RSS empty) / N; the table gives the median and the range over
the trials. Synapse keeps at most 200 live v3 sessions (hard limit: at 200 a POST evicts the oldest down to 100), so
both servers are measured at 200, and qrlogin also at 10,000. 200 sessions of a few hundred bytes are a few dozen
pages: those figures carry allocator noise of the same order as the signal, which the range shows.

Ratios are qrlogin relative to Synapse (>1 means qrlogin is ahead). Bounded: about 5 s per qrlogin trial, 8 s per
Synapse trial, plus ``--seconds`` of load per server (about 80 s with the defaults). Not part of pytest.

    .venv/bin/python benchmarks/bench_rendezvous.py [--seconds 4] [--pairs 8] [--trials 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.peers import run_qrlogin, run_synapse

PREFIX = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
ROUNDS = 6
PAYLOAD = "x" * 256  # about the size of a sealed login message
SYNAPSE_LIMIT = 200  # live v3 sessions Synapse keeps (its hard limit)
SETTLE_S = 0.3


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def server_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (found through /proc, loopback only)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                inode = fields[9]
    if inode is None:
        raise RuntimeError(f"nothing listens on {port}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if fd.readlink().as_posix() == f"socket:[{inode}]":
                    return int(proc.name)
        except (PermissionError, FileNotFoundError, ProcessLookupError):
            continue
    raise RuntimeError(f"no process owns port {port}")


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator must cost far less than the
    servers it measures (httpx spends more CPU per request than either server on a small machine)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, base: str) -> Connection:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while (size := int((await self.reader.readline()).split(b";")[0], 16)) > 0:
                data += await self.reader.readexactly(size + 2)
                data = data[:-2]
            await self.reader.readline()
        else:
            data = await self.reader.readexactly(length)
        return status, json.loads(data) if data else None

    def close(self) -> None:
        self.writer.close()


async def pair_loop(base: str, stop_at: float, latencies: list[float]) -> None:
    g, s = await Connection.open(base), await Connection.open(base)

    async def timed(connection: Connection, method: str, url: str, body: object = None) -> Any:
        start = time.perf_counter()
        status, content = await connection.request(method, url, body)
        latencies.append(time.perf_counter() - start)
        if status >= 400:
            raise RuntimeError(f"{method} {url}: HTTP {status} {content}")
        return content

    try:
        while time.perf_counter() < stop_at:
            created = await timed(g, "POST", PREFIX, {"data": PAYLOAD})
            url, token = f"{PREFIX}/{created['id']}", created["sequence_token"]
            writer, reader = s, g
            for _ in range(ROUNDS):
                token = (await timed(writer, "PUT", url, {"sequence_token": token, "data": PAYLOAD}))["sequence_token"]
                assert (await timed(reader, "GET", url))["sequence_token"] == token
                writer, reader = reader, writer
            await timed(g, "DELETE", url)
    finally:
        g.close()
        s.close()


async def load(base: str, seconds: float, pairs: int) -> tuple[float, float, float]:
    warm: list[float] = []
    await asyncio.gather(*(pair_loop(base, time.perf_counter() + 0.5, warm) for _ in range(pairs)))
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(pair_loop(base, start + seconds, latencies) for _ in range(pairs)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


async def fill(base: str, count: int, ids: list[str]) -> None:
    """Create ``count`` more live sessions over 10 connections, appending their ids to ``ids``."""
    connections = [await Connection.open(base) for _ in range(10)]

    async def create(connection: Connection, n: int) -> None:
        for _ in range(n):
            status, content = await connection.request("POST", PREFIX, {"data": PAYLOAD})
            if status != 200:
                raise RuntimeError(f"create: HTTP {status} {content}")
            ids.append(content["id"])

    share, extra = divmod(count, len(connections))
    await asyncio.gather(*(create(c, share + (i < extra)) for i, c in enumerate(connections)))
    for connection in connections:
        connection.close()


async def delete_all(base: str, ids: list[str]) -> None:
    connections = [await Connection.open(base) for _ in range(10)]

    async def delete(connection: Connection, chunk: list[str]) -> None:
        for session_id in chunk:
            await connection.request("DELETE", f"{PREFIX}/{session_id}")

    await asyncio.gather(*(delete(c, ids[i :: len(connections)]) for i, c in enumerate(connections)))
    for connection in connections:
        connection.close()


async def warm_up(base: str, pairs: int) -> None:
    """Half a second of the workload, so that the request path has allocated what it keeps."""
    await asyncio.gather(*(pair_loop(base, time.perf_counter() + 0.5, []) for _ in range(pairs)))


def footprint(base: str, pairs: int, counts: tuple[int, ...]) -> tuple[int, dict[int, int], list[str]]:
    """RSS (KiB) of a warmed-up empty server, then its RSS holding each of ``counts`` live sessions."""
    pid = server_pid(int(base.rsplit(":", 1)[1]))
    asyncio.run(warm_up(base, pairs))
    time.sleep(SETTLE_S)
    empty = rss_kib(pid)
    held: dict[int, int] = {}
    ids: list[str] = []
    for count in counts:
        asyncio.run(fill(base, count - len(ids), ids))
        time.sleep(SETTLE_S)
        held[count] = rss_kib(pid)
    return empty, held, ids


class Figures:
    """What one server measured: throughput once, and the footprint in each fresh-process trial."""

    def __init__(self, counts: tuple[int, ...]) -> None:
        self.rps = self.p50 = self.p99 = 0.0
        self.empty: list[int] = []
        self.held: dict[int, list[int]] = {count: [] for count in counts}

    def add(self, empty: int, held: dict[int, int]) -> None:
        self.empty.append(empty)
        for count, value in held.items():
            self.held[count].append(value)

    def rss_mib(self, count: int) -> float:
        return statistics.median(self.held[count]) / 1024

    def per_session(self, count: int) -> list[float]:
        """Bytes of RSS growth per live session, one figure per trial, sorted."""
        return sorted((held - empty) * 1024 / count for held, empty in zip(self.held[count], self.empty, strict=True))

    def per_10k(self, count: int) -> tuple[float, float, float]:
        """(median, min, max) of the growth per 10,000 sessions, in MiB."""
        values = [value * 10_000 / 2**20 for value in self.per_session(count)]
        return statistics.median(values), values[0], values[-1]


def run_server(
    name: str, start: Callable[[], AbstractContextManager[str]], args: argparse.Namespace, counts: tuple[int, ...]
) -> Figures:
    figures = Figures(counts)
    for trial in range(args.trials):
        with start() as base:
            empty, held, ids = footprint(base, args.pairs, counts)
            figures.add(empty, held)
            if trial == args.trials - 1:
                # Throughput once, in the last process, after its sessions are gone again.
                asyncio.run(delete_all(base, ids))
                figures.rps, figures.p50, figures.p99 = asyncio.run(load(base, args.seconds, args.pairs))
        growth = ", ".join(f"{count:,} live +{(held[count] - empty) / 1024:.2f}" for count in counts)
        print(f"  {name} trial {trial + 1}: RSS empty {empty / 1024:.1f} MiB, {growth} MiB", flush=True)
    per_session = "; ".join(
        f"{count:,} live: {', '.join(f'{value:.0f}' for value in figures.per_session(count))} B/session"
        for count in counts
    )
    print(f"  {name}: {figures.rps:,.0f} req/s, p50 {figures.p50:.2f} ms, p99 {figures.p99:.2f} ms; {per_session}")
    return figures


@contextlib.contextmanager
def synapse() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as workdir, run_synapse(Path(workdir)) as base:
        yield base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=5, help="fresh processes per server for the memory figures")
    args = parser.parse_args()
    print(
        f"workload: POST, {ROUNDS} x (PUT, GET), DELETE; {args.pairs} concurrent pairs, {args.seconds} s; "
        f"memory: {args.trials} fresh processes per server, {len(PAYLOAD)}-byte payloads",
        flush=True,
    )
    # The load comes from one loopback client: the per-client rate limits would measure themselves, so they are off.
    ours = run_server("qrlogin serve", lambda: run_qrlogin("--create-rate", "0", "--write-rate", "0"), args,
                      (SYNAPSE_LIMIT, 10_000))  # fmt: skip
    theirs = run_server("Synapse 1.163", synapse, args, (SYNAPSE_LIMIT,))

    def growth(figures: Figures, count: int) -> str:
        median, low, high = figures.per_10k(count)
        return f"{median:.1f} ({low:.1f} .. {high:.1f})"

    rows = [
        ("requests per second", f"{ours.rps:,.0f}", f"{theirs.rps:,.0f}", ours.rps / theirs.rps),
        ("p50 latency (ms)", f"{ours.p50:.2f}", f"{theirs.p50:.2f}", theirs.p50 / ours.p50),
        ("p99 latency (ms)", f"{ours.p99:.2f}", f"{theirs.p99:.2f}", theirs.p99 / ours.p99),
        (
            "RSS holding 200 live sessions (MiB)",
            f"{ours.rss_mib(SYNAPSE_LIMIT):.1f}",
            f"{theirs.rss_mib(SYNAPSE_LIMIT):.1f}",
            theirs.rss_mib(SYNAPSE_LIMIT) / ours.rss_mib(SYNAPSE_LIMIT),
        ),
        ("RSS holding 10,000 live sessions (MiB)", f"{ours.rss_mib(10_000):.1f}", "cannot [1]", None),
        (
            "RSS growth per 10,000, measured over 200 (MiB) [2]",
            growth(ours, SYNAPSE_LIMIT),
            growth(theirs, SYNAPSE_LIMIT),
            theirs.per_10k(SYNAPSE_LIMIT)[0] / max(ours.per_10k(SYNAPSE_LIMIT)[0], 0.01),
        ),
        ("RSS growth per 10,000, measured over 10,000 (MiB) [2]", growth(ours, 10_000), "cannot [1]", None),
    ]
    print("\n| figure | qrlogin serve | Synapse 1.163 | ratio |")
    print("|---|---:|---:|---:|")
    for label, mine, synapses, ratio in rows:
        print(f"| {label} | {mine} | {synapses} | {'–' if ratio is None else f'{ratio:.1f}x'} |")
    print(
        "\nratio > 1: qrlogin ahead. [1] Synapse keeps at most 200 live v3 sessions. [2] median (min .. max) over"
        f" {args.trials} fresh processes of (RSS holding N - RSS empty) / N, scaled to 10,000 sessions."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
