"""A damaged history database, the panel's side: named in one line, never a
traceback, never moved or changed by the panel (a run sets it aside).

The damaged files are real: a history written by History (as the workflow writes it),
copied and cut to half its size, and a file of random bytes of the same size.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from refinery_lib.history import set_aside_if_damaged
from tests.web.conftest import client_for, free_port, make_history
from web.settings import PanelSettings

#: pages and APIs that read the history; /hints and /queue do not
PAGES = ("/", "/package/broken", "/logs/broken/0.1")
APIS = ("/api/stats", "/api/top-failures", "/api/top-slowest", "/api/packages/broken")


@pytest.fixture(scope="module")
def sound_db(tmp_path_factory) -> bytes:
    cache = tmp_path_factory.mktemp("sound") / "cache"
    make_history(cache)
    return (cache / "history.db").read_bytes()


def _damaged(tmp_path: Path, sound: bytes, kind: str) -> Path:
    db = tmp_path / kind / "history.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(sound[: len(sound) // 2] if kind == "truncated" else os.urandom(len(sound)))
    return db


def _settings(db: Path) -> PanelSettings:
    return PanelSettings(db, db.parent / "retry_queue.json", db.parent / "logs")


def _says_damaged(text: str, db: Path) -> None:
    assert f"the history database {db} is damaged" in text
    assert "`refinery run` sets it aside" in text and "move it away" in text
    assert "Traceback" not in text and "sqlite3." not in text


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_serve_refuses_a_damaged_history_in_one_line(tmp_path, sound_db, kind):
    db = _damaged(tmp_path, sound_db, kind)
    before = db.read_bytes()
    env = {**os.environ, "WORKER_CACHE": str(tmp_path / "nowhere")}
    env.pop("WORKER_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "refinery_lib.cli", "serve", "--db", str(db), "--port",
         str(free_port())],
        env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("refinery: error: ")
    _says_damaged(lines[0], db)
    assert db.read_bytes() == before  # neither moved nor changed
    assert [p.name for p in db.parent.iterdir() if "damaged" in p.name] == []


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_every_page_names_a_damaged_history_instead_of_a_500(tmp_path, sound_db, kind):
    db = _damaged(tmp_path, sound_db, kind)
    before = db.read_bytes()
    client = client_for(_settings(db))
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 503, path
        assert r.headers["content-type"].startswith("text/html")
        _says_damaged(r.text, db)
    for path in APIS:
        r = client.get(path)
        assert r.status_code == 503, path
        assert list(r.json()) == ["detail"]
        _says_damaged(r.json()["detail"], db)
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["ok"] is False
    _says_damaged(health.json()["detail"], db)
    for path in ("/hints", "/queue"):  # these still work, with the banner
        r = client.get(path)
        assert r.status_code == 200
        assert 'class="alert alert-danger history-problem"' in r.text
        _says_damaged(r.text, db)
    assert db.read_bytes() == before


def test_a_history_damaged_while_serving_is_named_until_a_run_sets_it_aside(tmp_path,
                                                                            sound_db):
    cache = tmp_path / "cache"
    make_history(cache)
    db = cache / "history.db"
    client = client_for(_settings(db))
    assert client.get("/").status_code == 200
    assert client.get("/api/stats").status_code == 200
    assert client.get("/healthz").json() == {"ok": True}

    db.write_bytes(sound_db[: len(sound_db) // 2])  # damaged in place, the panel running
    assert client.get("/").status_code == 503
    assert client.get("/api/stats").status_code == 503
    _says_damaged(client.get("/healthz").json()["detail"], db)
    assert "history-problem" in client.get("/hints").text  # the banner, on every page

    # what `refinery run` does first: set it aside, then it writes a fresh history
    assert set_aside_if_damaged(db)
    make_history(cache)
    assert client.get("/").status_code == 200
    assert client.get("/healthz").json() == {"ok": True}
    assert "history-problem" not in client.get("/hints").text
