"""The build environment of one attempt: the warm-up's shared one, its own offline, or online.

A build the warm-up covers (warmup.py) first uses the shared environment made for it
(`BuildEnvKind.SHARED`), else installs its own offline from the warm folder (`OFFLINE`), else
from the index (`ONLINE`). A backend may name requirements only at build time
(`get_requires_for_build_wheel`) that the warm-up could not see: a try whose environment
lacked one says so in its log (`AttemptEnv.lacked`), and the attempt runs again the next way.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .attempts import BuildEnvKind, Variant
from .build_requirements import PIP_NOT_FOUND, build_pins
from .logcap import lines_of, texts_of
from .pep517.build_in_env import LACKS, UNMET_EXIT
from .settings import BuilderKind, Settings
from .shared_venvs import SharedEnv, ready_env
from .warmup import WarmRecord

# build's (and the container script's) report that installing the build environment failed
_INSTALL_FAILED = re.compile(r"'pip',.*'install'.*returned non-zero exit status")


@dataclass(frozen=True)
class AttemptEnv:
    """How one try of an attempt gets its build environment."""

    kind: BuildEnvKind
    #: the warm-up's environment, for SHARED
    shared: SharedEnv | None = None
    #: the pip variables of an install from the warm folder only, for OFFLINE
    offline: dict[str, str] | None = None

    def lacked(self, log: Path | str, exit_code: int | None) -> list[str]:
        """What the environment of a failed try lacked, from its log: a requirement the
        shared environment did not hold, or one the warm folder had no wheel of. Empty when
        the try failed for another reason (or ran online: then nothing is left to try)."""
        if self.kind is BuildEnvKind.SHARED and exit_code == UNMET_EXIT:
            return shared_unmet(log)
        if self.kind is BuildEnvKind.OFFLINE:
            return offline_miss(log)
        return []


def attempt_env(
    settings: Settings,
    warm: WarmRecord | None,
    key: str,
    sha256: str,
    variant: Variant,
    name: str,
    tried: Collection[BuildEnvKind] = (),
) -> AttemptEnv:
    """The first way, of shared, offline and online, open to this build that it has not
    `tried` yet (a way tried lacked a requirement): shared and offline need the warm-up's
    record, and shared is only ever the first."""
    if warm is not None and BuildEnvKind.ONLINE not in tried:
        shared = shared_env(settings, warm, key, sha256, variant, name) if not tried else None
        if shared is not None:
            return AttemptEnv(BuildEnvKind.SHARED, shared=shared)
        if BuildEnvKind.OFFLINE not in tried:
            offline = offline_vars(settings, warm, key, sha256, variant, name)
            if offline is not None:
                return AttemptEnv(BuildEnvKind.OFFLINE, offline=offline)
    return AttemptEnv(BuildEnvKind.ONLINE)


def shared_env(
    settings: Settings, warm: WarmRecord | None, key: str, sha256: str, variant: Variant,
    name: str,
) -> SharedEnv | None:
    """The ready environment the warm-up made for this build, or None: the builder is not
    local, the sdist was not covered or is another file, the variant is not isolated or pins
    other versions (`offline_vars`' conditions), or no environment was made for it."""
    if settings.builder is BuilderKind.CONTAINER or not settings.shared_build_env:
        return None
    if warm is None or offline_vars(settings, warm, key, sha256, variant, name) is None:
        return None
    entry = warm.sdists[key]
    if entry.venv is None or not entry.venv_key:
        return None
    if ready_env(entry.venv, entry.venv_key) is None:
        return None
    return SharedEnv(entry.venv_key, entry.venv, dict(entry.venv_packages), False)


def offline_vars(
    settings: Settings, warm: WarmRecord | None, key: str, sha256: str, variant: Variant,
    name: str,
) -> dict[str, str] | None:
    """pip variables for an attempt that installs its build environment from the warm folder
    only, or None when it must stay online: the sdist was not covered (or is another file,
    e.g. fallback-latest's), the variant is not isolated, or it pins other versions."""
    entry = warm.sdists.get(key) if warm is not None else None
    if warm is None or entry is None or not entry.covered or entry.sha256 != sha256:
        return None
    if not variant.isolation or build_pins(settings, name, variant) != entry.constraints:
        return None
    links = [str(warm.folder), str(settings.paths.wheels), str(settings.paths.downloads)]
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": " ".join(links)}


def shared_unmet(log: Path | str) -> list[str]:
    """Requirements the shared environment lacked (build_in_env.py's report), else empty.
    `log` is the log file (read line by line, `logcap.lines_of`) or its text."""
    for line in lines_of(log):
        if line.startswith(LACKS):
            return [r.strip() for r in line[len(LACKS):].split(", ") if r.strip()]
    return []


def offline_miss(log: Path | str) -> list[str]:
    """Requirements an offline build-environment install could not find (empty when the
    attempt failed for another reason). `log` is the log file (read in blocks of whole lines,
    `logcap.texts_of`) or its text; neither pattern matches across a line break."""
    failed, missing = False, list[str]()
    for text in texts_of(log):
        failed = failed or _INSTALL_FAILED.search(text) is not None
        missing.extend(m["req"] for m in PIP_NOT_FOUND.finditer(text))
    return list(dict.fromkeys(missing)) if failed else []
