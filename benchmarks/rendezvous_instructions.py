"""Instructions per request of the rendezvous app against the bare ASGI app, counted by callgrind: no noise.

Throughput on a shared machine moves by a tenth or more from run to run (``rendezvous_server_load.py`` interleaves
its bursts for that reason), which hides a change of a few per cent. The number of instructions a request executes
does not move: under ``valgrind --tool=callgrind`` the same code and inputs give the same count, whatever else the
machine is doing. This script counts, in one process, the instructions of one request through

* ``qrlogin poll`` / ``qrlogin create``: the whole rendezvous service as ``qrlogin serve`` runs it (the front of
  :mod:`qrlogin.adapters.front` around the app of :mod:`qrlogin.adapters.asgi`, in-memory store, access log and
  per-client rate limits off, as in the load benchmark): a ``GET`` of a live v3 session and a ``POST {"data": <256
  bytes>}``;
* ``bare poll`` / ``bare create``: the same requests through the bare app of ``benchmarks/bare_app.py``;
* ``harness``: the same call with nothing inside, subtracted from the others.

The ASGI ``receive`` and ``send`` are plain coroutines here, so what is counted is the application's own Python,
not uvicorn's or the kernel's (the same for both apps, and outside this count). Each case runs ``--requests`` times
inside one call of :func:`functools.reduce`, and callgrind collects only inside that C function
(``--toggle-collect``) and writes one profile per call (``--dump-after``), so start-up and imports are not counted.

    .venv/bin/python benchmarks/rendezvous_instructions.py [--requests 500]

Needs valgrind (Debian: ``apt-get install valgrind``); about half a minute. Not part of pytest.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bare_app

PREFIX = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
WARM_UP = 50


def _drive(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (its receive and send complete at once) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the app suspended: receive and send here complete at once")


def cases() -> dict[str, Callable[[], None]]:
    """One request per call, for each measured case."""
    from qrlogin.adapters.asgi import create_app
    from qrlogin.adapters.front import FrontApp
    from qrlogin.rendezvous.server import ServerConfig

    front = FrontApp(
        create_app(ServerConfig(create_limit=None, write_limit=None, max_sessions=10**9)),
        prefixes=[PREFIX],
        access_log=False,
    )
    answers: list[Any] = []

    async def send(message: Any) -> None:
        answers.append(message)

    body = json.dumps({"data": "x" * 256}).encode()
    posted = {"type": "http.request", "body": body, "more_body": False}
    empty = {"type": "http.request", "body": b"", "more_body": False}

    async def receive_post() -> Any:
        return posted

    async def receive_get() -> Any:
        return empty

    def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
                "query_string": b"", "headers": headers, "client": ("127.0.0.1", 40000), "http_version": "1.1",
                "scheme": "http"}  # fmt: skip

    host = (b"host", b"127.0.0.1:8008")
    post = scope("POST", PREFIX, [host, (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))])
    _drive(front(dict(post), receive_post, send))
    session_id = json.loads(answers[-1]["body"])["id"]
    get = scope("GET", f"{PREFIX}/{session_id}", [host])

    def request(app: Any, request_scope: dict[str, Any], receive: Any, status: int) -> Callable[[], None]:
        def one() -> None:
            answers.clear()
            _drive(app(dict(request_scope), receive, send))
            if answers[0]["status"] != status:
                raise RuntimeError(f"unexpected answer: {answers[0]}")

        return one

    def harness() -> None:
        answers.clear()
        dict(get)

    return {
        "harness": harness,
        "qrlogin poll": request(front, get, receive_get, 200),
        "bare poll": request(bare_app.app, get, receive_get, 200),
        "qrlogin create": request(front, post, receive_post, 200),
        "bare create": request(bare_app.app, post, receive_post, 200),
    }


def run_cases(requests: int) -> None:
    """Inside callgrind: each case warmed up, then ``requests`` times inside one ``functools.reduce``."""
    for name, one in cases().items():
        for _ in range(WARM_UP):
            one()
        functools.reduce(lambda _, __: one(), range(requests), None)
        print(name, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        run_cases(args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir) / "callgrind.out"
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
             "--dump-after=functools_reduce", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--inside", "--requests", str(args.requests)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        names = [line for line in result.stdout.splitlines() if line]
        dumps = sorted(Path(workdir).glob("callgrind.out.*"), key=lambda path: int(path.name.rsplit(".", 1)[1]))
        if len(dumps) != len(names):
            raise RuntimeError(f"{len(dumps)} profiles for {len(names)} cases:\n{result.stderr[-2000:]}")
        counts = {}
        for name, dump in zip(names, dumps, strict=True):
            match = re.search(r"^summary: (\d+)", dump.read_text(), re.MULTILINE)
            if match is None:
                raise RuntimeError(f"no summary line in {dump}")
            counts[name] = int(match.group(1)) / args.requests
    harness = counts.pop("harness")
    print(f"instructions per request, {args.requests} requests per case, harness ({harness:,.0f}) subtracted")
    for name, count in counts.items():
        print(f"  {name:<16}{count - harness:>10,.0f}")
    for workload in ("poll", "create"):
        ratio = (counts[f"qrlogin {workload}"] - harness) / (counts[f"bare {workload}"] - harness)
        print(f"{workload}: qrlogin executes {ratio:.1f}x the bare app's instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
