"""The retry worker: drain the queue and rerun the workflow for just the queued packages.

Each request's recipe (steps, system packages, version pin) becomes an `overrides` entry of a
temporary config merged over the user's own, and `refinery --rebuild NAME` forces exactly
those build targets to run again; everything else in the run is reused from the cache.

The run itself is the caller's: `drain_and_run` takes the function that runs `refinery run`'s
arguments (`cli_run.run`, given by `refinery worker`, `refinery serve` and the panel's app
factories), so this module knows neither the command line nor the panel.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import exclusive
from .retry_queue import QUEUE_FILE, RetryQueue, RetryRequest, python_version
from .run_id import new_run_id

# `refinery run`'s arguments -> its exit code: cli_run.run, or a test's stand-in
Runner = Callable[[list[str]], int]


@dataclass(frozen=True)
class WorkerConfig:
    """What `refinery worker` needs: the run's folders and target, plus extra run flags."""

    input: Path
    output: Path
    cache: Path
    python: str = ""
    platform_tag: str = ""
    config: Path | None = None
    queue_path: Path | None = None
    history_db: Path | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def queue(self) -> RetryQueue:
        return RetryQueue(self.queue_path or self.cache / QUEUE_FILE)

    @property
    def db(self) -> Path:
        return self.history_db or self.cache / "history.db"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], queue_path: Path | None = None,
        history_db: Path | None = None,
    ) -> WorkerConfig | None:
        """WORKER_INPUT/OUTPUT/CACHE (default /input, /output, /cache), or None when the
        input or cache folder is not there: then this process cannot run the worker itself."""
        inp = Path(environ.get("WORKER_INPUT") or "/input")
        out = Path(environ.get("WORKER_OUTPUT") or "/output")
        cache = Path(environ.get("WORKER_CACHE") or "/cache")
        if not inp.is_dir() or not cache.is_dir() or not (out.is_dir() or out.parent.is_dir()):
            return None
        config = environ.get("WORKER_CONFIG")
        return cls(
            input=inp, output=out, cache=cache,
            python=environ.get("WORKER_PYTHON", ""),
            platform_tag=environ.get("WORKER_PLATFORM_TAG", ""),
            config=Path(config) if config else None,
            queue_path=queue_path, history_db=history_db,
            extra_args=tuple(shlex.split(environ.get("WORKER_ARGS", ""))),
        )


@dataclass
class WorkerResult:
    """What one drain did; `status` is empty, busy, done or error."""

    status: str
    requests: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    dead: list[str] = field(default_factory=list)  # ids set aside as dead letters
    started: float = field(default_factory=time.time)
    finished: float = 0.0

    @property
    def returncode(self) -> int:
        if self.status == "error":
            return 2
        return max((r["returncode"] for r in self.runs), default=0)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "requests": self.requests, "runs": self.runs,
                "error": self.error, "dead": self.dead, "started": self.started,
                "finished": self.finished, "returncode": self.returncode}


def worker_lock(cache: Path) -> AbstractContextManager[bool]:
    """One worker per cache at a time, across processes; yields False when another holds it."""
    cache.mkdir(parents=True, exist_ok=True)
    return exclusive(cache / "worker.lock", wait=False)


def drain_and_run(
    cfg: WorkerConfig, runner: Runner, log: Callable[[str], None] | None = None
) -> WorkerResult:
    """Drain the queue and run the workflow once per target (python tag, platform tag):
    `runner` gets each run's `refinery run` arguments and returns its exit code."""
    say = log or (lambda msg: print(f"refinery worker: {msg}", file=sys.stderr))
    with worker_lock(cfg.cache) as got:
        if not got:
            say("another worker is running on this cache; leaving the queue alone")
            return WorkerResult("busy")
        requests = cfg.queue.drain()
        result = WorkerResult("done" if requests else "empty", [r.id for r in requests])
        if not requests:
            say("the retry queue is empty")
        for (python, platform), group in _by_target(requests, cfg).items():
            try:
                result.runs.append(_run_group(cfg, python, platform, group, runner, say))
            except (Exception, SystemExit) as exc:
                # the run refused these requests: set them aside with the reason (the queue
                # page shows them), since back at the front they would fail on every drain
                reason = f"the run did not start: {type(exc).__name__}: {exc}"
                cfg.queue.bury(group, reason)
                result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
                result.dead += [r.id for r in group]
                say(f"run failed to start, {len(group)} request(s) set aside: {exc}")
        result.finished = time.time()
        return result


def _by_target(
    requests: list[RetryRequest], cfg: WorkerConfig
) -> dict[tuple[str, str], list[RetryRequest]]:
    groups: dict[tuple[str, str], list[RetryRequest]] = {}
    for r in requests:
        python = python_version(r.python_tag) or cfg.python
        groups.setdefault((python, r.platform_tag or cfg.platform_tag), []).append(r)
    return groups


def overrides_for(base: dict[str, Any], group: list[RetryRequest]) -> dict[str, Any]:
    """The user's overrides with each request's recipe laid over; a later request wins. Each
    entry laid over is checked as the run will read it (`overrides.PackageOverride`): one
    it would refuse is a ConfigError here, before the run starts."""
    from .config import merge
    from .overrides import PackageOverride

    overrides = dict(base.get("overrides") or {})
    for r in group:
        entry: dict[str, Any] = {}
        if r.version:
            entry["version"] = r.version
        if r.recipe_steps:
            entry["recipe_steps"] = r.recipe_steps
        if r.system_packages:
            entry["system_packages"] = r.system_packages
        # the user's config may spell the name differently (PEP 503 makes them one package)
        key = next((k for k in overrides if _canon(k) == r.name), r.name)
        overrides[key] = merge(overrides.get(key) or {}, entry)
        PackageOverride.from_config(key, overrides[key], source=f"config with retry request {r.id}")
    return overrides


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def _run_group(
    cfg: WorkerConfig, python: str, platform: str, group: list[RetryRequest], runner: Runner,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from .config import load_file

    base = load_file(cfg.config) if cfg.config else {}
    conf = dict(base, overrides=overrides_for(base, group))
    names = list(dict.fromkeys(r.name for r in group))
    tmpdir = cfg.cache / "worker"
    tmpdir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmpdir, prefix="retry-config-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(conf, fh, indent=2, sort_keys=True)
    argv = ["--input", str(cfg.input), "--output", str(cfg.output), "--cache", str(cfg.cache),
            "--config", tmp, "--history-db", str(cfg.db)]
    if python:
        argv += ["--python", python]
    if platform:
        argv += ["--platform-tag", platform]
    argv += list(cfg.extra_args)
    for n in names:
        argv += ["--rebuild", n]
    _record_recipes(cfg, group, python, platform)
    say(f"rebuilding {', '.join(names)} (python {python or 'default'}, "
        f"platform {platform or 'default'})")
    try:
        rc = runner(argv)
    finally:
        os.unlink(tmp)
    return {"packages": names, "python": python, "platform_tag": platform, "argv": argv,
            "returncode": rc}


def _record_recipes(
    cfg: WorkerConfig, group: list[RetryRequest], python: str, platform: str
) -> None:
    """A system_recipe event per applied recipe, so the package page shows what was tried."""
    from .history import History, new_event
    from .models import Status

    events = []
    for r in group:
        if not (r.recipe_steps or r.system_packages or r.version):
            continue
        what = [shlex.join(s) for s in r.recipe_steps] + [f"install {p}" for p in
                                                          r.system_packages]
        detail = "queued retry recipe: " + ("; ".join(what) if what else f"version {r.version}")
        ev = new_event(r.name, r.version, Status.SYSTEM_RECIPE, detail[:2000],
                       request_id=r.id, recipe_steps=r.recipe_steps,
                       system_packages=r.system_packages, note=r.note, source="retry-queue")
        events.append(ev)
    if events:
        tag = f"cp3{python.split('.')[1]}" if python.count(".") == 1 else ""
        run_id = new_run_id("worker")
        History(cfg.db).record(events, run_id, tag, platform)
