"""Build-environment warm-up: build requirements read from sdists, their union, coverage, the
offline variables of a covered build and the recognition of an offline miss; the shared
environments of the local builder (key, making, reuse, a failed one, the record, the check of
what a build needs against an environment); the warm-up's record as warm.json stores it."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from refinery_lib import build_requirements, shared_venvs, warmup
from refinery_lib.attempt_env import (
    AttemptEnv,
    attempt_env,
    offline_miss,
    offline_vars,
    shared_env,
    shared_unmet,
)
from refinery_lib.attempts import BuildEnvKind, Variant
from refinery_lib.build_requirements import DEFAULT_REQUIRES, read_build_requires, union
from refinery_lib.errors import CommandError
from refinery_lib.pep517 import build_in_env
from refinery_lib.settings import Settings
from refinery_lib.shared_venvs import VENV_MARKER, SharedEnv, env_digest, make_shared_env
from refinery_lib.targets import host_arch
from refinery_lib.warmup import Planned, WarmProblem, WarmRecord, WarmSdist, warm_build_env
from tests.conftest import build_tools_wheels
from tests.fixtures.projects import make_wheel, write_simple_index

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"

PYPROJECT = b"""\
[build-system]
requires = ["setuptools>=61", "Cython<3; python_version < '3.13'"]
build-backend = "setuptools.build_meta"
"""


def tar_sdist(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    path = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for member, data in {"PKG-INFO": b"Name: x\n", **members}.items():
            info = tarfile.TarInfo(f"{name}-1.0/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def zip_sdist(folder: Path, name: str, members: dict[str, bytes]) -> Path:
    path = folder / f"{name}-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in {"PKG-INFO": b"Name: x\n", **members}.items():
            zf.writestr(f"{name}-1.0/{member}", data)
    return path


def test_requires_from_pyproject_of_a_tar_gz(tmp_path):
    got = read_build_requires(tar_sdist(tmp_path, "a", {"pyproject.toml": PYPROJECT}))
    assert got.requires == ("setuptools>=61", "Cython<3; python_version < '3.13'")
    assert got.source == "pyproject.toml" and not got.problem


def test_requires_from_a_zip_sdist(tmp_path):
    got = read_build_requires(zip_sdist(tmp_path, "z", {"pyproject.toml": PYPROJECT}))
    assert got.requires[0] == "setuptools>=61" and not got.problem


def test_a_nested_pyproject_is_not_the_projects(tmp_path):
    sdist = tar_sdist(tmp_path, "n", {"vendored/pyproject.toml": PYPROJECT, "setup.py": b""})
    assert read_build_requires(sdist).requires == DEFAULT_REQUIRES


@pytest.mark.parametrize(
    ("members", "source"),
    [
        ({"setup.py": b"from setuptools import setup\nsetup()\n"}, "default: no pyproject.toml"),
        ({"pyproject.toml": b"[tool.black]\nline-length = 100\n"}, "default: no [build-system]"),
    ],
)
def test_pep517_default_without_build_system(tmp_path, members, source):
    got = read_build_requires(tar_sdist(tmp_path, "d", members))
    assert got.requires == ("setuptools>=40.8.0", "wheel")
    assert got.source == source and not got.problem


@pytest.mark.parametrize(
    ("pyproject", "words"),
    [
        (b"[build-system\nrequires = [", "not valid TOML"),
        (b"[build-system]\nbuild-backend = 'x'\n", "no list of strings `requires`"),
        (b"[build-system]\nrequires = 'setuptools'\n", "no list of strings `requires`"),
        (b"[build-system]\nrequires = ['setuptools >>> 3']\n", "invalid build requirement"),
    ],
)
def test_a_malformed_pyproject_is_a_named_problem(tmp_path, pyproject, words):
    got = read_build_requires(tar_sdist(tmp_path, "bad", {"pyproject.toml": pyproject}))
    assert got.requires == () and words in got.problem and "bad-1.0.tar.gz" in got.problem


def test_an_unreadable_sdist_is_a_named_problem(tmp_path):
    path = tmp_path / "broken-1.0.tar.gz"
    path.write_bytes(b"not a tar")
    got = read_build_requires(path)
    assert "broken-1.0.tar.gz" in got.problem


def test_union_is_normalised_and_sorted():
    assert union(["setuptools>=61", "wheel", "setuptools >= 61", "Cython<3,>=0.29"]) == [
        "Cython<3,>=0.29",
        "setuptools>=61",
        "wheel",
    ]


def settings_for(tmp_path, shared=False, **config) -> Settings:
    base = {
        "cache": str(tmp_path / "cache"),
        "results": str(tmp_path / "results"),
        "target": {"python": "3.11", "platform_tag": "native"},
        "index": {"url": "http://127.0.0.1:9/simple"},
        "build": {
            "variant_order": ["isolated", "no-isolation", "legacy"],
            "variants": {
                "isolated": {"isolation": True},
                "no-isolation": {"isolation": False},
                "legacy": {"isolation": True, "constraints": ["setuptools<70"]},
            },
            # tests of the downloads alone make no environments (see the shared tests)
            "shared_build_env": shared,
        },
    }
    return Settings.from_config({**base, **config}, base=tmp_path)


@pytest.fixture(scope="module")
def tool_index(tmp_path_factory) -> str:
    """A file:// PEP 503 index with real setuptools wheels (70.3.0 and a newer one) and a
    `wheel`: what the warm-up's real `pip download` finds; nothing else is on it."""
    root = tmp_path_factory.mktemp("tool-index")
    files = root / "files"
    files.mkdir()
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    make_wheel(files, "wheel", "0.43.0")
    write_simple_index(files, root / "simple")
    return (root / "simple").as_uri()


@pytest.fixture
def index_settings(tmp_path, tool_index, isolated_pip_env):
    """settings_for, with the tool index as the only index."""
    return lambda **kw: settings_for(tmp_path, index={"url": tool_index}, **kw)


def pip_calls(record: WarmRecord) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The warm-up's real pip downloads: (requirements, pins) of each."""
    assert record.pip_calls is not None
    return [(c.requirements, c.pins or ()) for c in record.pip_calls]


def stored(record: WarmRecord) -> WarmRecord:
    """The record as a build reads it: through warm.json (its keys as they always were)."""
    data = json.loads(json.dumps(record.to_json()))
    assert WarmRecord.from_json(data).to_json() == data
    return WarmRecord.from_json(data)


def planned(tmp_path, name, members, pins=()):
    sdist = tar_sdist(tmp_path, name, members)
    return Planned(f"{name}-1.0", name, sdist, f"sha-{name}", pins)


def test_union_downloaded_once_and_every_sdist_covered(tmp_path, index_settings):
    settings = index_settings()
    pyproject = {"pyproject.toml": b"[build-system]\nrequires = ['setuptools>=61']\n"}
    items = [
        planned(tmp_path, "a", pyproject),
        planned(tmp_path, "b", pyproject),
        planned(tmp_path, "c", {"setup.py": b""}),
    ]
    record = stored(warm_build_env(settings, items, tmp_path / "warm.log"))
    assert pip_calls(record) == [(("setuptools>=40.8.0", "setuptools>=61", "wheel"), ())]
    newest = max(p.name for p in build_tools_wheels())
    assert list(record.wheels) == sorted([newest, "wheel-0.43.0-py3-none-any.whl"])
    assert record.covered == record.total == 3 and record.problems == []
    assert record.sdists["c-1.0"].requires == DEFAULT_REQUIRES
    assert record.requirements == ["setuptools>=40.8.0", "setuptools>=61", "wheel"]


def test_an_unavailable_requirement_uncovers_only_its_sdists(tmp_path, index_settings):
    settings = index_settings()
    items = [
        planned(tmp_path, "a", {"pyproject.toml": b"[build-system]\nrequires=['setuptools>=61']"}),
        planned(
            tmp_path,
            "b",
            {"pyproject.toml": b"[build-system]\nrequires=['setuptools>=61', 'localonly']"},
        ),
        planned(tmp_path, "c", {"pyproject.toml": b"[build-system"}),
    ]
    record = stored(warm_build_env(settings, items, tmp_path / "warm.log"))
    sdists = record.sdists
    assert sdists["a-1.0"].covered and not sdists["b-1.0"].covered
    assert sdists["b-1.0"].problem == "no wheel to download for localonly"
    assert not sdists["c-1.0"].covered and "not valid TOML" in sdists["c-1.0"].problem
    assert {p.key for p in record.problems} == {"b-1.0", "c-1.0"}
    assert record.covered == 1 and record.total == 3


def test_pins_group_the_downloads(tmp_path, index_settings):
    settings = index_settings()
    pyproject = {"pyproject.toml": b"[build-system]\nrequires = ['setuptools>=61']\n"}
    items = [
        planned(tmp_path, "a", pyproject),
        planned(tmp_path, "b", pyproject, pins=("setuptools==70.3.0",)),
    ]
    record = stored(warm_build_env(settings, items, tmp_path / "warm.log"))
    assert sorted(pip_calls(record)) == [
        (("setuptools>=61",), ()),
        (("setuptools>=61",), ("setuptools==70.3.0",)),
    ]
    assert record.sdists["b-1.0"].constraints == ("setuptools==70.3.0",)


def test_nothing_warmed_when_build_deps_may_be_sdists(tmp_path, monkeypatch):
    settings = settings_for(tmp_path, build={"binary_build_deps": False})
    monkeypatch.setattr(warmup, "_downloader", pytest.fail)
    record = warm_build_env(settings, [planned(tmp_path, "a", {})], tmp_path / "warm.log")
    assert record.covered == 0 and "binary_build_deps" in record.skipped
    assert record.pip_calls is None and "pip_calls" not in record.to_json()


def test_first_isolated_pins_follow_the_variant_order(tmp_path):
    settings = settings_for(
        tmp_path,
        overrides={"a": {"variants": ["no-isolation", "legacy"], "build_constraints": ["x==1"]}},
    )
    assert build_requirements.first_isolated_pins(settings, "a") == ("setuptools<70", "x==1")
    assert build_requirements.first_isolated_pins(settings, "b") == ()


def warm_record(folder: Path, sdists: dict[str, WarmSdist]) -> WarmRecord:
    """A warm-up's record of `sdists` (by build key)."""
    return WarmRecord(folder, "local", PY, "native", sdists, (), 0.0)


def entry(covered=True, sha256="s", constraints=(), **venv) -> WarmSdist:
    return WarmSdist("a", "a-1.0.tar.gz", sha256, ("setuptools",), "pyproject.toml",
                     constraints, covered, **venv)


def test_offline_vars_only_for_what_was_warmed(tmp_path):
    settings = settings_for(tmp_path)
    record = warm_record(settings.paths.buildenv,
                         {"a-1.0": entry(), "b-1.0": entry(covered=False)})
    iso = Variant("isolated")
    env = offline_vars(settings, record, "a-1.0", "s", iso, "a")
    assert env == {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{settings.paths.buildenv} {settings.paths.wheels} "
        f"{settings.paths.downloads}",
    }
    assert offline_vars(settings, record, "b-1.0", "s", iso, "b") is None  # not covered
    assert offline_vars(settings, record, "a-1.0", "other", iso, "a") is None  # another sdist
    assert offline_vars(settings, record, "a-1.0", "s", Variant("n", isolation=False), "a") is None
    pinned = Variant("legacy", constraints=("setuptools<70",))
    assert offline_vars(settings, record, "a-1.0", "s", pinned, "a") is None  # other pins
    assert offline_vars(settings, None, "a-1.0", "s", iso, "a") is None


INSTALL_FAILED = (
    "subprocess.CalledProcessError: Command '['/usr/bin/python', '-m', 'pip', '--python', "
    "'/tmp/build-env-x/bin/python', 'install', '--ignore-installed', '-r', "
    "'/tmp/build-requirements-y.txt']' returned non-zero exit status 1.\n"
)


def test_offline_miss_is_a_failed_build_env_install():
    log = (
        "< ERROR: Could not find a version that satisfies the requirement helperdyn "
        "(from versions: none)\n< ERROR: No matching distribution found for helperdyn\n"
        + INSTALL_FAILED
    )
    assert offline_miss(log) == ["helperdyn"]


def test_a_compile_error_is_no_offline_miss():
    assert offline_miss("x.c:3: error: expected ';'\nerror: command 'gcc' failed\n") == []
    # pip's words without a failed build-environment install (e.g. printed by setup.py)
    assert offline_miss("No matching distribution found for foo\n") == []


def test_container_builder_downloads_for_the_target(tmp_path):
    settings = settings_for(
        tmp_path,
        target={"python": "3.11", "platform_tag": "manylinux2014_s390x"},
        builder={"kind": "container", "preset": "debian"},
        index={"url": "http://mirror/simple", "trusted_hosts": ["mirror"]},
    )
    d = warmup._downloader(settings, tmp_path / "pip.log", tmp_path)
    argv = " ".join(d.argv)
    assert "download --only-binary :all:" in argv
    for part in ("--platform manylinux2014_s390x", "--platform manylinux_2_17_s390x",
                 "--python-version 3.11", "--implementation cp", "--abi cp311", "--abi abi3",
                 "--abi none"):
        assert part in argv
    # the container sees the build's pip variables, not this host's pip configuration
    assert d.env["PIP_CONFIG_FILE"] == os.devnull
    assert d.env["PIP_INDEX_URL"] == "http://mirror/simple"
    assert d.env["PIP_TRUSTED_HOST"] == "mirror"


def test_local_builder_downloads_with_its_own_interpreter(tmp_path):
    settings = settings_for(tmp_path, target={"python": PY, "platform_tag": "native"})
    d = warmup._downloader(settings, tmp_path / "pip.log", tmp_path)
    assert d.argv[0] == sys.executable and "--platform" not in d.argv
    assert d.env["PIP_FIND_LINKS"] == f"{settings.paths.wheels} {settings.paths.downloads}"


def test_a_target_the_local_builder_cannot_build_is_not_warmed(tmp_path):
    foreign = "manylinux2014_s390x" if host_arch() != "s390x" else "manylinux2014_x86_64"
    settings = settings_for(tmp_path, target={"python": PY, "platform_tag": foreign},
                            builder={"kind": "local"})
    record = warm_build_env(settings, [planned(tmp_path, "a", {})], tmp_path / "warm.log")
    assert record.covered == 0 and "local builder" in record.skipped
    assert "local builder" in record.problems[0].problem


def test_the_cross_builder_warms_build_requirements_for_this_host(tmp_path):
    """A cross build runs its build requirements here: they are this host's wheels."""
    foreign = "manylinux2014_s390x" if host_arch() != "s390x" else "manylinux2014_x86_64"
    settings = settings_for(tmp_path, target={"python": PY, "platform_tag": foreign})
    assert settings.builder == "cross"
    d = warmup._downloader(settings, tmp_path / "log", tmp_path)
    assert d.argv[0] == sys.executable and "--platform" not in d.argv


# --- shared build environments (local builder) ---


def test_env_digest_is_the_requirements_pins_interpreter_and_wheels():
    key = env_digest(["wheel", "setuptools>=61"], ["b==1", "a==2"], "/py 3.11.7", ["s.whl"])
    same = env_digest(["setuptools >= 61", "wheel"], ["a==2", "b==1"], "/py 3.11.7", ["s.whl"])
    assert key == same
    assert len(key) == 64
    assert key != env_digest(["setuptools>=61"], ["a==2", "b==1"], "/py 3.11.7", ["s.whl"])
    assert key != env_digest(["wheel", "setuptools>=61"], [], "/py 3.11.7", ["s.whl"])
    assert key != env_digest(["wheel", "setuptools>=61"], ["a==2", "b==1"], "/py 3.11.8", ["s.whl"])
    # a newer wheel downloaded later makes another environment
    assert key != env_digest(["wheel", "setuptools>=61"], ["a==2", "b==1"], "/py 3.11.7",
                          ["s.whl", "s2.whl"])


def tool_wheel(folder, version="1.0"):
    """A wheel with a console script (whose shebang names the environment's folder)."""
    files = {
        "tool/__init__.py": b"def main():\n    return 0\n",
        f"tool-{version}.dist-info/entry_points.txt": b"[console_scripts]\ntool = tool:main\n",
    }
    return make_wheel(folder, "tool", version, requires=("helper",), files=files)


def make_env(tmp_path, requires=("tool",), pins=(), key="k" * 64):
    wheels = tmp_path / "wheels"
    return make_shared_env(
        key, list(requires), list(pins), sys.executable, tmp_path / "venvs", wheels,
        {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        | {"PIP_CONFIG_FILE": os.devnull},
        tmp_path / "pip.log", tmp_path,
    )


@pytest.fixture
def wheels(tmp_path):
    folder = tmp_path / "wheels"
    tool_wheel(folder)
    tool_wheel(folder, "2.0")
    make_wheel(folder, "helper", "1.5")
    return folder


def test_a_shared_env_is_made_offline_ready_and_read_only(tmp_path, wheels):
    env = make_env(tmp_path, pins=["tool<2"])
    assert env.created and env.path == tmp_path / "venvs" / ("k" * 16)
    assert env.packages == {"helper": "1.5", "tool": "1.0"}  # the pin, and the dependency
    marker = json.loads((env.path / VENV_MARKER).read_text())
    assert marker["key"] == "k" * 64 and marker["packages"] == env.packages
    # made in a temporary sibling, renamed into place: its scripts name where it is now
    assert [p.name for p in (tmp_path / "venvs").iterdir()] == ["k" * 16]
    script = (env.path / "bin" / "tool").read_text()
    assert script.startswith(f"#!{env.path}/bin/python"), script.splitlines()[0]
    # bytecode is there already, and nothing under site-packages is writable
    site = build_in_env.site_packages(env.path)
    assert list(Path(site[0], "tool").glob("__pycache__/*.pyc"))
    for folder, dirs, files in os.walk(site[0]):
        for name in (*dirs, *files):
            assert not os.stat(os.path.join(folder, name)).st_mode & 0o222, name
    assert "install" in (tmp_path / "pip.log").read_text()


def test_a_ready_env_is_reused_and_a_half_made_one_made_again(tmp_path, wheels, monkeypatch):
    first = make_env(tmp_path)
    assert first.packages["tool"] == "2.0"
    monkeypatch.setattr(shared_venvs.proc, "run", pytest.fail)  # reused: no venv, no pip
    again = make_env(tmp_path)
    assert not again.created and again.path == first.path and again.packages == first.packages
    monkeypatch.undo()
    # a run that crashed after the rename, before the marker: not ready, made again
    (first.path / VENV_MARKER).unlink()
    assert shared_venvs.ready_env(first.path, "k" * 64) is None
    remade = make_env(tmp_path)
    assert remade.created and shared_venvs.ready_env(remade.path, "k" * 64) is not None
    # another key in the same folder (a prefix collision) is not taken for this one
    assert shared_venvs.ready_env(remade.path, "k" * 16 + "x" * 48) is None


def test_an_env_that_cannot_be_made_leaves_nothing(tmp_path, wheels):
    with pytest.raises(CommandError):
        make_env(tmp_path, requires=("tool", "nowhere-pkg"))
    assert list((tmp_path / "venvs").iterdir()) == []
    assert "nowhere-pkg" in (tmp_path / "pip.log").read_text()


def fake_make(calls, failing=()):
    def make(key, requires, pins, python, root, wheels, env, log_path, scratch):
        calls.append((tuple(requires), tuple(pins)))
        if tuple(pins) in failing:
            raise CommandError(["pip", "install"], 1, log_path)
        return SharedEnv(key, root / key[:16], {"setuptools": "80.0"}, created=True)

    return make


def test_one_env_per_key_and_one_that_failed_is_named_for_its_sdists(
    tmp_path, index_settings, monkeypatch
):
    settings = index_settings(shared=True)
    calls = []  # making environments is tested for real above; here which ones, and a failure
    monkeypatch.setattr(warmup, "make_shared_env",
                        fake_make(calls, failing={("setuptools==70.3.0",)}))
    pyproject = {"pyproject.toml": b"[build-system]\nrequires = ['setuptools>=61']\n"}
    items = [
        planned(tmp_path, "a", pyproject),
        planned(tmp_path, "b", pyproject),
        planned(tmp_path, "c", {"setup.py": b""}),
        planned(tmp_path, "c2", {"setup.py": b""}),
        planned(tmp_path, "d", pyproject, pins=("setuptools==70.3.0",)),
        planned(tmp_path, "d2", pyproject, pins=("setuptools==70.3.0",)),
        # needed by one build only: that build makes it, nothing is made here
        planned(tmp_path, "solo", pyproject, pins=("setuptools>=70,<71",)),
    ]
    record = stored(warm_build_env(settings, items, tmp_path / "warm.log"))
    assert sorted(calls) == [
        (("setuptools>=40.8.0", "wheel"), ()),
        (("setuptools>=61",), ()),
        (("setuptools>=61",), ("setuptools==70.3.0",)),
    ]
    sdists = record.sdists
    assert sdists["a-1.0"].venv == sdists["b-1.0"].venv != sdists["c-1.0"].venv
    assert str(sdists["a-1.0"].venv).startswith(str(settings.paths.venvs))
    assert sdists["a-1.0"].venv_packages == {"setuptools": "80.0"}
    assert len(sdists["a-1.0"].venv_key) == 64
    # d builds as before (offline, its own environment); its problem is named
    assert sdists["d-1.0"].covered and sdists["d-1.0"].venv is None
    assert sdists["d-1.0"].to_json()["venv"] == ""
    assert "shared build environment not made" in sdists["d-1.0"].venv_problem
    assert [p.key for p in record.problems] == ["d-1.0", "d2-1.0"]
    assert sdists["solo-1.0"].covered and sdists["solo-1.0"].venv is None
    assert not sdists["solo-1.0"].venv_problem
    assert record.covered == 7
    assert record.venvs is not None
    assert sorted(len(v.sdists) for v in record.venvs) == [2, 2]


def test_no_shared_env_for_a_container_builder_or_when_switched_off(
    tmp_path, index_settings, monkeypatch
):
    monkeypatch.setattr(warmup, "make_shared_env", pytest.fail)
    for settings in (
        index_settings(),
        index_settings(shared=True, builder={"kind": "container", "preset": "debian"},
                       target={"python": "3.11", "platform_tag": "manylinux2014_s390x"}),
    ):
        record = stored(warm_build_env(settings, [planned(tmp_path, "a", {})],
                                       tmp_path / "w.log"))
        assert record.covered == 1 and record.venvs is None
        assert "venvs" not in record.to_json()
        assert record.sdists["a-1.0"].venv is None


def _with_shared_env(tmp_path):
    """Settings with shared environments on, a made environment, and a warm-up record whose
    sdist a-1.0 uses it."""
    settings = settings_for(tmp_path, shared=True)
    env = make_env(tmp_path)
    record = warm_record(tmp_path / "wheels", {"a-1.0": entry(
        venv=env.path, venv_key=env.digest, venv_packages=env.packages)})
    return settings, env, record


def test_shared_env_only_for_a_ready_env_of_a_covered_isolated_build(tmp_path, wheels):
    settings, env, record = _with_shared_env(tmp_path)
    iso = Variant("isolated")
    got = shared_env(settings, record, "a-1.0", "s", iso, "a")
    assert got is not None and got.path == env.path and got.python.exists()
    assert shared_env(settings, record, "a-1.0", "other", iso, "a") is None
    assert shared_env(settings, record, "a-1.0", "s", Variant("n", isolation=False), "a") is None
    pinned = Variant("legacy", constraints=("setuptools<70",))
    assert shared_env(settings, record, "a-1.0", "s", pinned, "a") is None
    assert shared_env(settings_for(tmp_path), record, "a-1.0", "s", iso, "a") is None
    (env.path / VENV_MARKER).unlink()  # no longer ready
    assert shared_env(settings, record, "a-1.0", "s", iso, "a") is None


def test_an_attempt_tries_shared_then_offline_then_online(tmp_path, wheels):
    settings, env, record = _with_shared_env(tmp_path)
    iso = Variant("isolated")

    def kind(warm, *tried):
        return attempt_env(settings, warm, "a-1.0", "s", iso, "a", set(tried)).kind

    assert kind(record) is BuildEnvKind.SHARED
    assert kind(record, BuildEnvKind.SHARED) is BuildEnvKind.OFFLINE
    assert kind(record, BuildEnvKind.SHARED, BuildEnvKind.OFFLINE) is BuildEnvKind.ONLINE
    assert kind(None) is BuildEnvKind.ONLINE
    got = attempt_env(settings, record, "a-1.0", "s", iso, "a", {BuildEnvKind.SHARED})
    assert got.shared is None and got.offline == offline_vars(settings, record, "a-1.0", "s",
                                                              iso, "a")


def test_what_an_environment_lacked_is_read_from_its_log():
    lacks = build_in_env.LACKS + "helperdyn\n"
    miss = "No matching distribution found for helperdyn\n" + INSTALL_FAILED
    shared = AttemptEnv(BuildEnvKind.SHARED)
    assert shared.lacked(lacks, build_in_env.UNMET_EXIT) == ["helperdyn"]
    assert shared.lacked(lacks, 1) == []  # the build itself failed
    assert AttemptEnv(BuildEnvKind.OFFLINE, offline={}).lacked(miss, 1) == ["helperdyn"]
    assert AttemptEnv(BuildEnvKind.ONLINE).lacked(miss, 1) == []  # nothing left to try


def test_the_record_names_unfetched_sdists_first(tmp_path):
    settings = settings_for(tmp_path, build={"binary_build_deps": False})
    lost = WarmProblem("gone-1.0", "", "cannot fetch the sdist of gone 1.0")
    record = stored(warm_build_env(settings, [planned(tmp_path, "a", {})], tmp_path / "w.log",
                                   unfetched=[lost]))
    assert record.unfetched == (lost,) and record.problems[0] == lost
    assert record.total == 2 and "gone-1.0" not in record.sdists
    assert record.summary().startswith("build environments: 0 of 2 sdist(s) covered by 0 ")
    assert "; : cannot fetch the sdist of gone 1.0; a-1.0.tar.gz: not warmed" in record.summary()


def test_warm_json_keeps_its_keys(tmp_path):
    """warm.json as the warm-up has always written it (here with a shared environment and an
    sdist that was not fetched) reads back key for key."""
    venv = str(tmp_path / "venvs" / "k")
    data = {
        "folder": str(tmp_path / "wheels"), "builder": "local",
        "target": {"python": PY, "platform_tag": "native"}, "skipped": "",
        "pip_calls": [{"requirements": ["setuptools>=61"], "pins": [], "ok": True},
                      {"requirements": ["x"], "ok": False}],
        "venvs": [{"key": "k" * 64, "path": venv, "created": True, "duration": 1.5,
                   "packages": {"setuptools": "80.0"}, "sdists": ["a-1.0"]}],
        "requirements": ["setuptools>=61"],
        "sdists": {"a-1.0": {
            "name": "a", "sdist": "a-1.0.tar.gz", "sha256": "s", "requires": ["setuptools>=61"],
            "source": "pyproject.toml", "constraints": [], "covered": True, "problem": "",
            "venv": venv, "venv_key": "k" * 64, "venv_packages": {"setuptools": "80.0"},
            "venv_problem": ""}},
        "problems": [{"key": "gone-1.0", "sdist": "", "problem": "cannot fetch"}],
        "covered": 1, "total": 2, "wheels": ["setuptools-80.0-py3-none-any.whl"],
        "duration": 2.25,
    }
    (tmp_path / "warm.json").write_text(json.dumps(data))
    record = WarmRecord.read(tmp_path / "warm.json")
    assert record.to_json() == data
    assert record.sdists["a-1.0"].venv == Path(venv) and record.unfetched[0].key == "gone-1.0"


def dist_info(site, name, version, requires=()):
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (folder / "METADATA").write_text("\n".join(["Metadata-Version: 2.1", *lines]) + "\n")


def test_unmet_requirements_are_checked_against_the_environment(tmp_path):
    site = tmp_path / "env" / "lib" / f"python{PY}" / "site-packages"
    dist_info(site, "setuptools", "80.0")
    dist_info(site, "Cython", "0.29.37", requires=["extra-thing; extra == 'fast'"])
    paths = build_in_env.site_packages(tmp_path / "env")
    assert paths == [str(site)]
    assert build_in_env.unmet(["setuptools>=61", "cython<3"], paths) == []
    assert build_in_env.unmet(["setuptools>=61", "helperdyn"], paths) == ["helperdyn"]
    assert build_in_env.unmet(["setuptools<70"], paths) == ["setuptools<70"]
    assert build_in_env.unmet(["other; python_version < '3'"], paths) == []
    assert build_in_env.unmet(["cython[fast]"], paths) == ["extra-thing; extra == \"fast\""]
    assert build_in_env.installed_versions(["Cython>=0.29", "nothere"], paths) == {
        "cython": "0.29.37"
    }


def test_the_runner_names_what_the_shared_env_lacks():
    line = build_in_env.LACKS + "helperdyn, other>=2"
    assert shared_unmet(f"* Getting build dependencies for wheel...\n{line}\n") == [
        "helperdyn", "other>=2",
    ]
    assert shared_unmet("error: command 'gcc' failed\n") == []


def test_environments_unused_for_a_week_are_pruned(tmp_path):
    import os
    import time

    from refinery_lib.shared_venvs import PRUNE_AFTER, VENV_MARKER, prune_envs

    root = tmp_path / "venvs"
    now = time.time()
    for name, age in (("current", 30 * 86400), ("recent", 3600), ("stale", PRUNE_AFTER + 60)):
        env = root / name
        (env / "lib").mkdir(parents=True)
        (env / VENV_MARKER).write_text("{}")
        os.utime(env / VENV_MARKER, (now - age, now - age))
        (env / "lib").chmod(0o555)  # shared environments are read-only
    half = root / "halfmade"
    half.mkdir()
    os.utime(half, (now - PRUNE_AFTER - 60, now - PRUNE_AFTER - 60))
    (root / ".lock").write_text("")
    removed = prune_envs(root, keep={"current"}, now=now)
    assert sorted(removed) == ["halfmade", "stale"]
    assert sorted(p.name for p in root.iterdir()) == [".lock", "current", "recent"]
