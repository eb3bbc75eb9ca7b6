"""FastAPI dependencies: settings, history, queue, catalog, worker, token and URL validation.

Routes get everything through these, so a test overrides `get_settings` (or any other) with
`app.dependency_overrides` and the whole panel follows.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Cookie, Depends, Header, HTTPException, Path, Query, Request

from refinery_lib.history import History
from refinery_lib.queue import QueueError, RetryQueue, normalize_name, normalize_version

from . import catalog
from .settings import PanelSettings
from .trigger import LocalWorker, NoWorker, WebhookWorker

TOKEN_COOKIE = "worker_token"


def get_settings(request: Request) -> PanelSettings:
    return request.app.state.settings


Settings = Annotated[PanelSettings, Depends(get_settings)]


def get_history(settings: Settings) -> History:
    # History creates an empty database when there is none: an empty panel before the first run
    return History(settings.db_path)


def get_queue(settings: Settings) -> RetryQueue:
    return settings.queue


def get_catalog(settings: Settings) -> list[dict[str, Any]]:
    return catalog.load(settings.hints_path)


def worker_for(state: Any, settings: PanelSettings):
    """The app keeps one worker object, so 'running' is known across requests."""
    worker = getattr(state, "worker", None)
    if worker is None:
        if settings.webhook_url:
            worker = WebhookWorker(settings.webhook_url, settings.token)
        elif settings.worker is not None:
            worker = LocalWorker(settings.worker)
        else:
            worker = NoWorker()
        state.worker = worker
    return worker


def get_worker(request: Request, settings: Settings):
    return worker_for(request.app.state, settings)


Worker = Annotated[Any, Depends(get_worker)]


def token_ok(settings: PanelSettings, supplied: str | None) -> bool:
    if not settings.token:
        return True
    if not supplied:
        return False
    return hmac.compare_digest(supplied.encode(), settings.token.encode())


def has_valid_token(request: Request, settings: PanelSettings) -> bool:
    """For pages, which show a token form instead of failing."""
    supplied = (request.headers.get("x-worker-token") or request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE))
    return token_ok(settings, supplied)


def require_token(
    settings: Settings,
    x_worker_token: Annotated[str | None, Header(description="the WORKER_TOKEN")] = None,
    token: Annotated[str | None, Query(description="the WORKER_TOKEN")] = None,
    worker_token: Annotated[str | None, Cookie(description="set by /api/session/token")] = None,
) -> None:
    """401 without a token, 403 with a wrong one; only when WORKER_TOKEN is set."""
    if not settings.token:
        return
    supplied = x_worker_token or token or worker_token
    if not supplied:
        raise HTTPException(401, "this endpoint needs the worker token",
                            headers={"WWW-Authenticate": "X-Worker-Token"})
    if not token_ok(settings, supplied):
        raise HTTPException(403, "wrong worker token")


Authorized = Depends(require_token)


def valid_name(name: Annotated[str, Path(description="package name (any PEP 503 spelling)")]
               ) -> str:
    try:
        return normalize_name(name)
    except QueueError as exc:
        raise HTTPException(400, str(exc)) from exc


def valid_version(version: Annotated[str, Path(description="PEP 440 version")]) -> str:
    try:
        v = normalize_version(version)
    except QueueError as exc:
        raise HTTPException(400, str(exc)) from exc
    if not v:
        raise HTTPException(400, "a version is needed")
    return v


Name = Annotated[str, Depends(valid_name)]
Version = Annotated[str, Depends(valid_version)]
