import json
import multiprocessing
import sqlite3

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
    statements = sql_trace(history_mod, scheduling)
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
