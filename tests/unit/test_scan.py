import time
import tracemalloc
import zipfile

import pytest

from refinery_lib import archives
from refinery_lib.errors import InvalidWheelError
from refinery_lib.wheels import (
    parse_metadata,
    read_sdist_metadata,
    read_wheel_metadata,
    scan_folder,
    scan_wheel,
)
from tests.fixtures.hostile import craft_wheel, record_row, spoil_row, symlink_info
from tests.fixtures.projects import build_sdist, make_wheel, write_project


def test_valid_wheel_fields(tmp_path):
    path = make_wheel(
        tmp_path,
        "My-Pkg",
        "1.0.post1",
        "cp311-cp311-manylinux2014_s390x",
        ("numpy>=1.20", "six; python_version < '3'"),
    )
    rec = scan_wheel(path)
    assert rec.valid, rec.reason
    assert (rec.name, rec.version) == ("my-pkg", "1.0.post1")
    assert rec.tags == ("cp311-cp311-manylinux2014_s390x",)
    assert rec.requires_dist == ("numpy>=1.20", "six; python_version < '3'")
    assert len(rec.sha256) == 64


def test_build_tag_and_compressed_tag_set(tmp_path):
    path = make_wheel(tmp_path, "foo", "2.0", "py2.py3-none-any")
    build = path.with_name("foo-2.0-1abc-py2.py3-none-any.whl")
    path.rename(build)
    rec = scan_wheel(build)
    assert rec.valid and rec.build_tag == "1abc"
    assert rec.tags == ("py2-none-any", "py3-none-any")


def test_not_a_zip(tmp_path):
    bad = tmp_path / "foo-1.0-py3-none-any.whl"
    bad.write_bytes(b"hello")
    rec = scan_wheel(bad)
    assert not rec.valid and "not a zip" in rec.reason


def test_truncated_zip(tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rec = scan_wheel(path)
    assert not rec.valid
    assert "zip" in rec.reason or "truncated" in rec.reason


def test_bad_file_name(tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    renamed = path.with_name("foo-1.0.whl")
    path.rename(renamed)
    rec = scan_wheel(renamed)
    assert not rec.valid and "bad wheel file name" in rec.reason


def test_not_a_wheel_extension(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    assert "ends in neither .whl nor .tar.gz nor .zip" in scan_wheel(f).reason


def test_no_metadata(tmp_path):
    path = tmp_path / "foo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("foo/__init__.py", "")
    rec = scan_wheel(path)
    assert not rec.valid and "METADATA" in rec.reason


def test_misnamed_wheel(tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0", meta_name="bar")
    rec = scan_wheel(path)
    assert not rec.valid and "misnamed" in rec.reason and "bar" in rec.reason


def test_metadata_not_extracted(tmp_path):
    path = make_wheel(tmp_path, "foo", "1.0")
    before = sorted(p.name for p in tmp_path.iterdir())
    scan_wheel(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_scan_folder_skips_hidden_and_sorts(tmp_path):
    make_wheel(tmp_path, "b", "1.0")
    make_wheel(tmp_path, "a", "1.0")
    (tmp_path / ".part-x").write_text("")
    names = [r.file for r in scan_folder(tmp_path)]
    assert names == ["a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"]


def test_sdist_metadata(tmp_path):
    proj = write_project(tmp_path, "cdep", "0.5", requires=("cfast>=1.0",))
    sdist = build_sdist(proj, tmp_path / "dist")
    meta = read_sdist_metadata(sdist)
    assert meta["name"] == ["cdep"] and meta["requires-dist"] == ["cfast>=1.0"]


def test_requires_txt_sections():
    from refinery_lib.wheels import _requires_txt

    text = 'six\n\n[:python_version < "3.8"]\ntyping-extensions\n\n[socks]\nPySocks>=1.5\n'
    assert _requires_txt(text) == [
        "six",
        'typing-extensions; (python_version < "3.8")',
        'PySocks>=1.5; extra == "socks"',
    ]


# -- hostile wheels: each would be republished as it is, so each must be refused ------------


def _reason(path):
    rec = scan_wheel(path)
    assert not rec.valid, f"{path.name} scanned valid"
    assert "\n" not in rec.reason
    return rec.reason


@pytest.mark.parametrize(
    ("project", "entry", "why"),
    [
        ("dotdot", "../evil.py", "path leaves the wheel"),
        ("inner", "inner/../../evil.py", "path leaves the wheel"),
        ("inner2", "inner2/../evil.py", "'..' in the path"),
        ("absolute", "/etc/evil.py", "absolute path"),
        ("backslash", "..\\evil.py", "backslash in the path"),
        ("drive", "C:/evil.py", "drive letter"),
    ],
)
def test_unsafe_entry_path_is_invalid(tmp_path, project, entry, why):
    path = craft_wheel(tmp_path, project, extra=[(entry, b"x = 1\n")])
    assert _reason(path) == f"unsafe entry {entry!r}: {why}"


def test_symlink_entry_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "linky", extra=[(symlink_info("linky/link"), b"/etc/passwd")])
    assert _reason(path) == "symlink entry linky/link"


def test_wrong_record_hash_is_invalid(tmp_path):
    data = b"print('evil')\n"
    path = craft_wheel(
        tmp_path, "badhash", extra=[("badhash/mod.py", data)],
        record=spoil_row("badhash/mod.py", record_row("badhash/mod.py", b"print('good')\n")),
    )
    assert _reason(path) == "RECORD hash mismatch for badhash/mod.py"


def test_wrong_record_size_is_invalid(tmp_path):
    digest = record_row("badsize/mod.py", b"x").split(",")[1]
    path = craft_wheel(
        tmp_path, "badsize", extra=[("badsize/mod.py", b"x")],
        record=spoil_row("badsize/mod.py", f"badsize/mod.py,{digest},2"),
    )
    assert _reason(path).startswith("RECORD size mismatch for badsize/mod.py")


def test_file_missing_from_record_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "unlisted", extra=[("unlisted/extra.py", b"")],
                       record=spoil_row("unlisted/extra.py", None))
    assert _reason(path) == "unlisted/extra.py is not listed in RECORD"


def test_record_row_without_a_file_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "ghostrow",
                       record=lambda rows: [*rows, record_row("ghostrow/gone.py", b"")])
    assert _reason(path) == "RECORD lists ghostrow/gone.py, which is not in the wheel"


def test_record_row_without_hash_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "nohash", extra=[("nohash/m.py", b"")],
                       record=spoil_row("nohash/m.py", "nohash/m.py,,"))
    assert _reason(path) == "RECORD has no hash or size for nohash/m.py"


def test_missing_record_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "norecord")
    with zipfile.ZipFile(path) as zf:
        kept = [(i, zf.read(i)) for i in zf.infolist() if not i.filename.endswith("/RECORD")]
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in kept:
            zf.writestr(info, data)
    assert _reason(path) == "no RECORD in norecord-1.0.dist-info"


def test_duplicate_entry_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "dup", extra=[("dup/x.py", b"a = 1\n"), ("dup/x.py", b"a = 2\n")])
    assert _reason(path) == "duplicate entry dup/x.py"


def test_corrupt_entry_data_is_invalid(tmp_path):
    path = craft_wheel(tmp_path, "crc", extra=[("crc/data.bin", b"A" * 4096)])
    raw = path.read_bytes()
    stored = zipfile.ZipFile(path).getinfo("crc/data.bin")
    at = stored.header_offset + 30 + len(stored.filename) + len(stored.extra) + 2
    path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    reason = _reason(path)
    assert reason.startswith("entry crc/data.bin is corrupt"), reason


def test_second_dist_info_and_foreign_dist_info_are_invalid(tmp_path):
    path = craft_wheel(tmp_path, "twodi", extra=[("other-1.0.dist-info/WHEEL", b"")])
    assert _reason(path).startswith("2 .dist-info folders, a wheel has one")
    meta = b"Metadata-Version: 2.1\nName: wrongdi\nVersion: 1.0\n"
    path = craft_wheel(tmp_path, "wrongdi", extra=[("wrongdi-2.0.dist-info/METADATA", meta)],
                       metadata=meta)
    # two METADATA files (1.0 and 2.0 folders): refused before the folders are compared
    assert "wrongdi" in _reason(path)


def test_dist_info_must_match_name_and_version(tmp_path):
    path = craft_wheel(tmp_path, "renamed", "1.0")
    moved = path.with_name("renamed-1.0-py3-none-any.whl")
    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename.replace("renamed-1.0.dist-info", "renamed-1.0.0.dist-info"),
                    zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(moved, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    # 1.0.0 is the same version as 1.0: RECORD (naming 1.0 paths) is what fails
    assert "not listed in RECORD" in _reason(moved)
    with zipfile.ZipFile(moved, "w") as zf:
        for name, data in entries:
            zf.writestr(name.replace("renamed-1.0.0.dist-info", "other-1.0.dist-info"), data)
    assert _reason(moved) == "other-1.0.dist-info does not match the wheel's name and version"


def test_bzip2_entries_are_not_read(tmp_path):
    path = craft_wheel(tmp_path, "bz")
    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    assert "uses compression method 12" in _reason(path)


def test_files_outside_the_package_folder_and_signatures_are_fine(tmp_path):
    path = craft_wheel(tmp_path, "spread", extra=[
        ("spread-1.0.data/scripts/tool", b"#!python\n"),
        ("toplevel_module.py", b""),
        ("spread.libs/libz.so.1", b"\x7fELF"),
        ("spread/sub/", b""),
    ])
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("spread-1.0.dist-info/RECORD.jws", b"{}")
    rec = scan_wheel(path)
    assert rec.valid, rec.reason


def test_real_fixture_wheels_still_scan_valid(tmp_path):
    for args in (("cfast", "1.0", "cp311-cp311-manylinux2014_s390x"),
                 ("a-b", "2.0.post1", "py3-none-any")):
        rec = scan_wheel(make_wheel(tmp_path, *args, ("six",)))
        assert rec.valid, rec.reason


# -- caps --------------------------------------------------------------------------------------


def test_metadata_bomb_is_invalid(tmp_path, monkeypatch):
    """20 MiB of METADATA against a cap lowered to 1 MiB: the scan and every METADATA
    reader (plan, aggregate) refuse it."""
    monkeypatch.setattr(archives, "METADATA_MAX_BYTES", 1 << 20)
    meta = b"Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\n" + bytes(20 << 20)
    path = craft_wheel(tmp_path, "bomb", metadata=meta)
    assert path.stat().st_size < 200_000
    assert _reason(path) == "bomb-1.0.dist-info/METADATA is 20.0 MiB, over the cap of 1 MiB"
    with pytest.raises(InvalidWheelError, match="over the cap"):
        read_wheel_metadata(path)
    with pytest.raises(InvalidWheelError, match="over the cap"):
        parse_metadata(meta)


def _lazy_metadata_wheel(path, size: int):
    """A wheel whose METADATA is `size` bytes, streamed into the zip (never in memory)."""
    head = b"Metadata-Version: 2.1\nName: lazybomb\nVersion: 1.0\nSummary: "
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("lazybomb/__init__.py", b"")
        with zf.open("lazybomb-1.0.dist-info/METADATA", "w", force_zip64=True) as out:
            out.write(head)
            left = size - len(head)
            chunk = b"x" * (1 << 20)
            while left > 0:
                out.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        zf.writestr("lazybomb-1.0.dist-info/RECORD", "")
    return path


def test_metadata_read_stops_at_the_real_cap(tmp_path):
    """With the real cap, a 48 MiB METADATA costs neither its size in memory nor its time:
    the read stops at the cap."""
    path = _lazy_metadata_wheel(tmp_path / "lazybomb-1.0-py3-none-any.whl", 48 << 20)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidWheelError, match="over the cap of 16 MiB"):
            read_wheel_metadata(path)
        rec = scan_wheel(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not rec.valid and "over the cap of 16 MiB" in rec.reason
    assert peak < archives.METADATA_MAX_BYTES, peak
    assert time.perf_counter() - started < 5


def test_wheel_entry_bomb_and_size_caps(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)
    path = craft_wheel(tmp_path, "ratio", extra=[("ratio/zeros.bin", bytes(8 << 20))])
    assert _reason(path).startswith("entry ratio/zeros.bin expands ")
    assert "decompression bomb" in _reason(path)

    monkeypatch.setattr(archives, "WHEEL_MAX_BYTES", 1 << 20)
    path = craft_wheel(tmp_path, "big", extra=[("big/data.bin", bytes(2 << 20))])
    assert _reason(path) == "unpacks to 2.0 MiB, over the cap of 1 MiB"

    monkeypatch.setattr(archives, "WHEEL_MAX_MEMBERS", 5)
    path = craft_wheel(tmp_path, "many", extra=[(f"many/m{i}.py", b"") for i in range(5)])
    assert _reason(path) == "too many entries: 9, the cap is 5"


def test_a_large_folder_is_scanned_by_a_pool_with_the_same_records(tmp_path, monkeypatch):
    from refinery_lib import wheels

    for i in range(6):
        make_wheel(tmp_path, f"pkg{i}", "1.0")
    (tmp_path / "junk.whl").write_bytes(b"nope")
    serial = scan_folder(tmp_path)
    monkeypatch.setattr(wheels, "PARALLEL_SCAN_BYTES", 0)
    assert scan_folder(tmp_path, workers=2) == serial
    assert [r.valid for r in serial] == [False, *([True] * 6)]
