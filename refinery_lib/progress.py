"""What a person sees while the workflow runs: one progress display, not Snakemake's chatter.

Snakemake prints a banner, its internal command line and a line per scheduling step; a 25 s
build is 23 s of silence among them. `run_workflow` sends all of that to a log file (unless
--verbose) and shows progress read from the files the workflow writes anyway: the plan for
the totals, the outcome and failure records for what finished, the attempt logs for what is
building now, the history for how long the rest should take. So it needs no hook inside
Snakemake, works the same for local and cluster jobs, and cannot change what a run does.

On a terminal that is a transient `rich` display (it leaves the screen to the summary table);
elsewhere (CI, SLURM logs) one plain line per event.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from packaging.utils import canonicalize_name

from .failure_lines import first_error_line
from .models import Action, Plan, Status
from .run_id import current_run_id
from .safe_env import printable
from .settings import WorkflowFiles

log = logging.getLogger(__name__)

#: seconds between two looks at the results folder
POLL_SECONDS = 0.5
#: a plain-line run that has said nothing for this long says what is still building
HEARTBEAT_SECONDS = 60.0
#: Snakemake's output that no one needs without --verbose: the banner with the workflow id,
#: the command line and config MD5 (host), "N of M steps" (progress), the rule blocks of
#: every job (rules) and why each runs (reason). Errors are still printed, into its log file.
QUIET_FLAGS = ("--quiet", "host", "progress", "rules", "reason")
#: the plan actions whose packages the progress counts (missing and skipped ones never run)
COUNTED = ("reuse", "fetch", "build")
#: at most this many builds are listed by name on the live display
SHOWN_BUILDS = 8

#: an attempt log of build.py: CACHE/logs/<name>-<version>-attempt<N>-<variant>.log
_ATTEMPT_LOG = re.compile(r"^(?P<key>[a-z0-9_]+-[A-Za-z0-9_.+!]+)-attempt(?P<n>\d+)-.+\.log$")
_DRY_RUN_FLAGS = frozenset({"--dry-run", "--dryrun", "-n"})
_SLOT_FLAGS = frozenset({"--cores", "-c", "--jobs", "-j"})


def snakemake_output_args(verbose: bool) -> list[str]:
    """Snakemake flags for the terminal output of a run: none with --verbose (everything),
    else QUIET_FLAGS. Put them before the other options: --quiet takes a list, which would
    swallow a target that followed it."""
    return [] if verbose else list(QUIET_FLAGS)


# ------------------------------------------------------------------ what the files say


@dataclass(frozen=True)
class Item:
    """One package of the plan that the run reuses, fetches or builds."""

    key: str
    name: str
    version: str
    action: str


@dataclass(frozen=True)
class Finished:
    """A package's record: its status, its one-line detail, the build's duration."""

    key: str
    status: str
    detail: str = ""
    duration: float | None = None
    #: written by this run (else left by an earlier one, and counted without a word)
    fresh: bool = True


@dataclass(frozen=True)
class Snapshot:
    """The run as the files show it at one moment."""

    items: Mapping[str, Item]
    finished: Mapping[str, Finished]
    #: key -> attempt number, of builds whose attempt log this run is writing
    building: Mapping[str, int]

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def done(self) -> int:
        return len(self.finished)


class RunFiles:
    """Reads the run's records: plan, outcome and failure records, attempt logs. Records
    older than `since` (the start of this run) count as done but are not news; attempt logs
    older than it are not builds of this run."""

    def __init__(self, results: Path, logs: Path, since: float) -> None:
        self.files = WorkflowFiles(results)
        self.logs = logs
        self.since = since
        self._plan_stamp: tuple[int, int] | None = None
        self._items: dict[str, Item] = {}
        #: path -> (mtime, size) and its records when last read: a run of thousands of
        #: packages is not parsed again every half second
        self._records: dict[Path, tuple[tuple[int, int], list[dict[str, Any]]]] = {}

    def snapshot(self) -> Snapshot | None:
        """The run now; None before there is a plan."""
        items = self._plan()
        if items is None:
            return None
        finished = self._finished(items)
        building = {
            key: n for key, n in self._attempts(items).items() if key not in finished
        }
        return Snapshot(items, finished, building)

    def _plan(self) -> dict[str, Item] | None:
        try:
            st = self.files.plan.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._plan_stamp:
            self._items = {
                n.key: Item(n.key, n.name, n.version, str(n.action))
                for n in Plan.from_file(self.files.plan).nodes()
                if n.action in COUNTED
            }
            self._plan_stamp = stamp
        return self._items

    def _finished(self, items: Mapping[str, Item]) -> dict[str, Finished]:
        found: dict[str, Finished] = {}
        by_name = {(i.name, i.version): i.key for i in items.values()}
        batches = ((Action.REUSE, self.files.reuse_record, Status.REUSED),
                   (Action.FETCH, self.files.fetch_record, Status.FETCHED))
        for action, path, status in batches:
            stamp = _mtime(path)
            if stamp is None:
                continue
            for item in items.values():
                if item.action == action:
                    found[item.key] = Finished(item.key, str(status), fresh=stamp >= self.since)
        for item in items.values():
            if item.action != "build":
                continue
            path = self.files.outcome(item.key)
            stamp = _mtime(path)
            records = self._read(path) if stamp is not None else []
            if stamp is not None and records:
                found[item.key] = _finished(item.key, records[0], stamp >= self.since)
        failures = self.files.failures
        for path in sorted(failures.glob("*.json")) if failures.is_dir() else ():
            stamp = _mtime(path)
            if stamp is None or stamp < self.since:
                continue  # a failure of an earlier run: this run tries again
            for record in self._read(path):
                key = by_name.get((canonicalize_name(str(record.get("name", ""))),
                                   str(record.get("version", ""))))
                if key is None and path.stem in items:
                    key = path.stem
                if key is not None and key not in found:
                    found[key] = _finished(key, record, True)
        return found

    def _attempts(self, items: Mapping[str, Item]) -> dict[str, int]:
        """key -> the newest attempt of a build this run has started (its attempt log was
        written since `since`). Attempt logs name the version built, which fallback-latest
        can change: those are matched by name when only one build has that name."""
        by_log: dict[str, int] = {}
        try:
            entries = list(os.scandir(self.logs))
        except OSError:
            return {}
        for entry in entries:
            m = _ATTEMPT_LOG.match(entry.name)
            if not m:
                continue
            try:
                if entry.stat().st_mtime < self.since:
                    continue
            except OSError:
                continue
            key, n = m["key"], int(m["n"])
            by_log[key] = max(n, by_log.get(key, 0))
        builds = [i for i in items.values() if i.action == "build"]
        names: dict[str, list[Item]] = {}
        for item in builds:
            names.setdefault(item.key.rsplit("-", 1)[0], []).append(item)
        found: dict[str, int] = {}
        for key, n in by_log.items():
            if key in items:
                found[key] = n
                continue
            same = names.get(key.rsplit("-", 1)[0], [])
            if len(same) == 1:
                found[same[0].key] = max(n, found.get(same[0].key, 0))
        return found


    def _read(self, path: Path) -> list[dict[str, Any]]:
        """The records in `path` (an outcome, or a list of them), read again only when the
        file changed; none from a file that is gone or is no JSON (one bad file must not
        stop the progress of the others)."""
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._records.get(path)
            if cached is None or cached[0] != stamp:
                try:
                    cached = (stamp, _as_list(_read_json(path)))
                except ValueError:
                    log.debug("progress: %s is no JSON record", path)
                    cached = (stamp, [])
                self._records[path] = cached
        except OSError:  # gone since it was listed
            return []
        return cached[1]


def _finished(key: str, record: dict[str, Any], fresh: bool) -> Finished:
    meta = record.get("metadata") or {}
    duration = meta.get("duration")
    return Finished(
        key,
        str(record.get("status", "")),
        str(record.get("detail", "")),
        float(duration) if isinstance(duration, (int, float)) else None,
        fresh,
    )


def _as_list(data: Any) -> list[dict[str, Any]]:
    return [d for d in (data if isinstance(data, list) else [data]) if isinstance(d, dict)]


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


# ------------------------------------------------------------------ how long the rest takes


def expected_durations(history_db: Path) -> dict[str, float]:
    """Average build duration (seconds) per package from the history, read-only ({} if
    there is none yet). The same statistics that order the builds (scheduling.py)."""
    from .scheduling import observations

    try:
        stats = observations(history_db)
    except Exception:  # a locked, new or foreign database: no ETA, never a failed run
        log.debug("no build durations from %s", history_db, exc_info=True)
        return {}
    return {name: o.avg_duration for name, o in stats.items() if o.avg_duration is not None}


def eta_seconds(
    pending: Sequence[str],
    running: Mapping[str, float],
    averages: Mapping[str, float],
    slots: int,
) -> float | None:
    """Seconds until the builds end: `pending` names not started, `running` name -> seconds
    it has run, `averages` from the history, `slots` builds at a time. A package the
    history does not know counts as the median of those it knows; None when it knows none.
    The work is shared among the slots, but never ends before the longest build does."""
    if not pending and not running:
        return 0.0
    if not averages:
        return None
    guess = statistics.median(averages.values())

    def expected(name: str) -> float:
        return averages.get(canonicalize_name(name), guess)

    left = [expected(n) for n in pending]
    left += [max(expected(n) - elapsed, 0.0) for n, elapsed in running.items()]
    lanes = max(1, min(slots, len(left)))
    return max(sum(left) / lanes, max(left))


def slots_from_argv(argv: Sequence[str]) -> int:
    """How many builds Snakemake runs at a time: its --cores/--jobs value (1 if none)."""
    found = 1
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in _SLOT_FLAGS and value.isdigit():
            found = max(found, int(value))
    return found


def format_seconds(seconds: float) -> str:
    """12.3 s, 3 min 05 s, 1 h 02 min: short enough for a progress line."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ------------------------------------------------------------------ showing it


@dataclass(frozen=True)
class View:
    """What a reporter shows at one moment (derived from a Snapshot by the watcher)."""

    done: int
    total: int
    failed: int
    #: (label, seconds building) of every build running now
    building: tuple[tuple[str, float], ...]
    eta: float | None


class Reporter(Protocol):
    def line(self, text: str, *, keep: bool = False) -> None:
        """An event worth a line of its own; `keep`: worth one on a live display too (a
        failure), where the display itself shows the rest."""

    def show(self, view: View | None) -> None:
        """The current state (None: no plan yet)."""

    def close(self) -> None:
        """The run ended: leave the terminal clean."""


class PlainReporter:
    """One line per event, for logs that are not a terminal (CI, SLURM); while nothing
    happens for HEARTBEAT_SECONDS, a line says what is still building."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic,
                 heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.stream = stream
        self.clock = clock
        self.heartbeat = heartbeat
        self._last = clock()

    def line(self, text: str, *, keep: bool = False) -> None:
        self.stream.write(printable(text) + "\n")
        self.stream.flush()
        self._last = self.clock()

    def show(self, view: View | None) -> None:
        if view is None or not view.building or self.clock() - self._last < self.heartbeat:
            return
        names = ", ".join(f"{label} ({format_seconds(s)})" for label, s in view.building)
        eta = f", ETA {format_seconds(view.eta)}" if view.eta else ""
        self.line(f"still building {names}; {view.done}/{view.total} done{eta}")

    def close(self) -> None:
        pass


class LiveReporter:
    """A transient `rich` display on a terminal: a bar of packages done, the builds running
    now with their time, the ETA. Event lines (failures) print above it and stay."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self.live = Live(console=self.console, transient=True, auto_refresh=False,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def line(self, text: str, *, keep: bool = False) -> None:
        from rich.text import Text

        if keep:  # soft wrap: the terminal folds it, a copied log path stays whole
            self.live.console.print(Text(printable(text)), soft_wrap=True)

    def show(self, view: View | None) -> None:
        self.live.update(self._render(view), refresh=True)

    def _render(self, view: View | None):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        if view is None:
            return Text("planning the run…", style="dim")
        head = Table.grid(padding=(0, 1))
        head.add_row(
            ProgressBar(total=max(view.total, 1), completed=view.done, width=30),
            Text(f"{view.done}/{view.total} packages"),
            Text(f"{view.failed} failed", style="red") if view.failed else Text(""),
            Text(f"ETA {format_seconds(view.eta)}" if view.eta is not None else "ETA ?",
                 style="dim"),
        )
        rows: list[Any] = [head]
        for label, seconds in view.building[:SHOWN_BUILDS]:
            rows.append(Text(f"  building {printable(label)}  {format_seconds(seconds)}"))
        if len(view.building) > SHOWN_BUILDS:
            rows.append(Text(f"  and {len(view.building) - SHOWN_BUILDS} more", style="dim"))
        return Group(*rows)

    def close(self) -> None:
        self.live.stop()


def make_reporter(stream: TextIO, tty: bool) -> Reporter:
    """The live display on a terminal (when rich is installed), else plain lines."""
    if tty:
        try:
            return LiveReporter(stream)
        except Exception:  # rich missing, or a terminal it cannot drive
            log.debug("no live display: plain progress lines", exc_info=True)
    return PlainReporter(stream)


# ------------------------------------------------------------------ watching the run


@dataclass
class Watcher:
    """Polls RunFiles and tells a Reporter what changed. It runs in a thread beside
    Snakemake and must never end the run: any exception is logged once, at debug level."""

    files: RunFiles
    reporter: Reporter
    averages: Mapping[str, float] = field(default_factory=dict)
    slots: int = 1
    interval: float = POLL_SECONDS
    clock: Callable[[], float] = time.time
    #: key -> the status last reported (None: counted silently, a record of an earlier run)
    _seen: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    #: key -> the attempt last reported, and when the watcher first saw the build running
    _attempts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _started: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _plan: Mapping[str, Item] | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _failed_once: bool = field(default=False, init=False, repr=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="refinery-progress",
                                        daemon=True)
        self._thread.start()

    def stop(self, final: bool = True) -> None:
        """End the thread; `final`: one last look, so the last records are reported."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if final:
            self._safe_poll()
        try:
            self.reporter.close()
        except Exception:
            log.debug("progress display did not close cleanly", exc_info=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._safe_poll()
            self._stop.wait(self.interval)

    def _safe_poll(self) -> None:
        try:
            self.poll()
        except Exception:
            if not self._failed_once:
                self._failed_once = True
                log.debug("progress watcher: cannot read the run's records", exc_info=True)

    def poll(self) -> None:
        """One look at the files: a line per new event, then the display."""
        snap = self.files.snapshot()
        if snap is None:
            self.reporter.show(None)
            return
        now = self.clock()
        if self._plan is None or dict(snap.items) != dict(self._plan):
            self._plan = snap.items
            self._announce_plan(snap)
        for key, attempt in sorted(snap.building.items()):
            if self._attempts.get(key) != attempt:
                self._attempts[key] = attempt
                self._started.setdefault(key, now)
                self.reporter.line(f"building {self._label(snap, key)} (attempt {attempt})")
        news = []
        for fin in sorted(snap.finished.values(), key=lambda f: f.key):
            if not fin.fresh:
                self._seen.setdefault(fin.key, None)
            elif self._seen.get(fin.key) != fin.status:
                news.append(fin)
        count = snap.done - len(news)
        for status in ("reused", "fetched"):  # a batch job: one line for all its wheels
            batch = [f for f in news if f.status == status]
            if batch:
                count += len(batch)
                self.reporter.line(f"{self._counter(count, snap.total)} {status} "
                                   f"{len(batch)} wheel{'s' if len(batch) != 1 else ''}")
        for fin in news:
            self._seen[fin.key] = fin.status
            self._attempts.pop(fin.key, None)
            self._started.pop(fin.key, None)
            if fin.status in ("reused", "fetched"):
                continue
            count += 1
            self.reporter.line(f"{self._counter(count, snap.total)} {self._event(snap, fin)}",
                               keep=fin.status == "failed")
        self.reporter.show(self._view(snap, now))

    def _announce_plan(self, snap: Snapshot) -> None:
        actions = [i.action for i in snap.items.values()]
        parts = [f"{actions.count(a)} to {a}" for a in COUNTED if actions.count(a)]
        already = len([f for f in snap.finished.values() if not f.fresh])
        earlier = f"; {already} done by an earlier run" if already else ""
        self.reporter.line(f"plan: {snap.total} package{'s' if snap.total != 1 else ''}"
                           f"{': ' + ', '.join(parts) if parts else ''}{earlier}")

    def _event(self, snap: Snapshot, fin: Finished) -> str:
        label = self._label(snap, fin.key)
        if fin.status == "failed":
            return f"failed {label}: {fin.detail}"
        if fin.status == "built" and fin.duration is not None:
            return f"built {label} in {format_seconds(fin.duration)}"
        return f"{fin.status} {label}"

    def _view(self, snap: Snapshot, now: float) -> View:
        building = tuple(
            (self._label(snap, key) + (f" (attempt {n})" if n > 1 else ""),
             max(now - self._started.get(key, now), 0.0))
            for key, n in sorted(snap.building.items(),
                                 key=lambda kv: self._started.get(kv[0], now))
        )
        pending = [i.name for k, i in snap.items.items()
                   if i.action == "build" and k not in snap.finished and k not in snap.building]
        running = {snap.items[k].name: now - self._started.get(k, now) for k in snap.building}
        return View(
            done=snap.done,
            total=snap.total,
            failed=len([f for f in snap.finished.values() if f.status == "failed"]),
            building=building,
            eta=eta_seconds(pending, running, self.averages, self.slots),
        )

    @staticmethod
    def _label(snap: Snapshot, key: str) -> str:
        item = snap.items.get(key)
        return f"{item.name} {item.version}" if item else key

    @staticmethod
    def _counter(n: int, total: int) -> str:
        return f"[{n:>{len(str(total))}}/{total}]"


# ------------------------------------------------------------------ running Snakemake


def snakemake_log_path(results: Path, run_id: str) -> Path:
    """Where a run's Snakemake output goes without --verbose (every round of one run)."""
    return WorkflowFiles(results).job_log(f"snakemake-{run_id}")


def run_workflow(
    argv: list[str],
    env: dict[str, str],
    settings: Any,
    *,
    verbose: bool,
    stream: TextIO = sys.stderr,
    tty: bool | None = None,
    **proc_kwargs: Any,
) -> int:
    """Run the Snakemake command `argv`, showing progress instead of its output; returns its
    exit status. `proc_kwargs` go to proc.run (forward_signals, interrupt_grace, pass_fds...).

    With `verbose` (or a dry run, whose job list is its output) Snakemake writes to the
    terminal as it is. Otherwise its output goes to results/logs/snakemake-<run id>.log,
    a watcher thread shows the progress on `stream` (live on a terminal, `tty` None asks
    the stream, else plain lines), and a failure that left no manifest of this run prints
    Snakemake's first error line and the log's path. Ctrl-C (or, with forward_signals, a
    SIGINT, SIGTERM or SIGHUP to this process) stops the display and is raised again, as a
    KeyboardInterrupt, once proc.run has let Snakemake stop.
    """
    from . import proc

    kwargs: dict[str, Any] = {"check": False, "capture": False, **proc_kwargs}
    if verbose or _DRY_RUN_FLAGS.intersection(argv):
        return proc.run(argv, env=env, **kwargs).returncode
    paths = settings.paths
    started = time.time()
    run_id = current_run_id(env)
    log_path = snakemake_log_path(paths.results, run_id)
    if tty is None:
        tty = bool(getattr(stream, "isatty", lambda: False)())
    watcher = Watcher(
        RunFiles(paths.results, paths.logs, started),
        make_reporter(stream, tty),
        expected_durations(paths.history_db),
        slots_from_argv(argv),
        interval=POLL_SECONDS,
    )
    watcher.start()
    final = False
    try:
        rc = proc.run(argv, env=env, log_path=log_path, **kwargs).returncode
        final = True
    finally:
        watcher.stop(final=final)
    if rc != 0 and not _fresh(paths.manifest, started):
        why = first_error_line(log_path) or f"exit status {rc}"
        stream.write(f"refinery: snakemake failed: {printable(why)}\n"
                     f"refinery: its output: {log_path}\n")
        stream.flush()
    elif rc == 0 and _nothing_to_do(log_path):
        stream.write("refinery: nothing to be done: every package is up to date\n")
        stream.flush()
    return rc


def _nothing_to_do(log_path: Path) -> bool:
    """Whether Snakemake found every target up to date (its own words, in its log's head)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            return "Nothing to be done" in fh.read(1 << 16)
    except OSError:
        return False


def _fresh(path: Path, since: float) -> bool:
    stamp = _mtime(path)
    return stamp is not None and stamp >= since
