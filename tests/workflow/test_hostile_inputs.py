"""Hostile inputs through the whole workflow, run as a user runs it: unsafe or tampered
wheels in the input folder, and sdists on the index that are corrupt or decompression bombs.

Each hostile wheel must end `invalid` with its reason and reach neither the output nor its
index; each hostile sdist must end in a failed build naming the problem; a good wheel beside
them lands byte for byte, and a good sdist still builds."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import _QuietHandler, build_tools_wheels, run_refinery
from tests.fixtures.hostile import (
    Zeros,
    corrupt_header,
    craft_wheel,
    record_row,
    sdist_members_of,
    spoil_row,
    symlink_info,
    tar_bytes,
    tar_member,
    write_sdist,
)
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

pytestmark = pytest.mark.slow

FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _hostile_sdists(files: Path, work: Path) -> None:
    """Two real, buildable sdists, each made hostile past the files the build needs (so that
    the old unpacking built them): a spoiled tar header, and 80 MiB of zeros; and a third,
    left as it is, which the capped unpacking must build."""
    build_sdist(write_project(work, "tarok", "1.0", c_ext=False), files)
    corrupt = build_sdist(write_project(work, "tarcorrupt", "1.0", c_ext=False), work / "d1")
    raw = tar_bytes([
        *sdist_members_of(corrupt),
        tar_member("tarcorrupt-1.0/zz_notes.txt", b"notes\n"),
        tar_member("tarcorrupt-1.0/zz_more.txt", b"more\n"),
    ])
    write_sdist(files, corrupt.name, corrupt_header(raw, "tarcorrupt-1.0/zz_notes.txt"))

    bomb = build_sdist(write_project(work, "tarbomb", "1.0", c_ext=False), work / "d2")
    zeros = tar_member("tarbomb-1.0/zeros.bin", size=80 << 20)[0]
    write_sdist(files, bomb.name, tar_bytes([*sdist_members_of(bomb), (zeros, Zeros(80 << 20))]))


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory):
    """A PEP 503 index of its own: the hostile sdists, and setuptools for isolated builds."""
    root = tmp_path_factory.mktemp("hostile-index")
    files = root / "files"
    files.mkdir()
    _hostile_sdists(files, root / "work")
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


#: input file -> the reason its scan gives
HOSTILE_WHEELS = {
    "dotdot-1.0-py3-none-any.whl": "unsafe entry '../evil.py': path leaves the wheel",
    "absolute-1.0-py3-none-any.whl": "unsafe entry '/tmp/evil.py': absolute path",
    "linky-1.0-py3-none-any.whl": "symlink entry linky/link",
    "badhash-1.0-py3-none-any.whl": "RECORD hash mismatch for badhash/mod.py",
    "unlisted-1.0-py3-none-any.whl": "unlisted/extra.py is not listed in RECORD",
    "dup-1.0-py3-none-any.whl": "duplicate entry dup/x.py",
    "mdbomb-1.0-py3-none-any.whl":
        "mdbomb-1.0.dist-info/METADATA is 40.0 MiB, over the cap of 16 MiB",
}


def _hostile_wheels(folder: Path) -> None:
    craft_wheel(folder, "dotdot", extra=[("../evil.py", b"x = 1\n")])
    craft_wheel(folder, "absolute", extra=[("/tmp/evil.py", b"x = 1\n")])
    craft_wheel(folder, "linky", extra=[(symlink_info("linky/link"), b"/etc/passwd")])
    craft_wheel(folder, "badhash", extra=[("badhash/mod.py", b"evil = 1\n")],
                record=spoil_row("badhash/mod.py", record_row("badhash/mod.py", b"good = 1\n")))
    craft_wheel(folder, "unlisted", extra=[("unlisted/extra.py", b"")],
                record=spoil_row("unlisted/extra.py", None))
    craft_wheel(folder, "dup", extra=[("dup/x.py", b"a = 1\n"), ("dup/x.py", b"a = 2\n")])
    # 40 MiB of METADATA in a wheel of some 40 KiB: over the real 16 MiB cap
    craft_wheel(folder, "mdbomb", metadata=b"Metadata-Version: 2.1\nName: mdbomb\n"
                b"Version: 1.0\n" + bytes(40 << 20))
    assert sorted(p.name for p in folder.iterdir()) == sorted(HOSTILE_WHEELS)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hostile_inputs_are_refused_and_the_good_wheel_lands(
    tmp_path, hostile_index, isolated_pip_env
):
    inp = tmp_path / "in"
    _hostile_wheels(inp)
    good = make_wheel(inp, "goodpkg", "1.0")
    # these are built from the sdists on the index: two hostile ones and a good one
    for name in ("tarcorrupt", "tarbomb", "tarok"):
        make_wheel(inp, name, "1.0", FOREIGN)
    res = run_refinery(
        ["--input", str(inp), "--output", str(tmp_path / "out"), "--cache",
         str(tmp_path / "cache"), "--python", PY, "--platform-tag", "native", "--index-url",
         hostile_index, "--jobs", "2", "--max-attempts", "3"],
        env=isolated_pip_env,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}

    for name, reason in HOSTILE_WHEELS.items():
        assert entries[name]["status"] == "invalid", entries[name]
        assert entries[name]["detail"] == reason

    # nothing of theirs in the output folder or its index
    landed = {p.name for p in out.rglob("*")}
    index_text = "".join(p.read_text() for p in (out / "simple").rglob("*.html"))
    for name in HOSTILE_WHEELS:
        project = name.split("-", 1)[0]
        assert name not in landed and not (out / "simple" / project).exists()
        assert name not in index_text

    # the good wheel, reused byte for byte
    assert entries["goodpkg"]["status"] == "reused"
    assert _sha256(out / good.name) == _sha256(good)
    assert good.name in (out / "simple" / "goodpkg" / "index.html").read_text()

    # the hostile sdists: failed builds naming the sdist and the problem, nothing landed
    corrupt, bomb = entries["tarcorrupt"], entries["tarbomb"]
    assert corrupt["status"] == "failed" and bomb["status"] == "failed", (corrupt, bomb)
    assert ("cannot unpack sdist tarcorrupt-1.0.tar.gz: corrupt tar header at byte"
            in corrupt["detail"]), corrupt["detail"]
    assert "after member 'tarcorrupt-1.0/zz_more.txt'" not in corrupt["detail"]
    assert "cannot unpack sdist tarbomb-1.0.tar.gz: expands more than 200 times" in bomb["detail"]
    assert "decompression bomb" in bomb["detail"]
    assert not list(out.glob("tarcorrupt-*.whl")) and not list(out.glob("tarbomb-*.whl"))
    # an sdist that cannot be unpacked is fatal: one attempt, not the whole budget
    logs = tmp_path / "cache" / "logs"
    assert [p.name for p in logs.glob("tarcorrupt-*attempt*.log")] == [
        "tarcorrupt-1.0-attempt1-isolated.log"]
    assert len(list(logs.glob("tarbomb-*attempt*.log"))) == 1

    # a good sdist unpacks member by member and builds
    assert entries["tarok"]["status"] == "built", entries["tarok"]
    assert (out / entries["tarok"]["wheel"]).exists()
