"""The remote worker service: `uvicorn web.worker_service:app --host 0.0.0.0 --port 9000`.

Runs where /input, /output and /cache are mounted (or WORKER_INPUT/WORKER_OUTPUT/WORKER_CACHE
say where they are); the panel's "Run worker now" POSTs to its /trigger (WORKER_WEBHOOK_URL)
with the shared WORKER_TOKEN. WORKER_AUTORUN_INTERVAL makes it drain periodically by itself.
"""

from __future__ import annotations

import hmac
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request

from .trigger import Autorun, LocalWorker
from .worker import WorkerConfig


def authorized(
    request: Request,
    x_worker_token: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Query()] = None,
) -> None:
    expected: str = request.app.state.token
    if not expected:
        return
    supplied = x_worker_token or token
    if not supplied:
        raise HTTPException(401, "this endpoint needs the worker token")
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise HTTPException(403, "wrong worker token")


def get_worker(request: Request) -> LocalWorker:
    if request.app.state.worker is None:
        raise HTTPException(503, "no input/cache folders here: mount /input, /output, /cache "
                                 "or set WORKER_INPUT, WORKER_OUTPUT, WORKER_CACHE")
    return request.app.state.worker


WorkerDep = Annotated[LocalWorker, Depends(get_worker)]


@asynccontextmanager
async def lifespan(app: FastAPI):
    autorun = None
    worker, interval = app.state.worker, app.state.autorun_interval
    if worker is not None and interval > 0:
        autorun = Autorun(worker, worker.config.queue, interval)
        autorun.start()
    yield
    if autorun is not None:
        autorun.stop()


def create_worker_app(
    config: WorkerConfig | None = None, token: str | None = None, autorun_interval: float = 0.0
) -> FastAPI:
    env = os.environ
    if config is None:
        config = WorkerConfig.from_env(env, queue_path=_path(env.get("RETRY_QUEUE_PATH")),
                                       history_db=_path(env.get("HISTORY_DB")))
    app = FastAPI(title="s390x Wheel Refinery worker service", version="0.1.0",
                  lifespan=lifespan)
    app.state.worker = LocalWorker(config) if config is not None else None
    app.state.token = env.get("WORKER_TOKEN", "") if token is None else token
    app.state.autorun_interval = autorun_interval

    @app.post("/trigger", status_code=202, dependencies=[Depends(authorized)])
    def trigger(worker: WorkerDep) -> dict[str, Any]:
        """Drain the retry queue in the background (409 while a drain is running)."""
        result = worker.trigger()
        if not result["started"]:
            raise HTTPException(409, "the worker is already running")
        return result

    @app.get("/status", dependencies=[Depends(authorized)])
    def status(worker: WorkerDep) -> dict[str, Any]:
        return {**worker.status(), "queue_depth": len(worker.config.queue)}

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        return {"ok": True, "worker": request.app.state.worker is not None}

    return app


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("WORKER_AUTORUN_INTERVAL") or 0))
    except ValueError:
        return 0.0


app = create_worker_app(autorun_interval=_interval())
