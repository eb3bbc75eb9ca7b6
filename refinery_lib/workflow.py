"""Glue between Snakemake and the domain: what scripts and Snakefile handlers call."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import runpy
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .models import PlanNode
from .settings import Settings
from .wheels import list_input_files

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the loggers of the domain: what a job's log file receives
LOGGERS = ("refinery_lib", "refinery")


def setup_logging(log_path: str | None, verbose: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        handlers=handlers,
        force=True,
    )

    def _log_uncaught(kind, exc, tb):
        # scripts fail by raising: the job's log must say why, not only the console
        logging.getLogger("refinery").error("step failed: %s", exc, exc_info=(kind, exc, tb))

    sys.excepthook = _log_uncaught


@contextlib.contextmanager
def build_failure_exits() -> Iterator[None]:
    """A failed build ends its job with exit status 1 and no traceback: the failure is an
    outcome, not a crash. run_build has written its record and logged its one line; a
    traceback (and Snakemake's error block around it) would only bury that line. Any other
    exception is a bug of the refinery and keeps its traceback."""
    from .errors import BuildError

    try:
        yield
    except BuildError:
        raise SystemExit(1) from None


def script_settings(smk: Any) -> Settings:
    """Settings of a `script:` job, with its log file set up (by `run_inline` for `run:` jobs)."""
    if not getattr(smk, "inline", False):
        setup_logging(smk.log[0] if smk.log else None, bool(smk.config.get("verbose")))
    return Settings.from_config(smk.config)


class _JobLogs(logging.Handler):
    """Installed once on the domain's loggers: hands each record to the handlers of the `run:`
    job running in the record's thread. Jobs come and go through a dict, never by adding and
    removing handlers on the loggers, whose lists other threads iterate while they log."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[int, list[logging.Handler]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        handlers = self.jobs.get(record.thread, ()) if record.thread is not None else ()
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


_JOB_LOGS = _JobLogs()
_JOB_LOGS_LOCK = threading.Lock()


def _job_logs(level: int) -> _JobLogs:
    with _JOB_LOGS_LOCK:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            if _JOB_LOGS not in logger.handlers:
                logger.addHandler(_JOB_LOGS)
            if logger.getEffectiveLevel() > level:
                logger.setLevel(level)
    return _JOB_LOGS


def run_inline(script: Path, **smk: Any) -> None:
    """Run a scripts/ adapter inside Snakemake's own process (a `run:` job of a local rule).

    A `script:` job starts an interpreter that imports snakemake and refinery_lib again (0.1 to
    0.6 s per job, measured); this runs the same file with the same `snakemake` object. Jobs run
    in threads side by side, so each gets its own log handlers for the records of its thread,
    on the domain's loggers only (Snakemake's logging is left alone).
    """
    ns = types.SimpleNamespace(inline=True, scriptdir=str(script.parent), **smk)
    log_path = ns.log[0] if ns.log else None
    level = logging.DEBUG if ns.config.get("verbose") else logging.INFO
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(level)
    job_logs = _job_logs(level)
    job_logs.jobs[threading.get_ident()] = handlers
    try:
        runpy.run_path(str(script), init_globals={"snakemake": ns}, run_name="__inline__")
    except BaseException as exc:
        # the job's log says why, as the excepthook of a `script:` job does
        logging.getLogger("refinery").error("step failed: %s", exc, exc_info=True)
        raise
    finally:
        job_logs.jobs.pop(threading.get_ident(), None)
        for handler in handlers:
            handler.close()


def listing_fingerprint(folder: Path) -> str:
    """What the scan step reads of `folder`, in one short string: the listing's size and a
    digest of every file's name, size and mtime. A params value, so that any change reruns
    the scan without file names ever being Snakemake patterns."""
    digest = hashlib.sha256()
    files = list_input_files(folder)
    for path in files:
        st = path.stat()
        line = f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0"
        digest.update(line.encode("utf-8", "surrogateescape"))
    return f"{len(files)} files, sha256 {digest.hexdigest()[:32]}"


def build_params(node: PlanNode, settings: Settings) -> dict[str, Any]:
    """Only what changes a package's build (`build.BuildIdentity`, which makes the wheel
    cache's key too): so that a change reruns that package alone."""
    from .build import BuildIdentity

    src = node.source or {}
    return BuildIdentity.of(settings, node.name, node.version, src.get("filename", ""),
                            src.get("sha256", "")).params()


def report_run(settings: Settings, success: bool) -> None:
    """onsuccess/onerror: make sure the manifest covers the run, print the summary table.

    After a failed job (with --keep-going) the aggregate rule cannot run, so the same
    aggregation runs here over whatever the jobs produced, failures included.
    """
    from .aggregate import aggregate, summary_table
    from .files import read_json

    if not settings.paths.plan.exists():
        print("refinery: no plan was made; see the errors above", file=sys.stderr)
        return
    if success and settings.paths.manifest.exists():
        manifest = read_json(settings.paths.manifest)
    else:
        manifest = aggregate(settings)
    manifest["path"] = str(settings.paths.manifest)
    if not os.environ.get("REFINERY_SUMMARY_BY_CLI"):
        print(summary_table(manifest), file=sys.stderr)
    if success and not manifest.get("ok", False):
        sys.exit(1)
