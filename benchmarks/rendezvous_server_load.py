"""Server load in interleaved bursts: ``qrlogin serve`` against Synapse 1.163 and a bare ASGI app on loopback.

Three servers run side by side for the whole run:

* ``qrlogin serve`` (the real command, access log off, in-memory store);
* Synapse 1.163 (``scripts/peers.d/synapse.sh``; started with the interop tests' config, ``tests/peers.py``);
* a *bare* ASGI app (``benchmarks/bare_app.py``) on exactly the same uvicorn settings
  (:func:`qrlogin.adapters.uvicorn_runner.serve`, the same guarded protocol and limits): it reads the request body and
  answers a fixed JSON body of the same size as qrlogin's, so the difference to it is what the rendezvous itself
  costs (routing, strict JSON, the store, the response encoding, the front's metrics).

Sequential runs of one server after another on a shared machine measure the machine's load as much as the servers
(three such runs gave 4.5x, 1.4x and 5.0x Synapse). Here the load comes in **bursts**: each round runs one short
burst per server, in a fresh random order, and every figure is a median over rounds, so a slow moment of the machine
falls on all servers alike. Two workloads, both MSC4388 (v3):

* ``poll``: ``GET`` of one live session, what a waiting device does;
* ``create``: ``POST {"data": <256 bytes>}``, strict JSON parsing and response encoding on the hot path.

Per server and workload: requests per second (median of the bursts, and its range), p99 latency (median of the
bursts' p99), and server CPU time per request (user + system from ``/proc/PID/stat`` across the burst, divided by
the requests answered). Ratios compare qrlogin with Synapse (throughput: x times Synapse; p99: Synapse's over
qrlogin's) and with the bare app (qrlogin's throughput as a share of the bare app's).

The load generator is ``wrk`` (Debian: ``apt-get install wrk``) when it is on ``PATH``, with one thread and
``--connections`` keep-alive connections; otherwise a small asyncio client (:class:`benchmarks.bench_rendezvous.
Connection`), which is slower and costs more CPU of its own, so its absolute figures are lower. Not part of pytest.

    .venv/bin/python benchmarks/rendezvous_server_load.py [--rounds 5] [--seconds 2] [--connections 16]
                                                          [--workloads poll,create] [--no-synapse]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_rendezvous import Connection, server_pid
from tests.peers import ROOT, free_port, run_synapse, stop, synapse_available, wait_until_up

PREFIX = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
PAYLOAD = "x" * 256
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Burst:
    requests_per_s: float
    p99_ms: float
    cpu_us_per_request: float


@dataclass
class Server:
    name: str
    base: str
    pid: int
    bursts: dict[str, list[Burst]] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@contextlib.contextmanager
def run_process(command: list[str], probe: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [arg.replace("{port}", str(port)) for arg in command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + probe, process)
        yield base, process.pid
    finally:
        stop(process)


def wrk_script(workload: str) -> str:
    if workload == "create":
        body = json.dumps(json.dumps({"data": PAYLOAD}))
        return f'wrk.method = "POST"\nwrk.body = {body}\nwrk.headers["Content-Type"] = "application/json"\n'
    return 'wrk.method = "GET"\n'


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"wrk printed a latency this script cannot read: {text!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def burst_wrk(url: str, workload: str, seconds: int, connections: int, script: Path) -> tuple[int, float, float]:
    """``(requests, requests/s, p99 ms)`` of one wrk burst."""
    script.write_text(wrk_script(workload))
    result = subprocess.run(
        ["wrk", "--latency", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    out = result.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"^\s*99%\s+(\S+)\s*$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: error answers during the burst:\n{out}")
    return requests, rate, p99


def burst_asyncio(base: str, path: str, workload: str, seconds: float, connections: int) -> tuple[int, float, float]:
    latencies: list[float] = []

    async def client(stop_at: float) -> None:
        connection = await Connection.open(base)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                if workload == "create":
                    status, _ = await connection.request("POST", path, {"data": PAYLOAD})
                else:
                    status, _ = await connection.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"{base}{path}: {status}")
                latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(client(started + seconds) for _ in range(connections)))
        return time.perf_counter() - started

    took = asyncio.run(main())
    latencies.sort()
    return len(latencies), len(latencies) / took, latencies[int(len(latencies) * 0.99)] * 1000


def create_session(base: str) -> str:
    async def main() -> str:
        connection = await Connection.open(base)
        try:
            status, body = await connection.request("POST", PREFIX, {"data": PAYLOAD})
        finally:
            connection.close()
        if status != 200:
            raise RuntimeError(f"{base}: create answered {status}")
        return f"{PREFIX}/{body['id']}"

    return asyncio.run(main())


def measure(servers: list[Server], workloads: list[str], args: argparse.Namespace) -> None:
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "workload.lua"
        for round_number in range(args.rounds):
            for workload in workloads:
                order = random.sample(servers, len(servers))
                for server in order:
                    # A fresh session for each poll burst: Synapse evicts its oldest sessions when creates fill it.
                    path = PREFIX if workload == "create" else create_session(server.base)
                    cpu_before = cpu_seconds(server.pid)
                    if use_wrk:
                        count, rate, p99 = burst_wrk(
                            server.base + path, workload, args.seconds, args.connections, script
                        )
                    else:
                        count, rate, p99 = burst_asyncio(server.base, path, workload, args.seconds, args.connections)
                    cpu = cpu_seconds(server.pid) - cpu_before
                    server.bursts.setdefault(workload, []).append(Burst(rate, p99, cpu / max(count, 1) * 1e6))
                    time.sleep(0.2)
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"load generator: {'wrk' if use_wrk else 'asyncio client (wrk not found)'}, {args.connections} connections")


def report(servers: list[Server], workloads: list[str]) -> None:
    by_name = {server.name: server for server in servers}
    qrlogin = by_name["qrlogin serve"]
    for workload in workloads:
        print(f"\n{workload} ({len(qrlogin.bursts[workload])} interleaved bursts per server)")
        print(f"{'server':<16}{'req/s median':>14}{'req/s range':>20}{'p99 ms':>10}{'CPU us/req':>12}")
        for server in servers:
            bursts = server.bursts[workload]
            rates = [b.requests_per_s for b in bursts]
            print(
                f"{server.name:<16}{statistics.median(rates):>14,.0f}"
                f"{f'{min(rates):,.0f}-{max(rates):,.0f}':>20}"
                f"{statistics.median(b.p99_ms for b in bursts):>10.2f}"
                f"{statistics.median(b.cpu_us_per_request for b in bursts):>12.0f}"
            )
        mine = qrlogin.bursts[workload]
        for other_name, label in (("Synapse 1.163", "Synapse"), ("bare ASGI", "bare ASGI app")):
            other = by_name.get(other_name)
            if other is None:
                continue
            theirs = other.bursts[workload]
            per_burst = [a.requests_per_s / b.requests_per_s for a, b in zip(mine, theirs, strict=True)]
            throughput = statistics.median(b.requests_per_s for b in mine) / statistics.median(
                b.requests_per_s for b in theirs
            )
            p99 = statistics.median(b.p99_ms for b in theirs) / statistics.median(b.p99_ms for b in mine)
            cpu = statistics.median(b.cpu_us_per_request for b in theirs) / statistics.median(
                b.cpu_us_per_request for b in mine
            )
            if other_name == "bare ASGI":
                print(
                    f"qrlogin vs {label}: throughput {throughput:.0%} of it (per round {min(per_burst):.0%}-"
                    f"{max(per_burst):.0%}), p99 {1 / p99:.2f}x its p99, CPU per request {1 / cpu:.2f}x its CPU"
                )
                print(f"  target >= 50% of the bare app's throughput: {'met' if throughput >= 0.5 else 'NOT met'}")
            else:
                print(
                    f"qrlogin vs {label}: throughput {throughput:.2f}x (per round {min(per_burst):.2f}x-"
                    f"{max(per_burst):.2f}x), p99 {p99:.2f}x lower, CPU per request {cpu:.2f}x less"
                )
                met = throughput >= 5 and p99 > 1
                print(f"  target >= 5x Synapse's median throughput with a lower p99: {'met' if met else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=2, help="length of one burst (whole seconds, as wrk takes them)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workloads", default="poll,create")
    parser.add_argument("--no-synapse", action="store_true", help="leave Synapse out (it takes ~15 s to start)")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio client even when wrk is present")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    qrlogin_cmd = [sys.executable, "-m", "qrlogin", "serve", "--port", "{port}", "--no-access-log"]
    qrlogin_cmd += ["--log-level", "warning", "--max-sessions", "300000"]
    qrlogin_cmd += ["--create-rate", "0", "--write-rate", "0"]  # one loopback client: per-client limits would bind
    bare_cmd = [sys.executable, str(Path(__file__).resolve().parent / "bare_app.py"), "{port}"]
    with contextlib.ExitStack() as stack:
        servers = []
        base, pid = stack.enter_context(run_process(qrlogin_cmd, PREFIX))
        servers.append(Server("qrlogin serve", base, pid))
        base, pid = stack.enter_context(run_process(bare_cmd, "/"))
        servers.append(Server("bare ASGI", base, pid))
        if not args.no_synapse:
            if not synapse_available():
                print("Synapse is not installed (scripts/peers.d/synapse.sh); leaving it out", file=sys.stderr)
            else:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                base = stack.enter_context(run_synapse(workdir / "synapse"))
                servers.append(Server("Synapse 1.163", base, server_pid(int(base.rsplit(":", 1)[1]))))
        measure(servers, workloads, args)
        report(servers, workloads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
