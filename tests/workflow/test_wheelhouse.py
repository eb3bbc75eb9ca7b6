"""Real wheelhouses as users have them: sdists beside the wheels (`pip download` leaves them),
an index that is down for a while, and an output other users read."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import socket
import stat
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import _QuietHandler, run_refinery
from tests.fixtures.projects import build_sdist, make_wheel, write_project

pytestmark = pytest.mark.slow
FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _args(tmp_path, index_url, *extra):
    return ["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--python", PY, "--platform-tag", "native",
            "--index-url", index_url, "--jobs", "2", "--attempt-backoff-base", "0.01",
            "--attempt-backoff-max", "0.02", *extra]


def test_sdists_in_the_wheelhouse_are_built_and_the_output_is_readable(
        tmp_path, index_url, isolated_pip_env):
    inp = tmp_path / "in"
    proj = tmp_path / "proj"
    # a foreign wheel with its sdist beside it, and an sdist alone; neither is on the index
    make_wheel(inp, "housewheel", "1.0", FOREIGN)
    build_sdist(write_project(proj, "housewheel", "1.0"), inp)
    build_sdist(write_project(proj, "houselone", "0.2", c_ext=False), inp)
    make_wheel(inp, "plainpure", "1.0")
    old = os.umask(0o022)
    try:
        res = run_refinery(_args(tmp_path, index_url), env=isolated_pip_env)
    finally:
        os.umask(old)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}
    assert {n: e["status"] for n, e in entries.items()} == {
        "housewheel": "built", "houselone": "built", "plainpure": "reused"}
    assert "input's sdist" in entries["houselone"]["detail"] or entries["houselone"]["status"]
    # what other users of a served index read: 0644 files, 0755 folders (umask 022)
    out = tmp_path / "out"
    for path in [out / "manifest.json", *out.glob("*.whl"), *(out / "simple").rglob("*")]:
        want = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_an_index_that_was_down_is_asked_again_on_the_next_run(
        tmp_path, index_root, isolated_pip_env):
    """Same command twice: the index refuses connections, then is back on the same URL.
    The first plan says index-unreachable (not "not on the index"); the second run plans
    again (the plan depends only on the input otherwise) and builds."""
    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/simple"
    down = run_refinery(_args(tmp_path, url), env=isolated_pip_env)
    assert down.returncode == 1
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["entries"][0]
    assert entry["status"] == "missing"
    assert entry["detail"].startswith(f"index-unreachable: cannot reach {url}/cfast/")
    handler = functools.partial(_QuietHandler, directory=str(index_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up = run_refinery(_args(tmp_path, url), env=isolated_pip_env)
    finally:
        server.shutdown()
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "planning again" in up.stderr
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["entries"][0]
    assert entry["status"] == "built"


def test_a_failed_run_leaves_the_users_output_folder_alone(tmp_path, index_url,
                                                           isolated_pip_env):
    """The user's (empty) output folder, with its own mode, survives a run whose only build
    fails: Snakemake removed and the aggregation remade it before (0750 became 0755); and a
    deleted manifest is written again by the next run."""
    make_wheel(tmp_path / "in", "broken", "0.1", FOREIGN)
    out = tmp_path / "out"
    out.mkdir(mode=0o750)
    out.chmod(0o750)
    inode = out.stat().st_ino
    res = run_refinery(_args(tmp_path, index_url, "--max-attempts", "1"), env=isolated_pip_env)
    assert res.returncode == 1
    assert out.stat().st_ino == inode and stat.S_IMODE(out.stat().st_mode) == 0o750
    (out / "manifest.json").unlink()
    again = run_refinery(_args(tmp_path, index_url, "--max-attempts", "1"), env=isolated_pip_env)
    assert again.returncode == 1 and (out / "manifest.json").exists()
    assert out.stat().st_ino == inode


def test_the_output_is_made_to_match_its_manifest_again(tmp_path, index_url, isolated_pip_env):
    """A wheel deleted from the output, or changed in place, is put back by the next run
    (checked by sha256), from an intact copy: output wheels are copies, so the change did not
    reach the cache. Before, the rerun said "nothing to be done" over the damaged output."""
    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    make_wheel(tmp_path / "in", "plainpure", "1.0")
    first = run_refinery(_args(tmp_path, index_url), env=isolated_pip_env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    sha = {e["wheel"]: e["sha256"] for e in manifest["entries"]}
    built = next(w for w in sha if w.startswith("cfast-"))
    reused = next(w for w in sha if w.startswith("plainpure-"))
    (out / reused).unlink()
    with open(out / built, "r+b") as fh:  # in place: a hard link would carry this to the cache
        fh.seek(40)
        fh.write(b"XXXX")
    again = run_refinery(_args(tmp_path, index_url), env=isolated_pip_env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "the output does not match its manifest" in again.stderr
    for wheel, digest in sha.items():
        assert hashlib.sha256((out / wheel).read_bytes()).hexdigest() == digest, wheel
    # a new output folder on the warm cache gets every wheel too
    other = _args(tmp_path, index_url)
    other[other.index("--output") + 1] = str(tmp_path / "out2")
    third = run_refinery(other, env=isolated_pip_env)
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out2").glob("*.whl")) == sorted(sha)


def test_damaged_state_files_are_named_set_aside_and_made_again(tmp_path, index_url,
                                                                isolated_pip_env):
    """A half-truncated history database and garbage in manifest.json: each is named in one
    line; the history is set aside (never deleted) for a fresh one, the manifest (derived)
    is made again; no traceback, and the run ends as a clean one would."""
    make_wheel(tmp_path / "in", "plainpure", "1.0")
    assert run_refinery(_args(tmp_path, index_url), env=isolated_pip_env).returncode == 0
    db = tmp_path / "cache" / "history.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    manifest = tmp_path / "out" / "manifest.json"
    manifest.write_text("{garbage")
    res = run_refinery(_args(tmp_path, index_url), env=isolated_pip_env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr
    assert f"the history database {db} is damaged" in res.stderr
    assert f"{manifest} is not a manifest" in res.stderr
    aside = [p for p in db.parent.glob("history.db.damaged-*")
             if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].stat().st_size == len(data) // 2  # kept, not deleted
    assert json.loads(manifest.read_text())["summary"] == {"reused": 1}
    import sqlite3

    assert sqlite3.connect(db).execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_a_damaged_cached_sdist_is_fetched_again_not_built(tmp_path, index_url,
                                                             isolated_pip_env):
    """A cached sdist changed in place after its download (same size, a few bytes) is checked
    against its sha256 before the build uses it, fetched again, and built: the output wheel is
    byte for byte the first run's. Before, the damaged file was built as it was."""
    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    first = run_refinery(_args(tmp_path, index_url), env=isolated_pip_env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    out = tmp_path / "out"
    entry = json.loads((out / "manifest.json").read_text())["entries"][0]
    cached = tmp_path / "cache" / "downloads" / "cfast-1.0.tar.gz"
    intact = cached.read_bytes()
    with open(cached, "r+b") as fh:
        fh.seek(len(intact) // 2)
        fh.write(b"\0" * 64)
    again = run_refinery(_args(tmp_path, index_url, "--rebuild", "cfast"), env=isolated_pip_env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert cached.read_bytes() == intact
    logs = "".join(p.read_text() for p in (tmp_path / "cache").rglob("build_wheel/*.log"))
    assert f"the cached sdist {cached} does not match its sha256" in logs
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["entries"][0]["status"] == "built"
    assert hashlib.sha256((out / entry["wheel"]).read_bytes()).hexdigest() == entry["sha256"]
