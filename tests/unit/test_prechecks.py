"""Checks before a run: each refuses with one line naming the option, and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from refinery_lib import prechecks
from refinery_lib.errors import ConfigError
from refinery_lib.prechecks import (
    PrecheckError,
    RunPaths,
    check_input,
    check_paths,
    check_separate,
    check_target,
    probe_writable,
)
from refinery_lib.targets import KNOWN_ARCHES, Target
from tests.fixtures.processes import without_dac_override


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def paths(tmp_path: Path, **kw: str) -> RunPaths:
    names = {"input": "in", "output": "out", "cache": "cache"} | kw
    p = {k: tmp_path / v for k, v in names.items()}
    return RunPaths(p["input"], p["output"], p["cache"],
                    tmp_path / kw.get("manifest", f"{names['output']}/manifest.json"),
                    tmp_path / kw.get("history_db", f"{names['cache']}/history.db"))


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"")
    return folder


def test_input_must_be_a_folder_with_a_file(tmp_path):
    with pytest.raises(PrecheckError, match=r"^--input .*/nope is not a folder$"):
        check_input(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrecheckError, match=r"^--input .*/empty holds no files to refine"):
        check_input(empty)
    (empty / ".hidden").write_text("x")
    (empty / "sub").mkdir()
    with pytest.raises(PrecheckError, match="holds no files"):
        check_input(empty, "REFINERY_INPUT")
    (empty / "x.whl").write_bytes(b"")
    check_input(empty)


@pytest.mark.parametrize(
    ("layout", "says"),
    [
        ({"output": "in"}, "--input and --output are the same folder"),
        ({"input": "out/in"}, "--input {t}/out/in is inside --output {t}/out"),
        ({"output": "in/out"}, "--output {t}/in/out is inside --input {t}/in"),
        ({"cache": "in"}, "--input and --cache are the same folder"),
        ({"cache": "out/cache"}, "--cache {t}/out/cache is inside --output {t}/out"),
        ({"output": "cache"}, "--output and --cache are the same folder"),
        ({"manifest": "in/manifest.json"}, "--manifest {t}/in/manifest.json is inside --input"),
        ({"history_db": "in/h.db"}, "--history-db {t}/in/h.db is inside --input"),
    ],
)
def test_folders_must_be_separate(tmp_path, layout, says):
    with pytest.raises(PrecheckError) as exc:
        check_separate(paths(tmp_path, **layout))
    assert str(exc.value).startswith(says.format(t=tmp_path))


def test_separate_folders_pass(tmp_path):
    check_separate(paths(tmp_path))
    check_separate(paths(tmp_path, output="out-in", cache="in-cache"))  # prefixes are not parents


def test_labels_name_environment_variables(tmp_path):
    with pytest.raises(PrecheckError, match="^REFINERY_OUTPUT and --cache are the same"):
        check_separate(paths(tmp_path, output="c", cache="c"), {"output": "REFINERY_OUTPUT"})


def test_write_probe_leaves_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    before = tree(tmp_path)
    probe_writable(tmp_path / "out", "--output")
    probe_writable(tmp_path / "new" / "deeper", "--output")  # its nearest parent is probed
    assert tree(tmp_path) == before  # no probe file left, no folder made


def test_write_probe_is_a_real_write_not_permission_bits(tmp_path, monkeypatch):
    """os.access says yes for root and knows nothing of read-only mounts: only a write tells."""
    (tmp_path / "out").mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PrecheckError, match=r"^--output .*/out is not writable: Permission denied"):
        probe_writable(tmp_path / "out", "--output")
    with pytest.raises(PrecheckError, match=r"^--cache .*/c/d cannot be created: .* not writable"):
        probe_writable(tmp_path / "c" / "d", "--cache")


def test_write_probe_on_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code = ("import sys; from pathlib import Path; from refinery_lib.prechecks import "
            "probe_writable; probe_writable(Path(sys.argv[1]), '--output')")
    try:
        res = subprocess.run(without_dac_override([sys.executable, "-c", code, str(ro)]),
                             capture_output=True, text=True, timeout=60)
    finally:
        ro.chmod(0o755)
    assert res.returncode != 0
    assert f"PrecheckError: --output {ro} is not writable: Permission denied" in res.stderr
    assert list(ro.iterdir()) == []


def test_output_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PrecheckError, match=r"^--output .*/file is not a folder$"):
        probe_writable(tmp_path / "file", "--output")
    with pytest.raises(PrecheckError, match=r"^--output .*/file/out: .*/file is not a folder$"):
        probe_writable(tmp_path / "file" / "out", "--output")


def test_check_paths_probes_manifest_and_history_folders_elsewhere(tmp_path, wheelhouse,
                                                                    monkeypatch):
    probed = []
    monkeypatch.setattr(prechecks, "probe_writable", lambda folder, label: probed.append(label))
    check_paths(paths(tmp_path))
    assert probed == ["--output", "--cache"]
    probed.clear()
    check_paths(paths(tmp_path, manifest="m/manifest.json", history_db="h/h.db"))
    assert probed == ["--output", "--cache", "--manifest", "--history-db"]


def test_check_paths_reports_the_input_first(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(PrecheckError, match="holds no files"):
        check_paths(paths(tmp_path, output="in"))


@pytest.mark.parametrize("arch", ["x86_64", "i686", "aarch64", "armv7l", "ppc64le", "ppc64",
                                  "s390x", "riscv64", "loongarch64"])
def test_known_arches(arch):
    assert arch in KNOWN_ARCHES
    for tag in (f"manylinux2014_{arch}", f"manylinux_2_28_{arch}", f"musllinux_1_2_{arch}",
                f"linux_{arch}"):
        check_target({"target": {"platform_tag": tag}}, {})


@pytest.mark.parametrize(
    ("tag", "says"),
    [
        ("manylinux2014_s390", "unknown architecture 's390'; did you mean 'manylinux2014_s390x'?"),
        ("musllinux_1_2_arm64", "unknown architecture 'arm64'"),
        ("linux_sparc", "unknown architecture 'sparc'"),
        ("manylinux_3_0_x86_64", "manylinux tags are manylinux_2_Y_ARCH"),
        ("win_amd64", "use native, linux_ARCH"),
    ],
)
def test_platform_tag_of_an_unknown_arch(tag, says):
    with pytest.raises(ConfigError, match=f"--platform-tag '{tag}'.*{says}"):
        check_target({"target": {"platform_tag": tag}}, {})
    with pytest.raises(ConfigError):
        Target("3.11", tag)


def test_native_is_accepted():
    check_target({"target": {"platform_tag": "native"}}, {})


@pytest.mark.parametrize(
    ("python", "says"),
    [
        ("3.x", "--python '3.x' is not a Python version; give major.minor, e.g. 3.11"),
        ("three", "--python 'three' is not a Python version"),
        ("3.11.4", "--python '3.11.4': give the CPython 3 version as major.minor"),
        ("2.7", "--python '2.7': give the CPython 3 version"),
        ("3.12rc1", "--python '3.12rc1': give"),
    ],
)
def test_python_that_is_not_major_minor(python, says):
    with pytest.raises(ConfigError) as exc:
        check_target({"target": {"python": python}}, {})
    assert str(exc.value).startswith(says)
    assert "^" not in str(exc.value)  # no regular expression in the message


def test_python_is_normalised_by_packaging():
    conf = {"target": {"python": "v3.12"}}
    check_target(conf, {})
    assert conf["target"]["python"] == "3.12"


def test_target_messages_use_the_given_label():
    with pytest.raises(ConfigError, match="^REFINERY_PYTHON 'x' is not"):
        check_target({"target": {"python": "x"}}, {"python": "REFINERY_PYTHON"})
