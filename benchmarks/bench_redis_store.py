"""Benchmark: what a rendezvous session costs in Redis, and the Redis store's speed against the in-memory one.

Starts its own redis-server (scripts/peers.d/redis.sh installs it) on a free loopback port, without persistence.

* Memory: ``--sessions`` v3 sessions with a 256-byte payload are created through the store; the figures are
  ``MEMORY USAGE`` of one session key (the key and its value as Redis stores them), and the growth of Redis's
  ``used_memory`` per session, which also counts the session's member in the expiry index and the keyspace's
  own tables.
* Speed: the QR-login sequence (create, 6 x (PUT, GET), delete) through the same async driver the ASGI app uses
  (:func:`qrlogin.adapters.asgi.respond`), in-process and without HTTP, against an :class:`EmbeddedStore` and
  against the :class:`RedisStore`, ``--concurrency`` sequences at a time, in alternating bursts of ``--seconds``.
  Prints requests per second of each and the ratio per burst, and the median.
* Over HTTP, if ``wrk`` is installed: two ``qrlogin serve`` processes (in memory, and on this Redis; rate limits off),
  each holding ``--http-sessions`` sessions, and ``wrk`` reading them (``GET``, the most frequent request: devices
  poll) in alternating bursts of ``--seconds``, 8 connections, one thread: first one session over and over, then
  the sessions in turn. Prints requests per second and the ratio of each. The Redis store coalesces reads of one
  event-loop turn, and reads of the same key into one; one session read by 8 connections at once is its best case,
  the sessions in turn (as many pollers of different sessions) the honest one.

Usage::

    python benchmarks/bench_redis_store.py [--sessions 10000] [--bursts 6] [--seconds 1.0] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import redis

from qrlogin.adapters.asgi import respond
from qrlogin.adapters.redis_store import RedisStore
from qrlogin.http import HttpRequest
from qrlogin.rendezvous.server import V3_UNSTABLE_PREFIX, EmbeddedStore, ServerConfig, Store

PAYLOAD = "x" * 256
CONFIG = ServerConfig(create_limit=None, write_limit=None, max_sessions=1_000_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def call(store: Store, method: str, target: str, body: Any = None) -> dict[str, Any]:
    request = HttpRequest(method=method, target=target, headers=(("content-type", "application/json"),),
                          body=b"" if body is None else json.dumps(body).encode())  # fmt: skip
    response = await respond(CONFIG, store, request, now_ms=now_ms(), entropy=os.urandom(32), client=None)
    assert response.status == 200, response.body
    result: dict[str, Any] = json.loads(response.body)
    return result


async def login_sequence(store: Store) -> int:
    created = await call(store, "POST", V3_UNSTABLE_PREFIX, {"data": PAYLOAD})
    path, token = f"{V3_UNSTABLE_PREFIX}/{created['id']}", created["sequence_token"]
    for _ in range(6):
        token = (await call(store, "PUT", path, {"sequence_token": token, "data": PAYLOAD}))["sequence_token"]
        await call(store, "GET", path)
    await call(store, "DELETE", path)
    return 14


async def burst(store: Store, seconds: float, concurrency: int) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            # Await first, then add: ``done += await ...`` reads ``done`` before the await and loses every update
            # another worker made meanwhile.
            requests = await login_sequence(store)
            done += requests

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def memory(url: str, sessions: int) -> tuple[int, float]:
    store = RedisStore.from_url(url)
    await store.client.flushdb()
    probe = redis.Redis.from_url(url)
    before = int(probe.info("memory")["used_memory"])
    last: dict[str, Any] = {}
    for _ in range(sessions):
        last = await call(store, "POST", V3_UNSTABLE_PREFIX, {"data": PAYLOAD})
    after = int(probe.info("memory")["used_memory"])
    usage = int(probe.memory_usage(store.session_key(last["id"])) or 0)
    probe.close()
    await store.close()
    return usage, (after - before) / sessions


async def speed(url: str, bursts: int, seconds: float, concurrency: int) -> list[tuple[float, float]]:
    redis_store: Store = RedisStore.from_url(url)
    memory_store: Store = EmbeddedStore()
    await burst(memory_store, 0.2, concurrency)  # warm up both
    await burst(redis_store, 0.2, concurrency)
    results = []
    for n in range(bursts):
        order: list[Store] = [memory_store, redis_store] if n % 2 == 0 else [redis_store, memory_store]
        rates = {id(store): await burst(store, seconds, concurrency) for store in order}
        results.append((rates[id(memory_store)], rates[id(redis_store)]))
    await redis_store.close()
    return results


def wrk(url: str, seconds: float, script: str | None = None) -> float:
    command = ["wrk", "-t1", "-c8", f"-d{max(1, round(seconds))}s", *(["-s", script] if script else []), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def rotation_script(directory: str, name: str, paths: list[str]) -> str:
    """A wrk script that GETs ``paths`` in turn."""
    script = os.path.join(directory, f"{name}.lua")
    quoted = ", ".join(json.dumps(path) for path in paths)
    with open(script, "w", encoding="utf-8") as file:
        file.write(f"local paths = {{{quoted}}}\nlocal n = 0\n")
        file.write("request = function()\n  n = n % #paths + 1\n  return wrk.format('GET', paths[n])\nend\n")
    return script


def http_bursts(
    redis_url: str, bursts: int, seconds: float, sessions: int, directory: str
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(in memory, Redis) requests per second of wrk reading one session, then ``sessions`` in turn, per burst."""
    servers = []
    try:
        urls: list[str] = []
        scripts: list[str] = []
        for store in ("memory", redis_url):
            port = free_port()
            command = [sys.executable, "-m", "qrlogin", "serve", "--port", str(port), "--store", store,
                       "--create-rate", "0", "--write-rate", "0"]  # fmt: skip
            servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            origin = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    httpx.get(origin + V3_UNSTABLE_PREFIX)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            created = [httpx.post(origin + V3_UNSTABLE_PREFIX, json={"data": PAYLOAD}).json() for _ in range(sessions)]
            paths = [f"{V3_UNSTABLE_PREFIX}/{session['id']}" for session in created]
            urls.append(origin + paths[0])
            scripts.append(rotation_script(directory, f"rotate{len(scripts)}", paths))
        wrk(urls[0], 1)  # warm up both
        wrk(urls[1], 1)
        one: list[tuple[float, float]] = []
        many: list[tuple[float, float]] = []
        for results, use_script in ((one, False), (many, True)):
            for n in range(bursts):
                order = [0, 1] if n % 2 == 0 else [1, 0]
                rates = {index: wrk(urls[index], seconds, scripts[index] if use_script else None) for index in order}
                results.append((rates[0], rates[1]))
        return one, many
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)


def print_table(title: str, results: list[tuple[float, float]]) -> None:
    print(f"\n{title}; requests per second")
    print("| burst | in memory | Redis | Redis / memory |")
    print("|---:|---:|---:|---:|")
    for n, (in_memory, in_redis) in enumerate(results, start=1):
        print(f"| {n} | {in_memory:,.0f} | {in_redis:,.0f} | {in_redis / in_memory:.2f} |")
    print(f"| median | {statistics.median(m for m, _ in results):,.0f} | "
          f"{statistics.median(r for _, r in results):,.0f} | "
          f"{statistics.median(r / m for m, r in results):.2f} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--bursts", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--http-sessions", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (scripts/peers.d/redis.sh)")
        return 1
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(100):
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            usage, growth = asyncio.run(memory(url, args.sessions))
            version = redis.Redis.from_url(url).info("server")["redis_version"]
            print(f"redis {version}; {args.sessions:,} v3 sessions with a {len(PAYLOAD)}-byte payload")
            print(f"MEMORY USAGE of one session key: {usage} bytes")
            print(f"used_memory growth per session (key, value, expiry index member, tables): {growth:.0f} bytes")
            results = asyncio.run(speed(url, args.bursts, args.seconds, args.concurrency))
            one_session, many_sessions = (
                http_bursts(url, args.bursts, args.seconds, args.http_sessions, directory)
                if shutil.which("wrk")
                else ([], [])
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
    print_table(f"{args.concurrency} concurrent login sequences, in-process (no HTTP)", results)
    if one_session:
        print_table("over HTTP (qrlogin serve, wrk, 8 connections), GET of one session", one_session)
        print_table(f"over HTTP (qrlogin serve, wrk, 8 connections), GET of {args.http_sessions} sessions in turn",
                    many_sessions)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
