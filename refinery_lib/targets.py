"""The target: Python version + platform tag, turned into the set of wheel tags it accepts."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from functools import cached_property

from packaging import tags as ptags
from packaging.markers import default_environment
from packaging.version import InvalidVersion, Version

from .errors import ConfigError
from .platform_tags import KNOWN_ARCHES, MANYLINUX_ALIASES, glibc_of, host_arch

PLATFORM_TAG_FORMS = (
    "native, linux_ARCH, manylinux2014_ARCH, manylinux_X_Y_ARCH or musllinux_X_Y_ARCH"
)
# manylinux exists from these glibc versions per architecture (PEP 599/600)
_ARCH_MIN_GLIBC = {"x86_64": 5, "i686": 5}
_DEFAULT_MIN_GLIBC = 17
_PLATFORM_RE = re.compile(
    rf"^(?:(?P<legacy>{'|'.join(MANYLINUX_ALIASES)})_(?P<larch>\w+)"
    r"|manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<march>\w+)"
    r"|musllinux_(?P<mmaj>\d+)_(?P<mmin>\d+)_(?P<musarch>\w+)"
    r"|linux_(?P<linarch>\w+))$"
)


def check_python(text: str, flag: str = "--python") -> str:
    """`text` as CPython's major.minor ("3.11"), read by packaging; a ConfigError naming `flag`
    (the option, variable or config key it came from) says what is wrong, never a pattern."""
    try:
        version = Version(text)
    except InvalidVersion:
        raise ConfigError(
            f"{flag} {text!r} is not a Python version; give major.minor, e.g. 3.11"
        ) from None
    exact = len(version.release) == 2 and not (
        version.epoch or version.pre or version.post or version.dev or version.local
    )
    if version.major != 3 or not exact or version.minor > 99:
        raise ConfigError(
            f"{flag} {text!r}: give the CPython 3 version as major.minor, e.g. 3.11"
        )
    return f"{version.major}.{version.minor}"


def check_platform_tag(tag: str, flag: str = "--platform-tag") -> str:
    """`tag` if the refinery can target it: `native`, or a Linux tag of a known arch (a typo
    in the arch would otherwise be a run that matches no wheel and builds for nothing)."""
    if tag == "native":
        return tag
    m = _PLATFORM_RE.match(tag)
    if m is None:
        raise ConfigError(f"unsupported {flag} {tag!r}: use {PLATFORM_TAG_FORMS}")
    arch = _arch_of(m)
    if arch not in KNOWN_ARCHES:
        close = difflib.get_close_matches(arch, KNOWN_ARCHES, n=1)
        hint = f"; did you mean {tag[: m.start(_arch_group(m))] + close[0]!r}?" if close else ""
        raise ConfigError(
            f"unsupported {flag} {tag!r}: unknown architecture {arch!r}{hint} (known: "
            + ", ".join(KNOWN_ARCHES)
            + ")"
        )
    if m.group("major") and m.group("major") != "2":
        raise ConfigError(f"unsupported {flag} {tag!r}: manylinux tags are manylinux_2_Y_ARCH")
    return tag


def _arch_group(m: re.Match[str]) -> str:
    return next(k for k, v in m.groupdict().items() if k.endswith("arch") and v)


def _arch_of(m: re.Match[str]) -> str:
    return m.group(_arch_group(m))


@dataclass(frozen=True)
class Target:
    python: str = "3.11"
    platform_tag: str = "manylinux2014_s390x"

    def __post_init__(self) -> None:
        if check_python(self.python) != self.python:
            raise ConfigError(f"--python must look like 3.11, got {self.python!r}")
        check_platform_tag(self.platform_tag)

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @property
    def python_tag(self) -> str:
        return "cp{}{}".format(*self.version_tuple)

    @property
    def is_native(self) -> bool:
        return self.platform_tag == "native"

    @cached_property
    def arch(self) -> str:
        if self.is_native:
            return host_arch()
        m = _PLATFORM_RE.match(self.platform_tag)
        assert m is not None
        return _arch_of(m)

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """Platform tags accepted, best first."""
        if self.is_native:
            return tuple(dict.fromkeys(t.platform for t in ptags.sys_tags()))
        m = _PLATFORM_RE.match(self.platform_tag)
        assert m is not None
        g = m.groupdict()
        arch = self.arch
        if g["linarch"]:
            return (self.platform_tag,)
        if g["musarch"]:
            major, top = int(g["mmaj"]), int(g["mmin"])
            return tuple(f"musllinux_{major}_{minor}_{arch}" for minor in range(top, -1, -1))
        if g["legacy"]:
            major, top = MANYLINUX_ALIASES[g["legacy"]]
        else:
            major, top = int(g["major"]), int(g["minor"])
        if major != 2:
            raise ConfigError(f"unknown manylinux glibc major {major}")
        lowest = _ARCH_MIN_GLIBC.get(arch, _DEFAULT_MIN_GLIBC)
        out: list[str] = []
        for minor in range(top, lowest - 1, -1):
            out.append(f"manylinux_2_{minor}_{arch}")
            for legacy, (_, lminor) in MANYLINUX_ALIASES.items():
                if lminor == minor and (legacy == "manylinux2014" or arch in _ARCH_MIN_GLIBC):
                    out.append(f"{legacy}_{arch}")
        return tuple(out)

    @cached_property
    def tags(self) -> tuple[ptags.Tag, ...]:
        """Every tag the target accepts, best first (as packaging orders them)."""
        if self.is_native and self.version_tuple == sys.version_info[:2]:
            return tuple(ptags.sys_tags())
        py = self.version_tuple
        platforms = list(self.platforms)
        return tuple(ptags.cpython_tags(py, platforms=platforms)) + tuple(
            ptags.compatible_tags(py, interpreter=self.python_tag, platforms=platforms)
        )

    @cached_property
    def tag_rank(self) -> dict[str, int]:
        return {str(t): i for i, t in enumerate(self.tags)}

    def accepts(self, wheel_tags: tuple[str, ...] | list[str]) -> bool:
        return any(t in self.tag_rank for t in wheel_tags)

    def best_rank(self, wheel_tags: tuple[str, ...] | list[str]) -> int | None:
        ranks = [self.tag_rank[t] for t in wheel_tags if t in self.tag_rank]
        return min(ranks) if ranks else None

    @property
    def glibc(self) -> tuple[int, int] | None:
        """The glibc floor a manylinux tag promises (manylinux2014 -> (2, 17)); None for
        musllinux, linux_* and native."""
        return glibc_of(self.platform_tag)

    @property
    def is_linux_policy(self) -> bool:
        """manylinux/musllinux targets need auditwheel repair of locally built wheels."""
        return self.platform_tag.startswith(("manylinux", "musllinux"))

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 environment of the target, for evaluating Requires-Dist markers."""
        env = {key: str(value) for key, value in default_environment().items()}
        ver = self.python
        env.update(
            python_version=ver,
            python_full_version=f"{ver}.0"
            if not self.is_native or ver != env["python_version"]
            else env["python_full_version"],
            implementation_name="cpython",
            platform_python_implementation="CPython",
        )
        if not self.is_native:
            env.update(
                platform_machine=self.arch,
                sys_platform="linux",
                os_name="posix",
                platform_system="Linux",
            )
        return env

    def pip_target_args(self) -> list[str]:
        """pip options that select this target's wheels (`--platform` repeated)."""
        args = ["--python-version", self.python, "--implementation", "cp"]
        for plat in self.platforms:
            args += ["--platform", plat]
        return args

    def pip_binary_args(self) -> list[str]:
        """pip download options for wheels that install on this target's interpreter: its
        platforms, Python version, implementation and ABIs (the CPython one, abi3, none)."""
        args = self.pip_target_args()
        for abi in (self.python_tag, "abi3", "none"):
            args += ["--abi", abi]
        return args
