"""Building one package from its sdist with the local builder, then repairing to the target."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

from packaging.utils import parse_wheel_filename

from . import proc
from .errors import BuildError, CommandError, IndexAccessError
from .files import inside, place_wheel, read_json, write_json
from .history import new_event
from .models import DistFile, Outcome, PlanNode, Status
from .settings import Settings
from .targets import host_arch
from .wheels import sha256_file

log = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"(error|Error|ERROR|fatal|No matching distribution)")


def interpreter_for(python: str) -> str:
    """The builder's interpreter for the target Python version."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == python:
        return sys.executable
    found = shutil.which(f"python{python}")
    if not found:
        raise BuildError(
            f"the local builder needs python{python} on PATH (running {sys.version.split()[0]}); "
            "install it or use a container builder"
        )
    return found


def check_local_target(settings: Settings) -> None:
    arch = settings.target.arch
    if arch != host_arch():
        raise BuildError(
            f"the local builder compiles for this host ({host_arch()}) only, but the target "
            f"{settings.target.platform_tag} is {arch}: use a container builder "
            "(--container-engine podman --container-preset debian) or --platform-tag native"
        )


def build_key(node: PlanNode, settings: Settings, sdist_sha: str) -> str:
    """What makes two builds the same: sdist, target, variant and package overrides."""
    blob = json.dumps(
        {
            "sdist": sdist_sha,
            "python": settings.target.python,
            "platform": settings.target.platform_tag,
            "variant": settings.variant,
            "override": settings.overrides.get(node.name, {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fetch_sdist(node: PlanNode, settings: Settings) -> Path:
    src = node.source or {}
    dist = DistFile(**{k: src[k] for k in DistFile.__dataclass_fields__ if k in src})
    return settings.index().download(dist, settings.paths.downloads)


def build_package(node: PlanNode, sdist: Path, settings: Settings) -> Outcome:
    """Build `node` from `sdist`; raises BuildError (with events attached) on failure."""
    paths = settings.paths
    sdist_sha = sha256_file(sdist)
    key = build_key(node, settings, sdist_sha)
    record_path = inside(paths.wheels / ".records", f"{node.key}-{key}.json")
    base_meta = {
        "sdist": sdist.name,
        "sdist_sha256": sdist_sha,
        "build_key": key,
        "needed_by": list(node.needed_by),
        "fallback_from": node.fallback_from,
    }
    if record_path.exists():
        rec = read_json(record_path)
        cached_wheel = paths.wheels / rec["wheel"]
        if cached_wheel.exists() and sha256_file(cached_wheel) == rec["sha256"]:
            dest = place_wheel(cached_wheel, paths.output, rec["sha256"])
            meta = {**rec.get("metadata", {}), **base_meta, "cached_from": rec.get("built_at")}
            detail = f"wheel built earlier from the same sdist and settings: {dest.name}"
            return Outcome(
                node.name,
                node.version,
                Status.CACHED,
                path=str(dest),
                detail=detail,
                sha256=rec["sha256"],
                wheel=dest.name,
                metadata=meta,
                events=[new_event(node.name, node.version, Status.CACHED, detail, **meta)],
            )

    check_local_target(settings)
    python = interpreter_for(settings.target.python)
    variant = settings.variant
    attempt = 1
    log_path = inside(paths.logs, f"{node.key}-attempt{attempt}-{variant}.log")
    if log_path.exists():
        log_path.unlink()
    work = inside(paths.builds, node.key)
    shutil.rmtree(work, ignore_errors=True)
    dist_dir = work / "dist"
    dist_dir.mkdir(parents=True)
    env = _build_env(node, settings)
    argv = [python, "-m", "build", "--wheel", "--outdir", str(dist_dir)]
    if variant == "no-isolation":
        argv.append("--no-isolation")
    argv.append(str(sdist))
    started = time.time()
    events: list[dict] = []
    meta = {
        **base_meta,
        "variant": variant,
        "attempt": attempt,
        "log_path": str(log_path),
        "builder": "local",
    }
    try:
        result = proc.run(argv, log_path=log_path, env=env, cwd=work)
        wheel = _single_wheel(dist_dir)
        wheel = _repair(wheel, settings, work, log_path, env)
    except (CommandError, BuildError) as exc:
        duration = time.time() - started
        timed_out = isinstance(exc, CommandError) and exc.timed_out
        code = exc.returncode if isinstance(exc, CommandError) else None
        reason = _last_error(log_path) or str(exc)
        detail = (
            f"build of {sdist.name} failed ({'timeout' if timed_out else f'exit {code}'}): {reason}"
        )
        meta.update(duration=round(duration, 3), exit_code=code, timed_out=timed_out)
        events.append(new_event(node.name, node.version, Status.ATTEMPT, detail, **meta))
        events.append(new_event(node.name, node.version, Status.FAILED, detail, **meta))
        err = BuildError(detail, log_path)
        err.events = events  # type: ignore[attr-defined]
        err.metadata = meta  # type: ignore[attr-defined]
        raise err from exc
    duration = time.time() - started
    sha = sha256_file(wheel)
    cached = place_wheel(wheel, paths.wheels, sha)
    dest = place_wheel(wheel, paths.output, sha)
    tags = sorted(str(t) for t in parse_wheel_filename(wheel.name)[3])
    meta.update(duration=round(duration, 3), exit_code=result.returncode, tags=tags)
    write_json(
        record_path,
        {"wheel": cached.name, "sha256": sha, "metadata": meta, "built_at": time.time()},
    )
    shutil.rmtree(work, ignore_errors=True)
    detail = f"built {dest.name} from {sdist.name} in {duration:.1f} s"
    events.append(new_event(node.name, node.version, Status.ATTEMPT, "succeeded", **meta))
    events.append(new_event(node.name, node.version, Status.BUILT, detail, **meta))
    return Outcome(
        node.name,
        node.version,
        Status.BUILT,
        path=str(dest),
        detail=detail,
        sha256=sha,
        wheel=dest.name,
        metadata=meta,
        events=events,
    )


def _build_env(node: PlanNode, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.pip_index_env())
    env["PIP_FIND_LINKS"] = f"{settings.paths.wheels} {settings.paths.downloads}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update({k: str(v) for k, v in settings.overrides.get(node.name, {}).get("env", {}).items()})
    return env


def _single_wheel(folder: Path) -> Path:
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one wheel in {folder}, found {len(wheels)}")
    return wheels[0]


def _repair(wheel: Path, settings: Settings, work: Path, log_path: Path, env: dict) -> Path:
    """auditwheel-repair a linux_* wheel to a manylinux/musllinux target; check the tags."""
    target = settings.target
    tags = [str(t) for t in parse_wheel_filename(wheel.name)[3]]
    if target.accepts(tags):
        return wheel
    if target.is_linux_policy and any(t.endswith(f"linux_{target.arch}") for t in tags):
        out = work / "repaired"
        out.mkdir(exist_ok=True)
        proc.run(
            [
                sys.executable,
                "-m",
                "auditwheel",
                "repair",
                "--plat",
                target.platform_tag,
                "-w",
                str(out),
                str(wheel),
            ],
            log_path=log_path,
            env=env,
        )
        wheel = _single_wheel(out)
        tags = [str(t) for t in parse_wheel_filename(wheel.name)[3]]
        if target.accepts(tags):
            return wheel
    raise BuildError(
        f"built wheel {wheel.name} is not accepted by the target "
        f"{target.python_tag}/{target.platform_tag}"
    )


def _last_error(log_path: Path, limit: int = 300) -> str:
    """The last error-looking line of a build log, for the manifest's detail."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if _ERROR_LINE.search(line) and not line.startswith("$ "):
            return line.strip()[:limit]
    return ""


def sdist_for(node: PlanNode, settings: Settings) -> Path:
    """The cached sdist of a build node (downloaded by fetch_sdist)."""
    try:
        return fetch_sdist(node, settings)
    except IndexAccessError as exc:
        raise BuildError(f"cannot fetch the sdist of {node.name} {node.version}: {exc}") from exc
