"""Run an ASGI app on uvicorn the way a public service needs: bounded headers, read timeouts, bounded shutdown.

Theory of operation
-------------------
``qrlogin serve`` and ``qrlogin testserver`` both run here, so they share one set of defences. uvicorn does the HTTP
work (httptools' C parser; uvloop, which the ``server`` extra installs and uvicorn's ``loop="auto"`` picks up where
it runs); what it leaves open to a hostile client is closed by a subclass of its httptools protocol,
:class:`GuardedHttpToolsProtocol`, one instance per connection:

* **Header size and count.** llhttp has no limit of its own, and httptools joins the pieces of a header that arrives
  in many packets with ``bytes +=`` (quadratic) before the protocol sees it, so a limit applied per complete header
  comes too late. The guard therefore counts every byte received while a request's head is incomplete and refuses
  the request with ``431`` once the head exceeds :attr:`Limits.max_header_bytes` (at most one socket read later),
  and counts complete headers against :attr:`Limits.max_headers`. The connection is closed after the answer.
  (uvicorn's other parser, h11, bounds the whole head with ``h11_max_incomplete_event_size`` by itself, but it parses
  in Python: a bare app on it cost 83-119 µs of CPU per request against 31-46 µs on this guarded protocol, in
  interleaved wrk bursts on the shared machine. The guard keeps the C parser and adds the count limit h11 lacks.)
* **Read timeouts.** From the moment a connection opens (or a request's first byte arrives) the head must be complete
  within :attr:`Limits.header_timeout_s`; from then on the body must be complete within
  :attr:`Limits.body_timeout_s`. A connection that misses either gets ``408`` (when it sent anything and no answer
  has started) and is closed; the app, if it was reading the body, then sees ``http.disconnect``. uvicorn's own
  keep-alive timer covers the idle time between requests. A bodyless request arms one timer, cancelled when its
  head completes in the same read.
* **Graceful shutdown, bounded.** On SIGTERM uvicorn stops accepting, closes idle connections and waits for the
  running requests; :attr:`Limits.shutdown_timeout_s` bounds that wait (after it the remaining tasks are cancelled),
  and the read timeouts drop a half-sent body sooner still.
* **Concurrency.** :attr:`Limits.max_connections` connections at most; beyond it uvicorn answers ``503``.

The socket is bound and listening before anything is announced (:func:`bind`), and a caller announces its address
from ``on_started``, once the app's start-up has completed and uvicorn serves the socket: ``--port 0`` yields the
port the kernel chose, and a busy port fails as one :class:`OSError` the command turns into one line. uvicorn's
``server`` header is off, and its access log is off too: the front (:mod:`qrlogin.adapters.front`) logs each request
with its route, never a session id.

Logs go to standard error as text or, with ``json_logs``, as one JSON object per line (a ``logging.Formatter`` of a
few lines: no library is needed for ``json.dumps`` of a record's fields).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "GuardedHttpToolsProtocol",
    "JsonFormatter",
    "Limits",
    "bind",
    "bound_url",
    "log_config",
    "serve",
]

RejectHook = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one client may cost the server. The defaults suit a public rendezvous (bodies of at most ~26 KiB)."""

    max_header_bytes: int = 16 * 1024  # request line and headers together (h11's default, nginx's is 8-32 KiB)
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: int = 5
    shutdown_timeout_s: int = 5
    max_connections: int = 1024


class _HeadTooLarge(Exception):
    """Raised inside an httptools callback to stop the parser; ``reason`` is the rejection's name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits and read timeouts (see the module docstring).

    uvicorn builds one per connection with its own arguments; :func:`serve` makes a subclass that sets ``limits``
    and ``on_reject`` (called with a reason: ``header_too_large``, ``too_many_headers``, ``header_timeout``,
    ``body_timeout``, ``malformed_request``).
    """

    limits: Limits = Limits()
    on_reject: RejectHook | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Between one request's end and the next one's head complete, every byte received belongs to that head (or
        # to nothing): counting them before the parser sees them bounds what it buffers, whatever it does with them.
        self._in_head = True
        self._awaiting_body = False
        self._head_bytes = 0
        self._field_bytes = 0
        self._header_count = 0
        self._received_any = False
        self._read_timer: asyncio.TimerHandle | None = None

    # --- timers

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out, reason)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self, reason: str) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        # Answer 408 only where no other answer is under way or sent for this request: a response (say a 413 sent
        # before the body finished arriving, or a slow answer to the request before a pipelined one) is never
        # followed or interrupted by another.
        cycle = self.cycle
        if self._in_head:
            quiet = cycle is None or cycle.response_complete
        else:
            quiet = cycle is not None and not cycle.response_started
        self._refuse(408, reason, write=self._received_any and quiet)

    def _refuse(self, status: int, reason: str, *, write: bool = True) -> None:
        hook = type(self).on_reject
        if hook is not None:
            hook(reason)
        if write:
            message = _REASONS[status] + b"\n"
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, _REASONS[status], len(message), message)
            )
        self.transport.close()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._received_any = True
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades here: the request was dispatched as a plain one
        except httptools.HttpParserError as exc:
            self._disarm()
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, exc.__context__.reason)
            else:
                hook = type(self).on_reject
                if hook is not None:
                    hook("malformed_request")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "header_too_large")
        elif self._awaiting_body and self._read_timer is None:
            self._arm(self.limits.body_timeout_s, "body_timeout")

    # --- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._field_bytes = self._header_count = 0
        self._arm(self.limits.header_timeout_s, "header_timeout")

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url)
        if self._field_bytes > self.limits.max_header_bytes:
            raise _HeadTooLarge("header_too_large")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            raise _HeadTooLarge("too_many_headers")
        if self._field_bytes > self.limits.max_header_bytes:
            raise _HeadTooLarge("header_too_large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._awaiting_body = True
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_body = False
        self._in_head = True
        self._head_bytes = 0
        self._disarm()
        super().on_message_complete()


def bind(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port); raises :class:`OSError` (busy port, bad address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def bound_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket, with the port the kernel chose."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the fields a caller passed in ``extra``."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(level: str, *, json_logs: bool) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn's and qrlogin's loggers, all to standard error."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if json_logs
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": logger, "uvicorn.error": {"level": level.upper()}, "qrlogin": logger},
    }


def serve(
    app: Any,
    sock: socket.socket,
    *,
    limits: Limits = Limits(),
    log_level: str = "info",
    json_logs: bool = False,
    on_reject: RejectHook | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGINT/SIGTERM, with ``limits``; returns after shutdown.

    ``on_started`` runs once the app's lifespan start-up has completed and the socket is being served: the moment to
    announce the address.
    """
    protocol = type(
        "ConfiguredGuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "on_reject": staticmethod(on_reject) if on_reject is not None else None},
    )
    config = uvicorn.Config(
        app,
        http=protocol,
        ws="none",
        lifespan="on",
        log_config=log_config(log_level, json_logs=json_logs),
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=limits.shutdown_timeout_s,
        limit_concurrency=limits.max_connections,
        backlog=2048,
    )
    _Server(config, on_started).run(sockets=[sock])


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()
