"""Defences against cross-site requests, shared by the panel and the worker service.

A page on another origin (another port of 127.0.0.1 is enough: a different port is the same
*site*, so SameSite cookies ride along) can make a browser POST forms, text/plain bodies or
no-cors fetches to the panel. It cannot read the answers, and it cannot send a JSON body or a
custom header without a CORS preflight, which the panel never grants. So every request that
changes something must:

- come from the panel's own origin (its Origin header, or Referer when Origin is missing),
  or, when a request carries neither, prove it is not a browser: an X-Worker-Token header or a
  JSON body, neither of which a cross-origin page can send;
- carry JSON, or an HTML form with a CSRF token tied to the session (the route checks it);
- when no token is configured, arrive on a loopback socket under an IP or `localhost` Host:
  nothing else authenticates such a request, and a DNS name could be rebound to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus, urlsplit

from fastapi import HTTPException, Request

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_TOKEN_LENGTH = 16
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
CSRF_FIELD = "csrf_token"
_DEFAULT_PORTS = {"http": 80, "https": 443}

BodyKind = Literal["none", "json", "form"]


def token_problem(token: str) -> str | None:
    """Why `token` must not be used (None when it is fine, or when there is none)."""
    if token and len(token) < MIN_TOKEN_LENGTH:
        return (f"WORKER_TOKEN has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) and the `localhost` names."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def bind_problem(host: str, token: str, insecure_no_token: bool) -> str | None:
    """Why a server must not listen on `host` with `token` (None when it may)."""
    problem = token_problem(token)
    if problem:
        return problem
    if not token and not is_loopback(host) and not insecure_no_token:
        return (f"refusing to listen on {host} without WORKER_TOKEN: anyone reaching the port "
                "could queue recipes that run as this user; set WORKER_TOKEN (16+ characters), "
                "listen on 127.0.0.1, or pass --insecure-no-token")
    return None


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case, default port left out; None if not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def parse_origins(text: str) -> tuple[str, ...]:
    """Comma or blank separated origins (PANEL_ALLOWED_ORIGINS); malformed ones are dropped."""
    found = (normalize_origin(o) for o in text.replace(",", " ").split())
    return tuple(o for o in found if o)


def request_scheme(request: Request) -> str:
    """https when the request came over TLS, directly or through a proxy that says so.

    X-Forwarded-Proto is believed from anyone: a cross-origin page cannot set it, and a client
    that sets it by hand only makes its own cookie Secure or its own Origin check stricter.
    """
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return "https" if forwarded == "https" or request.url.scheme == "https" else "http"


def own_origin(request: Request) -> str | None:
    host = request.headers.get("host", "")
    return normalize_origin(f"{request_scheme(request)}://{host}") if host else None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return "transfer-encoding" in request.headers or length not in ("", "0")


@dataclass(frozen=True)
class OriginPolicy:
    """Who may change things: the server's own origin plus `extra_origins`, and, without a
    token, only over loopback (unless `insecure_no_token` says otherwise)."""

    token_required: bool
    extra_origins: tuple[str, ...] = ()
    insecure_no_token: bool = False

    def allowed(self, request: Request) -> set[str]:
        own = own_origin(request)
        return {*self.extra_origins, *([own] if own else [])}

    def check(self, request: Request) -> None:
        """403 unless the request may change something (call only for unsafe methods)."""
        if not self.token_required:
            self._check_unauthenticated(request)
        allowed = self.allowed(request)
        origin = request.headers.get("origin")
        referer = request.headers.get("referer")
        if origin is not None:
            if normalize_origin(origin) not in allowed:  # "null" (sandboxed, file:) too
                raise HTTPException(403, "cross-origin request refused")
        elif referer is not None:
            if normalize_origin(referer) not in allowed:
                raise HTTPException(403, "cross-origin request refused (Referer)")
        elif "x-worker-token" not in request.headers and media_type(request) != JSON_TYPE:
            # no Origin and no Referer: only clients a browser page cannot impersonate
            raise HTTPException(403, "send JSON (Content-Type: application/json) or "
                                     "X-Worker-Token, or the Origin header of this server")

    def _check_unauthenticated(self, request: Request) -> None:
        server = request.scope.get("server")
        if server and not self.insecure_no_token and not is_loopback(str(server[0])):
            raise HTTPException(403, "no WORKER_TOKEN is set: changes are only accepted on "
                                     "loopback")
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        extra_hosts = {urlsplit(o).hostname for o in self.extra_origins}
        if not (_is_ip(host) or is_loopback(host) or host in extra_hosts):
            # a name that is not localhost may be an attacker's, rebound to this address
            raise HTTPException(403, f"no WORKER_TOKEN is set: Host {host!r} is not an "
                                     "address, localhost or in PANEL_ALLOWED_ORIGINS")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def body_kind(request: Request, forms: bool) -> BodyKind:
    """What the request body is, or 415: JSON always, a urlencoded form only when `forms`."""
    kind = media_type(request)
    if kind == JSON_TYPE:
        return "json"
    if forms and kind == FORM_TYPE:
        return "form"
    if not kind and not _has_body(request):
        return "none"
    accepted = f"{JSON_TYPE}" + (f" (or a form with {CSRF_FIELD})" if forms else "")
    raise HTTPException(415, f"send {accepted}, not {kind or 'an untyped body'}")


class RedactTokenQuery:
    """ASGI middleware: a `token` query parameter is replaced before anything logs the URL.

    Tokens are not accepted in URLs (the routes ignore the parameter), but a client may still
    send one; uvicorn's access log reads the path from this same scope, so the secret never
    reaches a log line.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if query:
            scope["query_string"] = redact_query(query)
        return await self.app(scope, receive, send)


def redact_query(query: bytes) -> bytes:
    """Every parameter whose (decoded) name holds "token" gets the value `redacted`."""
    parts = []
    for part in query.split(b"&"):
        key = part.split(b"=", 1)[0]
        name = unquote_plus(key.decode("latin-1")).lower()
        parts.append(key + b"=redacted" if "token" in name else part)
    return b"&".join(parts)
