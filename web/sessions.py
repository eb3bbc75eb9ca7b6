"""Browser sessions: a random id in an HttpOnly cookie, the token itself never leaves the server.

After `POST /api/session/token` with the right token, the cookie holds a fresh session id that
this process remembers (hashed) until it expires or the user logs out. A leaked cookie is
therefore a revocable, expiring session, not the WORKER_TOKEN. Sessions live in memory: a
restart logs everyone out, and one panel process is assumed (as `refinery serve` runs it).

HTML forms carry a CSRF token derived from the session id with a per-process secret, so a page
elsewhere can neither read it nor compute it. Visitors without a session get an anonymous id
(not stored) for that purpose only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TypeGuard

from fastapi import Request, Response

from .security import request_scheme

SESSION_COOKIE = "refinery_session"
LIFETIME = 12 * 3600.0
MAX_SESSIONS = 1000
_SID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _digest(sid: str) -> str:
    # stored and looked up by digest: the table never holds a usable id
    return hashlib.sha256(sid.encode()).hexdigest()


def plausible_sid(sid: str | None) -> TypeGuard[str]:
    return sid is not None and 20 <= len(sid) <= 100 and set(sid) <= _SID_CHARS


@dataclass
class SessionStore:
    """Authenticated sessions of this process: digest of the id -> expiry time."""

    lifetime: float = LIFETIME
    limit: int = MAX_SESSIONS
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _expiry: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self) -> str:
        sid = new_sid()
        now = time.time()
        with self._lock:
            self._prune(now)
            while len(self._expiry) >= self.limit:  # the oldest goes first
                del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
            self._expiry[_digest(sid)] = now + self.lifetime
        return sid

    def valid(self, sid: str | None) -> bool:
        if not plausible_sid(sid):
            return False
        with self._lock:
            expiry = self._expiry.get(_digest(sid))
            if expiry is None:
                return False
            if expiry <= time.time():
                del self._expiry[_digest(sid)]
                return False
            return True

    def end(self, sid: str | None) -> None:
        if plausible_sid(sid):
            with self._lock:
                self._expiry.pop(_digest(sid), None)

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self.secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, supplied: object) -> bool:
        if not plausible_sid(sid) or not isinstance(supplied, str):
            return False
        return hmac.compare_digest(self.csrf_token(sid).encode(), supplied.encode())

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._expiry.items() if t <= now]:
            del self._expiry[key]


def new_sid() -> str:
    return secrets.token_urlsafe(32)


def set_session_cookie(response: Response, request: Request, sid: str,
                       max_age: int | None = None) -> None:
    """HttpOnly (scripts never see it), SameSite=Strict, Secure when the page came over https."""
    response.set_cookie(SESSION_COOKIE, sid, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=request_scheme(request) == "https")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request_scheme(request) == "https")


def get_sessions(request: Request) -> SessionStore:
    return request.app.state.sessions
