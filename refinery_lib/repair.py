"""Repair on this host (local and cross builders): auditwheel repair to the target policy, then
only the tag `auditwheel show` confirms. The same code the container builder runs inside its
container (container_build.py, standard library only), so there is one repair and one policy
check for every builder; here its output goes to the attempt's log.

auditwheel reads wheels of any architecture; for a cross build the libraries to graft are
looked up in the target's own library folders (`--ldpaths`), never this host's.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import container_build
from .container_presets import PolicyNotMetError, policy_suggestion
from .errors import BuildError
from .targets import Target


@dataclass(frozen=True)
class Repaired:
    wheel: Path
    tag: str  # what `auditwheel show` confirmed ("any" for a pure wheel)
    grafted_libs: tuple[str, ...] = ()
    show: str = ""

    def metadata(self) -> dict[str, Any]:
        return {"auditwheel_tag": self.tag, "grafted_libs": list(self.grafted_libs)}


def repair_wheel(
    wheel: Path, target: Target, work: Path, log_path: Path, ldpaths: tuple[Path, ...] = ()
) -> Repaired:
    """Repair `wheel` for `target`; raises PolicyNotMetError naming the blocking symbols when
    the wheel cannot honestly carry the target's tag, BuildError for other failures."""
    if target.is_native:
        return Repaired(wheel, "native")
    plats = container_build.wheel_platforms(wheel.name)
    if plats == ["any"]:
        return Repaired(wheel, "any")
    request = {"platform_tag": target.platform_tag, "ldpaths": [str(p) for p in ldpaths]}
    with open(log_path, "a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh):
        try:
            info = container_build.repair(request, str(wheel), str(work))
        except container_build.StageError as exc:
            policy = exc.extra.get("policy") or {}
            if exc.stage == "policy":
                hint = policy_suggestion(target.platform_tag, target.arch,
                                         policy.get("achieved"))
                raise PolicyNotMetError(
                    f"{exc.detail}. {hint}" if hint else exc.detail, log_path,
                    requested=target.platform_tag, achieved=policy.get("achieved") or "",
                    blockers=policy.get("blockers") or {},
                    symbols=policy.get("blocking_symbols") or {},
                ) from exc
            raise BuildError(f"repair failed: {exc.detail}", log_path) from exc
    repaired = Path(info["wheel"])
    tags = container_build.wheel_platforms(repaired.name)
    if not target.accepts(_wheel_tags(repaired.name)):
        raise BuildError(
            f"built wheel {repaired.name} ({', '.join(tags)}) is not accepted by the target "
            f"{target.python_tag}/{target.platform_tag}", log_path)
    return Repaired(repaired, str(info.get("tag") or ""), tuple(info.get("grafted_libs", ())),
                    str(info.get("show", "")))


def _wheel_tags(name: str) -> list[str]:
    from packaging.utils import parse_wheel_filename

    return [str(t) for t in parse_wheel_filename(name)[3]]
