"""The panel in a real headless Chromium (Debian's), driven by Playwright, against uvicorn.

Charts must render with the local plotly.js under the CSP, the token must unlock the queue
through its cookie, a retry queued from the package page must be editable on the queue page,
and a line appended to a log must appear in the open log page through SSE. The dashboard's
charts are checked by what plotly.js drew (the traces on each chart element), the cards by
their numbers, and /docs and /redoc with every other origin cut off.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import replace
from pathlib import Path

import pytest

from refinery_lib.history import History, new_event
from refinery_lib.retry_queue import RetryQueue, RetryRequest
from refinery_lib.retry_worker import WorkerConfig
from tests.web.conftest import ServerThread
from web.app import create_app
from web.settings import PanelSettings
from web.trigger import LocalWorker

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT = 30_000  # ms; generous for two shared cores, never asserted as a duration


class Recorder:
    """Stands in for the refinery run the worker starts: keeps the config it was given."""

    def __init__(self):
        self.configs = []

    def __call__(self, argv):
        self.configs.append(json.loads(Path(argv[argv.index("--config") + 1]).read_text()))
        return 0


def test_panel_in_a_real_browser(browser, token_settings, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
    worker = WorkerConfig(tmp_path / "in", tmp_path / "out", token_settings.db_path.parent,
                          queue_path=token_settings.queue_path,
                          history_db=token_settings.db_path)
    settings = replace(token_settings, package_manager="dnf", worker=worker)
    expect = pytest.importorskip("playwright.sync_api").expect
    app = create_app(settings)
    recorder = Recorder()
    app.state.worker = LocalWorker(worker, runner=recorder)
    with ServerThread(app) as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _walk_through(page, srv.url, settings, expect)
            # "Run worker now" drains the queue with the recipe as edited in the browser
            page.goto(srv.url + "/queue")
            page.click("[data-trigger-worker]")
            expect(page.locator("[data-worker-msg]")).to_contain_text("started", timeout=WAIT)
            app.state.worker.wait(60)
        finally:
            page.close()  # closes the event stream before the server stops
    (config,) = recorder.configs
    assert config["overrides"]["broken"]["recipe_steps"] == [
        ["dnf", "install", "-y", "openblas-devel"], ["make", "-j2", "all targets"]]
    assert len(RetryQueue(settings.queue_path)) == 0
    assert (ARTIFACTS / "panel-dashboard.png").stat().st_size > 10_000


def _walk_through(page, url: str, settings, expect) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # dashboard: every chart drawn by plotly.js, served locally
    page.goto(url + "/")
    for key in ("outcomes", "durations", "failure-rate", "variants", "queue"):
        page.wait_for_selector(f'#chart-{key}[data-rendered="1"] svg.main-svg', timeout=WAIT)
    assert page.locator("#chart-outcomes .trace.bars .point").count() > 0
    assert page.locator("#chart-failure-rate .trace.bars .point").count() == 5
    page.screenshot(path=str(ARTIFACTS / "panel-dashboard.png"), full_page=True)

    # unlock the queue with the token: it goes into an HttpOnly cookie
    page.fill("[data-token-form] input[name=token]", settings.token)
    page.click("[data-token-form] button")
    page.wait_for_selector("[data-token-form]", state="detached", timeout=WAIT)
    assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts

    # package page, from the dashboard's failure list
    page.click("section:has(h2:text('Top failures')) a:text('broken')")
    page.wait_for_url(url + "/package/broken", timeout=WAIT)
    assert page.locator("h1").inner_text() == "broken"
    assert page.locator(".alert").first.is_visible()
    assert "c-syntax-error" in page.locator(".failure").first.inner_text()
    steps = page.locator("[data-retry-form] textarea[name=recipe_steps_text]")
    assert steps.input_value() == "gcc --version"  # pre-filled from the hint
    steps.fill("gcc --version\necho 'edited on the package page'")
    page.screenshot(path=str(ARTIFACTS / "panel-package.png"), full_page=True)
    page.click("[data-retry-form] button[type=submit]")
    page.wait_for_url(url + "/queue*", timeout=WAIT)
    (req,) = RetryQueue(settings.queue_path).requests()
    assert req.recipe_steps == [["gcc", "--version"], ["echo", "edited on the package page"]]

    # queue page: edit the request's recipe steps and see them saved
    item = page.locator(f"#req-{req.id}")
    item.locator("textarea[name=recipe_steps_text]").fill(
        "dnf install -y openblas-devel\nmake -j2 'all targets'")
    item.locator("input[name=system_packages_text]").fill("openblas-devel gcc")
    item.locator("[data-save]").click()
    page.wait_for_selector(f'#req-{req.id}[data-saved="1"]', timeout=WAIT)
    saved = RetryQueue(settings.queue_path).get(req.id)
    assert saved.recipe_steps == [["dnf", "install", "-y", "openblas-devel"],
                                  ["make", "-j2", "all targets"]]
    assert saved.system_packages == ["openblas-devel", "gcc"]
    page.reload()
    assert "make -j2 'all targets'" in page.locator(
        f"#req-{req.id} textarea[name=recipe_steps_text]").input_value()
    page.screenshot(path=str(ARTIFACTS / "panel-queue.png"), full_page=True)

    # log page: a line the build writes now shows up live
    log = settings.logs_dir / "broken-0.1-attempt1-isolated.log"
    page.goto(url + "/logs/broken/0.1?attempt=1&variant=isolated")
    expect(page.locator("[data-live-state]")).to_have_text("live", timeout=WAIT)
    with open(log, "a") as fh:
        fh.write("gcc: LIVE <i>line</i> from the rebuild\n")
    expect(page.locator("[data-log]")).to_contain_text(
        "gcc: LIVE <i>line</i> from the rebuild", timeout=WAIT)
    assert page.locator("[data-log] i").count() == 0  # shown as text, not markup
    page.screenshot(path=str(ARTIFACTS / "panel-log-live.png"), full_page=True)

    assert errors == []


def test_dead_letters_on_the_queue_page(browser, settings):
    """A request the worker could not run is shown with its reason; the buttons re-queue or
    delete it (JSON from the page's own origin)."""
    expect = pytest.importorskip("playwright.sync_api").expect
    queue = RetryQueue(settings.queue_path)
    back = queue.add(RetryRequest("cfast", "1.0"))
    gone = queue.add(RetryRequest("cdep", "0.5"))
    queue.bury(queue.drain(), "the run did not start: SystemExit: 2")
    with ServerThread(create_app(settings)) as srv:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(srv.url + "/queue")
            for r in (back, gone):
                expect(page.locator(f"#dead-{r.id} [data-dead-reason]")).to_contain_text(
                    "SystemExit: 2", timeout=WAIT)
            page.click(f"#dead-{gone.id} [data-dead-delete]")
            page.wait_for_selector(f"#dead-{gone.id}", state="detached", timeout=WAIT)
            page.click(f"#dead-{back.id} [data-dead-requeue]")
            page.wait_for_selector(f"#req-{back.id}", timeout=WAIT)
        finally:
            page.close()
    assert [r.id for r in queue.requests()] == [back.id] and queue.dead() == []
    assert errors == []


# -- the dashboard's charts and cards, and the API docs, as Chromium shows them ------------------
#: package -> (outcome events oldest first, as (status, seconds)); the cards must count each
#: package once, by its newest outcome, and the duration chart must show each build's package
CHART_HISTORY = {
    "alpha": [("failed", 30.0), ("built", 45.0)],      # fixed by a retry: built
    "beta": [("failed", 12.0), ("failed", 14.0)],      # failed twice: failed
    "gamma": [("reused", None)],
    "delta": [("built", 300.0), ("cached", 300.0)],   # built once, then from the cache
    "epsilon": [("built", 1800.0)],                    # slow: 30 minutes beside seconds
    "zeta": [("missing", None)],
}


def _record_chart_history(db: Path) -> History:
    history = History(db)
    events, ts = [], time.time() - 3 * 86400
    for name, outcomes in CHART_HISTORY.items():
        for attempt, (status, seconds) in enumerate(outcomes, start=1):
            meta = {} if seconds is None else {"duration": seconds}
            if status in ("built", "failed"):
                meta.update(variant="isolated", attempt=attempt)
                said = "succeeded" if status == "built" else "failed (exit 1)"
                events.append(dict(new_event(name, "1.0", "attempt", said, **meta), ts=ts))
            events.append(dict(new_event(name, "1.0", status, status, **meta), ts=ts + 1))
            ts += 3600
    history.record(events, "run-1", "cp311", "manylinux2014_s390x")
    return history


def _figure_data(page, key: str) -> list[dict]:
    """The traces plotly.js drew, read from the chart's element (what it plots, not our JSON)."""
    return page.evaluate(
        "(id) => document.getElementById(id).data.map(t => ({type: t.type, name: t.name,"
        " x: Array.from(t.x || []), y: Array.from(t.y || []), value: t.value}))",
        f"chart-{key}")


def test_dashboard_charts_and_cards_in_chromium(browser, tmp_path):
    cache = tmp_path / "cache"
    _record_chart_history(cache / "history.db")
    RetryQueue(cache / "retry_queue.json").add(RetryRequest("beta", "1.0"))
    settings = PanelSettings(cache / "history.db", cache / "retry_queue.json", cache / "logs")
    with ServerThread(create_app(settings)) as srv:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto(srv.url + "/")
            for key in ("outcomes", "durations", "failure-rate", "variants", "queue"):
                page.wait_for_selector(f'#chart-{key}[data-rendered="1"] svg.main-svg',
                                       timeout=WAIT)
            page.screenshot(path=str(tmp_path / "dashboard.png"))
            _check_cards(page)
            _check_charts(page)
        finally:
            page.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert errors == []


def _check_cards(page) -> None:
    cards = {el.get_attribute("data-status"): int(el.locator(".n").inner_text())
             for el in page.locator("[data-status-cards] [data-status]").all()}
    assert cards == {"built": 2, "failed": 1, "reused": 1, "cached": 1, "missing": 1}
    assert sum(cards.values()) == len(CHART_HISTORY)
    assert page.locator("[data-package-total]").inner_text() == str(len(CHART_HISTORY))


def _check_charts(page) -> None:
    # no toolbar at all, so none can sit over a title; every title is drawn
    assert page.locator(".modebar").count() == 0
    assert page.locator(".modebar-container > *").count() == 0
    assert page.locator(".gtitle").count() == 5

    # outcomes over time: every outcome event once, by status
    totals: dict[str, float] = {}
    for t in _figure_data(page, "outcomes"):
        totals[t["name"]] = totals.get(t["name"], 0) + sum(t["y"])
    assert totals == {"failed": 3, "built": 3, "reused": 1, "cached": 1, "missing": 1}

    # durations: a bar per built or failed package, its latest build, each wide enough to see
    bars = {y: (x, t["name"]) for t in _figure_data(page, "durations")
            for x, y in zip(t["x"], t["y"], strict=True)}
    assert bars == {"alpha": (45.0, "built"), "beta": (14.0, "failed"),
                    "delta": (300.0, "built"), "epsilon": (1800.0, "built")}
    widths = page.eval_on_selector_all(
        "#chart-durations .trace.bars .point path",
        "els => els.map(e => e.getBoundingClientRect().width)")
    assert len(widths) == 4 and min(widths) > 20  # no slivers beside the 30-minute build

    # failure rate per package, in percent
    (rates,) = _figure_data(page, "failure-rate")
    assert dict(zip(rates["x"], rates["y"], strict=True)) == {
        "beta": 100, "alpha": 50, "delta": 0, "epsilon": 0}

    # variant success over the attempts: 6 attempts, 3 succeeded
    variants = {t["name"]: t["y"] for t in _figure_data(page, "variants")}
    assert variants == {"succeeded": [3], "failed": [3]}

    # queue depth: one request, for beta
    queue = _figure_data(page, "queue")
    assert queue[0]["value"] == 1 and queue[1]["x"] == ["beta"] and queue[1]["y"] == [1]


def test_api_docs_render_offline_in_chromium(browser, settings):
    """Swagger UI and ReDoc come from the panel itself: with every other origin cut off they
    render, and ask for nothing elsewhere; the CSP refuses nothing on these pages."""
    with ServerThread(create_app(settings)) as srv:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        elsewhere: list[str] = []
        errors: list[str] = []

        def only_the_panel(route):
            if route.request.url.startswith(srv.url + "/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_panel)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto(srv.url + "/docs")
            info = page.locator(".swagger-ui .info")
            info.wait_for(state="visible", timeout=WAIT)
            assert "s390x Wheel Refinery panel" in info.inner_text()
            page.wait_for_selector(".swagger-ui .opblock", timeout=WAIT)
            assert page.locator(".swagger-ui .opblock").count() > 10
            page.goto(srv.url + "/redoc")
            title = page.locator("redoc h1").first
            title.wait_for(state="visible", timeout=WAIT)
            assert "s390x Wheel Refinery panel" in title.inner_text()
        finally:
            page.close()
    assert elsewhere == []
    assert errors == []


def test_screenshot_tool_writes_a_small_dashboard_png(tmp_path):
    """What regenerates docs/panel.png (python -m web.tools.screenshot), into tmp_path."""
    from web.tools import screenshot

    if not Path(screenshot.CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    out = screenshot.capture(tmp_path / "panel.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 900)
    assert 20_000 < len(data) < 400_000
