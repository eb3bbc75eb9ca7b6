"""FastAPI dependencies: settings, history, queue, catalog, worker, token, request origin and
URL validation.

Routes get everything through these, so a test overrides `get_settings` (or any other) with
`app.dependency_overrides` and the whole panel follows.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Request

from refinery_lib.history import History
from refinery_lib.retry_queue import QueueError, RetryQueue, normalize_name, normalize_version

from . import catalog
from .security import CSRF_FIELD, UNSAFE_METHODS, OriginPolicy, body_kind
from .sessions import SESSION_COOKIE, get_sessions
from .settings import PanelSettings
from .store import LazyHistory, MissingHistory, open_history  # noqa: F401 (routes, tests)
from .trigger import LocalWorker, NoWorker, WebhookWorker

# Cheap dependencies are `async def`: FastAPI calls them on the event loop, where a plain
# `def` costs a trip through the thread pool each (five per page, under load the most of a
# cached page's time). Anything that reads files or the database stays `def`.


async def get_settings(request: Request) -> PanelSettings:
    return request.app.state.settings


Settings = Annotated[PanelSettings, Depends(get_settings)]


def history_exists(history: History) -> bool:
    return getattr(history, "exists", True)


async def get_history(settings: Settings) -> History:
    """The history as it is now: read-only, its queries cached per state (web/store.py);
    a damaged database raises HistoryUnavailable, a 503 naming it (app.py). Opened when the
    route first uses it, in the route's thread."""
    # a proxy, not a subclass: every attribute is the opened History's (__getattr__)
    return LazyHistory(settings.db_path)  # type: ignore[return-value]


async def get_queue(settings: Settings) -> RetryQueue:
    return settings.queue


def get_catalog(settings: Settings) -> list[dict[str, Any]]:
    return catalog.load(settings.hints_path)


#: what a route declares to be given the history, the queue or the hint catalog
HistoryDep = Annotated[History, Depends(get_history)]
QueueDep = Annotated[RetryQueue, Depends(get_queue)]
CatalogDep = Annotated[list[dict[str, Any]], Depends(get_catalog)]


def worker_for(state: Any, settings: PanelSettings):
    """The app keeps one worker object, so 'running' is known across requests. A local one
    runs the workflow with the run function the app was made with (`state.run`)."""
    worker = getattr(state, "worker", None)
    if worker is None:
        if settings.webhook_url:
            worker = WebhookWorker(settings.webhook_url, settings.token)
        elif settings.worker is not None:
            worker = LocalWorker(settings.worker, state.run)
        else:
            worker = NoWorker()
        state.worker = worker
    return worker


async def get_worker(request: Request, settings: Settings):
    return worker_for(request.app.state, settings)


Worker = Annotated[Any, Depends(get_worker)]


def token_ok(settings: PanelSettings, supplied: str | None) -> bool:
    """Constant-time comparison with WORKER_TOKEN (always true when none is set)."""
    if not settings.token:
        return True
    if not supplied:
        return False
    return hmac.compare_digest(supplied.encode(), settings.token.encode())


def session_ok(request: Request) -> bool:
    return get_sessions(request).valid(request.cookies.get(SESSION_COOKIE))


def has_valid_token(request: Request, settings: PanelSettings) -> bool:
    """For pages, which show a token form instead of failing. The X-Worker-Token header or a
    session cookie; never a URL parameter, which access logs and browser histories keep."""
    if not settings.token:
        return True
    header = request.headers.get("x-worker-token")
    return token_ok(settings, header) if header else session_ok(request)


async def require_token(
    request: Request,
    settings: Settings,
    x_worker_token: Annotated[str | None, Header(description="the WORKER_TOKEN")] = None,
) -> None:
    """401 without a token or session, 403 with a wrong token; only when WORKER_TOKEN is set.

    The browser's session cookie (from POST /api/session/token) holds a session id, never the
    token. A `?token=` parameter is not looked at: a token in a URL ends up in logs.
    """
    if not settings.token:
        return
    if x_worker_token:
        if not token_ok(settings, x_worker_token):
            raise HTTPException(403, "wrong worker token")
        return
    if not session_ok(request):
        raise HTTPException(401, "this endpoint needs the worker token (X-Worker-Token) or a "
                                 "session from POST /api/session/token",
                            headers={"WWW-Authenticate": "X-Worker-Token"})


async def guard_state_change(request: Request, settings: Settings) -> None:
    """Every POST/PUT/PATCH/DELETE of the panel: same origin, and JSON or a CSRF-checked form.

    Applied to the whole app (create_app), so a route added later is covered too.
    """
    if request.method not in UNSAFE_METHODS:
        return
    policy = OriginPolicy(bool(settings.token), settings.allowed_origins,
                          settings.insecure_no_token)
    policy.check(request)
    if body_kind(request, forms=True) == "form":
        form = await request.form()
        if not get_sessions(request).csrf_ok(request.cookies.get(SESSION_COOKIE),
                                             form.get(CSRF_FIELD)):
            raise HTTPException(403, "the form's CSRF token is missing or does not match the "
                                     "session; reload the page")


Authorized = Depends(require_token)


async def valid_name(name: Annotated[str, Path(description="package name (any PEP 503 spelling)")]
               ) -> str:
    try:
        return normalize_name(name)
    except QueueError as exc:
        raise HTTPException(400, str(exc)) from exc


async def valid_version(version: Annotated[str, Path(description="PEP 440 version")]) -> str:
    try:
        v = normalize_version(version)
    except QueueError as exc:
        raise HTTPException(400, str(exc)) from exc
    if not v:
        raise HTTPException(400, "a version is needed")
    return v


Name = Annotated[str, Depends(valid_name)]
Version = Annotated[str, Depends(valid_version)]
