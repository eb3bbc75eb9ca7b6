"""Compile flags of host builds: setuptools replaces the interpreter's CFLAGS by a CFLAGS
variable, so the refinery's (a -ffile-prefix-map) starts from the interpreter's own."""

from __future__ import annotations

from pathlib import Path

from refinery_lib.attempts import Variant
from refinery_lib.build import _build_env
from refinery_lib.recipes import Recipe
from refinery_lib.settings import Settings


def _env(tmp_path: Path, variant: Variant, default: str) -> dict[str, str]:
    settings = Settings.from_config({"target": {"platform_tag": "native"},
                                     "cache": str(tmp_path)}, tmp_path)
    src = tmp_path / "src" / "pkg-1.0"
    return _build_env("pkg", settings, variant, tmp_path / "work", Recipe(), src, 0, default)


def test_flags_start_from_the_interpreters_own(tmp_path, monkeypatch):
    monkeypatch.delenv("CFLAGS", raising=False)
    monkeypatch.delenv("CXXFLAGS", raising=False)
    env = _env(tmp_path, Variant("isolated"), "-g -O2 -Wall")
    prefix = f"-ffile-prefix-map={tmp_path / 'src' / 'pkg-1.0'}=/usr/src/pkg-1.0"
    assert env["CFLAGS"] == f"-g -O2 -Wall {prefix}"
    assert env["CXXFLAGS"] == f"-g -O2 -Wall {prefix}"


def test_a_variants_flags_replace_them(tmp_path, monkeypatch):
    monkeypatch.delenv("CFLAGS", raising=False)
    variant = Variant("conservative", env={"CFLAGS": "-O1 -g0"})
    env = _env(tmp_path, variant, "-g -O2 -Wall")
    assert env["CFLAGS"].startswith("-O1 -g0 -ffile-prefix-map=")
