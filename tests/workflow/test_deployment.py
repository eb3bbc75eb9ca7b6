"""Each software deployment method Snakemake offers resolves the build rule's environment:
none (the host), `--sdm conda` (envs/build.yaml) and `--sdm apptainer` (the preset image).

conda and apptainer are not installable here: stand-ins answer the probes of a dry run, which
is as far as Snakemake goes without creating anything. What the build step imports, envs/
build.yaml must provide (tests/unit/test_workflow_files.py checks that part)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

FAKE_CONDA = """#!/bin/sh
case "$1" in
  info) echo '{"platform": "linux-64", "conda_prefix": "%s", "conda_version": "24.7.1"}';;
  config) echo '{"get": {"channel_priority": "strict"}}';;
  *) echo "conda 24.7.1";;
esac
"""
FAKE_APPTAINER = "#!/bin/sh\necho 'apptainer version 1.3.4'\n"


def _config(tmp: Path, builder: dict) -> Path:
    conf = {
        "input": str(REPO / "examples" / "wheelhouse"), "output": str(tmp / "out"),
        "cache": str(tmp / "cache"),
        "index": {"url": (REPO / "examples" / "index" / "simple").as_uri()},
        "target": {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                   "platform_tag": "native"},
        "build": {"variant_order": ["no-isolation"]},
        "builder": builder,
    }
    cfg = tmp / f"c-{abs(hash(json.dumps(builder, sort_keys=True)))}.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    return cfg


def _base(tmp: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
            str(tmp / "wd"), "--cores", "1", "--configfile", str(cfg)]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One real run (it makes the plan, so the dry runs know the build jobs) and a folder of
    stand-in tools."""
    tmp = tmp_path_factory.mktemp("deploy")
    pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    pip_env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(_base(tmp, _config(tmp, {})), check=True, capture_output=True,
                   env=pip_env, timeout=600)
    fake = tmp / "bin"
    fake.mkdir()
    (fake / "conda").write_text(FAKE_CONDA % (tmp / "conda"))
    (fake / "apptainer").write_text(FAKE_APPTAINER)
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = dict(pip_env, PATH=f"{fake}:{pip_env['PATH']}")
    return tmp, env


@pytest.mark.parametrize("sdm,builder,expected", [
    ((), {}, "rule build_wheel:"),
    (("--sdm", "conda"), {}, f"Conda environment {REPO}/rules/../envs/build.yaml will be created"),
    (("--sdm", "apptainer"), {}, "Singularity image docker://local/refinery-rocky:latest"),
    (("--sdm", "apptainer"), {"preset": "debian"}, "docker://localhost/refinery-debian-"),
    (("--sdm", "apptainer"), {"image": "quay.io/me/builder:1"},
     "Singularity image docker://quay.io/me/builder:1"),
])
def test_every_deployment_method_resolves_the_build_environment(ran, sdm, builder, expected):
    tmp, env = ran
    res = subprocess.run([*_base(tmp, _config(tmp, builder)), "-n", *sdm, "--forcerun",
                          "build_wheel"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert "rule build_wheel:" in out and expected in out, out[-3000:]
