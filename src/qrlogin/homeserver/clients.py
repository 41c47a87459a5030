"""Dynamic client registration: the client metadata a Matrix client sends, validated as the Matrix spec asks.

Spec: RFC 7591 §2 (client metadata, defaults, the ``grant_types`` / ``response_types`` consistency rule, unknown
fields ignored), §2.2 (human-readable fields localised as ``name#lang`` with a BCP 47 tag), §3.2 (the response echoes
the registered metadata, errors ``invalid_redirect_uri`` and ``invalid_client_metadata``); MSC2966 as merged into
the Matrix Client-Server API ("Client registration", "Redirect URI validation"); RFC 8252 §7 (native apps:
private-use URI schemes and loopback redirects); RFC 6749 §3.1.2 (a redirect URI has no fragment).

Theory of operation
-------------------
:func:`parse_client_metadata` turns the JSON object of ``POST /oauth2/registration`` into a :class:`Client` or
raises :class:`~qrlogin.homeserver._http.BodyError` with the OAuth error the spec names. The rules:

* ``client_uri`` is required: an absolute ``https`` URL without user or password. Every other URI of the client
  (``logo_uri``, ``policy_uri``, ``tos_uri`` and their localised variants) must be ``https`` on the same host as
  ``client_uri`` or on one of its subdomains (the spec's "common base").
* Only public clients: ``token_endpoint_auth_method`` is ``none`` (also when omitted, since Matrix clients are
  public and the spec names no other method).
* ``grant_types`` (default ``["authorization_code"]``) must be grants the server supports; ``response_types``
  (default ``["code"]``) may only hold ``code``, and holds it exactly when ``authorization_code`` is a grant type.
* A client with the authorization code grant needs at least one redirect URI, each valid for its
  ``application_type`` (default ``web``):

  - ``web``: ``https``, on the ``client_uri`` host or a subdomain;
  - ``native``: either a private-use scheme that is the reverse-domain form of the ``client_uri`` host or of one of
    its subdomains, with no authority (``com.example.app:/callback``), or plain ``http`` to a loopback host
    (``localhost``, ``127.0.0.1``, ``[::1]``) on any port.

  No redirect URI may carry a fragment.
* ``client_name`` and the URIs may be localised (``client_name#fr``); each variant is validated like the plain
  field and kept, so the response echoes it and a consent page may show it.

Simplification: the server cannot tell a public suffix from a registrable domain (it has no public suffix list), so
a ``client_uri`` on ``https://co.uk/`` is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..http import split_url
from ._http import BodyError

__all__ = [
    "APPLICATION_TYPES",
    "AUTHORIZATION_CODE_GRANT",
    "LOCALISABLE",
    "Client",
    "parse_client_metadata",
    "printable_uri",
    "registration_response",
]

AUTHORIZATION_CODE_GRANT = "authorization_code"
APPLICATION_TYPES = ("web", "native")
LOCALISABLE = ("client_name", "client_uri", "logo_uri", "policy_uri", "tos_uri")
"""The human-readable fields RFC 7591 §2.2 lets a client localise with ``#lang``."""

# RFC 5646 in the shape real tags take: a primary subtag and hyphen-separated subtags of letters and digits.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_REDIRECT_URIS = 16
MAX_FIELD_LENGTH = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A registered public client, as the server keeps it."""

    client_id: str
    client_uri: str
    application_type: str
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    localised: tuple[tuple[str, str], ...]
    """``client_name``, the URIs and their ``#lang`` variants as registered, as (field, value) pairs sorted by field."""

    @property
    def client_name(self) -> str | None:
        return dict(self.localised).get("client_name")

    def display_name(self) -> str:
        """What a consent page calls the client: its name, else the host of its ``client_uri``."""
        name = self.client_name
        if name:
            return name
        parts = split_url(self.client_uri)
        return parts.hostname or self.client_uri if parts is not None else self.client_uri


def _invalid(message: str, error: str = "invalid_client_metadata") -> BodyError:
    return BodyError(400, error, message)


def _bad_redirect(message: str) -> BodyError:
    return BodyError(400, "invalid_redirect_uri", message)


def _string(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD_LENGTH:
        raise _invalid(f"{name} must be a non-empty string of at most {MAX_FIELD_LENGTH} characters")
    return value


def _string_list(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise _invalid(f"{name} must be a non-empty list of strings")
    if len(value) > MAX_REDIRECT_URIS:
        raise _invalid(f"{name} may hold at most {MAX_REDIRECT_URIS} entries")
    return tuple(value)


def printable_uri(value: str) -> bool:
    """Whether a URI is printable ASCII without spaces (RFC 3986 §2), so it can go into a ``Location`` header.

    ``urlsplit`` silently drops tabs and line breaks, so a URI that parses may still carry them.
    """
    return all("!" <= ch <= "~" for ch in value)


def _host_within(host: str, base: str) -> bool:
    return host == base or host.endswith("." + base)


def _client_uri(value: object, name: str) -> str:
    uri = _string(value, name)
    if not printable_uri(uri):
        raise _invalid(f"{name} must be printable ASCII without spaces")
    parts = split_url(uri)
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise _invalid(f"{name} must be an absolute https URI")
    if parts.username is not None or parts.password is not None:
        raise _invalid(f"{name} must not carry a user or password")
    return uri


def _uri_on_base(value: object, name: str, base_host: str) -> str:
    uri = _client_uri(value, name)
    parts = split_url(uri)
    assert parts is not None and parts.hostname is not None  # checked by _client_uri
    if not _host_within(parts.hostname, base_host):
        raise _invalid(f"{name} must be on the host of client_uri or a subdomain of it")
    return uri


def _redirect_uri(uri: str, application_type: str, base_host: str) -> None:
    if not printable_uri(uri):
        raise _bad_redirect("a redirect URI must be printable ASCII without spaces")
    parts = split_url(uri)
    if parts is None or not parts.scheme:
        raise _bad_redirect(f"redirect URI {uri!r} is not an absolute URI")
    if parts.fragment or "#" in uri:
        raise _bad_redirect("a redirect URI must not have a fragment")
    if parts.username is not None or parts.password is not None:
        raise _bad_redirect("a redirect URI must not carry a user or password")
    scheme = parts.scheme
    if application_type == "web":
        if scheme != "https" or not parts.hostname or not _host_within(parts.hostname, base_host):
            raise _bad_redirect("a web client's redirect URIs are https on the client_uri host")
        return
    if scheme == "http":
        if parts.hostname not in _LOOPBACK_HOSTS:
            raise _bad_redirect("a native client's http redirect URI must be on a loopback host")
        return
    if scheme == "https" or "." not in scheme or _SCHEME.fullmatch(scheme) is None:
        raise _bad_redirect("a native client's redirect URI is loopback http or a private-use scheme")
    after_scheme = uri[len(scheme) + 1 :]
    if not after_scheme.startswith("/") or after_scheme.startswith("//") or parts.netloc:
        raise _bad_redirect("a private-use redirect URI is scheme:/path, one slash and no authority")
    if not _host_within(".".join(reversed(scheme.split("."))), base_host):
        raise _bad_redirect("a private-use scheme must be the reversed client_uri host or a subdomain")


def parse_client_metadata(body: dict[str, Any], *, supported_grants: tuple[str, ...]) -> Client:
    """Validate registration metadata (module docstring); ``client_id`` is left empty for the caller to fill."""
    client_uri = _client_uri(body.get("client_uri"), "client_uri")
    base_parts = split_url(client_uri)
    assert base_parts is not None and base_parts.hostname is not None
    base_host = base_parts.hostname

    auth_method = body.get("token_endpoint_auth_method", "none")
    if auth_method != "none":
        raise _invalid("only public clients (token_endpoint_auth_method none) are supported")
    application_type = body.get("application_type", "web")
    if application_type not in APPLICATION_TYPES:
        raise _invalid("application_type must be web or native")
    grant_types = _string_list(body.get("grant_types", [AUTHORIZATION_CODE_GRANT]), "grant_types")
    unsupported = sorted(set(grant_types) - set(supported_grants))
    if unsupported:
        raise _invalid(f"unsupported grant types: {', '.join(unsupported)}")
    response_types = _string_list(body.get("response_types", ["code"]), "response_types")
    if set(response_types) != {"code"}:
        raise _invalid("the only response type is code")
    uses_code = AUTHORIZATION_CODE_GRANT in grant_types
    if "response_types" in body and not uses_code:
        raise _invalid("response type code needs the authorization_code grant")

    redirect_uris: tuple[str, ...] = ()
    if "redirect_uris" in body:
        redirect_uris = _string_list(body["redirect_uris"], "redirect_uris")
        for uri in redirect_uris:
            if len(uri) > MAX_FIELD_LENGTH:
                raise _bad_redirect("redirect URI too long")
            _redirect_uri(uri, application_type, base_host)
    if uses_code and not redirect_uris:
        raise _bad_redirect("the authorization_code grant needs at least one redirect URI")

    localised: dict[str, str] = {"client_uri": client_uri}
    for key, value in body.items():
        field, mark, language = key.partition("#")
        if field not in LOCALISABLE or key == "client_uri":
            continue
        if mark and _LANGUAGE_TAG.fullmatch(language) is None:
            raise _invalid(f"{key}: {language!r} is not a language tag")
        if field == "client_name":
            localised[key] = _string(value, key)
        elif field == "client_uri":
            localised[key] = _client_uri(value, key)
        else:
            localised[key] = _uri_on_base(value, key, base_host)
    return Client(
        client_id="",
        client_uri=client_uri,
        application_type=application_type,
        grant_types=grant_types,
        response_types=response_types if uses_code else (),
        redirect_uris=redirect_uris,
        localised=tuple(sorted(localised.items())),
    )


def registration_response(client: Client) -> dict[str, Any]:
    """RFC 7591 §3.2.1: the client id and the metadata as registered."""
    content: dict[str, Any] = {
        "client_id": client.client_id,
        "application_type": client.application_type,
        "grant_types": list(client.grant_types),
        "token_endpoint_auth_method": "none",
        **dict(client.localised),
    }
    if client.redirect_uris:
        content["redirect_uris"] = list(client.redirect_uris)
    if client.response_types:
        content["response_types"] = list(client.response_types)
    return content
