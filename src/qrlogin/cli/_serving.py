"""What ``qrlogin serve`` and ``qrlogin testserver`` share: the listening, logging and limit flags, and running (and
the parser of positive numbers the other commands take too).

Both commands bind first and announce the address a client can reach (with the real port when ``--port 0``) once
the app has started and the socket is served; they run the app on uvicorn through
:mod:`qrlogin.adapters.uvicorn_runner`, whose limits the flags set. A port that cannot be bound is one line on
standard error and exit status 1. The adapter modules are imported only when a command runs: the ``server`` extra is
optional.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_arguments", "bind_or_explain", "limits", "listening_url", "positive", "run"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind`` of the text, refused unless it is above zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser, *, log_level: str = "info", access_log: bool = True) -> None:
    """Logging and abuse-limit flags (``--host``/``--port`` stay with each command)."""
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-level", choices=_LOG_LEVELS, default=log_level, help=f"log level (default {log_level})")
    logs.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=access_log,
        help=f"one line per request, with the route, never a session id (default {'on' if access_log else 'off'})",
    )
    logs.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-header-bytes",
        type=positive(int),
        default=16384,
        help="request line and headers together (default 16384); beyond: 431",
    )
    limits.add_argument("--max-headers", type=positive(int), default=100, help="headers per request (default 100)")
    limits.add_argument(
        "--header-timeout", type=positive(float), default=10.0, help="seconds to receive a request's head (default 10)"
    )
    limits.add_argument(
        "--body-timeout", type=positive(float), default=10.0, help="seconds to receive a request's body (default 10)"
    )
    limits.add_argument(
        "--keep-alive", type=positive(int), default=5, help="seconds an idle connection stays open (default 5)"
    )
    limits.add_argument(
        "--shutdown-timeout",
        type=positive(int),
        default=5,
        help="seconds running requests get after SIGTERM before they are cancelled (default 5)",
    )
    limits.add_argument(
        "--max-connections", type=positive(int), default=1024, help="open connections at most (default 1024)"
    )


def limits(args: argparse.Namespace) -> Any:
    """The :class:`~qrlogin.adapters.uvicorn_runner.Limits` the flags describe."""
    from ..adapters.uvicorn_runner import Limits

    return Limits(
        max_header_bytes=args.max_header_bytes,
        max_headers=args.max_headers,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        keep_alive_s=args.keep_alive,
        shutdown_timeout_s=args.shutdown_timeout,
        max_connections=args.max_connections,
    )


def bind_or_explain(command: str, host: str, port: int) -> socket.socket | None:
    """The listening socket, or None after one line on stderr saying why it cannot be had."""
    from ..adapters.uvicorn_runner import bind

    try:
        return bind(host, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"qrlogin {command}: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
        return None


def listening_url(sock: socket.socket) -> str:
    from ..adapters.uvicorn_runner import bound_url

    return bound_url(sock)


def run(
    app: Any,
    sock: socket.socket,
    args: argparse.Namespace,
    *,
    announce: Callable[[], None],
    on_reject: Callable[[str], None] | None = None,
    tls: tuple[str, str] | None = None,
    trusted_proxies: tuple[str, ...] = (),
) -> None:
    """Serve ``app`` on ``sock`` with the flags' limits and logging until SIGINT/SIGTERM; ``announce`` once serving.

    ``tls`` is (certificate file, key file): serve https with them. ``trusted_proxies``: peers whose
    ``X-Forwarded-For`` names the client (none by default).
    """
    from ..adapters.uvicorn_runner import serve

    serve(
        app,
        sock,
        limits=limits(args),
        log_level=args.log_level,
        json_logs=args.log_json,
        on_reject=on_reject,
        on_started=announce,
        tls=tls,
        trusted_proxies=trusted_proxies,
    )
