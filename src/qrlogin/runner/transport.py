"""HTTP for the runner: one :class:`~qrlogin.http.HttpRequest` in, one :class:`~qrlogin.http.HttpResponse` (or
nothing) out, over httpx, bounded in size and time.

Theory of operation
-------------------
The core decides every request; this module only performs it, and keeps three promises a device needs from the
network layer:

* **Bounded reads.** The body is streamed and reading stops after ``max_body_bytes + 1`` bytes: the core checks every
  body's size before it parses it (4096 bytes for a rendezvous payload, 64 KiB for OAuth answers), so a body cut at
  one byte past the bound still fails that check and ends in the core's own typed failure, while a 600 MB answer costs
  65 KiB of memory. A declared ``Content-Length`` above the bound is not even read.
* **No request outlives the device.** Every attempt runs under ``asyncio.timeout`` until the earlier of its own
  timeout and the deadline the caller gives (the device's), so a server trickling one byte every few seconds holds
  the device no longer than that.
* **Retries where the core has none.** The rendezvous client machine backs off on 429/5xx and lost requests itself
  (``docs/rendezvous.md``), and the new device's token polls slow down after a transport error (RFC 8628 §3.5); the
  other requests (discovery, registration, device authorization, device management) would end the sign-in at the
  first 5xx or dropped connection. The transport retries those, up to ``retries`` times with exponential back-off
  from ``retry_base_s``, within the deadline. A request is a rendezvous request when its path holds a ``rendezvous``
  segment (every rendezvous API's path does).

``allow_http`` is the transport's half of the one switch for plain-http servers: without it a request to an
``http://`` URL fails before it is sent. ``connect_to`` maps a URL's ``host[:port]`` to another origin (as curl's
``--connect-to``), for a server reached through a name the machine cannot resolve (tests map ``https`` names to a
loopback port this way); the ``Host`` header still names the original host. With ``allow_http``, an ``https`` URL
whose host is a loopback address or ``localhost`` is sent over plain http: a server name has no scheme, and the
protocol resolves one as ``https://NAME/.well-known/matrix/client``, which a local test server on loopback cannot
answer (``qrlogin testserver`` is plain http). Requests marked ``authenticated`` get the
bearer token the transport was given; no core ever holds it.

``ca_file`` names a PEM file of certificates to trust instead of the system's, for a server with a private or
self-signed certificate (``qrlogin testserver --tls`` writes one): :func:`open_http_client` builds the client with
it. The environment (``SSL_CERT_FILE``, proxies) is never read: what a run trusts is what its options say.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._secret import Secret
from ..adapters.clock import unix_ms
from ..http import HttpRequest, HttpResponse, split_url

if TYPE_CHECKING:
    import httpx  # the client extra: the caller hands in the client

__all__ = ["Transport", "TransportOptions", "now_ms", "open_http_client"]


def now_ms() -> int:
    """Unix milliseconds that never jump (:mod:`qrlogin.adapters.clock`): v2 sessions carry absolute expiry times, so
    the core is given real time, and its deadlines measure elapsed time even if the system clock is stepped."""
    return unix_ms()


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """How requests are performed (see the module docstring)."""

    allow_http: bool = False
    request_timeout_s: float = 30.0
    max_body_bytes: int = 65_536
    retries: int = 3
    retry_base_s: float = 0.25
    connect_to: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None


def open_http_client(options: TransportOptions) -> httpx.AsyncClient:
    """A new httpx client for :class:`Transport`: certificates from ``options.ca_file`` (else the system's), the
    environment ignored, redirects not followed (no API here redirects). The caller closes it."""
    import httpx

    verify = ssl.create_default_context(cafile=options.ca_file)
    # Each attempt is bounded by the device's deadline as well (Transport.perform).
    timeout = httpx.Timeout(options.request_timeout_s)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _failure(exc: BaseException) -> str:
    """A few words on why a request failed; an untrusted certificate is named as such, since it has a remedy."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the server's certificate is not trusted ({cause.verify_message})"
        cause = cause.__cause__ or cause.__context__
    return "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__


def _is_rendezvous(path: str) -> bool:
    return "rendezvous" in path.split("/")


class Transport:
    """Performs core requests with ``http`` (an :class:`httpx.AsyncClient` the caller owns)."""

    def __init__(
        self, http: httpx.AsyncClient, options: TransportOptions, *, access_token: Secret | None = None
    ) -> None:
        self._http = http
        self.options = options
        self.access_token = access_token
        #: Why the latest request got no answer, in a few words (for error messages; never holds a secret).
        self.last_failure: str | None = None

    async def perform(self, request: HttpRequest, *, deadline_ms: int) -> HttpResponse | None:
        """The response, or None when none came in time (after the retries this request gets)."""
        parts = split_url(request.target)
        if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
            self.last_failure = "not an http(s) URL"
            return None
        if parts.scheme == "http" and not self.options.allow_http:
            self.last_failure = "plain http is not allowed"
            return None
        retries = 0 if _is_rendezvous(parts.path) else self.options.retries
        delay_s = self.options.retry_base_s
        for attempt in range(retries + 1):
            response = await self._attempt(request, deadline_ms)
            retry = response is None or response.status >= 500
            if not retry or attempt == retries:
                return response
            remaining_s = (deadline_ms - now_ms()) / 1000
            if remaining_s <= delay_s:
                return response
            await asyncio.sleep(delay_s)
            delay_s *= 2
        return None  # pragma: no cover - the loop always returns

    async def _attempt(self, request: HttpRequest, deadline_ms: int) -> HttpResponse | None:
        budget_s = min(self.options.request_timeout_s, (deadline_ms - now_ms()) / 1000)
        if budget_s <= 0:
            return None
        target = request.target
        # Raw bytes only: a compressed body would be inflated past the bound before it could be counted.
        headers = [*request.headers, ("accept-encoding", "identity")]
        parts = split_url(target)
        assert parts is not None
        origin = self.options.connect_to.get(parts.netloc)
        if origin is None and parts.scheme == "https" and self.options.allow_http and _is_loopback(parts.hostname):
            origin = f"http://{parts.netloc}"
        if origin is not None:
            headers.append(("host", parts.netloc))
            target = origin.rstrip("/") + target[len(f"{parts.scheme}://{parts.netloc}") :]
        if request.authenticated and self.access_token is not None:
            headers.append(("authorization", "Bearer " + self.access_token.value.decode("ascii")))
        import httpx

        try:
            async with asyncio.timeout(budget_s):
                return await self._exchange(request.method, target, headers, request.body)
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL, UnicodeDecodeError) as exc:
            self.last_failure = _failure(exc)
            return None

    async def _exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> HttpResponse | None:
        bound = self.options.max_body_bytes
        async with self._http.stream(method, target, headers=headers, content=body) as answer:
            declared = answer.headers.get("content-length", "")
            received = bytearray()
            if not (declared.isdigit() and int(declared) > bound):
                async for chunk in answer.aiter_raw():
                    received += chunk
                    if len(received) > bound:
                        break
            else:
                received += b"\0" * (bound + 1)  # too big to read: one byte past the bound fails the core's check
            return HttpResponse(
                status=answer.status_code, headers=tuple(answer.headers.items()), body=bytes(received[: bound + 1])
            )
