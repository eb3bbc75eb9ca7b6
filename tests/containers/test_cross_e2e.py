"""The cross builder end to end: x86_64 host, zig, the Debian s390x image's Python, qemu.

From a local index, `refinery` with no builder flag refines x86_64 wheels of a C extension
(cfast, setuptools), a C++ extension (xcpp, setuptools, libc++), a meson-python extension
(xmeson), a scikit-build-core extension (xcmake) and a C extension linking the target image's
zlib (xzlib) to manylinux2014_s390x: compiled here, tagged what `auditwheel show` confirms,
imported in the s390x image under qemu with the network off before they land, and a rebuild
gives the same bytes. xprobe runs a target program at build time: its cross attempt fails for
that, and the next attempt, in the container builder, lands it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from refinery_lib.container_engine import Mount, engine_argv
from tests.conftest import TOOLS_CACHE, build_tools_wheels, run_refinery
from tests.fixtures.cross_projects import cross_sdists
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

pytestmark = pytest.mark.slow

MESON_TOOLS = ("meson-python==0.22.1", "meson==1.12.1", "ninja==1.13.2",
               "pyproject-metadata==0.12.1", "packaging==26.4",
               # scikit-build-core drives the system's cmake (.ci/install.d/20-containers.sh)
               "scikit-build-core==1.1.2", "pathspec==1.1.1")


def meson_tools_wheels() -> list[Path]:
    """meson-python, scikit-build-core and what they need, as wheels for this host (build
    requirements of a cross build run here)."""
    folder = TOOLS_CACHE / "cross-tools"
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.whl"))) < len(MESON_TOOLS):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--dest", str(folder), *MESON_TOOLS],
            check=True, capture_output=True,
        )
    return sorted(folder.glob("*.whl"))


@pytest.fixture(scope="module")
def cross_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cross-index")
    files = root / "files"
    cross_sdists(files)
    build_sdist(write_project(root / "p", "cfast", "1.0"), files)
    for wheel in [*build_tools_wheels(), *meson_tools_wheels()]:
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    return root / "simple"


def _elf(data: bytes) -> tuple[int, str, int]:
    assert data[:4] == b"\x7fELF"
    order = "big" if data[5] == 2 else "little"
    return data[4], order, int.from_bytes(data[18:20], order)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(tmp_path: Path, index: Path, env: dict, *extra: str):
    return run_refinery(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
         "--cache", str(tmp_path / "cache"), "--python", "3.11",
         "--index-url", index.as_uri(), "--max-attempts", "2", "--jobs", "2", *extra],
        env=env,
    )


def test_cross_builds_land_manylinux2014_s390x_wheels_that_import_under_qemu(
        tmp_path, cross_index, isolated_pip_env, debian_s390x_image):
    for name in ("cfast", "xcpp", "xmeson", "xcmake", "xzlib", "xprobe"):
        make_wheel(tmp_path / "in", name, "1.0", "cp311-cp311-manylinux2014_x86_64")
    res = _run(tmp_path, cross_index, isolated_pip_env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}
    assert {n: e["status"] for n, e in entries.items()} == dict.fromkeys(
        ("cfast", "xcpp", "xmeson", "xcmake", "xzlib", "xprobe"), "built")
    shas = {}
    for name in ("cfast", "xcpp", "xmeson", "xcmake", "xzlib"):
        entry = entries[name]
        meta = entry["metadata"]
        assert meta["builder"] == "cross", name
        assert meta["zig_target"] == "s390x-linux-gnu.2.17" and meta["target_glibc"] == "2.17"
        assert meta["zig"].startswith("0.")
        # the tag is exactly what auditwheel show confirmed
        assert meta["auditwheel_tag"] == "manylinux_2_17_s390x"
        wheel = tmp_path / "out" / entry["wheel"]
        assert "manylinux_2_17_s390x" in wheel.name and "linux_x86_64" not in wheel.name
        with zipfile.ZipFile(wheel) as zf:
            sos = [n for n in zf.namelist() if n.endswith(".so")]
            assert sos and all(_elf(zf.read(n)[:20]) == (2, "big", 22) for n in sos)
        smoke = meta["smoke"]
        assert smoke["ok"] is True and smoke["arch"] == "s390x" and smoke["network"] == "none"
        assert smoke["modules"] == {name: "ok"}
        log = Path(meta["log_path"]).read_text()
        assert "--network none" in log and "auditwheel repair --plat auto" in log
        prov = json.loads((tmp_path / "out" / "provenance" / f"{wheel.name}.json").read_text())
        assert prov["build"]["builder"] == "cross" and prov["build"]["target_glibc"] == "2.17"
        shas[name] = _sha(wheel)
    # the C++ wheel needs no libstdc++: zig links libc++ statically
    xcpp = tmp_path / "out" / entries["xcpp"]["wheel"]
    assert b"libstdc++" not in zipfile.ZipFile(xcpp).read(
        next(n for n in zipfile.ZipFile(xcpp).namelist() if n.endswith(".so")))
    # xzlib linked the target image's libz.so.1, which manylinux2014 lets the system provide:
    # auditwheel grafts nothing, the import under qemu below finds the target's zlib
    assert entries["xzlib"]["metadata"]["grafted_libs"] == []
    xzlib = zipfile.ZipFile(tmp_path / "out" / entries["xzlib"]["wheel"])
    assert b"libz.so.1" in xzlib.read(next(n for n in xzlib.namelist() if n.endswith(".so")))
    # the meson build went through the generated cross file, the CMake one the toolchain file
    assert "--cross-file=" in Path(entries["xmeson"]["metadata"]["log_path"]).read_text()
    assert "CMAKE_TOOLCHAIN_FILE=" in Path(entries["xcmake"]["metadata"]["log_path"]).read_text()

    # xprobe ran a target program at build time: cross failed for that, the container landed it
    probe = entries["xprobe"]["metadata"]
    assert probe["builder"] == "container" and probe["attempt"] == 2
    assert probe["variant"] == "isolated"  # the step down kept the variant
    con = sqlite3.connect(tmp_path / "cache" / "history.db")
    attempts = [json.loads(m) for (m,) in con.execute(
        "SELECT metadata FROM events WHERE package = 'xprobe' AND status = 'attempt' "
        "ORDER BY id")]
    con.close()
    assert [(a["builder"], a["ok"]) for a in attempts] == [("cross", False), ("container", True)]
    assert "cross-exec-target-binary" in [h["id"] for h in attempts[0]["hints"]]
    assert attempts[0]["cross_specific"] is True

    # the code that runs on the target was built for it: big-endian under qemu
    site = tmp_path / "site"
    for name in ("xcpp", "xmeson", "xzlib"):
        with zipfile.ZipFile(tmp_path / "out" / entries[name]["wheel"]) as zf:
            zf.extractall(site)
    code = ("import xcpp, xmeson, xzlib; print(xcpp.byteorder(), xmeson.byteorder(), "
            "xcpp.sorted_words('z s390 a'), xmeson.add(40, 2), xzlib.zlib_version())")
    argv = engine_argv(
        "podman", debian_s390x_image,
        ["python3", "-c", f"import sys; sys.path.insert(0, '/site'); {code}"],
        arch="s390x", network=False, mounts=[Mount(site, "/site")])
    out = subprocess.run(argv, check=True, capture_output=True, text=True,
                         timeout=600).stdout.split()
    assert out[:6] == ["big", "big", "a", "s390", "z", "42"]
    assert out[6].startswith("1.")  # the grafted target zlib answered

    # a rebuild from the same sdists gives the same bytes
    res = _run(tmp_path, cross_index, isolated_pip_env,
               *(a for n in shas for a in ("--rebuild", n)))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    again = {e["name"]: e for e in json.loads(
        (tmp_path / "out" / "manifest.json").read_text())["entries"]}
    for name, sha in shas.items():
        assert again[name]["status"] == "built", name
        assert _sha(tmp_path / "out" / again[name]["wheel"]) == sha, name
