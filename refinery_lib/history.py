"""SQLite history of every event: what the panel charts and what adaptive ordering learns from.

Every SQL statement against the history database is in this module (a test checks that no
other module of refinery_lib, web or bench opens a connection, runs a statement or holds the
text of one): the others call named methods. Statistics come back typed (NamedTuples); event
rows and the top lists stay dicts of their columns, which the panel's JSON, its templates and
`refinery history` print as they are.

- `History(path)`: read-write, for runs. Creates the file, sets WAL, and brings the schema
  to the current version (`migrate`).
- `ReadOnlyHistory(path)`: `mode=ro`, for the panel, the scheduler and the attempt policy:
  never runs the schema and never writes; reads a database of any version.
- `EmptyHistory(path)`: no file at all, the current schema in memory (the panel before the
  first run).

The schema is versioned (`PRAGMA user_version`): `STEPS[n]` takes a database from version n
to n + 1, each step with its new version in one `BEGIN IMMEDIATE` transaction. Step 1 is
the schema every unversioned database has (`CREATE ... IF NOT EXISTS`: a version-0 database
with the tables keeps every row and gains the indexes it lacks). A step only adds tables,
columns with defaults or indexes, so a reader that knows fewer steps keeps working on a newer
database; a writer does not (`History` refuses a database newer than it knows).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from .errors import RefineryError
from .run_id import stamp
from .safe_env import known_secrets, redact, redact_data

#: version 1: the schema as it was before versions (every unversioned database has it)
_STEP_1 = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    package TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    python_tag TEXT NOT NULL DEFAULT '',
    platform_tag TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_package_ts ON events(package, ts);
CREATE INDEX IF NOT EXISTS events_status_ts ON events(status, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
-- top failures: a covering range scan of one status, already grouped by package
CREATE INDEX IF NOT EXISTS events_status_package_ts ON events(status, package, ts);
-- build durations (top slowest, scheduling): no JSON parsing of rows that are not builds
CREATE INDEX IF NOT EXISTS events_status_package_duration
    ON events(status, package, json_extract(metadata, '$.duration'));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    python_tag TEXT NOT NULL DEFAULT '',
    platform_tag TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT '{}'
);
"""

#: A step: an SQL script (statements separated by `;`) or a function of the connection,
#: run inside the step's transaction (no COMMIT of its own).
Step = str | Callable[[sqlite3.Connection], None]
#: the schema's steps in order: STEPS[n] takes a database from user_version n to n + 1.
#: Append a step for every change, never edit one that has shipped; a step only adds
#: (tables, columns with a default, indexes), so older readers keep working.
STEPS: tuple[Step, ...] = (_STEP_1,)
#: the schema version this code makes and knows
VERSION = len(STEPS)

#: per package, over the outcome events of real builds (`cached` events repeat an earlier
#: build's duration, `attempt` events duplicate their outcome): builds and failures with a
#: duration, their average and longest duration, the peak memory. One indexed range per
#: status (events_status_package_*), summed: with `status IN (...)` SQLite walked the
#: (package, ts) index over every event instead (seconds at a million events).
_BUILD_STATS_SQL = """
SELECT package, SUM(n) AS builds, SUM(failed) AS failures,
       SUM(total) / SUM(n) AS avg_duration, MAX(longest) AS max_duration,
       MAX(rss) AS peak_rss_mb
FROM (
    SELECT package, COUNT(json_extract(metadata, '$.duration')) AS n, 0 AS failed,
           SUM(json_extract(metadata, '$.duration')) AS total,
           MAX(json_extract(metadata, '$.duration')) AS longest,
           MAX(json_extract(metadata, '$.max_rss_mb')) AS rss
    FROM events WHERE status = 'built' GROUP BY package
    UNION ALL
    SELECT package, COUNT(json_extract(metadata, '$.duration')),
           COUNT(json_extract(metadata, '$.duration')),
           SUM(json_extract(metadata, '$.duration')),
           MAX(json_extract(metadata, '$.duration')),
           MAX(json_extract(metadata, '$.max_rss_mb'))
    FROM events WHERE status = 'failed' GROUP BY package
)
GROUP BY package
"""
_TOP_SLOWEST_SQL = (
    f"SELECT package, avg_duration, builds, failures FROM ({_BUILD_STATS_SQL})"  # noqa: S608
    " WHERE builds > 0 ORDER BY avg_duration DESC LIMIT ?"
)
_BUILD_OBSERVATIONS_SQL = (
    "SELECT package, builds, avg_duration, max_duration, peak_rss_mb"  # noqa: S608
    f" FROM ({_BUILD_STATS_SQL})"
)
#: per package, the status of its newest outcome event; a package with only attempt (or
#: system_recipe) events so far has no outcome yet and shows as "pending"
_PACKAGE_STATUS_SQL = """
SELECT status, COUNT(*) AS n FROM (
    SELECT package,
           COALESCE((SELECT o.status FROM events o WHERE o.package = p.package
                     AND o.status IN ({outcomes})
                     ORDER BY o.ts DESC, o.id DESC LIMIT 1), 'pending') AS status
    FROM (SELECT DISTINCT package FROM events) p
) GROUP BY status
"""
_CHART_EVENTS_SQL = (
    "SELECT ts, package, version, status, detail,"
    " json_extract(metadata,'$.duration') AS duration,"
    " json_extract(metadata,'$.variant') AS variant,"
    " json_extract(metadata,'$.attempt') AS attempt,"
    " json_extract(metadata,'$.success') AS success FROM events"
)

#: the columns of `History.bulk_load`'s rows, in order
EVENT_COLUMNS = ("uid", "run_id", "ts", "package", "version", "python_tag", "platform_tag",
                 "status", "detail", "metadata")
RUN_COLUMNS = ("run_id", "started", "finished", "python_tag", "platform_tag", "summary")

EVENT_FIELDS = ("package", "version", "python_tag", "platform_tag", "status", "detail", "metadata")


def new_event(
    package: str, version: str, status: str, detail: str = "", **metadata: Any
) -> dict[str, Any]:
    """An event as jobs write it into their outcome files; `uid` makes recording idempotent."""
    return {
        "uid": uuid.uuid4().hex,
        "ts": time.time(),
        "package": package,
        "version": version,
        "status": str(status),
        "detail": detail,
        "metadata": metadata,
    }


#: SQLite's result codes for a file it cannot read as a database (extended codes such as
#: SQLITE_CORRUPT_INDEX start the same way)
DAMAGE_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def is_damage(exc: BaseException) -> bool:
    """Whether an error of sqlite3 says the database file itself is damaged (truncated,
    overwritten, not a database), rather than busy, locked or unreachable for now."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None) or ""
    text = str(exc)
    return name.startswith(DAMAGE_CODES) or "malformed" in text or "not a database" in text


def damage(path: Path) -> str | None:
    """What is wrong with the history database at `path` (`PRAGMA quick_check`, read-only:
    nothing is written, not even a -wal file's checkpoint), or None when it is sound or
    absent. Busy or locked is not damage: that error is raised."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and not is_damage(exc):
            raise
        return " ".join(str(exc).split())
    if rows == [("ok",)]:
        return None
    # one line: quick_check's rows can hold newlines ("*** in database main ***\n...")
    return " ".join("; ".join(str(r[0]) for r in rows[:3]).split())


def header_damage(path: Path) -> str | None:
    """A cheap look at the file's first 100 bytes (no SQLite, no lock): not an SQLite file,
    or shorter than the pages its header counts (a truncated copy). None says only that the
    header looks right; `damage` is the real check."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return None
    if not head:
        return None  # an empty file is an empty database
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return "file is not a database"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    # the page count is valid when the change counter matches version-valid-for
    if head[24:28] == head[92:96] and pages and size < pages * page_size:
        return f"truncated: {size} bytes of the {pages * page_size} its header counts"
    return None


def set_aside_if_damaged(path: Path) -> str | None:
    """A history database SQLite cannot read whole (`PRAGMA quick_check`) is renamed to
    `<name>.damaged-<time>` (with its -wal and -shm files), never deleted, so the run starts
    a fresh one; returns the one line to tell the user, or None when it is sound or absent."""
    path = Path(path)
    try:
        problem = damage(path)
    except sqlite3.DatabaseError as exc:
        problem = str(exc)
    if problem is None:
        return None
    aside = path.with_name(f"{path.name}.damaged-{stamp(utc=False)}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    return (f"the history database {path} is damaged ({problem}): set aside as {aside.name}, "
            "starting a fresh one")


class SchemaTooNew(RefineryError):
    """The database was made by a newer refinery: this one does not write to it."""

    def __init__(self, path: Path | str, found: int):
        super().__init__(newer_message(path, found))
        self.path = Path(path)
        self.found = found


def newer_message(path: Path | str, found: int) -> str:
    """One line: the database's schema version is newer than this code knows."""
    return (f"the history database {path} has schema version {found}, newer than this "
            f"refinery knows ({len(STEPS)}): upgrade the refinery, or use another history "
            "database")


class SchemaInfo(NamedTuple):
    """What a reader sees of the schema."""

    version: int  # PRAGMA user_version (0: unversioned, or no schema yet)
    has_events: bool  # the events table is there


class ChartEvent(NamedTuple):
    """An event with the metadata fields the panel's charts need, as columns."""

    ts: float
    package: str
    version: str
    status: str
    detail: str
    duration: Any  # json_extract: a number as recorded, or None
    variant: Any
    attempt: Any
    success: Any


class BuildStats(NamedTuple):
    """One package's real builds (built and failed events with a duration), all versions
    and runs, as recorded (no conversion)."""

    builds: int
    avg_duration: float | None
    max_duration: float | None
    peak_rss_mb: float | None


class AttemptTiming(NamedTuple):
    """When one build attempt ended, and how long it took (None: not recorded)."""

    package: str
    end: float
    duration: float | None


def _statements(script: str) -> list[str]:
    """The statements of an SQL script, one by one (`executescript` would commit first)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


def user_version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection, path: Path | str = "") -> int:
    """Bring the database of `con` (a connection in autocommit mode: isolation_level None)
    to the current version, step by step; returns the version it found. Each step and its
    new user_version commit together under `BEGIN IMMEDIATE`, and the version is read again
    under that lock: of several processes opening an old database at once, one migrates and
    the others find it done. A step that fails rolls back whole (the version stays). A
    database newer than this code raises SchemaTooNew and is left as it is."""
    found = version = user_version(con)
    while version < len(STEPS):
        con.execute("BEGIN IMMEDIATE")
        try:
            version = user_version(con)
            if version < len(STEPS):
                step = STEPS[version]
                if isinstance(step, str):
                    for statement in _statements(step):
                        con.execute(statement)
                else:
                    step(con)
                version += 1
                con.execute(f"PRAGMA user_version = {version}")
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    if version > len(STEPS):
        raise SchemaTooNew(path, version)
    return found


class History:
    """The history database, read-write (a run's): opening it creates the file and brings
    its schema to the current version."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            migrate(con, self.path)
        finally:
            con.close()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
            with con:
                yield con
        finally:
            con.close()

    @classmethod
    def bulk_load(cls, path: Path, events: Iterable[Sequence[Any]],
                  runs: Iterable[Sequence[Any]] = ()) -> History:
        """A new database at `path` (replacing one there, with its -wal and -shm) holding
        `events` (rows in EVENT_COLUMNS order, metadata as JSON text, nothing redacted) and
        `runs` (RUN_COLUMNS order): the bench's synthetic histories. The current schema, no
        journal while loading, one transaction, the indexes made after the rows (a million
        events: about 20 s), ANALYZE, then WAL as a run leaves it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.execute("PRAGMA cache_size=-262144")  # 256 MiB: the index builds stay in memory
            migrate(con, path)
            indexes = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                  " AND sql IS NOT NULL ORDER BY rowid").fetchall()
            for name, _ in indexes:
                con.execute(f'DROP INDEX "{name}"')
            con.execute("BEGIN")
            con.executemany(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)})"  # noqa: S608
                            f" VALUES ({','.join('?' * len(EVENT_COLUMNS))})", events)
            con.executemany(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)})"  # noqa: S608
                            f" VALUES ({','.join('?' * len(RUN_COLUMNS))})", runs)
            con.execute("COMMIT")
            for _, sql in indexes:
                con.execute(sql)
            con.execute("ANALYZE")
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
        return cls(path)

    def record(
        self,
        events: Iterable[dict[str, Any]],
        run_id: str,
        python_tag: str = "",
        platform_tag: str = "",
    ) -> int:
        """Insert events not seen before (by uid); returns how many were new. Known secrets
        are redacted on the way in (`safe_env`): the panel shows the history to anyone."""
        secrets = known_secrets()
        rows = []
        for ev in events:
            rows.append(
                (
                    ev.get("uid") or uuid.uuid4().hex,
                    run_id,
                    float(ev.get("ts") or time.time()),
                    ev["package"],
                    ev.get("version", ""),
                    ev.get("python_tag", python_tag),
                    ev.get("platform_tag", platform_tag),
                    str(ev["status"]),
                    redact(ev.get("detail", ""), secrets),
                    json.dumps(redact_data(ev.get("metadata", {}), secrets), sort_keys=True,
                               default=str),
                )
            )
        with self.connect() as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO events (uid, run_id, ts, package, version, python_tag,"
                " platform_tag, status, detail, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            return con.total_changes - before

    def start_run(self, run_id: str, python_tag: str, platform_tag: str) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT OR IGNORE INTO runs (run_id, started, python_tag, platform_tag)"
                " VALUES (?,?,?,?)",
                (run_id, time.time(), python_tag, platform_tag),
            )

    def finish_run(self, run_id: str, summary: dict[str, int]) -> None:
        with self.connect() as con:
            con.execute(
                "UPDATE runs SET finished=?, summary=? WHERE run_id=?",
                (time.time(), json.dumps(summary, sort_keys=True), run_id),
            )

    # -- queries (every kind of History) ----------------------------------------------
    def read_schema(self) -> SchemaInfo:
        """The schema's version, and whether the events table is there (a database before
        its schema has none: an empty file, a run creating it)."""
        with self.connect() as con:
            version = user_version(con)
            try:
                con.execute("SELECT max(id) FROM events").fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return SchemaInfo(version, False)
                raise
        return SchemaInfo(version, True)

    def last_status(self, package: str, version: str | None = None) -> str | None:
        """Last outcome status (attempt events ignored) of a package, optionally one version."""
        sql = (
            "SELECT status FROM events"
            " WHERE package=? AND status NOT IN ('attempt','system_recipe')"
        )
        args: list[Any] = [package]
        if version:
            sql += " AND version=?"
            args.append(version)
        sql += " ORDER BY ts DESC, id DESC LIMIT 1"
        with self.connect() as con:
            row = con.execute(sql, args).fetchone()
        return row["status"] if row else None

    def recent(self, limit: int = 20, package: str | None = None) -> list[dict[str, Any]]:
        """The newest events (of one package), newest first, as dicts with every column and
        the metadata decoded."""
        return self._newest(limit, package=package)

    def events_with_status(self, status: str, limit: int = 10,
                           package: str | None = None) -> list[dict[str, Any]]:
        """The newest events of one status (of one package), as `recent` gives them."""
        return self._newest(limit, status=status, package=package)

    def _newest(self, limit: int, **equal: str | None) -> list[dict[str, Any]]:
        """The newest `limit` events whose columns (this code's names, never a caller's)
        have the given values; a value None or empty does not filter."""
        where = [(f"{column}=?", value) for column, value in equal.items() if value]
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(test for test, _ in where)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        with self.connect() as con:
            return [_row(r) for r in con.execute(sql, [v for _, v in where] + [limit])]

    def top_failures(self, limit: int = 10) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute(
                "SELECT package, COUNT(*) AS failures, MAX(ts) AS last_ts FROM events"
                " WHERE status='failed' GROUP BY package ORDER BY failures DESC, last_ts DESC"
                " LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]

    def top_slowest(self, limit: int = 10) -> list[dict[str, Any]]:
        """Packages by average build duration (built/failed events), with failure counts."""
        with self.connect() as con:
            rows = con.execute(_TOP_SLOWEST_SQL, (limit,)).fetchall()
        return [dict(r) for r in rows]

    def status_counts(self, run_id: str | None = None) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) AS n FROM events"
        args: list[Any] = []
        if run_id:
            sql += " WHERE run_id=?"
            args.append(run_id)
        sql += " GROUP BY status"
        with self.connect() as con:
            return {r["status"]: r["n"] for r in con.execute(sql, args)}

    def package_summary(self, package: str) -> dict[str, Any]:
        with self.connect() as con:
            row = con.execute(
                "SELECT COUNT(*) AS events, SUM(status='built') AS built,"
                " SUM(status='failed') AS failed,"
                " AVG(CASE WHEN status IN ('built','failed')"
                "     THEN json_extract(metadata,'$.duration') END) AS avg_duration,"
                " MAX(ts) AS last_ts FROM events WHERE package=?",
                (package,),
            ).fetchone()
        summary = dict(row)
        summary["package"] = package
        summary["last_status"] = self.last_status(package)
        return summary

    def packages_by_status(self, outcomes: Sequence[str]) -> dict[str, int]:
        """How many packages are in each state: per package, the status of its newest event
        whose status is one of `outcomes`, "pending" when it has none yet."""
        sql = _PACKAGE_STATUS_SQL.format(outcomes=",".join("?" * len(outcomes)))
        with self.connect() as con:
            rows = con.execute(sql, tuple(outcomes)).fetchall()
        return {r["status"]: r["n"] for r in rows}

    def chart_events(self, package: str | None = None,
                     limit: int = 50_000) -> list[ChartEvent]:
        """The newest `limit` events (of one package), newest first, with the metadata
        fields the charts need."""
        sql = _CHART_EVENTS_SQL
        args: list[Any] = []
        if package:
            sql += " WHERE package=?"
            args.append(package)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(limit)
        with self.connect() as con:
            cur = con.cursor()
            cur.row_factory = None
            return list(map(ChartEvent._make, cur.execute(sql, args).fetchall()))

    def build_stats(self) -> dict[str, BuildStats]:
        """Per package, its real builds' statistics (one grouped query over the status
        indexes); {} for a database before its schema."""
        try:
            with self.connect() as con:
                rows = con.execute(_BUILD_OBSERVATIONS_SQL).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
        return {r[0]: BuildStats(*r[1:]) for r in rows}

    def attempt_metadata(self, package: str) -> list[dict[str, Any]]:
        """The metadata of every attempt event of `package`, oldest first as stored (an
        entry that is not JSON is left out)."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT metadata FROM events WHERE package=? AND status='attempt'", (package,)
            ).fetchall()
        out = []
        for (raw,) in rows:
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return out

    def attempt_timings(self, run_id: str) -> list[AttemptTiming]:
        """Every build attempt of one run: package, when it ended, its duration."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT package, ts, json_extract(metadata, '$.duration') FROM events"
                " WHERE run_id = ? AND status = 'attempt'", (run_id,)).fetchall()
        return [AttemptTiming(*r) for r in rows]


class ReadOnlyHistory(History):
    """The history database read-only (`mode=ro`): never creates the file, runs no schema,
    sets no journal mode, writes nothing (SQLite refuses). For readers while runs write:
    the panel, the scheduler, the attempt policy. A database of an older version is read
    as it is (a run migrates it); of a newer one too (steps only add)."""

    def __init__(self, path: Path, timeout: float = 60.0):  # no mkdir, no schema
        self.path = Path(path)
        self.timeout = timeout

    def open_connection(self) -> sqlite3.Connection:
        """A new read-only connection (rows as sqlite3.Row); the caller closes it."""
        con = sqlite3.connect(f"{Path(os.path.abspath(self.path)).as_uri()}?mode=ro", uri=True,
                              timeout=self.timeout, check_same_thread=False)
        con.row_factory = sqlite3.Row
        return con

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = self.open_connection()
        try:
            yield con
        finally:
            con.close()


def newer_schema(path: Path) -> str | None:
    """The one line to refuse a run with, before it builds anything, when the database at
    `path` was made by a newer refinery (`History` would refuse it at the end, when the run
    records its events); None when it is absent, not newer, or unreadable (that is
    `damage`'s to say). Read-only."""
    if not Path(path).exists():
        return None
    try:
        version = ReadOnlyHistory(path).read_schema().version
    except sqlite3.Error:
        return None
    return newer_message(path, version) if version > len(STEPS) else None


class EmptyHistory(History):
    """A history with no events and no file: the current schema in memory. `path` only
    names where the database would be; nothing is created there."""

    def __init__(self, path: Path | str = ":memory:"):  # no mkdir, no file
        self.path = Path(path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(":memory:", isolation_level=None)
        try:
            migrate(con)
            con.isolation_level = "DEFERRED"  # sqlite3's default, as History.connect has it
            con.row_factory = sqlite3.Row
            with con:
                yield con
        finally:
            con.close()


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    try:
        d["metadata"] = json.loads(d.get("metadata") or "{}")
    except json.JSONDecodeError:
        d["metadata"] = {}
    return d
