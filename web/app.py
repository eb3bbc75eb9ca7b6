"""The panel's FastAPI application: `create_app()` (used by `refinery serve`).

Run it directly with `uvicorn --factory web.app:create_app` (settings from the environment).
The panel's local worker runs the workflow through the `run` it is given (`refinery serve`
passes `cli_run.run`; the default is the same function): the panel imports the domain, the
domain never imports the panel.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from refinery_lib.cli_run import run as refinery_run
from refinery_lib.history import header_damage, is_damage
from refinery_lib.retry_queue import QueueError, RequestNotFound
from refinery_lib.retry_worker import Runner

from . import routes_api, routes_docs, routes_logs, routes_pages, routes_queue
from .deps import Settings, get_settings, guard_state_change, worker_for
from .security import RedactTokenQuery, token_problem
from .sessions import SessionStore
from .settings import PanelSettings
from .store import HistoryUnavailable, damaged_message, store_for
from .trigger import Autorun

STATIC = Path(__file__).resolve().parent / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
log = logging.getLogger(__name__)

# plotly adds inline styles, nothing here needs inline scripts or other origins
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    """Plain ASGI middleware (not BaseHTTPMiddleware, which gets in the way of streaming)."""

    HEADERS = [(b"content-security-policy", CSP.encode()),
               (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"same-origin")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in self.HEADERS if h[0] not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: PanelSettings = app.state.settings
    autorun = None
    if settings.autorun_interval > 0 and settings.worker_mode != "none":
        worker = worker_for(app.state, settings)
        autorun = Autorun(worker, settings.queue, settings.autorun_interval)
        autorun.start()
    yield
    if autorun is not None:
        autorun.stop()


def settings_of(request: Request) -> PanelSettings:
    """The settings routes see (a test's override of get_settings included), for handlers."""
    override = request.app.dependency_overrides.get(get_settings)
    return override() if override is not None else request.app.state.settings


def unavailable(request: Request, message: str):
    """503 with the one line that says what is wrong: JSON under /api/, else a page."""
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get(
            "accept", ""):
        return JSONResponse({"detail": message}, status_code=503)
    return routes_pages.render(request, "unavailable.html", settings_of(request),
                               status_code=503, history_problem=message)


def create_app(settings: PanelSettings | None = None, run: Runner | None = None) -> FastAPI:
    """The panel; `run` runs one `refinery run` from its arguments for the local worker
    (default `refinery_lib.cli_run.run`). ValueError for a WORKER_TOKEN that is too short."""
    settings = settings or PanelSettings.from_env()
    problem = token_problem(settings.token)
    if problem:
        raise ValueError(problem)
    app = FastAPI(
        title="s390x Wheel Refinery panel",
        description="History, hints, logs, retry queue and worker of the refinery.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc load from a CDN and start with an inline script: blank
        # offline and under the CSP; routes_docs serves both from local files instead
        docs_url=None,
        redoc_url=None,
        # every route, present and future: POST/PUT/PATCH/DELETE only from this origin
        dependencies=[Depends(guard_state_change)],
    )
    app.state.settings = settings
    app.state.run = run if run is not None else refinery_run
    if problem := header_damage(settings.db_path):
        # `refinery serve` refuses to start on it (quick_check); served anyway, every page
        # that needs the history says so
        log.warning("%s", damaged_message(settings.db_path, problem))
    if not settings.db_path.is_file():
        # nothing is created there: a mistyped path must not become an empty history
        log.warning("no history database at %s yet: the panel shows an empty history until "
                    "a run writes it", settings.db_path)
    app.state.sessions = SessionStore()

    app.add_middleware(SecurityHeaders)
    app.add_middleware(RedactTokenQuery)  # outermost: before anything sees the URL

    @app.exception_handler(RequestNotFound)
    def _not_found(request: Request, exc: RequestNotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(QueueError)
    def _bad_request(request: Request, exc: QueueError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(HistoryUnavailable)
    def _history_unavailable(request: Request, exc: HistoryUnavailable):
        return unavailable(request, exc.message)

    @app.exception_handler(sqlite3.Error)
    def _sqlite_error(request: Request, exc: sqlite3.Error):
        # a read outside web/store.py's history: one line, never a traceback
        settings = settings_of(request)
        if is_damage(exc):
            return unavailable(request, damaged_message(settings.db_path, str(exc)))
        return unavailable(request, f"the history database {settings.db_path} could not be "
                                    f"read now ({exc}); try again in a moment")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        # served from the installed plotly package: the panel works without the internet
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    def healthz(settings: Settings):
        # cheap: container health checks should not render the dashboard. Two stat calls,
        # and the header of a database file not seen in this state before
        store = store_for(settings.db_path)
        problem = store.problem()
        if problem:
            return JSONResponse({"ok": False, "detail": damaged_message(store.path, problem)},
                                status_code=503)
        return {"ok": True}

    for module in (routes_pages, routes_api, routes_queue, routes_logs, routes_docs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
