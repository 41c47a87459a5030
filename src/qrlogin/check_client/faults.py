"""The building blocks of the scenarios: what the suite does to payloads and to HTTP answers.

Payload rewrites (for the counterpart's :data:`~qrlogin.check_client.counterpart.WriteHook`) work on the payload
text: :func:`flip` changes one bit of the ciphertext (the first ``|``-separated part, so ``LoginInitiate``'s key
stays), :func:`truncate` cuts it. HTTP answers (for the served homeserver's
:data:`~qrlogin.check_client.homeserver.Intercept`) are built the way the model builds its own: a Matrix error
(``errcode``), an OAuth 2.0 error (``error``, RFC 6749 §5.2), the conflict of each rendezvous generation.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .. import qr
from ..encoding import b64decode, b64encode
from ..errors import Base64DecodeError
from ..homeserver.oauth import TOKEN_PATH
from ..http import HttpRequest, HttpResponse
from .homeserver import Forward, Intercept

__all__ = [
    "after_first",
    "conflict",
    "flip",
    "is_device_check",
    "is_rendezvous",
    "is_token_poll",
    "matrix_error",
    "oauth_error",
    "truncate",
]


def flip(payload: str) -> str:
    """``payload`` with one bit of its ciphertext flipped (its base64 re-encoded the same way)."""
    head, sep, tail = payload.partition("|")
    try:
        raw = bytearray(b64decode(head, padding="allow"))
    except Base64DecodeError:
        return payload[::-1]
    if not raw:
        return "AA"
    raw[len(raw) // 2] ^= 0x01
    return b64encode(bytes(raw)) + sep + tail


def truncate(payload: str) -> str:
    """The first half of ``payload``."""
    return payload[: max(1, len(payload) // 2)]


def _json(status: int, body: object, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(
        status=status, headers=(("content-type", "application/json"), *headers), body=json.dumps(body).encode()
    )


def matrix_error(status: int, errcode: str, error: str = "", **extra: object) -> HttpResponse:
    return _json(status, {"errcode": errcode, "error": error or errcode, **extra})


def oauth_error(error: str, status: int = 400) -> HttpResponse:
    return _json(status, {"error": error, "error_description": f"check-client: {error}"})


def conflict(generation: qr.Generation) -> HttpResponse:
    """A stale-token write's answer: 412 for v1 (``If-Match``), 409 for v2/v3 (``sequence_token``)."""
    if generation is qr.Generation.V1:
        return matrix_error(412, "M_CONCURRENT_WRITE", "check-client: stale ETag")
    if generation is qr.Generation.V2:
        return matrix_error(
            409, "M_UNKNOWN", "check-client: stale token", **{"org.matrix.msc4108.errcode": "M_CONCURRENT_WRITE"}
        )
    return matrix_error(409, "IO_ELEMENT_MSC4388_CONCURRENT_WRITE", "check-client: stale token")


def is_rendezvous(request: HttpRequest) -> bool:
    return "/rendezvous" in request.path


def is_token_poll(request: HttpRequest) -> bool:
    return request.method == "POST" and request.path == TOKEN_PATH


def is_device_check(request: HttpRequest) -> bool:
    return request.method == "GET" and "/devices/" in request.path


def after_first(
    matches: Callable[[HttpRequest], bool],
    answer: Callable[[HttpRequest, Forward], HttpResponse],
    *,
    times: int = 1,
    skip: int = 0,
) -> Intercept:
    """An intercept that answers with ``answer`` the matching requests number ``skip+1 .. skip+times``."""
    seen = 0

    def intercept(request: HttpRequest, forward: Forward) -> HttpResponse:
        nonlocal seen
        if not matches(request):
            return forward(request)
        seen += 1
        if skip < seen <= skip + times:
            return answer(request, forward)
        return forward(request)

    return intercept
