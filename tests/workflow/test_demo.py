"""The README's demo command works as written (paths moved to a temporary folder)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_readme_demo_command(tmp_path, isolated_pip_env):
    readme = (REPO / "README.md").read_text()
    (line,) = re.findall(r"^pip install -e \. && (refinery .*)$", readme, flags=re.M)
    line = line.replace('"file://$PWD/', f'"file://{REPO}/').replace("demo/", f"{tmp_path}/")
    argv = shlex.split(line)
    res = subprocess.run([sys.executable, "-m", "refinery_lib.cli", *argv[1:]], cwd=REPO,
                         capture_output=True, text=True, env=isolated_pip_env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((tmp_path / "output" / "manifest.json").read_text())
    assert manifest["summary"] == {"built": 1, "reused": 1}
    assert manifest["closure"]["ok"] is True
    assert (tmp_path / "cache" / "history.db").exists()
