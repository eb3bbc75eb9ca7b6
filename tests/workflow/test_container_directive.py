"""`snakemake --use-singularity` (--sdm apptainer) resolves the build rule's preset image."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("builder,image", [
    ({}, "docker://local/refinery-rocky:latest"),
    ({"preset": "debian"}, "docker://localhost/refinery-debian-"),
    ({"image": "quay.io/me/builder:1"}, "docker://quay.io/me/builder:1"),
])
def test_container_directive_in_dry_run(tmp_path, isolated_pip_env, builder, image):
    conf = {
        "input": str(REPO / "examples" / "wheelhouse"), "output": str(tmp_path / "out"),
        "cache": str(tmp_path / "cache"),
        "index": {"url": (REPO / "examples" / "index" / "simple").as_uri()},
        "target": {"python": f"{sys.version_info[0]}.{sys.version_info[1]}",
                   "platform_tag": "native"},
        "build": {"variant_order": ["no-isolation"]},
        "builder": builder,
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    base = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
            str(tmp_path / "wd"), "--cores", "1", "--configfile", str(cfg)]
    # a real run makes the plan, so the dry run below knows the build jobs
    subprocess.run(base, check=True, capture_output=True, env=isolated_pip_env, timeout=600)
    # apptainer is not installable here: a stand-in answers the version probe of the dry run
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text("#!/bin/sh\necho 'apptainer version 1.3.4'\n")
    (fake / "apptainer").chmod(0o755)
    env = dict(isolated_pip_env, PATH=f"{fake}:{isolated_pip_env['PATH']}")
    res = subprocess.run([*base, "-n", "--sdm", "apptainer", "--forcerun", "build_wheel"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert "rule build_wheel:" in out and f"Singularity image {image}" in out
