import ast
import json
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from refinery_lib.history import History, new_event


def _ev(pkg, status, ver="1.0", **meta):
    return new_event(pkg, ver, status, f"{pkg} {status}", **meta)


def test_record_is_idempotent_by_uid(tmp_path):
    h = History(tmp_path / "h.db")
    events = [_ev("a", "built", duration=2.0), _ev("b", "failed", duration=4.0)]
    assert h.record(events, "run1", "cp311", "manylinux2014_s390x") == 2
    assert h.record(events, "run2") == 0
    rows = (
        sqlite3.connect(tmp_path / "h.db")
        .execute("SELECT package, run_id, python_tag, platform_tag FROM events ORDER BY package")
        .fetchall()
    )
    assert rows == [
        ("a", "run1", "cp311", "manylinux2014_s390x"),
        ("b", "run1", "cp311", "manylinux2014_s390x"),
    ]


def test_queries(tmp_path):
    h = History(tmp_path / "h.db")
    h.record(
        [
            _ev("a", "built", duration=10.0),
            _ev("a", "failed", duration=2.0),
            _ev("b", "failed", duration=1.0),
            _ev("b", "failed", duration=1.0),
            _ev("b", "attempt"),
            _ev("c", "reused"),
        ],
        "r",
    )
    assert [f["package"] for f in h.top_failures()] == ["b", "a"]
    slow = h.top_slowest()
    assert slow[0]["package"] == "a" and slow[0]["avg_duration"] == 6.0
    assert slow[0]["failures"] == 1
    assert h.status_counts() == {"built": 1, "failed": 3, "attempt": 1, "reused": 1}
    assert h.last_status("b") == "failed"  # the attempt event does not count
    s = h.package_summary("a")
    assert (s["built"], s["failed"], s["avg_duration"]) == (1, 1, 6.0)
    assert h.recent(2, "b")[0]["metadata"] == {}
    assert isinstance(h.recent(1)[0]["metadata"], dict)


def test_runs_table(tmp_path):
    h = History(tmp_path / "h.db")
    h.start_run("r1", "cp311", "native")
    h.finish_run("r1", {"built": 2})
    row = (
        sqlite3.connect(tmp_path / "h.db").execute("SELECT summary, finished FROM runs").fetchone()
    )
    assert json.loads(row[0]) == {"built": 2} and row[1] is not None


def _writer(path, n):
    h = History(path)
    for i in range(n):
        h.record([new_event(f"p{i}", "1", "built")], "r")


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "h.db"
    History(path)
    procs = [multiprocessing.Process(target=_writer, args=(path, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 100


def test_panel_and_scheduling_queries_read_one_status_range(tmp_path, sql_trace):
    """Top failures, top slowest and the scheduler's statistics search the (status, package)
    indexes instead of scanning every event: the plans that took seconds at a million events."""
    import refinery_lib.history as history_mod
    from refinery_lib import scheduling

    h = History(tmp_path / "h.db")
    h.record(
        [_ev(f"p{i % 7}", "built", f"1.{i}", duration=i, max_rss_mb=10) for i in range(60)]
        + [_ev(f"p{i}", s, duration=1.0) for i in range(30) for s in ("failed", "reused")],
        "run1",
    )
    statements = sql_trace(history_mod)
    assert h.top_failures(5) and h.top_slowest(5)
    scheduling._load.cache_clear()
    assert scheduling.observations(h.path)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3
    con = sqlite3.connect(h.path)
    for sql in selects:
        plan = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql)]
        on_events = [p for p in plan if " events" in p]
        assert on_events and all("INDEX events_status_package" in p for p in on_events), (
            sql,
            plan,
        )


def test_a_damaged_database_is_set_aside_never_deleted(tmp_path):
    from refinery_lib.history import History, set_aside_if_damaged

    db = tmp_path / "history.db"
    assert set_aside_if_damaged(db) is None  # none yet
    History(db).record([{"package": "p", "status": "built"}], "r1")
    assert set_aside_if_damaged(db) is None  # sound
    db.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    note = set_aside_if_damaged(db)
    assert note and "is damaged" in note and "starting a fresh one" in note
    assert not db.exists()
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("history.db.damaged-")
                and not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes().startswith(b"SQLite format 3")


def test_damage_is_named_read_only_and_busy_is_not_damage(tmp_path):
    """`damage` (PRAGMA quick_check) and `header_damage` (the file's first 100 bytes) on
    real files: absent, sound, empty, cut to half, random bytes. Neither changes the file."""
    import os

    from refinery_lib.history import damage, header_damage, is_damage

    db = tmp_path / "history.db"
    assert damage(db) is None and header_damage(db) is None  # none yet
    History(db).record([_ev(f"p{i}", "built", duration=1.0) for i in range(300)], "r1")
    assert damage(db) is None and header_damage(db) is None  # sound
    data = db.read_bytes()
    half = tmp_path / "half.db"
    half.write_bytes(data[: len(data) // 2])
    assert header_damage(half).startswith(f"truncated: {len(data) // 2} bytes of the ")
    assert damage(half) == "database disk image is malformed"
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(len(data)))
    assert header_damage(junk) == damage(junk) == "file is not a database"
    empty = tmp_path / "empty.db"
    empty.touch()
    assert header_damage(empty) is None and damage(empty) is None  # an empty database
    assert half.read_bytes() == data[: len(data) // 2]  # only read
    assert is_damage(sqlite3.DatabaseError("database disk image is malformed"))
    assert not is_damage(sqlite3.OperationalError("database is locked"))


# -- the schema's versions ---------------------------------------------------------------------

#: the schema as History ran it before versions, a statement a line (copied, never imported:
#: it must not change with the code); the first databases lacked the last two indexes
UNVERSIONED_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL"
    " UNIQUE, run_id TEXT NOT NULL, ts REAL NOT NULL, package TEXT NOT NULL, version TEXT NOT"
    " NULL DEFAULT '', python_tag TEXT NOT NULL DEFAULT '', platform_tag TEXT NOT NULL DEFAULT"
    " '', status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', metadata TEXT NOT NULL"
    " DEFAULT '{}')",
    "CREATE INDEX IF NOT EXISTS events_package_ts ON events(package, ts)",
    "CREATE INDEX IF NOT EXISTS events_status_ts ON events(status, ts)",
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts)",
    "CREATE INDEX IF NOT EXISTS events_run ON events(run_id)",
    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started REAL NOT NULL, finished"
    " REAL, python_tag TEXT NOT NULL DEFAULT '', platform_tag TEXT NOT NULL DEFAULT '', summary"
    " TEXT NOT NULL DEFAULT '{}')",
    "CREATE INDEX IF NOT EXISTS events_status_package_ts ON events(status, package, ts)",
    "CREATE INDEX IF NOT EXISTS events_status_package_duration"
    " ON events(status, package, json_extract(metadata, '$.duration'))",
]
FIRST_SCHEMA = UNVERSIONED_SCHEMA[:-2]


def _unversioned_db(path, schema=UNVERSIONED_SCHEMA):
    """A database as History made it before versions: user_version 0, rows in both tables
    (one with empty metadata)."""
    con = sqlite3.connect(path)
    for statement in schema:
        con.execute(statement)
    con.executemany(
        "INSERT INTO events (uid, run_id, ts, package, version, python_tag, platform_tag,"
        " status, detail, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(f"u{i}", "r1", 1000.0 + i, f"p{i % 3}", "1.0", "cp311", "native",
          ("built", "failed", "attempt")[i % 3], f"d{i}",
          json.dumps({"duration": float(i), "variant": "isolated", "ok": i % 2 == 0}))
         for i in range(30)] + [("odd", "r1", 2000.0, "p9", "", "", "", "failed", "", "{}")])
    con.execute("INSERT INTO runs (run_id, started, finished, summary) VALUES"
                " ('r1', 1.0, 2.0, '{\"built\": 10}')")
    con.commit()
    con.execute("PRAGMA journal_mode=WAL")
    con.close()


def _dump(path):
    con = sqlite3.connect(path)
    try:
        return {"events": con.execute("SELECT * FROM events ORDER BY id").fetchall(),
                "runs": con.execute("SELECT * FROM runs ORDER BY run_id").fetchall(),
                "version": con.execute("PRAGMA user_version").fetchone()[0],
                # as written, but for the spacing
                "schema": sorted((kind, name, table, re.sub(r"\s+", "", sql or "")) for
                                 kind, name, table, sql in con.execute(
                                     "SELECT type, name, tbl_name, sql FROM sqlite_master"
                                     " WHERE name NOT LIKE 'sqlite_%'"))}
    finally:
        con.close()


@pytest.mark.parametrize("schema", [UNVERSIONED_SCHEMA, FIRST_SCHEMA], ids=["today", "first"])
def test_an_unversioned_database_is_migrated_keeping_every_row(tmp_path, schema):
    """A database made before versions (user_version 0, the tables there) is version 1:
    every row stays, the indexes it lacks are made, user_version is set, and it then has
    exactly the schema a new database gets."""
    from refinery_lib.history import VERSION, migrate

    db = tmp_path / "old.db"
    _unversioned_db(db, schema)
    before = _dump(db)
    assert before["version"] == 0 and len(before["events"]) == 31
    h = History(db)
    after = _dump(db)
    assert after["version"] == VERSION >= 1
    assert after["events"] == before["events"] and after["runs"] == before["runs"]
    assert after["schema"] == _dump(History(tmp_path / "new.db").path)["schema"]
    assert {"events_status_package_ts", "events_status_package_duration"} <= {
        name for kind, name, _, _ in after["schema"] if kind == "index"}
    # and it reads as before
    assert h.status_counts() == {"built": 10, "failed": 11, "attempt": 10}
    assert h.recent(1, "p9")[0]["metadata"] == {}
    con = sqlite3.connect(db, isolation_level=None)
    assert migrate(con, db) == VERSION  # found current: nothing to do
    con.close()


def test_opening_twice_is_idempotent_and_runs_no_schema(tmp_path, sql_trace):
    import refinery_lib.history as history_mod

    db = tmp_path / "h.db"
    History(db).record([_ev("a", "built", duration=1.0)], "r1")
    before = _dump(db)
    statements = sql_trace(history_mod)
    History(db)
    History(db)
    ran = list(statements)
    assert _dump(db) == before
    # the version is read, nothing is written: no CREATE, no user_version set, no BEGIN
    assert ran == ["PRAGMA journal_mode=WAL", "PRAGMA user_version"] * 2


def test_a_database_from_the_future_is_named_left_alone_and_still_read(tmp_path):
    """History (a run writes) refuses a database newer than it knows, in one line naming the
    file and both versions; readers read it (steps only add)."""
    from refinery_lib import attempts, scheduling
    from refinery_lib.errors import RefineryError
    from refinery_lib.history import (
        VERSION,
        ReadOnlyHistory,
        SchemaInfo,
        SchemaTooNew,
        newer_schema,
    )

    db = tmp_path / "h.db"
    History(db).record([_ev("a", "built", duration=3.0),
                        _ev("a", "attempt", variant="isolated", ok=True)], "r1")
    assert newer_schema(db) is None
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {VERSION + 2}")
    con.commit()
    con.close()
    data = db.read_bytes()
    with pytest.raises(SchemaTooNew) as caught:
        History(db)
    message = str(caught.value)
    assert isinstance(caught.value, RefineryError) and "\n" not in message
    assert message == (f"the history database {db} has schema version {VERSION + 2}, newer "
                       f"than this refinery knows ({VERSION}): upgrade the refinery, or use "
                       "another history database")
    assert db.read_bytes() == data
    assert newer_schema(db) == message and newer_schema(tmp_path / "none.db") is None
    ro = ReadOnlyHistory(db)
    assert ro.read_schema() == SchemaInfo(VERSION + 2, True)
    assert ro.status_counts() == {"built": 1, "attempt": 1}
    assert attempts.variant_stats(db, "a") == {"isolated": (1, 1)}
    scheduling._load.cache_clear()
    assert scheduling.observations(db)["a"].avg_duration == 3.0
    assert db.read_bytes() == data


def _open(path):
    History(path)


def test_later_steps_run_in_order_once_each_even_when_opened_at_once(tmp_path, monkeypatch):
    """Steps after the first (an SQL script, a function) take a database one version at a
    time; four processes opening an unversioned database at once apply each step once (a
    second ALTER TABLE ... ADD COLUMN would fail)."""
    import multiprocessing

    import refinery_lib.history as history_mod

    def step_3(con):
        con.execute("UPDATE events SET note = 'from step 3' WHERE status = 'failed'")

    steps = (*history_mod.STEPS,
             "ALTER TABLE events ADD COLUMN note TEXT NOT NULL DEFAULT '';\n"
             "CREATE INDEX IF NOT EXISTS events_note ON events(note);\n",
             step_3)
    monkeypatch.setattr(history_mod, "STEPS", steps)
    db = tmp_path / "old.db"
    _unversioned_db(db)
    before = _dump(db)
    ctx = multiprocessing.get_context("fork")  # the children see the patched steps
    procs = [ctx.Process(target=_open, args=(db,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    assert con.execute("SELECT COUNT(*) FROM events WHERE note = 'from step 3'"
                       ).fetchone()[0] == 11
    assert [r[:-1] for r in con.execute("SELECT * FROM events ORDER BY id")] == before["events"]
    con.close()
    # a database of version 1 runs steps 2 and 3 only
    db1 = tmp_path / "v1.db"
    monkeypatch.setattr(history_mod, "STEPS", steps[:1])
    History(db1).record([_ev("x", "failed")], "r")
    monkeypatch.setattr(history_mod, "STEPS", steps)
    assert history_mod.migrate(sqlite3.connect(db1, isolation_level=None)) == 1
    assert History(db1).recent(1)[0]["note"] == "from step 3"


def test_a_failing_step_changes_nothing(tmp_path, monkeypatch):
    import refinery_lib.history as history_mod

    def broken(con):
        con.execute("CREATE TABLE half (x)")
        raise RuntimeError("step 2 broke")

    db = tmp_path / "h.db"
    History(db).record([_ev("a", "built")], "r1")
    before = _dump(db)
    monkeypatch.setattr(history_mod, "STEPS", (*history_mod.STEPS, broken))
    with pytest.raises(RuntimeError, match="step 2 broke"):
        History(db)
    assert _dump(db) == before  # no table half, still version 1


def test_read_only_history_reads_an_older_database_as_it_is(tmp_path):
    """The panel's reader: an unversioned database is read without being migrated (the
    next run does that), and nothing of the file changes."""
    from refinery_lib.history import EmptyHistory, ReadOnlyHistory, SchemaInfo

    db = tmp_path / "old.db"
    _unversioned_db(db, FIRST_SCHEMA)
    data = db.read_bytes()
    ro = ReadOnlyHistory(db)
    assert ro.read_schema() == SchemaInfo(0, True)
    assert ro.top_failures(1)[0]["failures"] == 10 and ro.build_stats()["p1"].builds == 10
    assert [m["variant"] for m in ro.attempt_metadata("p2")] == ["isolated"] * 10
    assert db.read_bytes() == data and _dump(db)["version"] == 0
    empty = tmp_path / "empty.db"
    empty.touch()
    assert ReadOnlyHistory(empty).read_schema() == SchemaInfo(0, False)
    assert ReadOnlyHistory(empty).build_stats() == {}
    assert not (tmp_path / "none").exists() and EmptyHistory(tmp_path / "none").recent() == []
    assert EmptyHistory().read_schema().has_events and not (tmp_path / "none").exists()


def test_bulk_load_makes_the_current_schema_with_its_indexes(tmp_path):
    from refinery_lib.history import VERSION

    rows = [(f"u{i}", "r", float(i), "p", "1", "cp311", "native", "built", "",
             '{"duration": 2.0}') for i in range(50)]
    h = History.bulk_load(tmp_path / "bulk.db", rows, [("r", 0.0, None, "", "", "{}")])
    dump = _dump(h.path)
    assert dump["version"] == VERSION and len(dump["events"]) == 50 and len(dump["runs"]) == 1
    assert dump["schema"] == _dump(History(tmp_path / "new.db").path)["schema"]
    assert h.top_slowest(1) == [{"package": "p", "avg_duration": 2.0, "builds": 50,
                                 "failures": 0}]


# -- who speaks SQL ----------------------------------------------------------------------------

#: SQL naming the history's tables: a statement's FROM, INTO, UPDATE, JOIN, TABLE or ON
HISTORY_SQL = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE|ON)\s+[\"'`\[]?(?:events|runs)\b",
                         re.IGNORECASE)
STATEMENT_CALLS = frozenset({"execute", "executemany", "executescript"})


def _sql_speakers(path) -> list[str]:
    """Where one module speaks SQL itself: opens a connection (sqlite3.connect), runs a
    statement (`.execute*` on anything but a module it imported), or holds the text of a
    statement against events or runs (any string literal, f-string parts and docstrings
    too)."""
    tree = ast.parse(path.read_text(), str(path))
    imported = {alias.asname or alias.name.split(".")[0]
                for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names}
    found = []
    for node in ast.walk(tree):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr == "connect" and isinstance(
                node.value, ast.Name) and node.value.id == "sqlite3":
            found.append(f"{where}: sqlite3.connect")
        elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3" and any(
                a.name == "connect" for a in node.names):
            found.append(f"{where}: from sqlite3 import connect")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr in STATEMENT_CALLS) and not (
                isinstance(node.func.value, ast.Name) and node.func.value.id in imported):
            found.append(f"{where}: .{node.func.attr}(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                m := HISTORY_SQL.search(node.value)):
            found.append(f"{where}: {m.group(0)!r}")
    return found


def test_no_module_but_history_speaks_sql():
    """Every statement against the history database is in refinery_lib/history.py: the
    workflow, the panel and the bench call its methods (web/store.py reads through
    ReadOnlyHistory), so the schema and its versions have one owner. Tests are left out:
    they look at the database from outside, on purpose."""
    root = Path(__file__).resolve().parents[2]
    owner = root / "refinery_lib" / "history.py"
    modules = [p for folder in ("refinery_lib", "web", "bench", "scripts")
               for p in sorted((root / folder).rglob("*.py")) if p != owner]
    assert len(modules) > 50
    assert [hit for p in modules for hit in _sql_speakers(p)] == []
    assert _sql_speakers(owner)  # the rule sees SQL where there is some
