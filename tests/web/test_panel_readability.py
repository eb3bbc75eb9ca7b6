"""What the dashboard and package page say must be right and readable:
cards count packages, the duration chart has a bar per package (or sensible bins), a failure
shows the compiler's error line (read from the log in bounded windows), a missing database
is reported and never created, and the API docs need nothing from another origin."""

from __future__ import annotations

import html
import json
import re
import tracemalloc
from pathlib import Path

import pandas as pd

from refinery_lib.history import History
from tests.web.conftest import client_for, make_history
from web import charts, logs
from web.app import create_app
from web.settings import PanelSettings

# make_history: per package, the status of its newest outcome event
LATEST = {"hello-pure": "reused", "purehelper": "fetched", "ghostpkg": "missing",
          "garbage-1.0-py3-none-any.whl": "invalid", "cfast": "cached", "cdep": "built",
          "broken": "failed", "evil-pkg": "failed", "slowpoke": "built"}
BUILT_OR_FAILED = {"cfast", "cdep", "broken", "evil-pkg", "slowpoke"}


def _cards(page: str) -> dict[str, int]:
    found = re.findall(r'data-status="([a-z_]+)"[^>]*><span class="n">(\d+)</span>', page)
    return {status: int(n) for status, n in found}


def _figure(page: str, key: str) -> dict:
    raw = re.search(rf'id="chart-{key}" data-figure="([^"]*)"', page).group(1)
    return json.loads(html.unescape(raw))


def _expected_cards() -> dict[str, int]:
    out: dict[str, int] = {}
    for status in LATEST.values():
        out[status] = out.get(status, 0) + 1
    return out


# -- status cards -----------------------------------------------------------------------------
def test_status_cards_count_packages_by_their_latest_outcome(client):
    page = client.get("/").text
    cards = _cards(page)
    # 6 attempt, 3 built, 3 failed, 2 reused events; but 9 packages, each counted once
    assert cards == _expected_cards()
    assert sum(cards.values()) == len(LATEST)
    assert "attempt" not in cards
    assert re.search(r"data-package-total>9<", page)
    assert "6 build attempts" in page  # attempts are told apart, not mixed into the cards


def test_stats_api_counts_packages_too(client):
    data = client.get("/api/stats").json()
    assert data["packages_by_status"] == _expected_cards()
    assert data["packages"] == len(LATEST) == sum(data["packages_by_status"].values())
    assert data["status_counts"]["attempt"] == 6  # events, as before
    assert data["history_exists"] is True


def test_a_package_with_only_attempts_so_far_is_pending(tmp_path):
    from refinery_lib.history import new_event

    h = History(tmp_path / "h.db")
    h.record([new_event("inflight", "1.0", "attempt", "running"),
              new_event("done", "1.0", "attempt", "succeeded"),
              new_event("done", "1.0", "built", "built done-1.0.whl")], "run")
    settings = PanelSettings(tmp_path / "h.db", tmp_path / "q.json", tmp_path / "logs")
    assert _cards(client_for(settings).get("/").text) == {"built": 1, "pending": 1}


# -- the duration chart -------------------------------------------------------------------------
def test_duration_chart_has_a_bar_per_built_or_failed_package(client):
    fig = _figure(client.get("/").text, "durations")
    bars = [(pkg, x, t["name"]) for t in fig["data"]
            for pkg, x in zip(t["y"], t["x"], strict=True)]
    assert all(t["type"] == "bar" and t["orientation"] == "h" for t in fig["data"])
    assert sorted(p for p, _, _ in bars) == sorted(BUILT_OR_FAILED)  # each package once
    latest = {p: (x, s) for p, x, s in bars}
    # broken's newest build (4.0 s) counts, not the older 3.0 s one; slowpoke took 40 min
    assert latest["broken"] == (4.0, "failed") and latest["slowpoke"] == (2400.0, "built")
    # 1 s to 40 min: a log axis, or every bar but slowpoke's would be a sliver
    assert fig["layout"]["xaxis"]["type"] == "log"
    assert "1 min" in fig["layout"]["xaxis"]["ticktext"]


def test_duration_chart_for_many_packages_bins_on_a_log_scale():
    n = 200
    durations = [1.5 ** (i % 30) for i in range(n)]  # 1 s to about 36 hours
    df = pd.DataFrame({"ts": range(n), "package": [f"p{i}" for i in range(n)],
                       "status": ["built" if i % 4 else "failed" for i in range(n)],
                       "duration": durations})
    fig = json.loads(charts.duration_distribution(df))
    assert all(t["type"] == "bar" for t in fig["data"])
    totals = [sum(ys) for ys in zip(*(t["y"] for t in fig["data"]), strict=True)]
    assert sum(totals) == n  # every build in one bin
    assert len(totals) <= 20 and sum(1 for c in totals if c) > 5  # many bins used, not two
    edges = charts.duration_bins(durations)
    ratios = [b / a for a, b in zip(edges, edges[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.01  # log-spaced: equal ratios


def test_duration_bins_for_close_values_are_linear():
    edges = charts.duration_bins([10.0, 11.0, 12.0, 13.0])
    steps = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    assert edges[0] <= 10.0 and edges[-1] >= 13.0 and max(steps) - min(steps) < 1e-6


# -- the error line of a failed build -----------------------------------------------------------
def test_the_panel_and_the_cli_name_the_same_error_line():
    from refinery_lib import failure_lines

    assert logs.first_error_line is failure_lines.first_error_line


def _log(folder: Path) -> logs.LogFile:
    (found,) = logs.find_logs(folder, "pkg", "1.0")
    return found


def _write(folder: Path, body: bytes, name: str = "pkg-1.0-attempt1-isolated.log") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(body)
    return folder / name


def test_an_error_in_the_head_of_the_log_comes_with_its_line_number(tmp_path):
    noise = b"compiling a file that is fine\n" * 100_000  # 3 MB before the error
    _write(tmp_path, noise + b"\x1b[31mfoo.c:1:2: error: boom\x1b[0m\nmake: *** [x] Error 1\n")
    found = logs.first_error(_log(tmp_path))
    assert found == logs.FirstError(100_001, "foo.c:1:2: error: boom")


def test_an_error_at_the_end_of_a_huge_log_is_read_in_bounded_memory(tmp_path):
    """A 1 GiB log (sparse: its middle is a hole) costs two windows, not a gigabyte."""
    path = _write(tmp_path, b"compiling a file that is fine\n" * 200_000)  # 6 MB of head
    with path.open("r+b") as fh:
        fh.seek(1 << 30)
        fh.write(b"\nlinking\n/usr/bin/ld: cannot find -lopenblas\ncollect2: error: ld returned"
                 b" 1 exit status\n")
    window = 1 << 20
    tracemalloc.start()
    try:
        found = logs.first_error(_log(tmp_path), window=window)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # found in the tail: its line number is not known without reading the whole log
    assert found == logs.FirstError(0, "/usr/bin/ld: cannot find -lopenblas")
    assert peak < 16 * window


def test_package_page_shows_the_first_compiler_error(client, settings):
    page = client.get("/package/broken").text
    failures = page[page.index("Recent failures"):page.index("<h2>Retry")]
    first = re.findall(r"<pre class=\"logline\" data-first-error>([^<]*)</pre>", failures)
    # both attempt logs hold the compiler's line; the generic "failed (exit 1)" is no headline
    assert [html.unescape(t) for t in first] == [
        "broken/_speed.c:9: error: expected ';'",
        "broken/_speed.c:9: error: expected ';' this is not C"]
    assert "log line 2" in failures
    assert "no hint matched this failure" not in failures
    data = client.get("/api/packages/broken").json()
    assert data["failures"][0]["first_error"] == {
        "line_no": 2, "text": "broken/_speed.c:9: error: expected ';'"}


def test_first_error_without_a_log_comes_from_the_recorded_hint(client, settings):
    for log in settings.logs_dir.glob("evil_pkg-*"):
        log.unlink()
    page = client.get("/package/evil-pkg").text
    # the recorded hint's line, escaped like every other string from a build
    assert "data-first-error>&lt;script&gt;alert(" in page
    assert "<script>alert(" not in page


# -- no database yet ----------------------------------------------------------------------------
def test_a_missing_database_is_reported_and_never_created(tmp_path, monkeypatch):
    db = tmp_path / "typo" / "history.db"
    monkeypatch.setenv("HISTORY_DB", str(db))
    for var in ("RETRY_QUEUE_PATH", "REFINERY_LOGS_DIR", "WORKER_TOKEN", "WORKER_WEBHOOK_URL"):
        monkeypatch.delenv(var, raising=False)
    from fastapi.testclient import TestClient

    client = TestClient(create_app(), base_url="http://127.0.0.1")  # settings from the env
    page = client.get("/")
    assert page.status_code == 200
    assert "No history database at" in page.text and str(db) in page.text
    assert client.get("/api/stats").json()["history_exists"] is False
    assert client.get("/api/top-failures").json() == []
    assert client.get("/package/numpy").status_code == 404
    assert not db.parent.exists()  # neither the database nor its folder

    # the first run writes it: the same panel shows it, without a restart
    make_history(db.parent)
    assert sum(_cards(client.get("/").text).values()) == len(LATEST)


# -- API docs ------------------------------------------------------------------------------------
def test_api_docs_load_only_local_files_without_inline_scripts(client):
    for url in ("/docs", "/redoc"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "https://" not in r.text and "http://" not in r.text
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", r.text, re.S)
        assert scripts and all('src="/' in attrs and not body.strip()
                               for attrs, body in scripts), scripts
        for ref in re.findall(r'(?:src|href)="(/(?:vendor|static)/[^"]+)"', r.text):
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 100, ref
    assert client.get("/vendor/swagger-ui/LICENSE").status_code == 404  # listed files only
    assert client.get("/openapi.json").json()["info"]["title"] == "s390x Wheel Refinery panel"


def test_api_docs_without_the_asset_package_say_what_to_install(client, monkeypatch):
    from web import routes_docs

    monkeypatch.setattr(routes_docs, "asset_root", lambda: None)
    for url in ("/docs", "/redoc"):
        r = client.get(url)
        assert r.status_code == 503 and "pip install fastapi-standalone-docs" in r.text
        assert "<script" not in r.text  # no half-loaded page
    assert client.get("/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 404
