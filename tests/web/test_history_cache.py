"""The panel's queries are served from memory per state of the history (web/store.py): computed
once however many requests ask at the same moment, again only after the history changed,
and every statement the panel does run is an index search or a covering index scan.

No wall-clock limits: computations and SQL statements are counted.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import threading
import time

import pytest

from refinery_lib.history import History, new_event
from tests.web.conftest import ServerThread, client_for
from web import stats, store
from web.app import create_app
from web.deps import get_settings
from web.settings import PanelSettings

#: every GET page and API that reads the history (the package pages of a package with
#: failures, attempts and logs)
HISTORY_PATHS = ("/", "/api/stats", "/api/top-failures", "/api/top-slowest",
                 "/api/top-failures?limit=3", "/package/broken", "/api/packages/broken",
                 "/package/cfast", "/api/packages/cfast", "/package/nosuchpkg",
                 "/logs/broken/0.1")


def _wait_for(condition, limit: float = 10.0) -> None:
    """A gate, not a timing check: give up after `limit` seconds and let the asserts speak."""
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_stats_are_computed_once_for_concurrent_requests_and_again_after_a_new_event(
        settings, monkeypatch):
    """16 clients ask for /api/stats at once: one computes, the other 15 wait for it (the
    computation is held until they all wait); a new event makes the next request compute
    again, and it shows the event."""
    from web import store

    clients = 16
    calls = []
    real = stats.packages_by_status
    key = ("stats.json", True, 0, "none")  # history exists, empty queue, no worker
    db_store = store.store_for(settings.db_path)

    def held(history):
        calls.append(1)
        if len(calls) == 1:  # the first computation, while the 16 ask
            _wait_for(lambda: db_store.waiting(key) >= clients - 1)
        return real(history)

    monkeypatch.setattr(stats, "packages_by_status", held)
    app = create_app(PanelSettings(settings.db_path, settings.queue_path, settings.logs_dir))
    app.dependency_overrides[get_settings] = lambda: settings
    bodies: list[bytes] = []
    statuses: list[int] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("GET", "/api/stats")
        r = conn.getresponse()
        statuses.append(r.status)
        bodies.append(r.read())
        conn.close()

    with ServerThread(app) as srv:
        threads = [threading.Thread(target=one) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * clients
        assert len(set(bodies)) == 1  # all got the same answer
        assert len(calls) == 1  # computed once for the 16
        assert db_store.computed["stats"] == 1
        before = json.loads(bodies[0])["events"]

        History(settings.db_path).record([new_event("fresh-pkg", "1.0", "failed", "boom")],
                                         "run-3")
        one()
        assert statuses[-1] == 200
        assert json.loads(bodies[-1])["events"] == before + 1
        assert len(calls) == 2 and db_store.computed["stats"] == 2
        one()  # the same state again: from memory
        assert len(calls) == 2


def test_a_second_round_of_every_page_runs_no_sql_and_each_statement_uses_an_index(
        settings, sql_trace):
    """Once a page was computed for this state of the history, asking again runs no SQL at
    all (the state is read from the files' metadata and headers, not with a query). The
    statements the first round ran each search an index or scan a covering one: none reads
    the events table row by row."""
    statements = sql_trace(store)
    client = client_for(settings)
    first = {p: client.get(p) for p in HISTORY_PATHS}
    assert {p: r.status_code for p, r in first.items()} == {
        p: 404 if "nosuchpkg" in p else 200 for p in HISTORY_PATHS}
    selects = [s for s in dict.fromkeys(statements) if s.lstrip().upper().startswith("SELECT")]
    assert selects

    statements.clear()
    second = {p: client.get(p) for p in HISTORY_PATHS}
    assert [s for s in statements if s.lstrip().upper().startswith("SELECT")] == []
    for p in HISTORY_PATHS:  # and the pages are the same (the CSRF token aside)
        if p.startswith("/api/"):
            assert second[p].content == first[p].content, p

    con = sqlite3.connect(settings.db_path)
    for sql in selects:
        plan = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql)]
        on_events = [step for step in plan if step.split()[:2] in (["SCAN", "events"],
                                                                  ["SEARCH", "events"],
                                                                  ["SCAN", "o"],
                                                                  ["SEARCH", "o"])]
        assert on_events, (sql, plan)
        for step in on_events:
            if step.startswith("SEARCH"):
                continue  # a seek: an index range, or the rowid's (max(id))
            assert "USING" in step and "INDEX" in step, (sql, plan)  # never the bare table
            if " LIMIT " not in sql.upper():
                # a whole-history aggregation reads a covering index, never the rows
                assert "COVERING INDEX" in step, (sql, plan)


def test_a_page_is_rendered_once_per_content_each_visitor_with_their_own_token(settings):
    """Two visitors (two sessions) get the same package page with their own CSRF token; the
    template ran once for both, and again once the history changed."""
    from web import routes_pages

    pages = routes_pages._pages
    a, b = client_for(settings), client_for(settings)
    rendered = pages.computed["page"]
    first, second = a.get("/package/broken").text, b.get("/package/broken").text
    assert pages.computed["page"] == rendered + 1
    token = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
    ta, tb = token.search(first).group(1), token.search(second).group(1)
    assert ta != tb and routes_pages._CSRF_SLOT not in first + second
    assert token.sub("", first) == token.sub("", second)
    History(settings.db_path).record([new_event("broken", "0.2", "failed", "again")], "run-4")
    assert "0.2" in a.get("/package/broken").text
    assert pages.computed["page"] == rendered + 2


# -- the cache itself --------------------------------------------------------------------------


def test_single_flight_waits_or_serves_the_previous_state_and_never_keeps_errors(tmp_path):
    from web import store

    s = store.Store(tmp_path / "h.db")
    release = threading.Event()
    computed: list[str] = []

    def slow(value: str):
        def compute():
            computed.append(value)
            release.wait(10)
            return value
        return compute

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(s.get(("k",), 1, slow("one"))))
               for _ in range(8)]
    for t in threads:
        t.start()
    _wait_for(lambda: s.waiting(("k",)) == 7)
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["one"] * 8 and computed == ["one"]

    # a new state: the one computing waits for it, a request meanwhile gets state 1's value
    release.clear()
    leader = threading.Thread(target=lambda: results.append(s.get(("k",), 2, slow("two"))))
    leader.start()
    _wait_for(lambda: computed == ["one", "two"])
    assert s.get(("k",), 2, slow("never")) == "one"
    release.set()
    leader.join(10)
    assert results[-1] == "two" and s.get(("k",), 2, slow("never")) == "two"
    assert "never" not in computed

    def broken():
        raise sqlite3.DatabaseError("database disk image is malformed")

    with pytest.raises(sqlite3.DatabaseError):
        s.get(("e",), 1, broken)
    assert s.get(("e",), 1, lambda: "fine") == "fine"  # the error was not kept



def test_a_result_is_never_made_of_a_stale_part(tmp_path):
    """A part (the cards) that another request is computing for the new state is waited
    for inside a result (the stats), never taken from the previous state: the result is
    kept under the new state."""
    from web import store

    s = store.Store(tmp_path / "h.db")
    assert s.get(("whole",), 1, lambda: "whole of " + s.get(("part",), 1, lambda: "p1")) \
        == "whole of p1"
    release = threading.Event()

    def slow_part():
        release.wait(10)
        return "p2"

    part = threading.Thread(target=lambda: s.get(("part",), 2, slow_part))
    part.start()
    _wait_for(lambda: s.computed["part"] == 2)
    assert s.get(("part",), 2, slow_part) == "p1"  # a request on its own: the previous value
    results = []
    whole = threading.Thread(target=lambda: results.append(
        s.get(("whole",), 2, lambda: "whole of " + s.get(("part",), 2, slow_part))))
    whole.start()
    _wait_for(lambda: s.waiting(("part",)) == 1)
    release.set()
    part.join(10)
    whole.join(10)
    assert results == ["whole of p2"]


# -- the schema's versions ---------------------------------------------------------------------


def _set_version(db, version: int) -> None:
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {version}")
    con.commit()
    con.close()


def test_the_panel_reads_an_older_database_as_it_is_and_a_newer_one_with_one_line(
        settings, caplog):
    """The panel never migrates: an unversioned database (as before versions) is read as it
    is and left at version 0. A newer one is served the same (steps only add), and the log
    says so once, in one line naming the file and both versions."""
    from refinery_lib.history import VERSION

    client = client_for(settings)
    current = {p: client.get(p).content for p in ("/api/stats", "/api/top-slowest",
                                                  "/api/packages/broken")}
    _set_version(settings.db_path, 0)
    assert {p: client.get(p).content for p in current} == current
    assert client.get("/").status_code == 200
    con = sqlite3.connect(settings.db_path)
    assert con.execute("PRAGMA user_version").fetchone() == (0,)
    con.close()

    _set_version(settings.db_path, VERSION + 7)
    with caplog.at_level("WARNING", logger="web.store"):
        assert {p: client.get(p).content for p in current} == current
        assert client.get("/").status_code == 200 and client.get("/healthz").json() == {
            "ok": True}
        db_store = store.store_for(settings.db_path)
        computed = db_store.computed["schema"]
        _set_version(settings.db_path, VERSION + 7)  # another state, the same version
        assert client.get("/api/stats").content == current["/api/stats"]
        assert db_store.computed["schema"] == computed + 1
    lines = [r.getMessage() for r in caplog.records if "schema version" in r.getMessage()]
    assert lines == [f"the history database {settings.db_path} has schema version "
                     f"{VERSION + 7}, newer than this refinery knows ({VERSION}): upgrade the "
                     "refinery, or use another history database; the panel shows what this "
                     "version of it knows"]


def test_a_read_that_fails_on_a_newer_database_names_its_version(tmp_path):
    from refinery_lib.history import VERSION

    s = store.Store(tmp_path / "h.db")
    plain = s.unavailable(sqlite3.OperationalError("no such column: note"), ("f",))
    assert "try again in a moment" in plain.message and not plain.damaged
    s.newer = VERSION + 1
    named = s.unavailable(sqlite3.OperationalError("no such column: note"), ("f",))
    assert not named.damaged and named.message == (
        f"the history database {tmp_path / 'h.db'} has schema version {VERSION + 1}, newer "
        f"than this refinery knows ({VERSION}): upgrade the refinery, or use another history "
        "database (reading it failed: no such column: note)")
