"""The HTML pages of the authorization server: sign-in, consent to an authorization request, device approval.

Spec: RFC 6749 §4.1.1–4.1.2 and §10.12 (the authorization endpoint's user interaction, CSRF), RFC 8628 §3.3 (the
user enters or confirms the user code at the ``verification_uri``; ``verification_uri_complete`` carries it),
MSC4341 (the page shows which device is being signed in), RFC 6265bis §5.4.7 (``SameSite``), the Fetch standard's
``Origin`` and ``Sec-Fetch-Site`` request headers.

Theory of operation
-------------------
Pages are answered by the pure model like every other request: :func:`handle_page` maps an ``HttpRequest`` to an
``HttpResponse`` whose body is HTML, and cookies travel as ``Set-Cookie`` / ``Cookie`` headers. A browser is
known by the random value of its ``qrlogin_session`` cookie, minted the first time it asks for a form. Its
anti-forgery token is derived from that value (HMAC under the server's seeded key), so nothing is stored for a
browser that has not signed in; signing in stores a record in :attr:`OAuthServer.sessions
<qrlogin.homeserver.oauth.OAuthServer.sessions>`, keyed by the digest of a new cookie value, holding the user id
and when it expires. Every value comes from the model's seeded id source, every time from ``now_ms``.

====================  ==============================================================================================
``GET /login``         the sign-in form (``next`` is the local path to return to)
``POST /login``        checks the password; on success the session is replaced by a new one (a session value known
                       before sign-in never becomes a signed-in one) and the browser goes to ``next``
``GET /oauth2/authorize``  validates the request (:mod:`~qrlogin.homeserver.authcode`), sends a signed-out browser to
                       sign in, then shows the client, the redirect host, the device and the scopes
``POST /oauth2/authorize`` allow or deny: redirects to the client with a code or ``error=access_denied``
``GET /link``          the ``verification_uri``: a form for the user code, or with ``?user_code=`` the grant it
                       stands for (user code, client name, device id)
``POST /link``         approve or deny the grant (:func:`~qrlogin.homeserver.oauth.approve` / ``deny``)
====================  ==============================================================================================

Cross-site request forgery is refused three times over, so that no single browser behaviour is relied on: every form
carries the session's token and a POST whose token differs (compared with :func:`hmac.compare_digest`) is refused;
a POST whose ``Origin`` is another origin, or whose ``Sec-Fetch-Site`` says it came from another site, is refused
before the token is looked at; and the cookie is ``SameSite=Lax`` (sent on the top-level navigation that brings a
user from a client to ``/oauth2/authorize``, never on a cross-site POST) and ``HttpOnly``, ``Secure`` when the base
URL is https. Pages are never cached, may not be framed (``X-Frame-Options``, CSP ``frame-ancestors``), load
nothing (CSP ``default-src 'none'``) and send no ``Referer`` to another origin (the URL of ``/link`` holds the user
code).

Everything shown that came from a request or a client's registration is HTML-escaped.

Guessing is limited per account (:mod:`~qrlogin.homeserver.limits`): the sign-in form's password check is the one
``/login`` uses (:func:`~qrlogin.homeserver.devices.attempt_password`), and the approval page counts, for the
signed-in account, every user code it is given that stands for no grant waiting for a decision. An account over
either limit gets the form again with ``429 Too Many Requests``, a ``Retry-After`` header and a message saying
when to retry, and nothing it sends is checked until then.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from html import escape
from urllib.parse import parse_qsl, urlencode

from ..http import HttpRequest, HttpResponse, split_url
from ._http import MAX_FORM_FIELDS, BodyError, parse_form, retry_after_s
from ._ids import token_digest
from .authcode import AuthorizationError, AuthorizationRequest, parse_authorization_request, redirect_to_client
from .clients import printable_uri
from .devices import DeviceRegistry, Refused, attempt_password, user_id_for
from .oauth import (
    AUTHORIZATION_PATH,
    VERIFICATION_PATH,
    BrowserSession,
    ConsentResult,
    OAuthServer,
    approve,
    deny,
    issue_code,
    pending_grant,
)
from .scopes import OPENID_SCOPE

__all__ = ["COOKIE_NAME", "LOGIN_PATH", "PAGE_PATHS", "SESSION_LIFETIME_S", "handle_page"]

LOGIN_PATH = "/login"
PAGE_PATHS = (LOGIN_PATH, AUTHORIZATION_PATH, VERIFICATION_PATH)
COOKIE_NAME = "qrlogin_session"
SESSION_LIFETIME_S = 3600

_SECURITY_HEADERS = (
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    # same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" with a same-origin form POST.
    ("referrer-policy", "same-origin"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    ),
)
_STYLE = (
    "body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em;line-height:1.4}"
    "dt{font-weight:bold}code{font-size:1.4em;letter-spacing:.1em}button{margin-right:1em}"
    ".error{color:#a00}"
)


# -- responses --------------------------------------------------------------------------------------------------


def _page(status: int, title: str, body: str, *, cookie: str | None = None) -> HttpResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f'<meta name=viewport content="width=device-width"><style>{_STYLE}</style></head>'
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    headers = [("content-type", "text/html; charset=utf-8"), *_SECURITY_HEADERS]
    if cookie is not None:
        headers.append(("set-cookie", cookie))
    return HttpResponse(status=status, headers=tuple(headers), body=html.encode())


def _redirect(location: str, *, cookie: str | None = None) -> HttpResponse:
    link = f'<p><a href="{escape(location)}">Continue</a></p>'
    page = _page(303, "Redirecting", link, cookie=cookie)
    return replace(page, headers=(*page.headers, ("location", location)))


def _too_many(title: str, body: str, retry_after_ms: int) -> HttpResponse:
    """RFC 6585 §4: the page says when to try again, and so does ``Retry-After``."""
    page = _page(429, title, body)
    return replace(page, headers=(*page.headers, ("retry-after", retry_after_s(retry_after_ms))))


def _retry_message(what: str, retry_after_ms: int) -> str:
    return f"Too many {what}. Try again in {retry_after_s(retry_after_ms)} seconds."


def _error_page(status: int, message: str) -> HttpResponse:
    alert = f"<p class=error role=alert id=error>{escape(message)}</p>"
    return _page(status, "Something went wrong", alert)


def _hidden(name: str, value: str) -> str:
    return f'<input type=hidden name="{escape(name)}" value="{escape(value)}">'


# -- sessions ---------------------------------------------------------------------------------------------------


def _cookie_value(request: HttpRequest) -> str | None:
    header = request.header("cookie")
    if header is None:
        return None
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE_NAME and value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class _Visitor:
    """Who is asking: the session cookie the browser sent (None without one) and the user it is signed in as."""

    cookie: str | None
    user_id: str | None


def _visitor(server: OAuthServer, request: HttpRequest, now_ms: int) -> _Visitor:
    value = _cookie_value(request)
    if value is None:
        return _Visitor(None, None)
    session = server.sessions.get(token_digest(value))
    signed_in = session is not None and now_ms < session.expires_at_ms
    return _Visitor(value, session.user_id if signed_in and session is not None else None)


def _csrf_token(server: OAuthServer, cookie: str) -> str:
    """The session's anti-forgery token: a MAC of its cookie value under a key only the server holds.

    Derived rather than stored, so a browser that only looks at the sign-in form costs the server nothing.
    """
    material = b"qrlogin page csrf|" + cookie.encode("utf-8", "surrogatepass")
    return hmac.new(server.ids.seed, material, hashlib.sha256).hexdigest()


def _set_cookie(server: OAuthServer, value: str) -> str:
    secure = "; Secure" if server.base_url.startswith("https://") else ""
    return f"{COOKIE_NAME}={value}; Path=/; Max-Age={SESSION_LIFETIME_S}; HttpOnly; SameSite=Lax{secure}"


def _with_cookie(server: OAuthServer, visitor: _Visitor) -> tuple[OAuthServer, str, str | None]:
    """The visitor's cookie value, minting one (and its Set-Cookie) for a browser that has none."""
    if visitor.cookie is not None:
        return server, visitor.cookie, None
    ids, value = server.ids.token("bs_")
    server = replace(server, ids=ids)
    return server, value, _set_cookie(server, value)


def _sign_in(server: OAuthServer, visitor: _Visitor, user_id: str, *, now_ms: int) -> tuple[OAuthServer, str]:
    """Store a signed-in session under a new cookie value; returns its Set-Cookie.

    The value the browser held before is dropped: a value planted in the browser before sign-in (session fixation)
    never becomes a signed-in one.
    """
    sessions = server.sessions
    if visitor.cookie is not None:
        sessions = sessions.remove(token_digest(visitor.cookie))
    ids, value = server.ids.token("bs_")
    session = BrowserSession(user_id=user_id, expires_at_ms=now_ms + SESSION_LIFETIME_S * 1000)
    digest = token_digest(value)
    server = replace(
        server,
        ids=ids,
        sessions=sessions.set(digest, session),
        queues=replace(server.queues, sessions=server.queues.sessions.push(digest, session.expires_at_ms)),
    )
    return server, _set_cookie(server, value)


def _origin(url: str) -> str | None:
    parts = split_url(url)
    if parts is None or not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _forged(server: OAuthServer, request: HttpRequest, form: dict[str, str], visitor: _Visitor) -> bool:
    """Whether a POST must be refused as a cross-site request forgery (module docstring)."""
    origin = request.header("origin")
    if origin is not None and origin.lower() != _origin(server.base_url):
        return True
    if request.header("sec-fetch-site") not in (None, "same-origin", "none"):
        return True
    if visitor.cookie is None:
        return True
    offered = form.get("csrf", "").encode("utf-8", "surrogatepass")
    return not hmac.compare_digest(offered, _csrf_token(server, visitor.cookie).encode())


def _local_path(value: str | None) -> str:
    """``next`` only ever leads to a path on this server (no open redirect).

    Browsers drop tabs and line breaks from a URL, so ``/\\t/evil.example`` would become ``//evil.example``: only a
    printable path that starts with one slash, and has no backslash, is kept.
    """
    if value is None or not printable_uri(value) or not value.startswith("/") or value.startswith("//"):
        return "/"
    return "/" if "\\" in value else value


def _to_login(next_path: str) -> HttpResponse:
    return _redirect(f"{LOGIN_PATH}?{urlencode({'next': next_path})}")


def _raw_query(request: HttpRequest) -> str:
    return request.target.partition("?")[2]


def _query_param(request: HttpRequest, name: str) -> str | None:
    return next((value for key, value in request.query if key == name), None)


# -- sign-in ----------------------------------------------------------------------------------------------------


def _login_form(csrf: str, next_path: str, error: str | None) -> str:
    alert = "" if error is None else f"<p class=error role=alert id=error>{escape(error)}</p>"
    return (
        f'{alert}<form method=post action="{LOGIN_PATH}">{_hidden("csrf", csrf)}'
        f"{_hidden('next', next_path)}"
        "<p><label>Username <input name=username id=username autocomplete=username required></label></p>"
        "<p><label>Password <input name=password id=password type=password autocomplete=current-password required>"
        "</label></p><p><button type=submit id=sign-in>Sign in</button></p></form>"
    )


_FORGED = "This form has expired or came from another site. Reload the page."


def _login_get(server: OAuthServer, request: HttpRequest, now_ms: int) -> tuple[OAuthServer, HttpResponse]:
    next_path = _local_path(_query_param(request, "next"))
    visitor = _visitor(server, request, now_ms)
    if visitor.user_id is not None:
        return server, _redirect(next_path)
    server, cookie, set_cookie = _with_cookie(server, visitor)
    return server, _page(200, "Sign in", _login_form(_csrf_token(server, cookie), next_path, None), cookie=set_cookie)


def _login_post(
    server: OAuthServer, registry: DeviceRegistry, request: HttpRequest, form: dict[str, str], now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    visitor = _visitor(server, request, now_ms)
    if _forged(server, request, form, visitor):
        return server, registry, _error_page(403, _FORGED)
    assert visitor.cookie is not None
    next_path = _local_path(form.get("next"))
    username, password = form.get("username", ""), form.get("password", "")
    user_id = username if username.startswith("@") else user_id_for(registry, username)
    registry, checked = attempt_password(registry, user_id, password, now_ms=now_ms)
    if isinstance(checked, Refused):
        message = _retry_message("failed sign-ins for this account", checked.retry_after_ms)
        again = _login_form(_csrf_token(server, visitor.cookie), next_path, message)
        return server, registry, _too_many("Sign in", again, checked.retry_after_ms)
    if not checked:
        retry = _login_form(_csrf_token(server, visitor.cookie), next_path, "Wrong username or password.")
        return server, registry, _page(403, "Sign in", retry)
    server, set_cookie = _sign_in(server, visitor, user_id, now_ms=now_ms)
    return server, registry, _redirect(next_path, cookie=set_cookie)


# -- authorization endpoint -------------------------------------------------------------------------------------


def _refused(error: AuthorizationError) -> HttpResponse:
    if error.redirect_uri is None:
        return _error_page(400, f"{error.error}: {error.description}")
    fields = {"error": error.error, "error_description": error.description}
    if error.state is not None:
        fields["state"] = error.state
    return _redirect(redirect_to_client(error.redirect_uri, error.response_mode, fields))


def _consent_page(request: AuthorizationRequest, csrf: str, user_id: str, raw_query: str) -> str:
    client = request.client
    device = request.scope.device_id
    redirect = split_url(request.redirect_uri)
    where = redirect.netloc if redirect is not None and redirect.netloc else request.redirect_uri
    scopes = "".join(f"<li>{escape(token)}</li>" for token in request.scope.text.split(" ") if token != OPENID_SCOPE)
    return (
        f"<p><strong id=client-name>{escape(client.display_name())}</strong> "
        f"(<span id=client-uri>{escape(client.client_uri)}</span>) asks to sign in as "
        f"<strong id=user-id>{escape(user_id)}</strong>.</p>"
        f"<dl><dt>Device</dt><dd id=device-id>{escape(device) if device else 'a new device'}</dd>"
        f"<dt>Returns to</dt><dd id=redirect-host>{escape(where)}</dd>"
        f"<dt>Access</dt><dd><ul>{scopes}</ul></dd></dl>"
        f'<form method=post action="{AUTHORIZATION_PATH}">{_hidden("csrf", csrf)}'
        f"{_hidden('request', raw_query)}"
        "<button type=submit name=action value=allow id=allow>Allow</button>"
        "<button type=submit name=action value=deny id=deny>Deny</button></form>"
    )


def _read_authorization_request(server: OAuthServer, raw_query: str) -> AuthorizationRequest | AuthorizationError:
    """The request in a query string; a query with more parameters than a request has is refused unread."""
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        return AuthorizationError(error="invalid_request", description="too many parameters")
    return parse_authorization_request(tuple(pairs), server.clients)


def _authorize_get(server: OAuthServer, request: HttpRequest, now_ms: int) -> tuple[OAuthServer, HttpResponse]:
    raw_query = _raw_query(request)
    parsed = _read_authorization_request(server, raw_query)
    if isinstance(parsed, AuthorizationError):
        return server, _refused(parsed)
    visitor = _visitor(server, request, now_ms)
    if visitor.cookie is None or visitor.user_id is None:
        return server, _to_login(f"{AUTHORIZATION_PATH}?{raw_query}")
    body = _consent_page(parsed, _csrf_token(server, visitor.cookie), visitor.user_id, raw_query)
    return server, _page(200, "Allow access?", body)


def _authorize_post(
    server: OAuthServer, request: HttpRequest, form: dict[str, str], now_ms: int
) -> tuple[OAuthServer, HttpResponse]:
    visitor = _visitor(server, request, now_ms)
    if _forged(server, request, form, visitor):
        return server, _error_page(403, _FORGED)
    raw_query = form.get("request", "")
    user_id = visitor.user_id
    if user_id is None:
        return server, _to_login(f"{AUTHORIZATION_PATH}?{raw_query}")
    parsed = _read_authorization_request(server, raw_query)
    if isinstance(parsed, AuthorizationError):
        return server, _refused(parsed)
    action = form.get("action")
    if action == "deny":
        refusal = AuthorizationError(
            error="access_denied",
            description="the user denied the request",
            redirect_uri=parsed.redirect_uri,
            state=parsed.state,
            response_mode=parsed.response_mode,
        )
        return server, _refused(refusal)
    if action != "allow":
        return server, _error_page(400, "Choose Allow or Deny.")
    server, location = issue_code(server, parsed, user_id, now_ms=now_ms)
    return server, _redirect(location)


# -- device approval (verification_uri) -------------------------------------------------------------------------


def _code_form(message: str | None) -> str:
    alert = "" if message is None else f"<p class=error role=alert id=error>{escape(message)}</p>"
    return (
        f'{alert}<form method=get action="{VERIFICATION_PATH}"><p><label>Code shown on your device '
        "<input name=user_code id=user_code autocomplete=off required></label></p>"
        "<p><button type=submit id=continue>Continue</button></p></form>"
    )


def _codes_refused(retry_after_ms: int) -> HttpResponse:
    return _too_many("Link a device", _code_form(_retry_message("wrong codes", retry_after_ms)), retry_after_ms)


def _code_failed(server: OAuthServer, user_id: str, now_ms: int) -> OAuthServer:
    """Count a user code that stood for no grant waiting for a decision against the signed-in account."""
    return replace(server, user_code_failures=server.user_code_failures.failed(user_id, now_ms=now_ms))


def _link_get(server: OAuthServer, request: HttpRequest, now_ms: int) -> tuple[OAuthServer, HttpResponse]:
    user_code = _query_param(request, "user_code")
    visitor = _visitor(server, request, now_ms)
    if visitor.cookie is None or visitor.user_id is None:
        query = "" if user_code is None else "?" + urlencode({"user_code": user_code})
        return server, _to_login(VERIFICATION_PATH + query)
    if user_code is None:
        return server, _page(200, "Link a device", _code_form(None))
    retry_after_ms = server.user_code_failures.retry_after_ms(visitor.user_id, now_ms=now_ms)
    if retry_after_ms is not None:
        return server, _codes_refused(retry_after_ms)
    grant = pending_grant(server, user_code, now_ms=now_ms)
    if grant is None:
        server = _code_failed(server, visitor.user_id, now_ms)
        return server, _page(404, "Link a device", _code_form("That code is unknown, used or expired."))
    client = server.clients.get(grant.client_id)
    name = client.display_name() if client is not None else grant.client_id
    device = grant.device_id
    body = (
        f"<p>A device asks to sign in as <strong id=user-id>{escape(visitor.user_id)}</strong>. Approve it only "
        "if the code below is the one your device shows.</p>"
        f"<dl><dt>Code</dt><dd><code id=user-code>{escape(grant.user_code)}</code></dd>"
        f"<dt>Application</dt><dd id=client-name>{escape(name)}</dd>"
        f"<dt>Device</dt><dd id=device-id>{escape(device) if device else 'a new device'}</dd></dl>"
        f'<form method=post action="{VERIFICATION_PATH}">{_hidden("csrf", _csrf_token(server, visitor.cookie))}'
        f"{_hidden('user_code', user_code)}"
        "<button type=submit name=action value=approve id=approve>Approve</button>"
        "<button type=submit name=action value=deny id=deny>Deny</button></form>"
    )
    return server, _page(200, "Link a device", body)


_OUTCOMES = {
    ConsentResult.APPROVED: (200, "Device approved", "The device is being signed in. You can close this page."),
    ConsentResult.DENIED: (200, "Device denied", "The device will not be signed in."),
    ConsentResult.UNKNOWN_CODE: (404, "Link a device", "That code is unknown."),
    ConsentResult.EXPIRED: (410, "Link a device", "That code has expired. Start again on the device."),
    ConsentResult.ALREADY_DECIDED: (409, "Link a device", "That code was already used."),
    ConsentResult.UNKNOWN_USER: (403, "Link a device", "Your account no longer exists."),
}


def _link_post(
    server: OAuthServer, registry: DeviceRegistry, request: HttpRequest, form: dict[str, str], now_ms: int
) -> tuple[OAuthServer, HttpResponse]:
    visitor = _visitor(server, request, now_ms)
    if _forged(server, request, form, visitor):
        return server, _error_page(403, _FORGED)
    user_id = visitor.user_id
    user_code = form.get("user_code", "")
    if user_id is None:
        return server, _to_login(f"{VERIFICATION_PATH}?{urlencode({'user_code': user_code})}")
    action = form.get("action")
    if action not in ("approve", "deny"):
        return server, _error_page(400, "Choose Approve or Deny.")
    retry_after_ms = server.user_code_failures.retry_after_ms(user_id, now_ms=now_ms)
    if retry_after_ms is not None:
        return server, _codes_refused(retry_after_ms)
    if action == "approve":
        server, result = approve(server, registry, user_code, user_id, now_ms=now_ms)
    else:
        server, result = deny(server, user_code, now_ms=now_ms)
    if result not in (ConsentResult.APPROVED, ConsentResult.DENIED):
        server = _code_failed(server, user_id, now_ms)
    status, title, message = _OUTCOMES[result]
    return server, _page(status, title, f"<p id=outcome>{escape(message)}</p>")


# -- routing ----------------------------------------------------------------------------------------------------


def handle_page(
    server: OAuthServer, registry: DeviceRegistry, request: HttpRequest, *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    """Answer a request for one of :data:`PAGE_PATHS` (GET shows, POST acts; other methods get 405).

    Only the sign-in form changes the registry (its failure counts); the other pages return it as it was.
    """
    path = request.path
    if request.method == "GET":
        if path == LOGIN_PATH:
            server, response = _login_get(server, request, now_ms)
        elif path == AUTHORIZATION_PATH:
            server, response = _authorize_get(server, request, now_ms)
        else:
            server, response = _link_get(server, request, now_ms)
        return server, registry, response
    if request.method != "POST":
        return server, registry, _error_page(405, "Method not allowed.")
    try:
        form = parse_form(request)
    except BodyError as exc:
        return server, registry, _error_page(exc.status, "The form could not be read.")
    if path == LOGIN_PATH:
        return _login_post(server, registry, request, form, now_ms)
    if path == AUTHORIZATION_PATH:
        server, response = _authorize_post(server, request, form, now_ms)
    else:
        server, response = _link_post(server, registry, request, form, now_ms)
    return server, registry, response
