"""Plain Snakemake and `refinery` drive the same workflow; config files; history CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_refinery
from tests.fixtures.projects import make_wheel

pytestmark = pytest.mark.slow
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_plain_snakemake_with_configfile(tmp_path, index_url, isolated_pip_env):
    make_wheel(tmp_path / "in", "cfast", "1.0", "cp311-cp311-manylinux2014_s390x")
    make_wheel(tmp_path / "in", "hello", "1.0", "py3-none-any")
    conf = {
        "input": str(tmp_path / "in"),
        "output": str(tmp_path / "out"),
        "cache": str(tmp_path / "cache"),
        "target": {"python": PY, "platform_tag": "native"},
        "index": {"url": index_url},
    }
    cfg = tmp_path / "my-config.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path / "wd"),
            "--cores",
            "2",
            "--configfile",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env=isolated_pip_env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["summary"] == {"built": 1, "reused": 1}
    assert (tmp_path / "wd" / "results" / "plan" / "plan.json").exists()
    # the history CLI reads what the run recorded
    hist = run_refinery(
        ["history", "--cache", str(tmp_path / "cache"), "--json", "--package", "cfast"]
    )
    assert hist.returncode == 0, hist.stderr
    data = json.loads(hist.stdout)
    assert data["package"]["built"] == 1 and data["package"]["last_status"] == "built"
    assert {e["status"] for e in data["recent"]} == {"built", "attempt"}
    text = run_refinery(["history", "--cache", str(tmp_path / "cache")])
    assert "cfast" in text.stdout and "recent events" in text.stdout


def test_toml_config_and_foreign_target_refused_by_local_builder(
    tmp_path, index_url, isolated_pip_env
):
    make_wheel(tmp_path / "in", "cfast", "1.0", "cp311-cp311-manylinux2014_aarch64")
    cfg = tmp_path / "refinery.toml"
    # the default builder would cross-compile for s390x (tests/containers/test_cross_e2e.py)
    cfg.write_text(f'[index]\nurl = "{index_url}"\n[target]\npython = "3.11"\n'
                   '[builder]\nkind = "local"\n')
    res = run_refinery(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
            "--config",
            str(cfg),
        ],
        env=isolated_pip_env,
    )
    assert res.returncode == 1
    (entry,) = json.loads((tmp_path / "out" / "manifest.json").read_text())["entries"]
    assert entry["status"] == "failed"
    assert "local builder compiles for this host" in entry["detail"]
    assert "s390x" in entry["detail"]


def test_bad_config_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("strategy:\n  upgrade: sideways\n")
    res = run_refinery(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
            "--config",
            str(cfg),
        ]
    )
    assert res.returncode == 2
    assert "strategy/upgrade" in res.stderr and "sideways" in res.stderr


def test_missing_input_folder(tmp_path):
    res = run_refinery(
        [
            "--input",
            str(tmp_path / "nope"),
            "--output",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
        ]
    )
    assert res.returncode == 2 and "is not a folder" in res.stderr
    assert not Path(tmp_path / "c").exists()
