"""The panel's defences, from the attacker's side, against a real server.

Each test starts uvicorn on a loopback port (or `refinery serve` itself) and attacks it: a
page on another port driving Chromium, forged Origin headers and bodies, the token in a URL, a
symlink swapped under a log while it is served, junk in queued requests, and a server started
where it should refuse to.
"""

from __future__ import annotations

import concurrent.futures
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from refinery_lib.retry_queue import RetryQueue
from refinery_lib.retry_worker import WorkerConfig
from tests.web.conftest import TOKEN, ServerThread, client_for, csrf_of, free_port, make_history
from web.app import create_app
from web.trigger import LocalWorker
from web.worker_service import create_worker_app

WAIT = 30_000  # ms for Chromium; generous for two shared cores, never asserted as a duration
PAYLOAD_STEP = "touch /tmp/refinery-csrf-pwned"


class CountingWorker:
    """Stands in for the worker: a trigger would run the queued recipes on the host."""

    def __init__(self):
        self.triggers = 0

    def trigger(self) -> dict:
        self.triggers += 1
        return {"started": True, "status": "started", "mode": "local"}

    def status(self) -> dict:
        return {"mode": "local", "running": False, "last": None}


def _queue_state(settings) -> list[dict]:
    q = RetryQueue(settings.queue_path)
    return [r.to_json() for r in q.requests()]


@pytest.fixture
def attacker(tmp_path):
    """A second web server on another 127.0.0.1 port: the attacker's pages (same site as the
    panel, a different origin)."""
    root = tmp_path / "attacker"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _attack_pages(panel: str) -> dict[str, str]:
    """Pages that submit to the panel as soon as they load: a cross-site attacker's."""
    retry = f"{panel}/package/broken/retry"
    form = f"""<form id="f" method="post" action="{retry}">
      <input name="version" value="0.1"><input name="recipe_steps_text" value="{PAYLOAD_STEP}">
      <input name="system_packages_text" value=""><input name="note" value="csrf">
      <input name="csrf_token" value="00112233445566778899aabbccddeeff"></form>
      <script>document.getElementById("f").submit();</script>"""
    # text/plain: name + "=" + value makes a JSON body, the classic trick
    body_start = json.dumps({"recipe_steps": [PAYLOAD_STEP.split()], "use_hints": False,
                             "note": "x"})[:-2]
    text = f"""<form id="f" method="post" enctype="text/plain" action="{retry}">
      <input name='{body_start}' value='"}}'></form>
      <script>document.getElementById("f").submit();</script>"""
    queue_text = f"""<form id="f" method="post" enctype="text/plain" action="{panel}/api/queue">
      <input name='{{"name": "cfast", "note": "' value='"}}'></form>
      <script>document.getElementById("f").submit();</script>"""
    trigger = f"""<form id="f" method="post" action="{panel}/api/worker/trigger"></form>
      <script>document.getElementById("f").submit();</script>"""
    retry_json = json.dumps({"recipe_steps": [PAYLOAD_STEP.split()], "use_hints": False})
    fetches = f"""<script>
      const opts = {{method: "POST", mode: "no-cors", credentials: "include"}};
      (async () => {{
        for (const [url, body] of [
          ["{retry}", {json.dumps(retry_json)}],
          ["{retry}", new URLSearchParams({{version: "0.1", recipe_steps_text: "{PAYLOAD_STEP}"}})],
          ["{retry}", new TextEncoder().encode({json.dumps(retry_json)}).buffer],
          ["{panel}/api/queue", '{{"name": "cfast"}}'],
          ["{panel}/api/worker/trigger", undefined],
        ]) {{
          try {{ await fetch(url, {{...opts, body}}); }} catch (e) {{}}
        }}
        document.title = "done";
      }})();
    </script>"""
    return {"form.html": form, "text.html": text, "queue_text.html": queue_text,
            "trigger.html": trigger, "fetch.html": fetches}


@pytest.mark.slow
@pytest.mark.parametrize("with_token", [False, True], ids=["no-token", "token-session"])
def test_cross_origin_pages_cannot_queue_or_trigger_in_chromium(
    browser, settings, attacker, with_token
):
    """The cross-site attack: a page on another port of 127.0.0.1 auto-submits a retry with recipe
    steps and triggers the worker. With a token, the browser holds a live session first
    (another port is the same site, so SameSite=Strict cookies are sent)."""
    settings = replace(settings, token=TOKEN if with_token else "")
    app = create_app(settings)
    worker = CountingWorker()
    app.state.worker = worker
    root, attacker_url = attacker
    with ServerThread(app) as srv:
        for name, html in _attack_pages(srv.url).items():
            (root / name).write_text(f"<!doctype html><html><body>{html}</body></html>")
        context = browser.new_context()
        page = context.new_page()
        try:
            if with_token:
                page.goto(srv.url + "/")
                page.fill("[data-token-form] input[name=token]", TOKEN)
                page.click("[data-token-form] button")
                page.wait_for_selector("[data-token-form]", state="detached", timeout=WAIT)
                assert context.cookies(srv.url)  # the browser holds a live session
            before = _queue_state(settings)
            answers: list[tuple[str, int]] = []
            page.on("response", lambda r: answers.append((r.url, r.status))
                    if r.request.method == "POST" and r.url.startswith(srv.url) else None)

            for name in ("form.html", "text.html", "queue_text.html", "trigger.html"):
                page.goto(f"{attacker_url}/{name}")
                # the form lands on the panel's answer: the request was handled by then
                page.wait_for_url(lambda url: url.startswith(srv.url), timeout=WAIT)
                page.wait_for_load_state()
            page.goto(f"{attacker_url}/fetch.html")
            page.wait_for_function("document.title === 'done'", timeout=WAIT)

            assert _queue_state(settings) == before
            assert worker.triggers == 0
            # every attack reached the panel (4 forms, 5 fetches) and was turned away
            assert len(answers) == 9 and {status for _, status in answers} <= {403, 415}, answers

            # the panel's own pages still work in the same browser
            page.goto(srv.url + "/package/broken")
            page.fill("[data-retry-form] textarea[name=recipe_steps_text]", "gcc --version")
            page.click("[data-retry-form] button[type=submit]")
            page.wait_for_url(srv.url + "/queue*", timeout=WAIT)
            (req,) = RetryQueue(settings.queue_path).requests()
            assert req.name == "broken" and req.recipe_steps == [["gcc", "--version"]]
            page.click("[data-trigger-worker]")
            page.wait_for_selector("[data-worker-msg]:has-text('started')", timeout=WAIT)
            assert worker.triggers == 1
        finally:
            page.close()
            context.close()


def test_state_changes_need_this_origin_and_json_or_a_csrf_form(settings):
    """Forged origins and the bodies a page elsewhere can send are refused; the panel's own
    requests (and API clients sending JSON) still work."""
    app = create_app(settings)
    worker = CountingWorker()
    app.state.worker = worker
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        same = {"Origin": srv.url}
        item = {"name": "cfast", "recipe_steps": [["touch", "/tmp/x"]]}
        before = _queue_state(settings)
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Origin": f"http://127.0.0.1:{srv.port + 1}"},
                        {"Origin": f"https://127.0.0.1:{srv.port}"},
                        {"Referer": f"http://127.0.0.1:{srv.port + 1}/attack.html"},
                        {"Origin": "http://evil.example", "Referer": srv.url + "/"}):
            assert c.post("/api/queue", json=item, headers=headers).status_code == 403, headers
            assert c.post("/package/broken/retry", json={}, headers=headers).status_code == 403
            assert c.post("/api/worker/trigger", headers=headers).status_code == 403
            r = c.request("DELETE", "/api/session/token", headers=headers)
            assert r.status_code == 403
        # the bodies a cross-origin form or no-cors fetch can carry, even from this origin
        form = {"version": "0.1", "recipe_steps_text": "touch /tmp/x"}
        assert c.post("/package/broken/retry", data=form, headers=same).status_code == 403
        text = json.dumps({"recipe_steps": [["touch", "/tmp/x"]]})
        r = c.post("/package/broken/retry", content=text,
                   headers={**same, "Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.post("/package/broken/retry", content=text.encode(), headers=same)
        assert r.status_code == 415  # no Content-Type at all
        r = c.post("/api/queue", files={"name": (None, "cfast")}, headers=same)
        assert r.status_code == 415
        # neither Origin nor Referer: only JSON or X-Worker-Token (which no page can send)
        assert c.post("/api/worker/trigger").status_code == 403
        assert c.post("/api/queue", data={"name": "cfast"}).status_code == 403
        # without a token, a DNS name (rebound to 127.0.0.1) is not this panel
        rebound = f"rebound.example:{srv.port}"
        r = c.post("/api/queue", json=item,
                   headers={"Host": rebound, "Origin": f"http://{rebound}"})
        assert r.status_code == 403
        assert _queue_state(settings) == before and worker.triggers == 0

        # what the panel's own script and API clients send
        assert c.post("/api/queue", json=item, headers=same).status_code == 201
        assert c.post("/api/queue", json={"name": "cdep"}).status_code == 201  # no Origin
        assert c.post("/api/worker/trigger", headers=same).status_code == 202
        r = c.post("/api/worker/trigger", headers={"Content-Type": "application/json"})
        assert r.status_code == 202 and worker.triggers == 2
        # and the package page's form without script, with the page's CSRF token
        token = csrf_of(c.get("/package/broken").text)
        r = c.post("/package/broken/retry", data={**form, "csrf_token": token}, headers=same)
        assert r.status_code == 303
        assert len(RetryQueue(settings.queue_path)) == 3


def test_worker_service_refuses_cross_origin_triggers(settings, tmp_path):
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
    cfg = WorkerConfig(tmp_path / "in", tmp_path / "out", settings.db_path.parent,
                       queue_path=settings.queue_path, history_db=settings.db_path)
    service = create_worker_app(cfg, token="")
    worker = CountingWorker()
    service.state.worker = worker
    with ServerThread(service) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.post("/trigger", headers={"Origin": "http://127.0.0.1:1"}).status_code == 403
        r = c.post("/trigger", content="{}", headers={"Origin": srv.url,
                                                      "Content-Type": "text/plain"})
        assert r.status_code == 415
        assert c.post("/trigger").status_code == 403  # could be a form: no Origin, no JSON
        assert worker.triggers == 0
        assert c.post("/trigger", json={}).status_code == 202 and worker.triggers == 1


def _set_cookie(response: httpx.Response) -> SimpleCookie:
    (header,) = response.headers.get_list("set-cookie")
    jar = SimpleCookie()
    jar.load(header)
    return jar


def test_session_cookie_holds_a_session_id_not_the_token(token_settings):
    app = create_app(token_settings)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/api/session/token", headers={"X-Worker-Token": TOKEN, "Origin": srv.url})
        assert r.status_code == 200
        header = r.headers["set-cookie"]
        assert TOKEN not in header
        morsel = _set_cookie(r)["refinery_session"]
        assert len(morsel.value) >= 32 and morsel.value != TOKEN
        assert morsel["httponly"] and morsel["samesite"].lower() == "strict"
        assert not morsel["secure"]  # plain http: a Secure cookie would never come back
        assert c.get("/api/queue").status_code == 200  # the session works
        stolen = morsel.value

        # logging in again (JSON body) starts a new session; logging out ends it server-side
        r = c.post("/api/session/token", json={"token": TOKEN}, headers={"Origin": srv.url})
        assert r.status_code == 200 and _set_cookie(r)["refinery_session"].value != stolen
        assert c.request("DELETE", "/api/session/token",
                         headers={"Origin": srv.url}).status_code == 200
        c.cookies.clear()
        for sid in (stolen, TOKEN):
            r = c.get("/api/queue", headers={"Cookie": f"refinery_session={sid}"})
            assert r.status_code == 401, sid

        # behind a TLS-terminating proxy the cookie is Secure
        r = c.post("/api/session/token", headers={"X-Worker-Token": TOKEN, "Origin":
                   f"https://127.0.0.1:{srv.port}", "X-Forwarded-Proto": "https"})
        assert r.status_code == 200 and _set_cookie(r)["refinery_session"]["secure"]
    https = client_for(token_settings, base_url="https://127.0.0.1")
    r = https.post("/api/session/token", headers={"X-Worker-Token": TOKEN})
    assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()


def test_token_in_the_url_is_refused_and_never_logged(tmp_path):
    """`refinery serve` as run for real, with uvicorn's access log on."""
    make_history(tmp_path / "cache")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WORKER_CACHE": str(tmp_path / "nowhere"), "WORKER_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "refinery_lib.cli", "serve", "--db",
         str(tmp_path / "cache" / "history.db"), "--port", str(port), "--log-level", "info"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(url)
        with httpx.Client(base_url=url, timeout=30, headers={"Origin": url}) as c:
            assert c.get("/api/queue", params={"token": TOKEN}).status_code == 401
            assert c.get("/api/worker/status", params={"TOKEN": TOKEN}).status_code == 401
            r = c.post("/api/session/token", params={"token": TOKEN})
            assert r.status_code == 401 and "set-cookie" not in r.headers
            r = c.post("/api/queue", params={"token": TOKEN}, json={"name": "cfast"})
            assert r.status_code == 401
            assert "unlock" in c.get("/queue", params={"token": TOKEN}).text.lower()
            assert c.get("/api/queue", headers={"X-Worker-Token": TOKEN}).status_code == 200
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert '"GET /api/queue?token=redacted HTTP/1.1" 401' in output  # the access log is on
    assert TOKEN not in output


def _wait_for(url: str) -> None:
    for _ in range(300):  # bounded wait for the port
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


SECRET = "TOP-SECRET-outside-the-logs-folder"


def _swap_forever(log: Path, secret: Path, stop: threading.Event) -> None:
    """A build in the logs folder: the log name flips between a real log and a symlink out."""
    link, real = log.with_name(".swap-link"), log.with_name(".swap-real")
    while not stop.is_set():
        for tmp in (link, real):
            tmp.unlink(missing_ok=True)
        link.symlink_to(secret)
        os.replace(link, log)
        real.write_text("building cfast 1.0\nok\n")
        os.replace(real, log)


def test_a_log_swapped_for_a_symlink_is_never_served(settings, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    log = settings.logs_dir / "cfast-1.0-attempt1-isolated.log"
    # plain symlinks out of the folder: not listed, not served
    (settings.logs_dir / "cfast-1.0-attempt7-isolated.log").symlink_to(secret)
    (settings.logs_dir / "cfast-1.0-attempt8-isolated.log").symlink_to("/etc/passwd")
    app = create_app(settings)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        for attempt in (7, 8):
            q = {"attempt": attempt, "variant": "isolated"}
            assert c.get("/logs/cfast/1.0/raw", params=q).status_code == 404
            r = c.get("/logs/cfast/1.0", params=q, headers={"Accept": "application/json"})
            assert SECRET not in r.text and "root:" not in r.text
            r = c.get("/logs/cfast/1.0/stream", params={**q, "idle": 0.2})
            assert SECRET not in r.text and "root:" not in r.text

        stop = threading.Event()
        swapper = threading.Thread(target=_swap_forever, args=(log, secret, stop), daemon=True)
        swapper.start()
        q = {"attempt": 1, "variant": "isolated"}

        def raw() -> str:
            return c.get("/logs/cfast/1.0/raw", params=q).text

        def page() -> str:
            return c.get("/logs/cfast/1.0", params=q, headers={"Accept": "application/json"}).text

        def stream() -> str:
            seen = ""
            deadline = time.monotonic() + 1.0
            with c.stream("GET", "/logs/cfast/1.0/stream", params={**q, "idle": 5}) as r:
                for chunk in r.iter_text():
                    seen += chunk
                    if seen.count("data: ") >= 4 or time.monotonic() > deadline:
                        break
            return seen

        def served(fetch) -> str:
            try:
                return fetch()
            except httpx.HTTPError as exc:  # a dropped answer served nothing
                return f"(no answer: {exc})"

        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                jobs = [pool.submit(served, f) for _ in range(100) for f in (raw, page, stream)]
                answers = [j.result() for j in jobs]
        finally:
            stop.set()
            swapper.join(10)
    leaked = [a for a in answers if SECRET in a]
    assert not leaked, f"{len(leaked)} of {len(answers)} answers served the outside file"
    assert any("building cfast" in a for a in answers)  # the real log was served meanwhile


def test_junk_is_refused_at_enqueue_and_rejected_requests_are_set_aside(settings, tmp_path):
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
    cfg = WorkerConfig(tmp_path / "in", tmp_path / "out", settings.db_path.parent,
                       queue_path=settings.queue_path, history_db=settings.db_path)
    calls = []

    def rejecting_run(argv):  # what `refinery` does with a flag or target it refuses
        calls.append(argv)
        raise SystemExit(2)

    app = create_app(replace(settings, worker=cfg))
    app.state.worker = LocalWorker(cfg, runner=rejecting_run)
    with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=30,
                                                headers={"Origin": srv.url}) as c:
        for body in ({"name": "cfast\n"}, {"name": "cfast\r\n"},
                     {"name": "cfast", "platform_tag": ".."},
                     {"name": "cfast", "platform_tag": "manylinux2014_s390x\n"},
                     {"name": "cfast", "platform_tag": "../../etc"},
                     {"name": "cfast", "python_tag": "cp311\ncp312"},
                     {"name": "cfast", "python_tag": "cp311; reboot"},
                     {"name": "cfast", "python_tag": ".."}):
            assert c.post("/api/queue", json=body).status_code == 422, body
        assert c.post("/package/cfast%0A/retry", json={}).status_code == 400
        assert c.post("/package/cfast/retry", json={"platform_tag": ".."}).status_code == 422
        assert c.get("/api/queue").json()["length"] == 0

        req = c.post("/api/queue", json={"name": "cfast", "version": "1.0"}).json()
        assert c.post("/api/worker/trigger").status_code == 202
        app.state.worker.wait(60)
        listed = c.get("/api/queue").json()
        assert listed["length"] == 0
        (dead,) = listed["dead"]
        assert dead["id"] == req["id"] and "SystemExit: 2" in dead["reason"]
        page = c.get("/queue").text
        assert "Set aside by the worker" in page and "SystemExit: 2" in page

        assert c.post("/api/worker/trigger").status_code == 202  # the next drain
        app.state.worker.wait(60)
        assert len(calls) == 1  # not tried again
        assert len(c.get("/api/queue").json()["dead"]) == 1

        # re-queued and deleted only when someone says so
        r = c.post(f"/api/queue/dead/{dead['id']}/requeue")
        assert r.status_code == 201 and r.json()["name"] == "cfast"
        listed = c.get("/api/queue").json()
        assert listed["length"] == 1 and listed["dead"] == []
        assert c.post("/api/worker/trigger").status_code == 202
        app.state.worker.wait(60)
        assert len(calls) == 2
        assert c.request("DELETE", f"/api/queue/dead/{dead['id']}").status_code == 200
        assert c.get("/api/queue").json() == {"length": 0, "requests": [], "dead": []}


def _serve(tmp_path: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    make_history(tmp_path / "cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "PANEL_"))}
    env["WORKER_CACHE"] = str(tmp_path / "nowhere")
    if token is not None:
        env["WORKER_TOKEN"] = token
    argv = [sys.executable, "-m", "refinery_lib.cli", "serve", "--db",
            str(tmp_path / "cache" / "history.db"), "--port", str(free_port()), *args]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it started serving: the refusal did not happen
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"refinery serve {' '.join(args)} kept running: {err[-500:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.parametrize(("args", "token", "says"), [
    (["--host", "0.0.0.0"], None, "without WORKER_TOKEN"),
    (["--host", "192.0.2.1"], None, "without WORKER_TOKEN"),
    (["--host", "127.0.0.1"], "short-token", "at least 16"),
    (["--host", "0.0.0.0", "--insecure-no-token"], "short-token", "at least 16"),
])
def test_serve_refuses_to_listen_unprotected(tmp_path, args, token, says):
    res = _serve(tmp_path, *args, token=token)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
    if token:
        assert token not in res.stderr


def test_worker_service_entry_point_refuses_too(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    for args, token in ((["--host", "0.0.0.0"], None), (["--host", "127.0.0.1"], "short")):
        run_env = {**env, **({"WORKER_TOKEN": token} if token else {})}
        res = subprocess.run([sys.executable, "-m", "web.worker_service", "--port",
                              str(free_port()), *args], env=run_env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_bind_rules():
    from web.security import bind_problem

    assert bind_problem("127.0.0.1", "", False) is None
    assert bind_problem("::1", "", False) is None
    assert bind_problem("localhost", "", False) is None
    assert bind_problem("0.0.0.0", "", False)
    assert bind_problem("0.0.0.0", "", True) is None  # --insecure-no-token
    assert bind_problem("0.0.0.0", TOKEN, False) is None
    assert bind_problem("127.0.0.1", "x" * 15, False)


def test_without_a_token_changes_arrive_on_loopback_only(settings):
    """`uvicorn --factory web.app:create_app --host 0.0.0.0` bypasses `refinery serve`'s
    check; the app itself still refuses changes that arrive on another address."""
    c = client_for(settings, base_url="http://192.0.2.10")  # the socket's address
    assert c.post("/api/queue", json={"name": "cfast"}).status_code == 403
    insecure = client_for(replace(settings, insecure_no_token=True),
                          base_url="http://192.0.2.10")
    assert insecure.post("/api/queue", json={"name": "cfast"}).status_code == 201
    with pytest.raises(ValueError, match="at least 16"):
        create_app(replace(settings, token="short"))
