"""Typed errors: each names what went wrong and where to look."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class RefineryError(Exception):
    """Base class for every error the refinery reports to a user."""


class InvalidWheelError(RefineryError):
    """A file in the input folder is not a usable wheel."""


class ArchiveError(RefineryError):
    """An archive (wheel or sdist) is unsafe, corrupt or over a cap; the message names the
    entry. Readers turn it into their own error: an invalid wheel, a failed build."""


class ConfigError(RefineryError):
    """A setting or a config file is wrong."""


class IndexAccessError(RefineryError):
    """A package index could not be read or a download failed."""


class IndexUnreachableError(IndexAccessError):
    """The index did not answer (refused, timed out, 5xx) even after retries: not the same
    as an index that has nothing, and a plan made without its answer is made again."""


class UnsafeNameError(RefineryError):
    """A name from outside (URL, index, metadata) would escape its folder."""


class BuildError(RefineryError):
    """A build failed; `log_path` holds the details.

    A failure that ran attempts (`build.build_package`) carries what the build step records:
    `events`, the package's history events (attempts, recipes, the failure itself), and
    `metadata`, the failure event's metadata (attempts, hints, `missing_python_deps`...). An
    error raised before any attempt leaves both empty."""

    def __init__(
        self,
        message: str,
        log_path: Path | None = None,
        hints: Sequence[dict[str, Any]] = (),
        *,
        events: Sequence[dict[str, Any]] = (),
        metadata: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.log_path = log_path
        self.hints: list[dict[str, Any]] = list(hints)
        self.events: list[dict[str, Any]] = list(events)
        self.metadata: dict[str, Any] = dict(metadata or {})


class SdistUnpackError(BuildError):
    """An sdist could not be unpacked whole and safely: the build fails with this reason
    rather than run on a partial source tree."""


class CommandError(RefineryError):
    """A subprocess exited non-zero or timed out."""

    def __init__(
        self,
        argv: list[str],
        returncode: int | None,
        log_path: Path | None = None,
        timed_out: bool = False,
        output: str = "",
    ):
        import shlex

        self.argv = list(argv)
        self.returncode = returncode
        self.log_path = log_path
        self.timed_out = timed_out
        self.output = output
        what = "timed out" if timed_out else f"exited {returncode}"
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"command {what}: {shlex.join(self.argv)}{where}")
