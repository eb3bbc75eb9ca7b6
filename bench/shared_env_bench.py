"""Shared build environment vs one per build: the figures of docs/resume.md ("Warm cache").

    python bench/shared_env_bench.py [--repeats 5] [--prefetch-repeats 3]

1. One C fixture built again and again from the same source folder, interleaved: with the
   warm-up's shared environment (refinery_lib/pep517/build_in_env.py) and with
   `python -m build --wheel` making its own environment offline from the warm folder (what an
   isolated build did before). Medians of whole-process wall time; the two wheels' sha256.
2. `refinery ... -- prefetch` of four C fixtures from a cold cache, with and without
   `build.shared_build_env` (the environment made once is what the warm-up now adds).

Only a file:// index of its own (setuptools from tests/.cache), PIP_CONFIG_FILE=/dev/null.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PY, bench_env, median, refinery_argv, timed  # noqa: E402
from refinery_lib.pep517 import build_in_env  # noqa: E402
from refinery_lib.reproducible import extract_sdist  # noqa: E402
from refinery_lib.shared_venvs import make_shared_env  # noqa: E402
from tests.conftest import build_tools_wheels  # noqa: E402
from tests.fixtures.projects import (  # noqa: E402
    build_sdist,
    make_wheel,
    write_project,
    write_simple_index,
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def per_build(root: Path, repeats: int) -> None:
    env = bench_env()
    env.pop("PYTHONPYCACHEPREFIX", None)  # as in a refinery build: bytecode where it lives
    warm = root / "warm"
    warm.mkdir(parents=True)
    newest = build_tools_wheels()[-1]
    shutil.copy(newest, warm)
    sdist = build_sdist(write_project(root / "p", "cmeasure", "1.0"), root / "sdists")
    shared = make_shared_env("b" * 64, ["setuptools>=61"], [], sys.executable, root / "venvs",
                             warm, env, root / "pip.log", root)
    print(f"shared environment made in {shared.duration:.2f} s: {shared.packages}")
    offline = {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(warm),
               "PIP_ONLY_BINARY": ":all:", "SOURCE_DATE_EPOCH": "1700000000"}
    work = root / "build"
    ways = {
        "shared": [sys.executable, build_in_env.__file__, "--python", str(shared.python)],
        "own env, offline": [sys.executable, "-m", "build", "--wheel"],
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    wheels: dict[str, set[str]] = {k: set() for k in ways}
    for i in range(repeats):
        for name, argv in ways.items():
            shutil.rmtree(work, ignore_errors=True)
            src = extract_sdist(sdist, work / "src")
            offline["CFLAGS"] = f"-ffile-prefix-map={src}=/usr/src/{src.name}"
            dist = work / "dist"
            log = root / f"{name.split()[0]}-{i}.log"
            t = timed([*argv, "--outdir", str(dist), str(src)], env=offline, cwd=work, log=log)
            if t.returncode != 0:
                raise SystemExit(f"{name} build failed:\n{log.read_text()[-3000:]}")
            times[name].append(t.seconds)
            wheels[name].add(sha(next(dist.glob("*.whl"))))
    for name, values in times.items():
        print(f"{name:18} median {median(values):.2f} s of {repeats}: "
              + " ".join(f"{v:.2f}" for v in values))
    same = wheels["shared"] == wheels["own env, offline"] and len(wheels["shared"]) == 1
    print(f"wheels byte-identical across both ways and all repeats: {same}")


def prefetch(root: Path, repeats: int) -> None:
    files = root / "index" / "files"
    for name in ("alpha", "bravo", "charlie", "delta"):
        build_sdist(write_project(root / "projects", name, "1.0"), files)
        make_wheel(root / "in", name, "1.0", "cp311-cp311-manylinux2014_s390x")
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "index" / "simple")
    url = (root / "index" / "simple").as_uri()
    off = root / "own.yaml"
    off.write_text("build:\n  shared_build_env: false\n")
    ways = {"prefetch, shared env": (), "prefetch, no shared env": ("--config", str(off))}
    times: dict[str, list[float]] = {k: [] for k in ways}
    for i in range(repeats):
        for name, extra in ways.items():
            cache = root / f"cache-{i}-{len(extra)}"
            argv = refinery_argv(root / "in", root / f"out-{i}", cache, url, *extra, "--",
                                 "prefetch")
            t = timed(argv, env=bench_env(), log=root / f"prefetch-{i}-{len(extra)}.log")
            if t.returncode != 0:
                raise SystemExit(f"{name} failed: see {root}/prefetch-{i}-{len(extra)}.log")
            times[name].append(t.seconds)
    for name, values in times.items():
        print(f"{name:24} median {median(values):.2f} s of {repeats}: "
              + " ".join(f"{v:.2f}" for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prefetch-repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"python {PY}, {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="shared-env-bench-") as tmp:
        per_build(Path(tmp) / "one", args.repeats)
        if args.prefetch_repeats:
            prefetch(Path(tmp) / "prefetch", args.prefetch_repeats)


if __name__ == "__main__":
    main()
