"""What a sign-in gives back, and keeping its tokens fresh.

Theory of operation
-------------------
:class:`SignInResult` is the whole answer of one run: how it ended (``outcome`` is ``"success"`` or the reason, the
same strings the login layer reports, plus ``"timeout"`` when the runner's own deadline ended it; ``by_peer`` says the
other device reported it, ``session_end`` how the rendezvous session ended when its end ended the sign-in:
``"deleted"`` by the other device, ``"expired"``, ``"failed"``), and on the new
device everything an application needs to use the account at once: user id, device id, homeserver base URL, the
OAuth client id and token endpoint the tokens belong to, the access and refresh tokens with the access token's
expiry (Unix milliseconds), and the secrets the existing device handed over. On the existing device it names the
device it let in. Tokens and secrets are :class:`~qrlogin.Secret` values, so no ``repr`` shows them;
:meth:`SignInResult.credentials` is the one place they are written out, as the JSON a client stores (the ``login``
command writes it to a file of mode 0600).

:func:`refresh` uses the refresh token grant (RFC 6749 §6) at the token endpoint and returns the result with the new
tokens (servers rotate the refresh token; the old one then no longer works).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._json import JsonObject
from .._secret import Secret
from ..errors import QrLoginError, RemoteProtocolError
from ..login import oauth
from ..login.messages import Secrets, message_to_json
from .transport import Transport, now_ms

__all__ = ["RefreshError", "SignInResult", "refresh"]


class RefreshError(QrLoginError):
    """The tokens could not be refreshed (no refresh token, no answer, or the server refused it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInResult:
    """How one sign-in ended and, on success, what it signed in (see the module docstring)."""

    outcome: str
    by_peer: bool = False
    session_end: str | None = None
    user_id: str | None = None
    device_id: str | None = None
    base_url: str | None = None
    client_id: str | None = None
    token_endpoint: str | None = None
    access_token: Secret | None = None
    refresh_token: Secret | None = None
    expires_at_ms: int | None = None
    secrets: Secrets | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    def credentials(self) -> dict[str, Any]:
        """The JSON a client stores to use the account: tokens included, so handle it like a password."""
        content: dict[str, Any] = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "homeserver": self.base_url,
            "client_id": self.client_id,
            "token_endpoint": self.token_endpoint,
            "access_token": None if self.access_token is None else self.access_token.value.decode(),
            "refresh_token": None if self.refresh_token is None else self.refresh_token.value.decode(),
            "expires_at_ms": self.expires_at_ms,
        }
        if self.secrets is not None:
            secrets: JsonObject = dict(message_to_json(self.secrets))
            secrets.pop("type", None)
            content["secrets"] = secrets
        return content


async def refresh(transport: Transport, result: SignInResult, *, deadline_ms: int) -> SignInResult:
    """New tokens for ``result`` from its token endpoint; raises :class:`RefreshError`."""
    if result.refresh_token is None or result.token_endpoint is None or result.client_id is None:
        raise RefreshError("this sign-in has no refresh token, token endpoint or client id")
    request = oauth.refresh_request(result.token_endpoint, result.client_id, result.refresh_token)
    response = await transport.perform(request, deadline_ms=deadline_ms)
    if response is None:
        raise RefreshError("no answer from the token endpoint")
    try:
        outcome = oauth.parse_token_response(response)
    except RemoteProtocolError as exc:
        raise RefreshError(str(exc)) from None
    if not isinstance(outcome, oauth.TokenGranted):
        raise RefreshError(f"the token endpoint answered {type(outcome).__name__}")
    tokens = outcome.tokens
    return dataclasses.replace(
        result,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token or result.refresh_token,
        expires_at_ms=None if tokens.expires_in_s is None else now_ms() + tokens.expires_in_s * 1000,
    )
