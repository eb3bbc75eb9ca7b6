"""One container build attempt, and the smoke import of a wheel in a container of its arch.

Each attempt runs in a fresh container (`--rm`) from a preset's image (or
`--container-image`): `container_build.py` builds, repairs and smoke-tests the sdist there
with the container's own Python and writes a JSON result (`container_run`). This module makes
the request, checks what comes back (a plain wheel in `out/`, ELF files of the target's
arch) and turns a failed stage into a BuildError, or a PolicyNotMetError that says which
preset or base would meet the requested tag. Foreign architectures (s390x on an x86_64 host)
run under qemu-user through binfmt_misc.
"""

from __future__ import annotations

import re
import shutil
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .container_engine import Mount, check_emulation, engine_argv
from .container_presets import (
    ElfIdent,
    PolicyNotMetError,
    Preset,
    arch_names,
    get_preset,
    policy_suggestion,
)
from .container_run import (
    C_RESULT,
    C_SRC,
    C_WORK,
    HOST_CA_BUNDLE,
    prepare_work,
    run_env,
    run_script,
    script_command,
)
from .errors import BuildError, ConfigError

_SHARED_OBJECT = re.compile(r"\.so(\.[\d.]+)?$")


@dataclass(frozen=True)
class ContainerBuildResult:
    """One successful container build: the repaired wheel on the host and what proves it."""

    wheel: Path
    auditwheel_tag: str | None
    auditwheel_show: str
    grafted_libs: tuple[str, ...]
    smoke: dict[str, Any]
    requested_tag: str
    built_wheel: str
    image: str
    arch: str
    limits: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    argv: tuple[str, ...] = ()
    log_path: Path | None = None

    def metadata(self) -> dict[str, Any]:
        """JSON-ready facts for the manifest and history."""
        return {
            "builder": "container",
            "image": self.image,
            "arch": self.arch,
            "requested_tag": self.requested_tag,
            "auditwheel_tag": self.auditwheel_tag,
            "grafted_libs": list(self.grafted_libs),
            "smoke": {k: self.smoke.get(k) for k in ("ok", "modules", "arch", "python")},
            "limits": self.limits,
            "timings": self.timings,
        }


def smoke_in_container(
    wheel: Path,
    work_dir: Path,
    *,
    engine: str,
    image: str,
    arch: str,
    python_tag: str,
    log_path: Path,
    find_links: Sequence[Path] = (),
    timeout: float | None = None,
    python: str = "python3",
) -> dict[str, Any]:
    """Install `wheel` (built elsewhere) in a fresh container of `arch`, network off, and import
    its top-level modules there (qemu-user on a foreign host); its runtime dependencies come
    from `find_links` when they are there. Returns the smoke record; raises BuildError naming
    the import error when a module does not import."""
    check_emulation(arch)
    wheel = Path(wheel).resolve()
    work_dir = Path(work_dir).resolve()
    request = {
        "smoke_only": True,
        "wheel": f"{C_WORK}/wheel/{wheel.name}",
        "work": C_WORK,
        "result": C_RESULT,
        "python_tag": python_tag,
    }
    result_file = prepare_work(work_dir, request, clear=("smoke", "tmp", "home", "wheel"),
                               make=("tmp", "home", "wheel"))
    shutil.copyfile(wheel, work_dir / "wheel" / wheel.name)
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": " ".join(str(p) for p in find_links)}
    run = run_env(env if find_links else {"PIP_NO_INDEX": "1"}, [], work_dir, None)
    name = f"refinery-smoke-{uuid.uuid4().hex[:12]}"
    argv = engine_argv(
        engine, image, script_command(python), arch=arch, mounts=run.mounts, env=run.fixed,
        pass_env=sorted(run.passed), network=False, name=name, workdir=C_WORK, timeout=timeout,
    )
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"# smoke import of {wheel.name} in {image} ({arch}), network none\n")
    data = run_script(argv, engine=engine, name=name, what=f"smoke import of {wheel.name}",
                      env=run, log_path=log_path, timeout=timeout, result_file=result_file)
    smoke = data.get("smoke") or {}
    record = {"ok": bool(smoke.get("ok")), "modules": smoke.get("modules") or {},
              "arch": smoke.get("arch"), "python": smoke.get("python"),
              "dependencies_installed": smoke.get("dependencies_installed"),
              "image": image, "network": "none"}
    if not data.get("ok"):
        raise BuildError(f"smoke import failed: {data.get('detail') or 'no result'}", log_path)
    return record


def build_in_container(
    sdist: Path,
    work_dir: Path,
    *,
    engine: str,
    image: str,
    preset: str | Preset | None,
    arch: str,
    target_platform_tag: str,
    python_tag: str,
    variant: str = "isolated",
    system_packages: Sequence[str] = (),
    recipe_steps: Sequence[Sequence[str]] = (),
    env: Mapping[str, str] | None = None,
    cpu: str | float | None = None,
    memory: str | None = None,
    log_path: Path,
    timeout: float | None = None,
    network: bool | str = True,
    find_links: Sequence[Path] = (),
    family: str | None = None,
    python: str | None = None,
    smoke: bool = True,
    ca_bundle: Path | None = HOST_CA_BUNDLE,
    config_settings: Sequence[str] = (),
) -> ContainerBuildResult:
    """Build, repair and smoke-test `sdist` in a fresh container; return the repaired wheel.

    `work_dir` is this attempt's own folder (created; its build subfolders are reset) and the
    only host path the container can write; the wheel is left in `work_dir/out/`, for the
    caller to move. `env` holds the build's own variables (PIP_INDEX_URL, overrides' env), not
    os.environ. Raises PolicyNotMetError when the wheel cannot honestly carry
    `target_platform_tag` (the message names the blocking symbol versions and which preset
    or base would meet it), BuildError for any other failure (timeout, build error, failed
    smoke import); `log_path` receives the engine command line and all container output.
    """
    spec = get_preset(preset)
    sdist = Path(sdist).resolve()
    if not sdist.is_file():
        raise BuildError(f"sdist {sdist} does not exist", log_path)
    if variant not in ("isolated", "no-isolation"):
        raise ConfigError(f"unknown build variant {variant!r} (isolated, no-isolation)")
    check_emulation(arch)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    request = {
        "sdist": f"{C_SRC}/{sdist.name}",
        "work": C_WORK,
        "result": C_RESULT,
        "platform_tag": target_platform_tag,
        "python_tag": python_tag,
        "variant": variant,
        "family": family or (spec.family if spec else None),
        "system_packages": list(system_packages),
        "recipe_steps": [list(step) for step in recipe_steps],
        "config_settings": list(config_settings),
        "smoke": smoke,
    }
    result_file = prepare_work(
        work_dir, request, make=("tmp", "home"),
        clear=("src", "dist", "repaired", "out", "smoke", "elf", "tmp", "home"))
    run = run_env(env, find_links, work_dir, ca_bundle, [Mount(sdist, f"{C_SRC}/{sdist.name}")])
    name = f"refinery-{uuid.uuid4().hex[:12]}"
    interpreter = python or (spec.python if spec else "python3")
    argv = engine_argv(
        engine, image, script_command(interpreter),
        arch=arch, mounts=run.mounts, env=run.fixed, pass_env=sorted(run.passed), cpu=cpu,
        memory=memory, network=network,
        name=name, workdir=C_WORK, timeout=timeout,
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(
            f"# container build of {sdist.name}: image {image} ({arch}), target "
            f"{target_platform_tag} {python_tag}, variant {variant}, cpus {cpu or '-'}, "
            f"memory {memory or '-'}, network {network}\n"
            f"# build env passed by name: {', '.join(sorted(run.passed)) or '-'}\n"
        )
    data = run_script(argv, engine=engine, name=name, what=f"container build of {sdist.name}",
                      env=run, log_path=log_path, timeout=timeout, result_file=result_file)
    if not data.get("ok"):
        _raise_failure(data, target_platform_tag, arch, log_path)
    return _result(data, work_dir, argv, image, arch, target_platform_tag, log_path)


def _raise_failure(data: dict[str, Any], requested: str, arch: str, log_path: Path) -> None:
    detail = data.get("detail") or "container build failed"
    if data.get("failed_stage") == "policy":
        policy = data.get("policy") or {}
        hint = policy_suggestion(requested, arch, policy.get("achieved"))
        raise PolicyNotMetError(
            f"{detail}. {hint}" if hint else detail, log_path,
            requested=requested, achieved=policy.get("achieved") or "",
            blockers=policy.get("blockers") or {}, symbols=policy.get("blocking_symbols") or {},
        )
    stage = data.get("failed_stage") or data.get("stage") or "?"
    raise BuildError(f"{stage} stage failed: {detail}", log_path)


def _result(data: dict[str, Any], work_dir: Path, argv: list[str], image: str, arch: str,
            requested: str, log_path: Path) -> ContainerBuildResult:
    # The result file was written where build code ran: trust only a plain wheel in out/.
    name = str(data.get("wheel") or "")
    out = work_dir / "out"
    wheel = out / name
    if ("/" in name or not name.endswith(".whl") or wheel.is_symlink() or not wheel.is_file()
            or wheel.resolve().parent != out.resolve()):
        raise BuildError(f"container build reported no usable wheel ({name!r})", log_path)
    check_wheel_arch(wheel, arch, log_path)
    smoke = data.get("smoke") or {}
    return ContainerBuildResult(
        wheel=wheel,
        auditwheel_tag=data.get("auditwheel_tag"),
        auditwheel_show=data.get("auditwheel_show") or "",
        grafted_libs=tuple(data.get("grafted_libs") or ()),
        smoke={"ok": bool(smoke.get("ok")), "modules": smoke.get("modules") or {},
               "arch": smoke.get("arch"), "output": smoke.get("output") or "",
               "python": smoke.get("python"),
               "dependencies_installed": smoke.get("dependencies_installed")},
        requested_tag=requested,
        built_wheel=str(data.get("built_wheel") or ""),
        image=image,
        arch=arch,
        limits=data.get("limits") or {},
        timings=data.get("timings") or {},
        duration=float(data.get("duration") or 0.0),
        argv=tuple(argv),
        log_path=log_path,
    )


def elf_header(data: bytes) -> ElfIdent | None:
    """(ELF class, endianness, e_machine) of an ELF file's first bytes, or None."""
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    endian: Literal["little", "big"] = "big" if data[5] == 2 else "little"
    return data[4], endian, int.from_bytes(data[18:20], endian)


def check_wheel_arch(wheel: Path, arch: str, log_path: Path | None = None) -> list[str]:
    """Every shared object in the wheel must be an ELF for `arch`; returns their names."""
    want = arch_names(arch).elf
    found = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not _SHARED_OBJECT.search(info.filename):
                continue
            with zf.open(info) as fh:
                header = elf_header(fh.read(20))
            if header != want:
                raise BuildError(f"{info.filename} in {wheel.name} is not a {arch} ELF "
                                 f"(class, endianness, machine = {header})", log_path)
            found.append(info.filename)
    return found
