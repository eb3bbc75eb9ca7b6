"""The whole refinery, x86_64 host to real s390x wheels: debian preset, podman, qemu."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_refinery
from tests.fixtures.projects import make_wheel

pytestmark = pytest.mark.slow


def _elf(data: bytes) -> tuple[int, str, int]:
    """(class, byte order, e_machine) of an ELF header."""
    assert data[:4] == b"\x7fELF"
    order = "big" if data[5] == 2 else "little"
    return data[4], order, int.from_bytes(data[18:20], order)


def test_refine_to_manylinux2014_s390x(tmp_path, index_root, isolated_pip_env,
                                       debian_s390x_image):
    make_wheel(tmp_path / "in", "cfast", "1.0", "cp311-cp311-manylinux2014_x86_64")
    make_wheel(tmp_path / "in", "hello", "1.0", "py3-none-any", ("cfast>=1.0",))
    res = run_refinery(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
         "--cache", str(tmp_path / "cache"), "--python", "3.11",
         "--platform-tag", "manylinux2014_s390x",
         "--index-url", (index_root / "simple").as_uri(),
         "--container-preset", "debian", "--container-cpu", "1.5",
         "--container-memory", "1536m", "--container-network", "off", "--max-attempts", "1"],
        env=isolated_pip_env,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}
    assert entries["hello"]["status"] == "reused"
    cfast = entries["cfast"]
    assert cfast["status"] == "built"
    wheel = tmp_path / "out" / cfast["wheel"]
    assert wheel.name.endswith("manylinux2014_s390x.manylinux_2_17_s390x.whl") or (
        "manylinux_2_17_s390x" in wheel.name
    )
    meta = cfast["metadata"]
    assert meta["builder"] == "container" and meta["auditwheel_tag"].endswith("s390x")
    assert meta["smoke"]["ok"] is True and meta["smoke"]["arch"] == "s390x"
    with zipfile.ZipFile(wheel) as zf:
        (so,) = [n for n in zf.namelist() if n.endswith(".so")]
        assert _elf(zf.read(so)[:20]) == (2, "big", 22)  # 64-bit S/390
    log = Path(meta["log_path"]).read_text()
    assert "--cpus 1.5" in log and "--memory 1536m" in log and "--network none" in log
    assert manifest["closure"]["ok"] is True
    # the warm-up downloaded setuptools for the target (s390x, cp311) once; the isolated build
    # in the container (network off) installed its environment offline from it
    warm = json.loads(
        (tmp_path / "cache" / "workflow" / "results" / "buildenv" / "warm.json").read_text()
    )
    assert warm["builder"] == "container" and warm["covered"] == 1
    con = sqlite3.connect(tmp_path / "cache" / "history.db")
    attempts = [json.loads(m) for (m,) in con.execute(
        "SELECT metadata FROM events WHERE package = 'cfast' AND status = 'attempt'")]
    con.close()
    assert [(a["variant"], a["build_env"], a["ok"]) for a in attempts] == [
        ("isolated", "offline", True)]
