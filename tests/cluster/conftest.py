"""A real single-node SLURM for the tests marked `slurm`, brought up by .ci/slurm/up.sh."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / ".ci" / "slurm" / "up.sh"
DOWN = REPO / ".ci" / "slurm" / "down.sh"
MISSING_PACKAGES = 3  # up.sh: no SLURM packages and no apt-get to install them


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slurm: runs the workflow through a real single-node SLURM (.ci/slurm/up.sh brings it "
        "up; needs root and apt-get or Debian's slurm-wlm + munge installed)",
    )


@dataclass(frozen=True)
class SlurmCluster:
    jobcomp_log: Path  # one line per finished job (slurm.conf JobCompType=jobcomp/filetxt)


def _config_value(config: str, key: str) -> str:
    match = re.search(rf"^{key}\s*=\s*(\S+)", config, re.MULTILINE)
    if not match:
        raise AssertionError(f"`scontrol show config` has no {key}")
    return match.group(1)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The cluster up and idle; torn down at the end only if this fixture started it."""
    was_up = subprocess.run(["bash", str(UP), "--check"], capture_output=True).returncode == 0
    res = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900)
    if res.returncode == MISSING_PACKAGES and not os.environ.get("CI"):
        pytest.skip(f"no single-node SLURM possible here: {res.stderr.strip()}")
    assert res.returncode == 0, f".ci/slurm/up.sh failed:\n{res.stdout}\n{res.stderr}"
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    yield SlurmCluster(Path(_config_value(config, "JobCompLoc")))
    if not was_up:
        subprocess.run(["bash", str(DOWN)], capture_output=True, timeout=120)
