"""Plain Snakemake and `refinery` drive the same workflow; config files; history CLI; every
mistake refused before anything runs (exit 2, one line, nothing written)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_refinery
from tests.fixtures.processes import without_dac_override
from tests.fixtures.projects import make_wheel

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.mark.slow
def test_plain_snakemake_with_configfile(tmp_path, index_url, isolated_pip_env):
    make_wheel(tmp_path / "in", "cfast", "1.0", "cp311-cp311-manylinux2014_s390x")
    make_wheel(tmp_path / "in", "hello", "1.0", "py3-none-any")
    conf = {
        "input": str(tmp_path / "in"),
        "output": str(tmp_path / "out"),
        "cache": str(tmp_path / "cache"),
        "target": {"python": PY, "platform_tag": "native"},
        "index": {"url": index_url},
    }
    cfg = tmp_path / "my-config.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path / "wd"),
            "--cores",
            "2",
            "--configfile",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env=isolated_pip_env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["summary"] == {"built": 1, "reused": 1}
    assert (tmp_path / "wd" / "results" / "plan" / "plan.json").exists()
    # the history CLI reads what the run recorded
    hist = run_refinery(
        ["history", "--cache", str(tmp_path / "cache"), "--json", "--package", "cfast"]
    )
    assert hist.returncode == 0, hist.stderr
    data = json.loads(hist.stdout)
    assert data["package"]["built"] == 1 and data["package"]["last_status"] == "built"
    assert {e["status"] for e in data["recent"]} == {"built", "attempt"}
    text = run_refinery(["history", "--cache", str(tmp_path / "cache")])
    assert "cfast" in text.stdout and "recent events" in text.stdout


@pytest.mark.slow
def test_toml_config_and_foreign_target_refused_by_local_builder(
    tmp_path, index_url, isolated_pip_env
):
    make_wheel(tmp_path / "in", "cfast", "1.0", "cp311-cp311-manylinux2014_aarch64")
    cfg = tmp_path / "refinery.toml"
    # the default builder would cross-compile for s390x (tests/containers/test_cross_e2e.py)
    cfg.write_text(f'[index]\nurl = "{index_url}"\n[target]\npython = "3.11"\n'
                   '[builder]\nkind = "local"\n')
    res = run_refinery(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
            "--config",
            str(cfg),
        ],
        env=isolated_pip_env,
    )
    assert res.returncode == 1
    (entry,) = json.loads((tmp_path / "out" / "manifest.json").read_text())["entries"]
    assert entry["status"] == "failed"
    assert "local builder compiles for this host" in entry["detail"]
    assert "s390x" in entry["detail"]


def test_bad_config_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("strategy:\n  upgrade: sideways\n")
    res = run_refinery(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
            "--config",
            str(cfg),
        ]
    )
    assert res.returncode == 2
    assert "strategy/upgrade" in res.stderr and "sideways" in res.stderr


def test_missing_input_folder(tmp_path):
    res = run_refinery(
        [
            "--input",
            str(tmp_path / "nope"),
            "--output",
            str(tmp_path / "o"),
            "--cache",
            str(tmp_path / "c"),
        ]
    )
    assert res.returncode == 2 and "is not a folder" in res.stderr
    assert not Path(tmp_path / "c").exists()


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without REFINERY_* variables (they would set run options), plus
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFINERY_")}
    return env | extra


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: kind and mode, and a file's mtime and bytes. A folder's
    mtime is left out: the write probe adds and removes a file in it."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_dir() and not path.is_symlink():
            out[rel] = ("dir", st.st_mode)
        else:
            out[rel] = ("file", st.st_mode, st.st_mtime_ns, path.read_bytes())
    return out


def assert_refused(res: subprocess.CompletedProcess, says: str) -> None:
    """Exit 2 and one line on stderr: `refinery: error: ...` saying `says`."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("refinery: error: ") and says in lines[0], lines[0]


def site(tmp_path: Path) -> Path:
    """tmp_path/in with one wheel; out and cache do not exist yet."""
    make_wheel(tmp_path / "in", "hello", "1.0", "py3-none-any")
    return tmp_path


def folders(tmp: Path, inp: str = "in", out: str = "out", cache: str = "cache") -> list[str]:
    # a local index that does not exist: the old code, which ran these, never went online
    return ["--input", str(tmp / inp), "--output", str(tmp / out), "--cache", str(tmp / cache),
            "--index-url", (tmp / "no-index").as_uri()]


MISTAKES = {
    "empty input": (
        lambda t: (t / "empty").mkdir() or folders(t, inp="empty"),
        "holds no files to refine",
    ),
    "input is output": (lambda t: folders(t, out="in"), "--input and --output are the same"),
    "input inside output": (
        lambda t: make_wheel(t / "out" / "in", "hello", "1.0") and folders(t, inp="out/in"),
        "--input {t}/out/in is inside --output {t}/out",
    ),
    "output inside input": (
        lambda t: folders(t, out="in/out"), "--output {t}/in/out is inside --input {t}/in"
    ),
    "unknown arch": (
        lambda t: [*folders(t), "--platform-tag", "manylinux2014_s390"],
        "--platform-tag 'manylinux2014_s390': unknown architecture 's390'; did you mean "
        "'manylinux2014_s390x'?",
    ),
    "python packaging cannot parse": (
        lambda t: [*folders(t), "--python", "3.x"],
        "--python '3.x' is not a Python version; give major.minor, e.g. 3.11",
    ),
    "stray word": (
        lambda t: [*folders(t), "seraph"],
        "unexpected argument 'seraph'; Snakemake options and targets go after --",
    ),
    "cache is output": (lambda t: folders(t, cache="out"), "--output and --cache are the same"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistake_refused_before_anything_is_written(tmp_path, mistake):
    make_argv, says = MISTAKES[mistake]
    site(tmp_path)
    argv = make_argv(tmp_path)
    before = snapshot(tmp_path)
    res = run_refinery(argv, env=clean_env())
    assert_refused(res, says.format(t=tmp_path))
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "cache").exists()


def test_mistake_from_an_environment_variable_names_it(tmp_path):
    site(tmp_path)
    before = snapshot(tmp_path)
    env = clean_env(REFINERY_INPUT=str(tmp_path / "in"), REFINERY_OUTPUT=str(tmp_path / "o"),
                    REFINERY_CACHE=str(tmp_path / "c"), REFINERY_PLATFORM_TAG="musllinux_1_2_s390")
    res = run_refinery(["run"], env=env)
    assert_refused(res, "unsupported REFINERY_PLATFORM_TAG 'musllinux_1_2_s390'")
    assert snapshot(tmp_path) == before


def test_mistake_in_a_found_config_file_names_it(tmp_path):
    site(tmp_path)
    (tmp_path / "refinery.toml").write_text('[target]\nplatform_tag = "linux_s390"\n')
    before = snapshot(tmp_path)
    res = run_refinery(folders(tmp_path), env=clean_env(), cwd=tmp_path)
    assert_refused(res, f"target.platform_tag in {tmp_path / 'refinery.toml'} 'linux_s390'")
    assert snapshot(tmp_path) == before


def test_unwritable_output_is_refused_and_kept(tmp_path):
    """The user's folder is neither replaced nor changed, and no run starts."""
    site(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    out.chmod(0o555)
    before = snapshot(tmp_path)
    inode = out.stat().st_ino
    try:
        res = subprocess.run(
            without_dac_override([sys.executable, "-m", "refinery_lib.cli", *folders(tmp_path)]),
            capture_output=True, text=True, env=clean_env(), timeout=600,
        )
        after = snapshot(tmp_path)
    finally:
        out.chmod(0o755)
    assert_refused(res, f"--output {out} is not writable: Permission denied")
    assert after == before and out.stat().st_ino == inode
    assert not (tmp_path / "cache").exists()


def test_busy_cache_is_refused_before_its_config_is_overwritten(tmp_path):
    """A second run on a cache in use leaves the first one's refinery-config.yaml alone."""
    site(tmp_path)
    workdir = tmp_path / "cache" / "workflow"
    workdir.mkdir(parents=True)
    config = workdir / "refinery-config.yaml"
    config.write_text("# the running run's config\n")
    with open(workdir / ".refinery.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = snapshot(tmp_path)
        res = run_refinery(folders(tmp_path), env=clean_env())
        after = snapshot(tmp_path)
    assert config.read_text() == "# the running run's config\n"
    assert after == before
    assert not (tmp_path / "out").exists()
    assert_refused(res, f"another refinery run is using {tmp_path / 'cache'}")


def test_unknown_command_did_you_mean(tmp_path):
    res = run_refinery(["histroy", "--cache", str(tmp_path)], env=clean_env())
    assert_refused(res, "unknown command 'histroy'; did you mean 'history'?")


def test_version_and_bare_command():
    res = run_refinery(["--version"], env=clean_env())
    assert res.returncode == 0 and res.stdout == f"refinery {version('s390x-wheel-refinery')}\n"
    res = run_refinery([], env=clean_env())
    assert res.returncode == 2 and "usage: refinery" in res.stderr and "history" in res.stderr
