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
    (line,) = re.findall(r"^pip install \. && (refinery demo .*)$", readme, flags=re.M)
    argv = shlex.split(line)
    assert argv == ["refinery", "demo", "demo"]
    # `demo DEST` writes DEST/output and DEST/cache; the example ships with the package
    res = subprocess.run([sys.executable, "-m", "refinery_lib.cli", "demo", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, env=isolated_pip_env,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((tmp_path / "output" / "manifest.json").read_text())
    assert manifest["summary"] == {"built": 1, "reused": 1}
    assert manifest["closure"]["ok"] is True
    assert (tmp_path / "cache" / "history.db").exists()
