"""The whole workflow, run as a user runs it, against the local index: real pip, real compiles."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import run_refinery
from tests.fixtures.projects import make_wheel

pytestmark = pytest.mark.slow

FOREIGN = "cp311-cp311-manylinux2014_s390x"


def _wheelhouse(folder: Path, bad: bool) -> Path:
    make_wheel(folder, "hello-pure", "1.0", "py3-none-any", ("purehelper>=1.0",))
    make_wheel(folder, "cfast", "1.0", FOREIGN)
    make_wheel(folder, "cdep", "0.5", FOREIGN, ("cfast>=1.0",))
    if bad:
        make_wheel(folder, "broken", "0.1", FOREIGN)
        make_wheel(folder, "needs-ghost", "1.0", "py3-none-any", ("ghostpkg>=1",))
        (folder / "garbage-1.0-py3-none-any.whl").write_bytes(b"this is not a zip")
    return folder


def _refine(tmp: Path, index_url: str, env: dict, *extra: str):
    return run_refinery(
        [
            "--input",
            str(tmp / "in"),
            "--output",
            str(tmp / "out"),
            "--cache",
            str(tmp / "cache"),
            "--python",
            f"{sys.version_info[0]}.{sys.version_info[1]}",
            "--platform-tag",
            "native",
            "--index-url",
            index_url,
            "--jobs",
            "2",
            *extra,
        ],
        env=env,
    )


def _entries(tmp: Path) -> dict[str, dict]:
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    return {e["name"]: e for e in manifest["entries"]}


def test_mixed_wheelhouse_statuses_and_failure_isolation(tmp_path, index_url, isolated_pip_env):
    _wheelhouse(tmp_path / "in", bad=True)
    res = _refine(tmp_path, index_url, isolated_pip_env, "--max-attempts", "1")
    assert res.returncode == 1, res.stdout + res.stderr
    entries = _entries(tmp_path)
    status = {name: e["status"] for name, e in entries.items()}
    assert status == {
        "hello-pure": "reused",
        "needs-ghost": "reused",
        "purehelper": "fetched",
        "cfast": "built",
        "cdep": "built",
        "broken": "failed",
        "ghostpkg": "missing",
        "garbage-1.0-py3-none-any.whl": "invalid",
    }
    assert "ghostpkg>=1" in entries["ghostpkg"]["detail"]
    assert entries["ghostpkg"]["metadata"]["needed_by"] == ["needs-ghost==1.0"]
    assert "not a zip" in entries["garbage-1.0-py3-none-any.whl"]["detail"]
    log_path = Path(entries["broken"]["metadata"]["log_path"])
    assert log_path.name == "broken-0.1-attempt1-isolated.log" and log_path.exists()
    assert "error" in entries["broken"]["detail"].lower()
    assert entries["cdep"]["metadata"]["variant"] == "isolated"
    # the summary names each problem
    assert "broken" in res.stdout and "ghostpkg" in res.stdout and "garbage" in res.stdout
    # history recorded every event, in a real SQLite file
    import sqlite3

    con = sqlite3.connect(tmp_path / "cache" / "history.db")
    rows = dict(con.execute("SELECT package, status FROM events WHERE status != 'attempt'"))
    assert rows["broken"] == "failed" and rows["cdep"] == "built" and rows["ghostpkg"] == "missing"

    # the next run retries exactly the failed target and rebuilds nothing else
    res2 = _refine(tmp_path, index_url, isolated_pip_env, "--max-attempts", "1")
    assert res2.returncode == 1
    again = _entries(tmp_path)
    assert again["cdep"]["status"] == "built"  # outcome kept from run 1, not rebuilt
    attempts = con.execute(
        "SELECT package, COUNT(*) FROM events WHERE status='attempt' GROUP BY package"
    ).fetchall()
    assert dict(attempts) == {"broken": 2, "cfast": 1, "cdep": 1}


def test_clean_wheelhouse_refines_installs_and_reruns_without_work(
    tmp_path, index_url, isolated_pip_env
):
    _wheelhouse(tmp_path / "in", bad=False)
    res = _refine(tmp_path, index_url, isolated_pip_env)
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["closure"]["ok"] is True, manifest["closure"]
    assert manifest["summary"] == {"built": 2, "fetched": 1, "reused": 1}
    assert (tmp_path / "out" / "simple" / "cdep" / "index.html").exists()

    # the built wheel installs offline from the output and its C code runs
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(tmp_path / "out"),
            "cdep",
            "hello-pure",
        ],
        check=True,
        capture_output=True,
        env=isolated_pip_env,
    )
    out = subprocess.run(
        [str(py), "-c", "import cdep, cfast; print(cdep.add(2, 3), cfast.add(4, 5))"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["5", "9"]

    # a second identical run downloads and builds nothing
    downloads = sorted(p.name for p in (tmp_path / "cache" / "downloads").iterdir())
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "downloads").iterdir()}
    res2 = _refine(tmp_path, index_url, isolated_pip_env)
    assert res2.returncode == 0, res2.stderr
    assert "nothing to be done" in (res2.stdout + res2.stderr).lower()
    assert sorted(p.name for p in (tmp_path / "cache" / "downloads").iterdir()) == downloads
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
