"""SQLite history of every event: what the panel charts and what adaptive ordering learns from."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .safe_env import known_secrets, redact, redact_data

SCHEMA = """
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

#: per package, over the outcome events of real builds (`cached` events repeat an earlier
#: build's duration, `attempt` events duplicate their outcome): builds and failures with a
#: duration, their average and longest duration, the peak memory. One indexed range per
#: status (events_status_package_*), summed: with `status IN (...)` SQLite walked the
#: (package, ts) index over every event instead (seconds at a million events).
BUILD_STATS_SQL = """
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
    f"SELECT package, avg_duration, builds, failures FROM ({BUILD_STATS_SQL})"  # noqa: S608
    " WHERE builds > 0 ORDER BY avg_duration DESC LIMIT ?"
)

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
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    return (f"the history database {path} is damaged ({problem}): set aside as {aside.name}, "
            "starting a fresh one")


class History:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.executescript(SCHEMA)

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

    # -- queries ---------------------------------------------------------------------
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
        sql = "SELECT * FROM events"
        args: list[Any] = []
        if package:
            sql += " WHERE package=?"
            args.append(package)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(limit)
        with self.connect() as con:
            return [_row(r) for r in con.execute(sql, args)]

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


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    try:
        d["metadata"] = json.loads(d.get("metadata") or "{}")
    except json.JSONDecodeError:
        d["metadata"] = {}
    return d
