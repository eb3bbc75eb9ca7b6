"""`refinery queue`, `refinery worker` and the drain: as a user runs them, and end to end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from refinery_lib.history import History
from refinery_lib.retry_queue import RetryQueue, RetryRequest
from refinery_lib.retry_worker import WorkerConfig, drain_and_run, worker_lock
from tests.conftest import run_refinery
from tests.fixtures.projects import make_wheel
from tests.web.conftest import client_for
from web.settings import PanelSettings


def test_queue_command_prints_the_length(tmp_path):
    q = RetryQueue.in_cache(tmp_path)
    res = run_refinery(["queue", "--cache", str(tmp_path)])
    assert res.returncode == 0 and res.stdout.strip() == "0"
    q.add(RetryRequest("cfast", "1.0"))
    q.add(RetryRequest("cdep"))
    res = run_refinery(["queue", "--cache", str(tmp_path)])
    assert res.stdout.strip() == "2"
    res = run_refinery(["queue", "--queue-path", str(q.path), "--json"])
    data = json.loads(res.stdout)
    assert data["length"] == 2 and [r["name"] for r in data["requests"]] == ["cfast", "cdep"]
    res = run_refinery(["queue", "--queue-path", str(tmp_path / "other.json")])
    assert res.stdout.strip() == "0"


def test_worker_command_with_an_empty_queue_runs_nothing(tmp_path):
    for d in ("in", "out", "cache"):
        (tmp_path / d).mkdir()
    res = run_refinery(["worker", "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--json"])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "empty"
    assert not (tmp_path / "cache" / "workflow").exists()  # no run was started


def _cfg(tmp_path: Path, **kw) -> WorkerConfig:
    for d in ("in", "out", "cache"):
        (tmp_path / d).mkdir(exist_ok=True)
    return WorkerConfig(tmp_path / "in", tmp_path / "out", tmp_path / "cache", **kw)


def test_drain_lays_recipes_over_the_users_config(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"strategy": {"expansion_depth": 1}, "overrides": {
        "Broken": {"env": {"CFLAGS": "-O0"}, "recipe_steps": [["old"]]},
        "other": {"version": "9"}}}))
    cfg = _cfg(tmp_path, python="3.11", config=user, extra_args=("--jobs", "1"))
    cfg.queue.add(RetryRequest("broken", "0.1", "cp312", "manylinux_2_28_s390x",
                               recipe_steps=[["make", "deps"]], system_packages=["gcc"]))
    cfg.queue.add(RetryRequest("cfast"))
    seen = []

    def runner(argv):
        seen.append((argv, json.loads(Path(argv[argv.index("--config") + 1]).read_text())))
        return 0

    result = drain_and_run(cfg, runner, log=lambda m: None)
    assert result.status == "done" and result.returncode == 0 and len(result.runs) == 2
    by_python = {a[a.index("--python") + 1]: (a, c) for a, c in seen}
    argv, conf = by_python["3.12"]  # the request's own target
    assert argv[argv.index("--platform-tag") + 1] == "manylinux_2_28_s390x"
    assert conf["strategy"] == {"expansion_depth": 1}
    assert conf["overrides"]["Broken"] == {"env": {"CFLAGS": "-O0"}, "version": "0.1",
                                           "recipe_steps": [["make", "deps"]],
                                           "system_packages": ["gcc"]}
    assert conf["overrides"]["other"] == {"version": "9"}
    argv, conf = by_python["3.11"]  # no target in the request: the worker's
    assert "--platform-tag" not in argv and argv[argv.index("--rebuild") + 1] == "cfast"
    assert argv[-4:-2] == ["--jobs", "1"]
    assert len(cfg.queue) == 0
    assert not list((cfg.cache / "worker").glob("retry-config-*"))  # temp configs removed


def test_a_run_that_cannot_start_sets_its_requests_aside(tmp_path):
    """Not back to the front of the queue, where they would fail again on every drain."""
    cfg = _cfg(tmp_path)
    req = cfg.queue.add(RetryRequest("cfast"))
    calls = []

    def runner(argv):
        calls.append(argv)
        raise SystemExit(2)  # e.g. argparse refusing a flag

    result = drain_and_run(cfg, runner, log=lambda m: None)
    assert result.status == "error" and result.returncode == 2 and result.dead == [req.id]
    assert cfg.queue.requests() == []
    (dead,) = cfg.queue.dead()
    assert dead.id == req.id and "SystemExit: 2" in dead.reason
    assert drain_and_run(cfg, runner, log=lambda m: None).status == "empty"
    assert len(calls) == 1
    res = run_refinery(["queue", "--queue-path", str(cfg.queue.path), "--json"])
    data = json.loads(res.stdout)
    assert data["length"] == 0 and [d["id"] for d in data["dead"]] == [req.id]


def test_one_worker_per_cache(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.queue.add(RetryRequest("cfast"))
    with worker_lock(cfg.cache) as got:
        assert got
        result = drain_and_run(cfg, lambda argv: 0, log=lambda m: None)
    assert result.status == "busy" and len(cfg.queue) == 1


class _Runs:
    """A stand-in for `cli_run.run`: keeps the argv of each run."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(list(argv))
        return 0


def test_refinery_worker_runs_the_workflow_through_cli_run(tmp_path, monkeypatch):
    """`refinery worker` hands the drain `cli_run.run` (injected; the worker module knows no
    command line)."""
    from refinery_lib import cli, cli_run

    runs = _Runs()
    monkeypatch.setattr(cli_run, "run", runs)
    cfg = _cfg(tmp_path)
    cfg.queue.add(RetryRequest("cfast"))
    rc = cli.main(["worker", "--input", str(cfg.input), "--output", str(cfg.output), "--cache",
                   str(cfg.cache), "--jobs", "1"])
    assert rc == 0
    (argv,) = runs.calls
    assert argv[argv.index("--rebuild") + 1] == "cfast" and argv[-4:-2] == ["--jobs", "1"]


def test_the_panel_runs_the_workflow_with_the_run_it_is_given(tmp_path):
    """create_app(run=...) and create_worker_app(run=...): the local worker drains with it;
    without one, both use `refinery_lib.cli_run.run` (what `uvicorn --factory` gets)."""
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from refinery_lib import cli_run
    from tests.web.conftest import make_history
    from web.app import create_app
    from web.worker_service import create_worker_app

    cfg = _cfg(tmp_path)
    make_history(cfg.cache)
    settings = replace(PanelSettings.from_env(db=cfg.db, environ={}), worker=cfg)
    assert create_app(settings).state.run is cli_run.run
    assert create_worker_app(cfg, token="").state.worker.runner is cli_run.run

    runs = _Runs()
    cfg.queue.add(RetryRequest("cfast"))
    client = TestClient(create_app(settings, run=runs), base_url="http://127.0.0.1",
                        headers={"Origin": "http://127.0.0.1"})
    r = client.post("/api/worker/trigger")
    assert r.status_code == 202 and r.json()["mode"] == "local"
    client.app.state.worker.wait(60)
    assert client.get("/api/worker/status").json()["last"]["status"] == "done"
    (argv,) = runs.calls
    assert argv[argv.index("--rebuild") + 1] == "cfast"

    service = create_worker_app(cfg, token="", run=runs)
    assert service.state.worker.runner is runs


def test_serve_hands_the_panel_cli_run(tmp_path, monkeypatch):
    """`refinery serve` builds the app with `run=cli_run.run` (uvicorn itself stubbed)."""
    import uvicorn

    from refinery_lib import cli, cli_run
    from tests.web.conftest import make_history

    make_history(tmp_path / "cache")
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    monkeypatch.setenv("WORKER_CACHE", str(tmp_path / "nowhere"))
    monkeypatch.delenv("WORKER_TOKEN", raising=False)
    assert cli.main(["serve", "--cache", str(tmp_path / "cache")]) == 0
    (app,) = served
    assert app.state.run is cli_run.run


def _has_flag(flag: str) -> bool:
    from refinery_lib import cli

    return flag in cli._run_parser().format_help()


@pytest.fixture(scope="module")
def broken_index_url(tmp_path_factory):
    """A PEP 503 index on loopback with the one failing sdist this test needs (and setuptools),
    kept apart from the session index so its other projects cost nothing here."""
    import functools
    import http.server
    import shutil
    import threading

    from tests.conftest import _QuietHandler, build_tools_wheels
    from tests.fixtures.projects import build_sdist, write_project, write_simple_index

    root = tmp_path_factory.mktemp("broken-index")
    build_sdist(write_project(root / "projects", "broken", "0.1", broken=True), root / "files")
    for wheel in build_tools_wheels():
        shutil.copy(wheel, root / "files")
    write_simple_index(root / "files", root / "simple")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


@pytest.mark.slow
def test_failure_retry_with_edited_recipe_is_rebuilt_by_the_worker(
    tmp_path, broken_index_url, isolated_pip_env
):
    """A real run with a failure, the panel's retry with an edited recipe, `refinery worker`."""
    make_wheel(tmp_path / "in", "broken", "0.1", "cp311-cp311-manylinux2014_s390x")
    common = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--cache",
              str(tmp_path / "cache"), "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
              "--platform-tag", "native"]
    run_flags = ["--index-url", broken_index_url, "--jobs", "2"]
    res = run_refinery(common + run_flags, env=isolated_pip_env)
    assert res.returncode == 1, res.stdout + res.stderr
    cache = tmp_path / "cache"
    history = History(cache / "history.db")
    attempts_before = [e for e in history.recent(100, "broken") if e["status"] == "attempt"]
    assert history.last_status("broken") == "failed", res.stdout + res.stderr

    client = client_for(PanelSettings.from_env(db=cache / "history.db", environ={}))
    page = client.get("/package/broken")
    assert page.status_code == 200 and "the last build failed" in page.text
    assert 'href="/logs/broken/0.1?attempt=1' in page.text  # the failed attempt's log
    step = f"{sys.executable} -c \"print('queued recipe step ran')\""
    # as the package page's script sends it: JSON, the form's fields as edited
    r = client.post("/package/broken/retry", json={
        "version": "0.1", "python_tag": "", "platform_tag": "", "recipe_steps_text": step,
        "system_packages_text": "", "note": "retry from the test", "use_hints": False})
    assert r.status_code == 201
    assert client.get("/api/queue").json()["length"] == 1

    worker_flags = run_flags + (["--allow-system-recipes"]
                                if _has_flag("--allow-system-recipes") else [])
    res = run_refinery(["worker", *common, "--json", *worker_flags], env=isolated_pip_env)
    assert res.returncode == 1, res.stdout + res.stderr  # broken is still broken
    report = json.loads(res.stdout[res.stdout.rindex("{\n  \"status\""):])
    assert report["status"] == "done" and report["runs"][0]["packages"] == ["broken"]
    assert len(RetryQueue.in_cache(cache)) == 0

    events = history.recent(200, "broken")
    recipe = [e for e in events if e["status"] == "system_recipe"]
    assert recipe and recipe[0]["metadata"]["recipe_steps"] == [
        [sys.executable, "-c", "print('queued recipe step ran')"]]
    attempts_after = [e for e in events if e["status"] == "attempt"]
    assert len(attempts_after) > len(attempts_before)  # really rebuilt, not skipped
    logs = "".join(p.read_text(errors="replace") for p in (cache / "logs").glob("broken-*.log"))
    assert "queued recipe step ran" in logs  # the edited recipe ran before the build
    assert history.last_status("broken") == "failed"
    page = client.get("/package/broken").text
    assert "queued retry recipe" in page
    assert client.get("/logs/broken/0.1").status_code == 200


def test_serve_command_serves_the_panel(tmp_path):
    """`refinery serve` as a user starts it: a real server on a loopback port."""
    import subprocess
    import time

    import httpx

    from tests.web.conftest import free_port, make_history

    make_history(tmp_path / "cache")
    port = free_port()
    env = {**os.environ, "WORKER_CACHE": str(tmp_path / "nowhere")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "refinery_lib.cli", "serve", "--db",
         str(tmp_path / "cache" / "history.db"), "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):  # bounded wait for the port
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "broken" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/queue", timeout=10).json()["length"] == 0
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "http://127.0.0.1:" in err and "worker: none" in err
