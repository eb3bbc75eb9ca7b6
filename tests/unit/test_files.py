"""Atomic file placement: whole wheels or nothing, one folder swapped in at once."""

import os
import stat

from refinery_lib import files


def test_atomic_copy_links_on_one_file_system_and_copies_across(tmp_path, monkeypatch):
    src = tmp_path / "a.whl"
    src.write_bytes(b"wheel bytes")
    linked = files.atomic_copy(src, tmp_path / "out" / "a.whl", link=True)
    assert linked.read_bytes() == b"wheel bytes"
    assert os.stat(linked).st_ino == os.stat(src).st_ino  # a hard link, no bytes copied
    # the user's files are copied: rewriting an input wheel in place leaves the output alone
    copied = files.atomic_copy(src, tmp_path / "mine" / "a.whl")
    assert os.stat(copied).st_ino != os.stat(src).st_ino
    with open(src, "r+b") as fh:
        fh.write(b"WHEEL")
    assert copied.read_bytes() == b"wheel bytes"

    def no_link(*_a):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "link", no_link)
    copied = files.atomic_copy(src, tmp_path / "other" / "a.whl", link=True)
    assert copied.read_bytes() == b"WHEEL bytes"
    assert os.stat(copied).st_ino != os.stat(src).st_ino
    assert oct(os.stat(copied).st_mode & 0o777) == oct(0o644)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["a.whl"]  # no temporary left


def test_atomic_copy_replaces_an_existing_file(tmp_path):
    src = tmp_path / "a.whl"
    src.write_bytes(b"new")
    dest = tmp_path / "out" / "a.whl"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    files.atomic_copy(src, dest)
    assert dest.read_bytes() == b"new"


def test_write_tree_replaces_the_whole_folder(tmp_path):
    folder = tmp_path / "simple"
    files.write_tree(folder, {"index.html": "root", "a/index.html": "A", "b/index.html": "B"})
    assert (folder / "a" / "index.html").read_text() == "A"
    files.write_tree(folder, {"index.html": "root2", "b/index.html": "B2"})
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "b",
        "b/index.html",
        "index.html",
    ]
    assert (folder / "index.html").read_text() == "root2"
    assert [p.name for p in tmp_path.iterdir()] == ["simple"]  # no temporary folder left


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    """A served output is read by other users: 0644 under the usual umask (0600 before)."""
    from refinery_lib import files

    assert files.umask() == (os.umask(files.umask()) & 0o777)  # read without changing it
    expect = 0o666 & ~files.umask()
    files.write_json(tmp_path / "m.json", {"a": 1})
    files.atomic_write_text(tmp_path / "secret.yaml", "x", mode=0o600)
    src = tmp_path / "w.whl"
    src.write_bytes(b"w")
    os.chmod(src, 0o600)
    files.atomic_copy(src, tmp_path / "out" / "w.whl")
    files.write_tree(tmp_path / "simple", {"p/index.html": "x"})
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == expect
    assert stat.S_IMODE((tmp_path / "secret.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out" / "w.whl").stat().st_mode) == expect
    assert stat.S_IMODE((tmp_path / "simple").stat().st_mode) == 0o777 & ~files.umask()


def test_the_lock_between_processes(tmp_path):
    """lock_file and exclusive: one holder at a time (flock: open files, not processes, hold
    it, so two opens in this process contend as two processes would)."""
    path = tmp_path / "made" / "x.lock"
    held = files.lock_file(path)
    assert held is not None and path.is_file()
    assert files.lock_file(path, wait=False) is None
    with files.exclusive(path, wait=False) as got:
        assert got is False
    held.close()
    with files.exclusive(path, wait=False) as got:
        assert got is True
        assert files.lock_file(path, wait=False) is None
    again = files.lock_file(path, wait=False)
    assert again is not None
    again.close()
