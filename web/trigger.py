"""'Run worker now': drain the queue in a background thread of this process, or ask a remote
worker service (web/worker_service.py) to do it; plus the optional periodic autorun."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from refinery_lib.retry_worker import Runner, WorkerConfig, WorkerResult, drain_and_run

log = logging.getLogger("refinery.web.worker")


class WorkerUnavailable(Exception):
    """Neither input/output/cache access nor a webhook is configured."""


@dataclass
class LocalWorker:
    """Runs drains one at a time in a daemon thread; builds take minutes, requests must not.
    `runner` runs one `refinery run` (the app factory's `run`)."""

    config: WorkerConfig
    runner: Runner
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    last: WorkerResult | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def trigger(self) -> dict[str, Any]:
        with self._lock:
            if self.running:
                return {"started": False, "status": "running", "mode": "local"}
            self._thread = threading.Thread(target=self._run, name="refinery-worker",
                                            daemon=True)
            self._thread.start()
        return {"started": True, "status": "started", "mode": "local"}

    def _run(self) -> None:
        try:
            self.last = drain_and_run(self.config, self.runner, log.info)
        except Exception as exc:  # the thread must not die silently
            log.exception("worker run failed")
            self.last = WorkerResult("error", error=str(exc), finished=time.time())

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {"mode": "local", "running": self.running,
                "last": self.last.to_json() if self.last else None}


@dataclass
class WebhookWorker:
    """POSTs to the worker service; the token travels in X-Worker-Token, never in the URL."""

    url: str
    token: str = ""
    timeout: float = 10.0

    def trigger(self) -> dict[str, Any]:
        headers = {"X-Worker-Token": self.token} if self.token else {}
        # a JSON body: the service refuses state changes that could come from a browser form
        try:
            resp = httpx.post(self.url, headers=headers, json={}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(f"worker service at {self.url} did not answer: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = {"text": resp.text[:500]}
        if resp.status_code >= 400:
            raise WorkerUnavailable(f"worker service answered {resp.status_code}: {body}")
        return {"started": bool(body.get("started", True)), "status": body.get("status", ""),
                "mode": "webhook", "service": body}

    def status(self) -> dict[str, Any]:
        return {"mode": "webhook", "url": self.url}


class NoWorker:
    def trigger(self) -> dict[str, Any]:
        raise WorkerUnavailable(
            "no worker: give the panel WORKER_INPUT/WORKER_OUTPUT/WORKER_CACHE (or /input, "
            "/output, /cache mounts), or WORKER_WEBHOOK_URL, or run `refinery worker`"
        )

    def status(self) -> dict[str, Any]:
        return {"mode": "none"}


class Autorun:
    """Drains every `interval` seconds when the queue holds something."""

    def __init__(self, worker, queue, interval: float):
        self.worker, self.queue, self.interval = worker, queue, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="refinery-autorun", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if len(self.queue):
                    self.worker.trigger()
            except Exception:  # a failing trigger must not end the periodic drains
                log.exception("autorun trigger failed")
