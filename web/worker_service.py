"""The remote worker service: `python -m web.worker_service --host 0.0.0.0 --port 9000`
(or `uvicorn web.worker_service:app ...`).

Runs where /input, /output and /cache are mounted (or WORKER_INPUT/WORKER_OUTPUT/WORKER_CACHE
say where they are); the panel's "Run worker now" POSTs to its /trigger (WORKER_WEBHOOK_URL)
with the shared WORKER_TOKEN in X-Worker-Token (never in the URL). WORKER_AUTORUN_INTERVAL makes
it drain periodically by itself.

A trigger runs queued recipes on this host, so the service takes the panel's precautions: a
token of 16+ characters, no state change from a browser page of another origin, and without a
token, answers to changes only on loopback (unless WORKER_INSECURE_NO_TOKEN=1).
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request

from refinery_lib.cli_run import run as refinery_run
from refinery_lib.retry_worker import Runner, WorkerConfig

from .security import UNSAFE_METHODS, OriginPolicy, RedactTokenQuery, bind_problem, body_kind
from .security import token_problem as _token_problem
from .trigger import Autorun, LocalWorker


def authorized(
    request: Request,
    x_worker_token: Annotated[str | None, Header()] = None,
) -> None:
    """The token in X-Worker-Token, compared in constant time; a `?token=` is not looked at."""
    expected: str = request.app.state.token
    if not expected:
        return
    if not x_worker_token:
        raise HTTPException(401, "this endpoint needs the worker token (X-Worker-Token)")
    if not hmac.compare_digest(x_worker_token.encode(), expected.encode()):
        raise HTTPException(403, "wrong worker token")


def guard_state_change(request: Request) -> None:
    """Same origin (or no browser at all) and JSON or no body, for every state change."""
    if request.method not in UNSAFE_METHODS:
        return
    state = request.app.state
    OriginPolicy(bool(state.token), (), state.insecure_no_token).check(request)
    body_kind(request, forms=False)


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
    config: WorkerConfig | None = None, token: str | None = None, autorun_interval: float = 0.0,
    insecure_no_token: bool | None = None, run: Runner | None = None,
) -> FastAPI:
    """The service; `run` runs one `refinery run` from its arguments (default
    `refinery_lib.cli_run.run`). ValueError for a WORKER_TOKEN shorter than 16 characters."""
    env = os.environ
    token = env.get("WORKER_TOKEN", "") if token is None else token
    problem = _token_problem(token)
    if problem:
        raise ValueError(problem)
    if insecure_no_token is None:
        insecure_no_token = env.get("WORKER_INSECURE_NO_TOKEN", "") == "1"
    if config is None:
        config = WorkerConfig.from_env(env, queue_path=_path(env.get("RETRY_QUEUE_PATH")),
                                       history_db=_path(env.get("HISTORY_DB")))
    app = FastAPI(title="s390x Wheel Refinery worker service", version="0.1.0",
                  lifespan=lifespan, dependencies=[Depends(guard_state_change)])
    app.add_middleware(RedactTokenQuery)
    run = run if run is not None else refinery_run
    app.state.worker = LocalWorker(config, run) if config is not None else None
    app.state.token = token
    app.state.insecure_no_token = insecure_no_token
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


_default_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """`web.worker_service:app` for uvicorn, built on first use: importing this module (as the
    tests and the panel do) never depends on, or fails over, this process's environment."""
    global _default_app
    if name != "app":
        raise AttributeError(name)
    if _default_app is None:
        _default_app = create_worker_app(autorun_interval=_interval())
    return _default_app


def main(argv: list[str] | None = None) -> int:
    """`python -m web.worker_service`: refuses (exit 2) a short token, or a non-loopback
    address without a token unless --insecure-no-token."""
    p = argparse.ArgumentParser(prog="python -m web.worker_service",
                                description="The worker service the panel's webhook calls.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--log-level", default="info")
    p.add_argument("--insecure-no-token", action="store_true",
                   help="allow a non-loopback --host without WORKER_TOKEN")
    args = p.parse_args(argv)
    insecure = args.insecure_no_token or os.environ.get("WORKER_INSECURE_NO_TOKEN") == "1"
    problem = bind_problem(args.host, os.environ.get("WORKER_TOKEN", ""), insecure)
    if problem:
        print(f"worker service: {problem}", file=sys.stderr)
        return 2
    import uvicorn

    app = create_worker_app(autorun_interval=_interval(), insecure_no_token=insecure)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
