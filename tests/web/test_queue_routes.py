"""Queue API, the package page's retry, and the worker trigger (in-process and by webhook)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from refinery_lib.history import History
from refinery_lib.retry_queue import RetryQueue, RetryRequest
from refinery_lib.retry_worker import WorkerConfig
from tests.web.conftest import ServerThread, client_for, csrf_of
from web.trigger import LocalWorker
from web.worker_service import create_worker_app

HOOK_TOKEN = "hook-token-0123456789"


def test_queue_add_edit_reorder_delete(client, settings):
    a = client.post("/api/queue", json={"name": "CFast", "version": "1.0",
                                        "recipe_steps": [["echo", "a"]]})
    assert a.status_code == 201
    a = a.json()
    assert a["name"] == "cfast" and a["recipe_steps"] == [["echo", "a"]]
    b = client.post("/api/queue", json={"name": "cdep", "python_tag": "3.11"}).json()
    assert b["python_tag"] == "cp311"
    listed = client.get("/api/queue").json()
    assert listed["length"] == 2 and [r["id"] for r in listed["requests"]] == [a["id"], b["id"]]

    r = client.put(f"/api/queue/{a['id']}",
                   json={"recipe_steps_text": "dnf install -y 'openblas-devel'\nmake  all",
                         "system_packages_text": "gcc make"})
    assert r.status_code == 200
    assert r.json()["recipe_steps"] == [["dnf", "install", "-y", "openblas-devel"],
                                        ["make", "all"]]
    on_disk = RetryQueue(settings.queue_path).get(a["id"])
    assert on_disk.system_packages == ["gcc", "make"] and on_disk.version == "1.0"

    r = client.post("/api/queue/reorder", json={"ids": [b["id"]]})
    assert [x["id"] for x in r.json()["requests"]] == [b["id"], a["id"]]
    assert client.post("/api/queue/reorder", json={"ids": ["f" * 32]}).status_code == 404

    assert client.delete(f"/api/queue/{b['id']}").json()["name"] == "cdep"
    assert client.delete(f"/api/queue/{b['id']}").status_code == 404
    assert client.put(f"/api/queue/{b['id']}", json={}).status_code == 404
    assert client.get("/api/queue").json()["length"] == 1


def test_retry_api_takes_the_suggested_recipe_from_hints(client, settings):
    r = client.post("/package/Broken/retry", json={})
    assert r.status_code == 201
    req = r.json()
    assert req["name"] == "broken" and req["version"] == "0.1"
    assert req["python_tag"] == "cp311" and req["platform_tag"] == "manylinux2014_s390x"
    assert req["recipe_steps"] == [["gcc", "--version"]] and req["system_packages"] == ["gcc"]
    r = client.post("/package/broken/retry",
                    json={"use_hints": False, "version": "0.1", "note": "plain retry"})
    assert r.json()["recipe_steps"] == [] and r.json()["note"] == "plain retry"
    r = client.post("/package/broken/retry", json={"recipe_steps": [["true"]]})
    assert r.json()["recipe_steps"] == [["true"]]
    assert len(RetryQueue(settings.queue_path)) == 3


def test_retry_form_from_the_package_page_redirects_to_the_queue(client, settings):
    """The form as a browser without scripts posts it: with the page's CSRF token."""
    form = {"version": "0.1", "python_tag": "cp311", "platform_tag": "manylinux2014_s390x",
            "recipe_steps_text": "gcc --version\necho 'edited step'",
            "system_packages_text": "", "note": "from the form"}
    r = client.post("/package/broken/retry", follow_redirects=False, data=form)
    assert r.status_code == 403  # no session, no CSRF token: refused
    token = csrf_of(client.get("/package/broken").text)  # also sets the session cookie
    r = client.post("/package/broken/retry", follow_redirects=False,
                    data={**form, "csrf_token": token[::-1]})
    assert r.status_code == 403
    r = client.post("/package/broken/retry", follow_redirects=False,
                    data={**form, "csrf_token": token})
    assert r.status_code == 303
    (req,) = RetryQueue(settings.queue_path).requests()
    assert r.headers["location"] == f"/queue#req-{req.id}"
    assert req.recipe_steps == [["gcc", "--version"], ["echo", "edited step"]]
    assert req.system_packages == [] and req.note == "from the form"
    bad = client.post("/package/broken/retry",
                      data={"recipe_steps_text": "echo 'open", "csrf_token": token})
    assert bad.status_code == 422
    assert len(RetryQueue(settings.queue_path)) == 1


def test_retry_of_a_package_never_seen_uses_what_is_given(client, settings):
    r = client.post("/package/brand-new/retry", json={"version": "2.0"})
    assert r.status_code == 201 and r.json()["recipe_steps"] == []
    assert client.get("/package/brand-new").status_code == 200  # queued: the page exists


class Recorder:
    """Stands in for `refinery_lib.cli.run`: keeps the argv and the config it was given."""

    def __init__(self, rc: int = 1):
        self.rc, self.calls = rc, []

    def __call__(self, argv: list[str]) -> int:
        config = json.loads(open(argv[argv.index("--config") + 1]).read())
        self.calls.append((argv, config))
        return self.rc


@pytest.fixture
def worker_dirs(tmp_path, settings):
    for d in ("in", "out"):
        (tmp_path / d).mkdir()
    return WorkerConfig(input=tmp_path / "in", output=tmp_path / "out",
                        cache=settings.db_path.parent, python="3.11",
                        queue_path=settings.queue_path, history_db=settings.db_path)


def test_trigger_runs_the_worker_in_process(settings, worker_dirs):
    recorder = Recorder()
    settings = replace(settings, worker=worker_dirs)
    client = client_for(settings)
    client.app.state.worker = LocalWorker(worker_dirs, runner=recorder)
    assert client.post("/package/broken/retry", json={}).status_code == 201
    assert "Run worker now" in client.get("/").text
    r = client.post("/api/worker/trigger")
    assert r.status_code == 202 and r.json()["mode"] == "local"
    client.app.state.worker.wait(60)
    status = client.get("/api/worker/status").json()
    assert status["last"]["status"] == "done" and status["last"]["returncode"] == 1
    ((argv, config),) = recorder.calls
    assert argv[argv.index("--rebuild") + 1] == "broken"
    assert argv[argv.index("--python") + 1] == "3.11"
    assert argv[argv.index("--platform-tag") + 1] == "manylinux2014_s390x"
    assert config["overrides"]["broken"] == {
        "version": "0.1", "recipe_steps": [["gcc", "--version"]], "system_packages": ["gcc"]}
    assert len(RetryQueue(settings.queue_path)) == 0
    recipes = [e for e in History(settings.db_path).recent(5, "broken")
               if e["status"] == "system_recipe"]
    assert recipes[0]["metadata"]["recipe_steps"] == [["gcc", "--version"]]


def test_trigger_without_any_worker_is_503(client):
    r = client.post("/api/worker/trigger")
    assert r.status_code == 503 and "WORKER_WEBHOOK_URL" in r.json()["detail"]


def test_trigger_through_the_worker_service_webhook(settings, worker_dirs):
    """The panel POSTs to a real worker service on loopback, which drains the shared queue."""
    recorder = Recorder(rc=0)
    service = create_worker_app(worker_dirs, token=HOOK_TOKEN)
    service.state.worker = LocalWorker(worker_dirs, runner=recorder)
    RetryQueue(settings.queue_path).add(RetryRequest("cfast", "1.0"))
    with ServerThread(service) as srv:
        assert srv_get(srv, "/healthz")["worker"] is True
        wrong = "wrong-but-long-enough-token"
        bad = client_for(replace(settings, webhook_url=srv.url + "/trigger", token=wrong))
        r = bad.post("/api/worker/trigger", headers={"X-Worker-Token": wrong})
        assert r.status_code == 503 and "403" in r.json()["detail"]
        assert len(RetryQueue(settings.queue_path)) == 1  # refused: nothing drained
        good = client_for(replace(settings, webhook_url=srv.url + "/trigger", token=HOOK_TOKEN))
        r = good.post("/api/worker/trigger", headers={"X-Worker-Token": HOOK_TOKEN})
        assert r.status_code == 202 and r.json()["mode"] == "webhook"
        service.state.worker.wait(60)
    ((argv, config),) = recorder.calls
    assert "--rebuild" in argv and config["overrides"] == {"cfast": {"version": "1.0"}}
    assert len(RetryQueue(settings.queue_path)) == 0


def srv_get(srv, path):
    import httpx

    return httpx.get(srv.url + path, timeout=10).json()


def test_worker_service_needs_its_token(worker_dirs):
    from fastapi.testclient import TestClient

    client = TestClient(create_worker_app(worker_dirs, token=HOOK_TOKEN),
                        base_url="http://127.0.0.1")
    assert client.post("/trigger", json={}).status_code == 401
    assert client.post("/trigger", headers={"X-Worker-Token": "nope"}).status_code == 403
    # never in the URL: a token there ends up in access logs
    assert client.get("/status", params={"token": HOOK_TOKEN}).status_code == 401
    r = client.get("/status", headers={"X-Worker-Token": HOOK_TOKEN})
    assert r.json()["queue_depth"] == 0
    assert client.get("/openapi.json").status_code == 200
    with pytest.raises(ValueError, match="at least 16"):
        create_worker_app(worker_dirs, token="t0k")


def test_a_second_trigger_while_running_is_409(settings, worker_dirs):
    import threading

    release = threading.Event()

    def slow_runner(argv):
        release.wait(60)
        return 0

    client = client_for(replace(settings, worker=worker_dirs))
    client.app.state.worker = LocalWorker(worker_dirs, runner=slow_runner)
    RetryQueue(settings.queue_path).add(RetryRequest("cfast"))
    try:
        assert client.post("/api/worker/trigger").status_code == 202
        assert client.post("/api/worker/trigger").status_code == 409
        assert client.get("/api/worker/status").json()["running"] is True
    finally:
        release.set()
        client.app.state.worker.wait(60)
    assert client.get("/api/worker/status").json()["last"]["status"] == "done"


def test_autorun_drains_the_queue_periodically(settings, worker_dirs):
    from web.app import create_app

    recorder = Recorder(rc=0)
    app = create_app(replace(settings, worker=worker_dirs, autorun_interval=0.2))
    app.state.worker = LocalWorker(worker_dirs, runner=recorder)
    RetryQueue(settings.queue_path).add(RetryRequest("cfast", "1.0"))
    from fastapi.testclient import TestClient

    with TestClient(app):  # runs the lifespan, which starts the autorun thread
        for _ in range(300):  # bounded wait, no timing asserted
            if recorder.calls and not app.state.worker.running:
                break
            threading_sleep(0.1)
    assert len(recorder.calls) == 1 and len(RetryQueue(settings.queue_path)) == 0


def threading_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
