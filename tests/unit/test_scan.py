import zipfile

from refinery_lib.wheels import read_sdist_metadata, scan_folder, scan_wheel
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
    assert "does not end in .whl" in scan_wheel(f).reason


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
