"""The panel's view of the history database: read-only, every result cached per state of the
database and computed once however many requests ask for it at the same moment, and a damaged
database named in one line instead of a traceback.

- Read-only: the panel opens the database with `mode=ro` (`ReadOnlyHistory`) and never runs
  the schema, sets no journal mode, moves or deletes nothing. It reads the schema's version
  (`PRAGMA user_version`) once per state: an older database (or one without the newest
  indexes) is read as it is, slower at most once per state, and the next `refinery run`
  migrates it; a newer one is read too (schema steps only add), and named in one line in the
  log, and in the error of a read that fails on it.
- The state of the history (`history_state`): the database file's inode, mtime, ctime and
  size, the -wal file's mtime and size, and the commit counters SQLite keeps in the database
  header and the -shm file. A run recording events changes it; a reader does not. Every
  query result is kept per state: a page computes each of its aggregations once per history
  state, and serves them from memory until the next change.
- Single flight (`Store.get`): the first request for a result that is missing or older than
  the current state computes it; requests for the same result meanwhile wait for it, or are
  served the value of the previous state when there is one (a page of the history as it was
  a moment ago, instead of sixteen requests computing the same thing at once).
- A damaged database (truncated, overwritten, not SQLite): `HistoryUnavailable`, which the
  app turns into a 503 naming the file, the cause and what to do, for every page that needs
  the history (JSON `{"detail": ...}` under /api/) and `/healthz`. Each state of the file is
  checked by its header (100 bytes: SQLite's magic, its page count against the file's size),
  confirmed by `PRAGMA quick_check` when the header looks wrong; a query that finds damage
  marks the state damaged too. A locked or unreachable database is a 503 for that request
  only.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from refinery_lib.history import (
    STEPS,
    EmptyHistory,
    History,
    ReadOnlyHistory,
    SchemaInfo,
    damage,
    header_damage,
    is_damage,
    newer_message,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

#: what the user can do about a damaged history; the panel itself only reads it
ADVICE = ("`refinery run` sets it aside and starts a fresh one, or move it away; the panel "
          "only reads it")
#: seconds a read waits for a writer's lock (a run commits in milliseconds)
READ_TIMEOUT = 15.0


class HistoryUnavailable(Exception):
    """The history cannot be read now: damaged (`damaged`), or busy or unreachable."""

    def __init__(self, message: str, damaged: bool):
        super().__init__(message)
        self.message = message
        self.damaged = damaged


def damaged_message(path: Path, problem: str) -> str:
    """One line: the file, the cause, what to do."""
    return f"the history database {path} is damaged ({' '.join(problem.split())}): {ADVICE}"


def file_state(path: Path) -> tuple | None:
    """Changes whenever the database file does (and when another file replaces it). WAL mode
    writes the -wal file first; a reader leaves an empty one behind, which is no change."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    state: tuple = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    try:
        wal = os.stat(f"{path}-wal")
    except FileNotFoundError:
        return state
    return state + ((wal.st_mtime_ns, wal.st_size) if wal.st_size else ())


def _head(path: str, size: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.pread(fd, size, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)


def history_state(path: Path) -> tuple | None:
    """The state of the history: `file_state`, and the counters SQLite bumps on every commit
    (https://sqlite.org/fileformat2.html, https://sqlite.org/walformat.html), so a commit is
    seen even within one tick of the file system's clock: the database header (its change
    counter, in rollback mode) and, while the -wal file holds frames, `iChange` and `mxFrame`
    of the first wal-index header in -shm (readers never write them). No SQLite connection:
    a few small reads per request. A reader's first connection making an empty -wal and the
    -shm is no change."""
    fstate = file_state(path)
    if fstate is None:
        return None
    wal = b""
    if len(fstate) > 4:  # the -wal file holds frames
        shm = _head(f"{path}-shm", 20)
        wal = shm[8:12] + shm[16:20]
    return fstate, _head(str(path), 100), wal


class _Flight:
    """One computation under way; the requests that wait for it."""

    __slots__ = ("done", "error", "value", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.waiters = 0


#: results kept per name (one per package, per limit, per queue depth): a walk over every
#: package page must not push the dashboard's results out
MANY = frozenset({"package", "recent", "package_summary", "last_status", "top_failures",
                  "top_slowest", "top_failures.json", "top_slowest.json", "stats.json",
                  "status_counts"})
_local = threading.local()


class Store:
    """One history database's results, per state, computed once (see the module's docstring)."""

    def __init__(self, path: Path, size: int = 256, many: int = 1024):
        self.path = Path(path)
        self._sizes = {False: size, True: many}
        self._lock = threading.Lock()
        self._values: dict[bool, OrderedDict[Hashable, tuple[Hashable, Any]]] = {
            False: OrderedDict(), True: OrderedDict()}
        self._flights: dict[tuple[Hashable, Hashable], _Flight] = {}
        #: computations started, per result name (key[0]): for tests and the bench
        self.computed: Counter[str] = Counter()
        #: the schema version of the database as last read, when newer than this code knows
        self.newer: int | None = None

    # -- the cache ---------------------------------------------------------------------
    def get(self, key: tuple, state: Hashable, compute: Callable[[], T], stale: bool = True) -> T:
        """The value of `key` at `state`: kept, or computed by one request while the others
        wait for it (or, with `stale`, get the value of the previous state at once).

        Within a computation (a result made of others: the dashboard of the frame and the
        cards, ...), a part is never taken stale, which would keep it under the new state:
        it is waited for. That cannot deadlock while parts never need the result they are
        part of (the results form a tree: frame, cards, stats, dashboard, ...)."""
        nested = getattr(_local, "depth", 0) > 0
        values = self._values[key[0] in MANY]
        with self._lock:
            held = values.get(key)
            if held is not None and held[0] == state:
                values.move_to_end(key)
                return held[1]
            under_way = self._flights.get((key, state))
            if under_way is None:
                flight = self._flights[(key, state)] = _Flight()
                self.computed[key[0]] += 1
            elif stale and held is not None and not nested:
                return held[1]
            else:
                under_way.waiters += 1
        if under_way is not None:
            under_way.done.wait()
            if under_way.error is not None:
                raise under_way.error
            return under_way.value
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            value = compute()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
            with self._lock:
                values[key] = (state, value)
                values.move_to_end(key)
                while len(values) > self._sizes[key[0] in MANY]:
                    values.popitem(last=False)
            return value
        finally:
            _local.depth -= 1
            with self._lock:
                self._flights.pop((key, state), None)
            flight.done.set()

    def waiting(self, key: tuple) -> int:
        """How many requests wait for a computation of `key` under way (for tests)."""
        with self._lock:
            return sum(f.waiters for (k, _), f in self._flights.items() if k == key)

    # -- damage ------------------------------------------------------------------------
    def problem(self, fstate: Hashable | None = None) -> str | None:
        """What is wrong with the database file in this state (None: nothing known): its
        header checked once per state, `PRAGMA quick_check` when the header looks wrong."""
        if fstate is None:
            fstate = file_state(self.path)
            if fstate is None:
                return None
        return self.get(("check",), fstate, self._check, stale=False)

    def _check(self) -> str | None:
        if header_damage(self.path) is None:
            return None
        try:
            return damage(self.path)  # the header can be caught mid-checkpoint: SQLite decides
        except sqlite3.OperationalError:
            return None  # busy or locked, not damage; a read that finds damage says so

    def mark_damaged(self, fstate: Hashable, problem: str) -> None:
        with self._lock:
            if self._values[False].get(("check",)) == (fstate, problem):
                return
            self._values[False][("check",)] = (fstate, problem)
        log.warning("%s", damaged_message(self.path, problem))

    def unavailable(self, exc: sqlite3.Error, fstate: Hashable) -> HistoryUnavailable:
        """The error a failed read becomes; damage is remembered for this state of the file."""
        if is_damage(exc):
            self.mark_damaged(fstate, str(exc))
            return HistoryUnavailable(damaged_message(self.path, str(exc)), damaged=True)
        if self.newer is not None:  # a step this panel does not know may be why
            return HistoryUnavailable(f"{newer_message(self.path, self.newer)} (reading it "
                                      f"failed: {exc})", damaged=False)
        return HistoryUnavailable(f"the history database {self.path} could not be read now "
                                  f"({exc}); try again in a moment", damaged=False)

    # -- opening -----------------------------------------------------------------------
    def open(self) -> History:
        """The history as it is now, for one request: read-only and cached per state, or an
        empty stand-in when there is no database (yet); HistoryUnavailable when damaged."""
        state = history_state(self.path)
        if state is None:
            return MissingHistory(self.path, store=self)
        fstate = state[0]
        problem = self.problem(fstate)
        if problem is not None:
            raise HistoryUnavailable(damaged_message(self.path, problem), damaged=True)
        schema = self.get(("schema",), state, lambda: self._schema(fstate), stale=False)
        self._note_version(schema.version)
        if not schema.has_events:
            # a database before its schema (an empty file, a run creating it)
            return MissingHistory(self.path, store=self, exists=True)
        return PanelHistory(self.path, self, state)

    def _schema(self, fstate: Hashable) -> SchemaInfo:
        """The schema's version and whether the events table is there: once per state, its
        first read."""
        try:
            return ReadOnlyHistory(self.path, READ_TIMEOUT).read_schema()
        except sqlite3.DatabaseError as exc:
            raise self.unavailable(exc, fstate) from exc

    def _note_version(self, version: int) -> None:
        """A database newer than this code is served (steps only add), and said once."""
        newer = version if version > len(STEPS) else None
        if newer == self.newer:
            return
        self.newer = newer
        if newer is not None:
            log.warning("%s; the panel shows what this version of it knows",
                        newer_message(self.path, newer))


class MissingHistory(EmptyHistory):
    """The history before its database exists: every query sees no events.

    `History(path)` would create the file (and its folders): started before the first run, or
    with a mistyped path, the panel would leave an empty database where nothing should be, and
    show an empty history as if the path were right. This stands in instead and writes
    nothing, so the page can say that there is no database there yet. With `exists`, it
    stands for a database file that has no tables yet.
    """

    exists = False

    def __init__(self, path: Path, store: Store | None = None, exists: bool = False):
        super().__init__(path)  # no mkdir, no file: only the schema, in memory
        self.store = store
        self.exists = exists
        self.state = ("missing", exists)

    def cached(self, key: tuple, compute: Callable[[], T]) -> T:
        return compute() if self.store is None else self.store.get(key, self.state, compute)


class PanelHistory(ReadOnlyHistory):
    """The history at one state, read-only; its queries are cached for that state."""

    exists = True

    def __init__(self, path: Path, store: Store, state: tuple):  # no mkdir, no schema
        super().__init__(path, READ_TIMEOUT)
        self.store = store
        self.state = state

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = self.open_connection()
        except sqlite3.Error as exc:
            raise self.store.unavailable(exc, self.state[0]) from exc
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            raise self.store.unavailable(exc, self.state[0]) from exc
        finally:
            con.close()

    def cached(self, key: tuple, compute: Callable[[], T]) -> T:
        return self.store.get(key, self.state, compute)

    # History's queries, each once per state; callers get copies they may change
    def last_status(self, package: str, version: str | None = None) -> str | None:
        return self.cached(("last_status", package, version),
                           lambda: History.last_status(self, package, version))

    def recent(self, limit: int = 20, package: str | None = None) -> list[dict[str, Any]]:
        rows = self.cached(("recent", limit, package),
                           lambda: History.recent(self, limit, package))
        return [dict(r) for r in rows]

    def top_failures(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.cached(("top_failures", limit), lambda: History.top_failures(self, limit))
        return [dict(r) for r in rows]

    def top_slowest(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.cached(("top_slowest", limit), lambda: History.top_slowest(self, limit))
        return [dict(r) for r in rows]

    def status_counts(self, run_id: str | None = None) -> dict[str, int]:
        return dict(self.cached(("status_counts", run_id),
                                lambda: History.status_counts(self, run_id)))

    def package_summary(self, package: str) -> dict[str, Any]:
        return dict(self.cached(("package_summary", package),
                                lambda: History.package_summary(self, package)))


def cached(history: History, key: tuple, compute: Callable[[], T]) -> T:
    """`compute()` once per state of the panel's history; every time for any other History
    (a test's, the worker's)."""
    # getattr, not isinstance: routes get a LazyHistory, which hands on every attribute
    own: Callable[[tuple, Callable[[], T]], T] | None = getattr(history, "cached", None)
    return compute() if own is None else own(key, compute)


_stores: OrderedDict[str, Store] = OrderedDict()
_stores_lock = threading.Lock()


def store_for(path: Path, most: int = 16) -> Store:
    """The one Store of a database path in this process."""
    key = os.path.abspath(path)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(Path(path))
            while len(_stores) > most:
                _stores.popitem(last=False)
        _stores.move_to_end(key)
        return store


def open_history(path: Path) -> History:
    """The history at `path` for one request (see Store.open)."""
    return store_for(path).open()


class LazyHistory:
    """What `get_history` hands a route: the history of `open_history`, opened on first use,
    in the route's own thread (the dependency runs on the event loop, so a page costs no
    extra trip through the thread pool; a route that never looks opens nothing)."""

    def __init__(self, path: Path):
        self._path = path
        self._history: History | None = None

    def _open(self) -> History:
        if self._history is None:
            self._history = open_history(self._path)
        return self._history

    def __getattr__(self, name: str) -> Any:
        return getattr(self._open(), name)
