"""Capped reads and safe unpacking of untrusted archives (refinery_lib/archives.py): sdist
metadata, sdist extraction for a build, and the bounded stream read under both."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from refinery_lib import archives
from refinery_lib.errors import ArchiveError, BuildError, InvalidWheelError, SdistUnpackError
from refinery_lib.reproducible import extract_sdist
from refinery_lib.wheels import read_sdist_metadata, scan_wheel, sdist_members
from tests.fixtures.hostile import (
    Zeros,
    corrupt_header,
    craft_wheel,
    tar_bytes,
    tar_member,
    write_sdist,
)
from tests.fixtures.projects import build_sdist, write_project

PKG_INFO = b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\nRequires-Dist: six\n"


def _sdist(tmp_path: Path, *extra, name: str = "pkg-1.0.tar.gz") -> Path:
    members = [
        tar_member("pkg-1.0", type=tarfile.DIRTYPE, mode=0o755),
        tar_member("pkg-1.0/PKG-INFO", PKG_INFO),
        tar_member("pkg-1.0/setup.py", b"from setuptools import setup\nsetup()\n"),
        *extra,
    ]
    return write_sdist(tmp_path / "dist", name, tar_bytes(members))


def _unpack_fails(sdist: Path, dest: Path) -> str:
    with pytest.raises(SdistUnpackError) as caught:
        extract_sdist(sdist, dest)
    message = str(caught.value)
    assert message.startswith(f"cannot unpack sdist {sdist.name}: "), message
    assert not dest.exists(), "a partial tree was left behind"
    return message


# -- the bounded read ------------------------------------------------------------------------


def test_read_capped_stops_one_byte_past_the_real_cap():
    """An endless stream against the real METADATA cap: refused after cap + 1 bytes, with
    no more than the cap (and a chunk) in memory."""
    stream = io.BufferedReader(Zeros(None))
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match="larger than the cap of 16 MiB"):
            archives.read_capped(stream, archives.METADATA_MAX_BYTES, "PKG-INFO")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the cap itself, plus a 1 MiB read chunk and the reader's own buffers
    assert peak < archives.METADATA_MAX_BYTES + (2 << 20), peak
    assert archives.read_capped(io.BytesIO(b"abc"), 3, "x") == b"abc"


def test_zip_directory_cap(tmp_path, monkeypatch):
    path = craft_wheel(tmp_path, "wide", extra=[(f"wide/m{i}.py", b"") for i in range(50)])
    monkeypatch.setattr(archives, "ZIP_DIRECTORY_MAX_BYTES", 1024)
    reason = scan_wheel(path).reason
    assert reason.startswith("zip directory of ") and "over the cap of 1 KiB" in reason


# -- sdist metadata ----------------------------------------------------------------------------


def test_sdist_pkg_info_bomb(tmp_path, monkeypatch):
    """A 20 MiB PKG-INFO against a cap lowered to 1 MiB: the plan's reader refuses it
    rather than parse it."""
    monkeypatch.setattr(archives, "METADATA_MAX_BYTES", 1 << 20)
    bomb = PKG_INFO + bytes(20 << 20)
    sdist = write_sdist(tmp_path, "pkg-1.0.tar.gz", tar_bytes([
        tar_member("pkg-1.0/PKG-INFO", bomb),
    ]))
    with pytest.raises(InvalidWheelError, match=r"pkg-1.0/PKG-INFO is 20.0 MiB, over the cap"):
        read_sdist_metadata(sdist)


def test_sdist_pyproject_bomb_in_a_zip_sdist(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "METADATA_MAX_BYTES", 1 << 20)
    sdist = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(sdist, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg-1.0/PKG-INFO", PKG_INFO)
        zf.writestr("pkg-1.0/pyproject.toml", bytes(4 << 20))
    with pytest.raises(InvalidWheelError, match="pyproject.toml is 4 MiB, over the cap of 1 MiB"):
        sdist_members(sdist)


def test_sdist_metadata_walk_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "SDIST_MAX_MEMBERS", 10)
    sdist = _sdist(tmp_path, *(tar_member(f"pkg-1.0/f{i}") for i in range(10)))
    with pytest.raises(InvalidWheelError, match="more than 10 members"):
        read_sdist_metadata(sdist)


def test_sdist_metadata_of_a_tar_with_a_corrupt_block(tmp_path):
    raw = tar_bytes([
        tar_member("pkg-1.0/PKG-INFO", PKG_INFO),
        tar_member("pkg-1.0/a.txt", b"a"),
        tar_member("pkg-1.0/pyproject.toml", b"[project]\n"),
    ])
    sdist = write_sdist(tmp_path, "pkg-1.0.tar.gz", corrupt_header(raw, "pkg-1.0/a.txt"))
    with pytest.raises(InvalidWheelError, match="corrupt tar header at byte 1024"):
        sdist_members(sdist)


def test_real_sdist_metadata_unchanged(tmp_path):
    sdist = build_sdist(write_project(tmp_path, "cdep", "0.5", requires=("cfast>=1.0",)),
                        tmp_path / "dist")
    assert read_sdist_metadata(sdist)["requires-dist"] == ["cfast>=1.0"]
    assert set(sdist_members(sdist)) == {"PKG-INFO", "pyproject.toml", "requires.txt"}


# -- extraction --------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir",)
        else:
            out[rel] = ("file", path.read_bytes(), st.st_mode & 0o777, int(st.st_mtime))
    return out


def test_real_sdist_unpacks_as_tarfile_would(tmp_path):
    """The member-by-member unpacking gives the tree tarfile's data filter gives."""
    sdist = build_sdist(write_project(tmp_path, "cfast", "1.0"), tmp_path / "dist")
    project = extract_sdist(sdist, tmp_path / "ours")
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path / "theirs", filter="data")
    assert project == tmp_path / "ours" / "cfast-1.0"
    assert _tree(tmp_path / "ours") == _tree(tmp_path / "theirs")


def test_links_inside_the_tree_and_modes_are_kept(tmp_path):
    sdist = _sdist(
        tmp_path,
        tar_member("pkg-1.0/run.sh", b"#!/bin/sh\n", mode=0o4755),
        tar_member("pkg-1.0/alias.py", type=tarfile.SYMTYPE, linkname="setup.py"),
        tar_member("pkg-1.0/hard.py", type=tarfile.LNKTYPE, linkname="pkg-1.0/setup.py"),
    )
    project = extract_sdist(sdist, tmp_path / "src")
    assert (project / "run.sh").stat().st_mode & 0o7777 == 0o755  # setuid dropped
    assert os.readlink(project / "alias.py") == "setup.py"
    assert (project / "hard.py").read_bytes() == (project / "setup.py").read_bytes()
    assert int((project / "setup.py").stat().st_mtime) == 1_700_000_000


def test_sdist_total_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "SDIST_MAX_BYTES", 1 << 20)
    sdist = _sdist(tmp_path, tar_member("pkg-1.0/a.bin", os.urandom(600_000)),
                   tar_member("pkg-1.0/b.bin", os.urandom(600_000)))
    message = _unpack_fails(sdist, tmp_path / "src")
    assert "unpacks to more than the cap of 1 MiB (reached at member 'pkg-1.0/b.bin')" in message


def test_sdist_member_count_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "SDIST_MAX_MEMBERS", 20)
    sdist = _sdist(tmp_path, *(tar_member(f"pkg-1.0/f{i}.py") for i in range(30)))
    assert "more than 20 members (the cap)" in _unpack_fails(sdist, tmp_path / "src")


def test_sdist_bomb_by_ratio(tmp_path, monkeypatch):
    """8 MiB of zeros from a few KiB: refused on the declared size, before a byte is written
    (the floor is lowered from 64 MiB to 1 MiB to keep the test cheap)."""
    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)
    zeros = tar_member("pkg-1.0/zeros.bin", size=8 << 20)[0]
    sdist = _sdist(tmp_path, (zeros, Zeros(8 << 20)))
    assert sdist.stat().st_size < 64 * 1024
    message = _unpack_fails(sdist, tmp_path / "src")
    assert "expands more than 200 times" in message and "decompression bomb" in message


def test_corrupt_tar_block_in_the_middle_is_fatal(tmp_path):
    """tarfile stops quietly at a spoiled header: the unpacking fails there rather than
    build from the part before it."""
    raw = tar_bytes([
        tar_member("pkg-1.0", type=tarfile.DIRTYPE, mode=0o755),
        tar_member("pkg-1.0/PKG-INFO", PKG_INFO),
        tar_member("pkg-1.0/setup.py", b"from setuptools import setup\nsetup()\n"),
        tar_member("pkg-1.0/pkg/__init__.py", b"x = 1\n"),
    ])
    sdist = write_sdist(tmp_path, "pkg-1.0.tar.gz", corrupt_header(raw, "pkg-1.0/setup.py"))
    message = _unpack_fails(sdist, tmp_path / "src")
    assert message.endswith("corrupt tar header at byte 1536 after member 'pkg-1.0/PKG-INFO'")


def test_corrupt_gzip_block_is_fatal(tmp_path):
    sdist = _sdist(tmp_path, tar_member("pkg-1.0/data.bin", os.urandom(200_000)))
    raw = bytearray(sdist.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    sdist.write_bytes(bytes(raw))
    _unpack_fails(sdist, tmp_path / "src")


def test_truncated_sdist_is_fatal(tmp_path):
    sdist = _sdist(tmp_path, tar_member("pkg-1.0/data.bin", os.urandom(200_000)))
    sdist.write_bytes(sdist.read_bytes()[: sdist.stat().st_size * 2 // 3])
    _unpack_fails(sdist, tmp_path / "src")


def test_tar_header_larger_than_its_data_is_fatal(tmp_path):
    """An uncompressed tar whose last member declares more bytes than the archive holds."""
    raw = tar_bytes([tar_member("pkg-1.0/PKG-INFO", PKG_INFO),
                     tar_member("pkg-1.0/big.bin", bytes(5000))])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        data_at = tf.getmember("pkg-1.0/big.bin").offset_data
    sdist = tmp_path / "pkg-1.0.tar"
    sdist.write_bytes(raw[: data_at + 1000])
    _unpack_fails(sdist, tmp_path / "src")


def test_trailing_garbage_after_the_end_marker_is_fatal(tmp_path):
    raw = tar_bytes([tar_member("pkg-1.0/PKG-INFO", PKG_INFO)])
    sdist = tmp_path / "dist" / "pkg-1.0.tar.gz"
    sdist.parent.mkdir()
    sdist.write_bytes(gzip.compress(raw + b"\0" * 512 + b"not tar" + b"\0" * 505))
    assert "corrupt tar header" in _unpack_fails(sdist, tmp_path / "src")


@pytest.mark.parametrize("member", [
    tar_member("pkg-1.0/../../evil.py", b"x"),
    tar_member("pkg-1.0/link", type=tarfile.SYMTYPE, linkname="../../etc"),
    tar_member("pkg-1.0/fifo", type=tarfile.FIFOTYPE),
])
def test_unsafe_tar_members_are_fatal(tmp_path, member):
    assert "unsafe member" in _unpack_fails(_sdist(tmp_path, member), tmp_path / "src")


def test_zip_sdist_unsafe_entry_and_bomb(tmp_path, monkeypatch):
    sdist = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(sdist, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg-1.0/PKG-INFO", PKG_INFO)
        zf.writestr("../evil.py", b"x")
    assert "unsafe member '../evil.py'" in _unpack_fails(sdist, tmp_path / "src")

    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)
    with zipfile.ZipFile(sdist, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg-1.0/PKG-INFO", PKG_INFO)
        zf.writestr("pkg-1.0/zeros.bin", bytes(4 << 20))
    assert "decompression bomb" in _unpack_fails(sdist, tmp_path / "src")


def test_zip_sdist_unpacks(tmp_path):
    sdist = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(sdist, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg-1.0/", b"")
        zf.writestr("pkg-1.0/PKG-INFO", PKG_INFO)
        zf.writestr("pkg-1.0/pkg/__init__.py", b"x = 1\n")
    project = extract_sdist(sdist, tmp_path / "src")
    assert (project / "pkg" / "__init__.py").read_bytes() == b"x = 1\n"


def test_unpack_error_is_a_build_error():
    """build.py's attempt turns a BuildError into a failed attempt with its message."""
    assert issubclass(SdistUnpackError, BuildError)


# -- the host's pre-check before any builder unpacks (a container unpacks with the stdlib) --


def test_source_date_walk_refuses_what_unpacking_would(tmp_path, monkeypatch):
    from refinery_lib.reproducible import source_date_epoch

    assert source_date_epoch(_sdist(tmp_path)) > 0
    unsafe = _sdist(tmp_path, tar_member("pkg-1.0/../../evil.py", b"x"), name="u-1.0.tar.gz")
    with pytest.raises(SdistUnpackError, match="unsafe member"):
        source_date_epoch(unsafe)
    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)
    zeros = tar_member("pkg-1.0/zeros.bin", size=8 << 20)[0]
    bomb = _sdist(tmp_path, (zeros, Zeros(8 << 20)), name="b-1.0.tar.gz")
    with pytest.raises(SdistUnpackError, match="decompression bomb"):
        source_date_epoch(bomb)


def test_an_unsafe_wheel_from_the_index_is_not_fetched(tmp_path):
    from refinery_lib.models import Action, PlanNode
    from refinery_lib.ready_wheels import fetch_wheels
    from tests.fixtures.config import unit_settings
    from tests.fixtures.hostile import symlink_info

    files = tmp_path / "files"
    wheel = craft_wheel(files, "evil", extra=[(symlink_info("evil/link"), b"/etc/shadow")],
                        tag="py3-none-any")
    settings = unit_settings(tmp_path, index={"url": files.as_uri()})
    node = PlanNode(key="evil-1.0", name="evil", version="1.0", action=Action.FETCH,
                    source={"filename": wheel.name, "url": wheel.as_uri(), "sha256": "",
                            "kind": "wheel"})
    (outcome,) = fetch_wheels([node], settings)
    assert outcome.status == "failed" and "unsafe" in outcome.detail
    assert "symlink" in outcome.detail
    assert not (settings.paths.output / wheel.name).exists()
