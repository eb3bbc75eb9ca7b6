"""A normal install: the built wheel in a fresh virtual environment, run from another folder.

The workflow (Snakefile, rules, scripts, config, profiles, envs, container files, the demo)
ships as package data; nothing may be looked up next to a checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_built_wheel_runs_the_demo_outside_the_checkout(tmp_path, isolated_pip_env):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(dist), str(REPO)], check=True, capture_output=True)
    (wheel,) = dist.glob("s390x_wheel_refinery-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("refinery_lib/_workflow/Snakefile", "refinery_lib/_workflow/rules/build.smk",
                   "refinery_lib/_workflow/config/schemas/config.schema.yaml",
                   "refinery_lib/_workflow/profiles/default/config.yaml",
                   "refinery_lib/_workflow/examples/demo.yaml",
                   "refinery_lib/data/hints.yaml", "web/templates/base.html"):
        assert needed in names, needed
    venv = tmp_path / "venv"
    # the dependencies come from this interpreter's site-packages (no network here); the
    # refinery itself only from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                    str(wheel)], check=True, capture_output=True)
    # a venv brings its own old setuptools (ensurepip's), which shadows this interpreter's;
    # the refinery requires a newer one, as a real install would resolve
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "setuptools>=70.1"],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in isolated_pip_env.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = subprocess.run([str(py), "-c", "import refinery_lib; print(refinery_lib.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout and str(REPO) not in where.stdout
    version = subprocess.run([str(venv / "bin" / "refinery"), "--version"], cwd=elsewhere,
                             env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("refinery ")
    res = subprocess.run([str(venv / "bin" / "refinery"), "demo", "mydemo"], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    manifest = json.loads((elsewhere / "mydemo" / "output" / "manifest.json").read_text())
    assert manifest["summary"] == {"built": 1, "reused": 1}
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mydemo"]  # nothing else written
