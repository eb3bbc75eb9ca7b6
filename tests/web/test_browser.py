"""The panel in a real headless Chromium (Debian's), driven by Playwright, against uvicorn.

Charts must render with the local plotly.js under the CSP, the token must unlock the queue
through its cookie, a retry queued from the package page must be editable on the queue page,
and a line appended to a log must appear in the open log page through SSE.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from refinery_lib.queue import RetryQueue, RetryRequest
from tests.web.conftest import ServerThread
from web.app import create_app
from web.trigger import LocalWorker
from web.worker import WorkerConfig

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
