"""The front of the rendezvous service: security headers, health, Prometheus metrics, the access log, mounting.

Theory of operation
-------------------
:class:`FrontApp` wraps the rendezvous ASGI app (:mod:`qrlogin.adapters.asgi`) and stays a plain ASGI app, so it
runs on uvicorn (``qrlogin serve``) or inside another ASGI application. It asks the app for its answer
(:meth:`~qrlogin.adapters.asgi.RendezvousApp.answer`) and sends it itself, so that adding a header and learning the
status cost no wrapper around ``send``. Per HTTP request it:

* routes on the **raw path below the mount point** (:func:`~qrlogin.adapters.asgi.route_path`): the same path the
  core routes on, so a percent-encoded ``/`` stays inside its segment, and the app answers the same wherever it is
  mounted (``root_path``: a Starlette ``Mount("/rz", app=...)``, uvicorn's ``--root-path``). Nothing here redirects:
  a mount point is a prefix, never a resource of its own, so there is no trailing-slash redirect to break clients;
* answers ``GET {health_path}`` (``{"status":"ok"}``) and ``GET {metrics_path}`` (Prometheus text format) itself,
  and everything else with the rendezvous app's answer;
* adds ``X-Content-Type-Options: nosniff`` to every answer;
* counts the request in :class:`Metrics` by route (a bounded set: each mount's collection and session templates,
  health, metrics, ``other``), method and status, and each refusal by reason;
* logs one access line (``qrlogin.access``, level INFO) with the route template, never the path: a session id is
  a capability to read the session and stays out of logs.

Metrics use ``prometheus-client`` on a registry of the app's own (two apps in one process never share counters):

=====================================================  ========================================================
``qrlogin_rendezvous_live_sessions``                   sessions in the store now (expired ones not yet purged
                                                       included), when the store can count them
``qrlogin_rendezvous_requests_total{route,method,status}``  requests answered
``qrlogin_rendezvous_rejections_total{reason}``       refusals: ``body_too_large`` (413), ``limit_exceeded``
                                                       (429), ``unavailable`` (503), ``bad_request`` (400),
                                                       ``method_not_allowed`` (405), and from the HTTP layer
                                                       (:mod:`qrlogin.adapters.uvicorn_runner`)
                                                       ``header_too_large``, ``too_many_headers``,
                                                       ``header_timeout``, ``body_timeout``,
                                                       ``malformed_request``
=====================================================  ========================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..http import HttpResponse
from .asgi import Receive, RendezvousApp, Scope, Send, response_messages, route_path

__all__ = ["FrontApp", "Metrics"]

_ACCESS = logging.getLogger("qrlogin.access")
_FRONT_HEADERS = ((b"x-content-type-options", b"nosniff"),)
_REJECTION_BY_STATUS = {
    400: "bad_request",
    405: "method_not_allowed",
    413: "body_too_large",
    429: "limit_exceeded",
    503: "unavailable",
}
_OTHER = "other"


class Metrics:
    """The service's counters and gauge, exposed through a registry of its own; ``exposition()`` is the text format.

    Counting happens on every request, so the counts are plain ints in dicts (the app runs on one event loop thread)
    and become Prometheus counters only when scraped, through a custom collector (``prometheus-client``'s way for
    values kept elsewhere): no label lookup or lock per request.
    """

    def __init__(self, *, live_sessions: Callable[[], int] | None = None) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.rejections: dict[str, int] = {}
        self._live_sessions = live_sessions
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def count_request(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if status >= 400:
            reason = _REJECTION_BY_STATUS.get(status)
            if reason is not None:
                self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def reject(self, reason: str) -> None:
        """Count a refusal decided outside the app (the HTTP layer's header limits and read timeouts)."""
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        requests = CounterMetricFamily(
            "qrlogin_rendezvous_requests",
            "Requests answered, by route template, method and status.",
            labels=("route", "method", "status"),
        )
        for (route, method, status), count in list(metrics.requests.items()):
            requests.add_metric((route, method, str(status)), count)
        yield requests
        rejections = CounterMetricFamily(
            "qrlogin_rendezvous_rejections", "Requests refused, by reason.", labels=("reason",)
        )
        for reason, count in list(metrics.rejections.items()):
            rejections.add_metric((reason,), count)
        yield rejections
        if metrics._live_sessions is not None:
            yield GaugeMetricFamily(
                "qrlogin_rendezvous_live_sessions",
                "Sessions held by the store (expired ones not yet purged included).",
                value=metrics._live_sessions(),
            )


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class FrontApp:
    """``await front(scope, receive, send)``: health, metrics and the access log around a rendezvous ASGI app.

    ``prefixes`` are the rendezvous mount prefixes (their collection and session paths become route labels);
    ``health_path``/``metrics_path`` of None turn those endpoints off.
    """

    def __init__(
        self,
        app: RendezvousApp,
        *,
        prefixes: Iterable[str],
        metrics: Metrics | None = None,
        health_path: str | None = "/health",
        metrics_path: str | None = "/metrics",
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics or Metrics()
        self._health_path = health_path
        self._metrics_path = metrics_path
        self._access_log = access_log
        self._prefixes = tuple(prefixes)
        self._routes: dict[str, str] = {prefix: prefix for prefix in self._prefixes}
        self._session_routes = {prefix: prefix + "/{id}" for prefix in self._prefixes}
        if health_path is not None:
            self._routes[health_path] = health_path
        if metrics_path is not None:
            self._routes[metrics_path] = metrics_path

    def route(self, path: str) -> str:
        """The route template of ``path`` (a raw path below the mount point): a bounded set of labels."""
        exact = self._routes.get(path)
        if exact is not None:
            return exact
        collection, _, session_id = path.rpartition("/")
        if session_id and collection in self._session_routes:
            return self._session_routes[collection]
        return _OTHER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan (the store's start and stop) belongs to the app
            return
        started = time.perf_counter() if self._access_log else 0.0
        path = route_path(scope)
        method: str = scope["method"]
        status = 500
        try:
            if path == self._health_path and method in ("GET", "HEAD"):
                response = _HEALTHY
            elif path == self._metrics_path and method in ("GET", "HEAD"):
                response = HttpResponse(status=200, headers=_METRICS_HEADERS, body=self.metrics.exposition())
            else:
                # The app answers, this front sends: one write of the answer with the front's header added.
                response = await self.app.answer(scope, receive, path=path)
            status = response.status
            start, body = response_messages(response, extra_headers=_FRONT_HEADERS, head=method == "HEAD")
            await send(start)
            await send(body)
        finally:
            route = self.route(path)
            self.metrics.count_request(route, method if method in _KNOWN_METHODS else _OTHER, status)
            if self._access_log and _ACCESS.isEnabledFor(logging.INFO):
                _log_access(scope, method, route, status, time.perf_counter() - started)


_HEALTHY = HttpResponse(
    status=200, headers=(("content-type", "application/json"), ("cache-control", "no-store")), body=b'{"status":"ok"}'
)
_METRICS_HEADERS = (("content-type", CONTENT_TYPE_LATEST), ("cache-control", "no-store"))


def _log_access(scope: Scope, method: str, route: str, status: int, seconds: float) -> None:
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    duration_ms = round(seconds * 1000, 2)
    _ACCESS.info(
        '%s "%s %s" %d %.2fms',
        address,
        method,
        route,
        status,
        duration_ms,
        extra={"client": address, "method": method, "route": route, "status": status, "duration_ms": duration_ms},
    )
