"""``qrlogin serve``: run the rendezvous server (ASGI app on uvicorn) with the embedded in-memory store.

By default all three generations are served at their unstable paths: v1 and v2 share
``/_matrix/client/unstable/org.matrix.msc4108/rendezvous`` (a POST is dispatched on its ``Content-Type``) and v3
lives at ``/_matrix/client/unstable/io.element.msc4388/rendezvous``. ``--stable`` adds generations at the stable
``/_matrix/client/v1/rendezvous`` (v1 plus at most one of v2/v3, since those two cannot share a path).

The app served is :class:`~qrlogin.adapters.front.FrontApp` (health at ``--health-path``, Prometheus metrics at
``--metrics-path``, the access log, ``nosniff``) around the rendezvous app; the socket is bound before the addresses
are announced, and uvicorn runs with the limits of :mod:`qrlogin.adapters.uvicorn_runner` (header size and count,
read timeouts, bounded shutdown), set by the flags :mod:`qrlogin.cli._serving` adds. docs/rendezvous.md §Operating
it lists them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sized
from typing import Any

from ..errors import LocalProtocolError
from ..rendezvous._http import ApiGeneration
from ..rendezvous.server import STABLE_PREFIX, Mount, ServerConfig, default_mounts
from . import _serving

__all__ = ["build_config", "main", "register", "run"]


def _generations(text: str) -> frozenset[ApiGeneration]:
    try:
        chosen = frozenset(ApiGeneration(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        chosen = frozenset()
    if not chosen:
        raise argparse.ArgumentTypeError("generations are a non-empty, comma-separated subset of v1,v2,v3")
    return chosen


def _endpoint_path(text: str) -> str:
    if text and not text.startswith("/"):
        raise argparse.ArgumentTypeError("a path starts with '/' (or is '' for none)")
    return text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help="run a rendezvous server (v1, v2, v3) on loopback")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8008, help="port to bind, 0 for any free one (default 8008)")
    parser.add_argument(
        "--generations", type=_generations, default=frozenset(ApiGeneration), help="unstable paths (default v1,v2,v3)"
    )
    parser.add_argument("--stable", type=_generations, default=frozenset(), help="generations at the stable path")
    parser.add_argument("--ttl", type=float, default=120.0, help="session lifetime in seconds (default 120)")
    parser.add_argument("--max-sessions", type=int, default=100_000, help="live session limit (default 100000)")
    parser.add_argument("--public-base-url", default=None, help="base of the v1 session URLs (default: Host header)")
    parser.add_argument(
        "--health-path",
        type=_endpoint_path,
        default="/health",
        help="health endpoint ('' turns it off; default /health)",
    )
    parser.add_argument(
        "--metrics-path",
        type=_endpoint_path,
        default="/metrics",
        help="Prometheus metrics ('' turns them off; default /metrics)",
    )
    _serving.add_arguments(parser)
    parser.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The server configuration the flags describe; a misconfiguration raises :class:`LocalProtocolError`."""
    mounts = list(default_mounts(args.generations))
    if args.stable:
        mounts.append(Mount(prefix=STABLE_PREFIX, generations=args.stable, stable=True))
    return ServerConfig(
        mounts=tuple(mounts),
        ttl_ms=round(args.ttl * 1000),
        max_sessions=args.max_sessions,
        public_base_url=args.public_base_url,
    )


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    try:
        # The server extra is optional: import it only when the command runs.
        from ..adapters import uvicorn_runner  # noqa: F401  (uvicorn and httptools)
        from ..adapters.asgi import create_app
        from ..adapters.front import FrontApp, Metrics
    except ImportError:
        print("qrlogin serve needs the 'server' extra: pip install 'qrlogin[server]'", file=sys.stderr)
        return 2
    sock = _serving.bind_or_explain("serve", args.host, args.port)
    if sock is None:
        return 1
    app = create_app(config)
    store = app.server.store
    metrics = Metrics(live_sessions=store.__len__ if isinstance(store, Sized) else None)
    front = FrontApp(
        app,
        prefixes=[mount.prefix for mount in config.mounts],
        metrics=metrics,
        health_path=args.health_path or None,
        metrics_path=args.metrics_path or None,
        access_log=args.access_log,
    )
    base = _serving.listening_url(sock)

    def announce() -> None:
        # Once the app has started on the bound socket: a client that reads these lines can connect.
        for mount in config.mounts:
            names = ",".join(sorted(g.value for g in mount.generations))
            print(f"qrlogin: serving {names} at {base}{mount.prefix}", file=sys.stderr, flush=True)
        for name, path in (("health", args.health_path), ("metrics", args.metrics_path)):
            if path:
                print(f"qrlogin: {name} at {base}{path}", file=sys.stderr, flush=True)

    _serving.run(front, sock, args, announce=announce, on_reject=metrics.reject)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qrlogin.cli.serve ...``: the same command without going through the full CLI."""
    parser = argparse.ArgumentParser(prog="qrlogin")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except LocalProtocolError as exc:
        print(f"qrlogin: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
