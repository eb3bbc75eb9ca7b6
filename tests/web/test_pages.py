"""Every HTML page of the panel, on a history shaped like two real runs."""

from __future__ import annotations

import html
import json
import re

from refinery_lib.retry_queue import RetryQueue, RetryRequest


def _figures(page: str) -> dict[str, dict]:
    found = re.findall(r'id="chart-([a-z-]+)" data-figure="([^"]*)"', page)
    return {key: json.loads(html.unescape(raw)) for key, raw in found}


def test_dashboard_shows_counts_tables_and_chart_data(client):
    r = client.get("/")
    assert r.status_code == 200
    page = r.text
    for status in ("reused", "fetched", "built", "cached", "failed", "missing", "invalid"):
        assert f"status-{status}" in page
    assert 'href="/package/broken"' in page  # recent and top failures link to the package
    assert "slowpoke" in page and "40.0 min" in page  # top slow: average duration
    assert "Run worker now" in page
    assert '<script src="/vendor/plotly.min.js"' in page
    figures = _figures(page)
    assert set(figures) == {"outcomes", "durations", "failure-rate", "variants", "queue"}
    outcome_statuses = {t["name"] for t in figures["outcomes"]["data"]}
    assert {"built", "failed", "reused"} <= outcome_statuses
    rates = figures["failure-rate"]["data"][0]
    assert rates["x"][0] == "broken" and rates["y"][0] == 100
    variants = {v: None for v in figures["variants"]["data"][0]["x"]}
    assert set(variants) == {"isolated", "no-isolation"}
    assert figures["queue"]["data"][0]["value"] == 0


def test_dashboard_on_an_empty_history(tmp_path):
    from refinery_lib.history import History
    from tests.web.conftest import client_for
    from web.settings import PanelSettings

    History(tmp_path / "h.db")  # no events yet (no database at all: test_panel_readability)
    settings = PanelSettings(tmp_path / "h.db", tmp_path / "q.json", tmp_path / "logs")
    r = client_for(settings).get("/")
    assert r.status_code == 200
    assert "The history is empty" in r.text
    assert "no data yet" in r.text  # charts say so instead of breaking


def test_queue_depth_chart_counts_queued_requests(client, settings):
    q = RetryQueue(settings.queue_path)
    q.add(RetryRequest("broken", "0.1"))
    q.add(RetryRequest("broken", "0.1"))
    q.add(RetryRequest("cdep"))
    fig = _figures(client.get("/").text)["queue"]
    assert fig["data"][0]["value"] == 3
    assert dict(zip(fig["data"][1]["x"], fig["data"][1]["y"], strict=True)) == {
        "broken": 2, "cdep": 1}


def test_package_page_failures_hints_variants_attempts_and_retry_form(client):
    r = client.get("/package/broken")
    assert r.status_code == 200
    page = r.text
    assert 'role="alert"' in page and "2 failure(s) in a row" in page
    assert "3.5 s" in page  # average of the 3.0 s and 4.0 s builds
    # the latest failure had no recorded hints: the catalog matched its log
    assert "c-syntax-error" in page and "error: expected" in page
    assert "gcc --version" in page
    assert "no-isolation" in page and "isolated" in page  # variant history
    assert 'href="/logs/broken/0.1?attempt=1&amp;variant=isolated"' in page
    assert 'href="/logs/broken/0.1?attempt=2&amp;variant=no-isolation"' in page
    # the retry form is pre-filled from the hints, as editable text
    form = page[page.index("data-retry-form"):]
    assert 'value="0.1"' in form and 'value="cp311"' in form
    assert "gcc --version</textarea>" in form
    assert 'name="system_packages_text" value="gcc"' in form


def test_package_page_any_spelling_and_unknown_package(client):
    assert client.get("/package/CFast").status_code == 200
    assert "cfast" in client.get("/package/CFast").text
    r = client.get("/package/never-seen")
    assert r.status_code == 404 and "never-seen" in r.text
    r = client.get("/package/?name=Broken", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/package/Broken"


def test_slow_package_alert(client):
    assert "slow package" in client.get("/package/slowpoke").text


def test_hint_catalog_page_searches(client):
    page = client.get("/hints").text
    assert "3 of 3 hints" in page
    for hint_id in ("missing-openblas", "c-syntax-error", "rust-toolchain"):
        assert hint_id in page
    page = client.get("/hints", params={"q": "libopenblas"}).text
    assert "1 of 3 hints" in page and "missing-openblas" in page
    assert "rust-toolchain" not in page
    page = client.get("/hints", params={"category": "rust"}).text
    assert "rust-toolchain" in page and "c-syntax-error" not in page
    assert "no hint matches" in client.get("/hints", params={"q": "zzz-nothing"}).text


def test_queue_page_lists_requests_with_editable_recipes(client, settings):
    req = RetryQueue(settings.queue_path).add(
        RetryRequest("broken", "0.1", recipe_steps=[["echo", "hello world"]],
                     system_packages=["gcc"]))
    page = client.get("/queue").text
    assert f'id="req-{req.id}"' in page
    assert "echo &#39;hello world&#39;</textarea>" in page
    assert "data-move" in page and "data-delete" in page


def test_log_page_shows_tail_and_live_stream_url(client):
    r = client.get("/logs/broken/0.1", params={"attempt": 1, "variant": "isolated"})
    assert r.status_code == 200
    assert "this is not C" in r.text
    size = len(b"$ python -m build broken\nbroken/_speed.c:9: error: expected ';' this is not C"
               b"\nerror: command 'gcc' failed\n")
    assert f"/stream?attempt=1&amp;variant=isolated&amp;offset={size}" in r.text
    # without a choice: the newest log (attempt 2)
    assert "compiling" in client.get("/logs/broken/0.1").text


def test_static_files_and_local_plotly(client):
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()
    assert client.get("/static/panel.js").status_code == 200
    assert client.get("/static/panel.css").status_code == 200


def test_dashboard_is_computed_once_per_history_state(client, settings, monkeypatch):
    """The dashboard is cached until the history changes: a run recording events shows at
    once, a reload of an unchanged history does not query and chart every event again."""
    from refinery_lib.history import History, new_event
    from web import stats

    frames = []
    real = stats.events_frame

    def counted(*args, **kwargs):
        frames.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stats, "events_frame", counted)
    first = client.get("/").text
    assert client.get("/").text == first
    assert len(frames) == 1  # the second request was served from the cache
    History(settings.db_path).record(
        [new_event("brand-new-pkg", "9.9", "failed", "error: it broke")], "run-new"
    )
    assert "brand-new-pkg" in client.get("/").text
    assert len(frames) == 2
