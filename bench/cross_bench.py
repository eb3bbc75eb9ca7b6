"""Figure 9: the cross builder's speed on real C/C++ sdists, against two floors measured in the
same run:

- `pip wheel --no-deps` of the same sdists for this host (a native build: the goal is that
  compiling for s390x here costs at most 1.3x that);
- the emulated container builder (the Debian s390x image under qemu) refining the same input
  (the goal is that cross is at least 3x faster).

    python bench/cross_bench.py [--repeats 3] [--skip-container] [--json out.json]

The sdists (markupsafe, psutil, ujson, kiwisolver at fixed versions) and their build
requirements come from PyPI once, into ~/.cache/refinery-bench/cross, and are served from a
file:// index of their own; PIP_CONFIG_FILE=/dev/null. The refinery runs use one cache: the
first run pays zig's one-time build of its target libc/libc++ and the export of the target
Python (reported on their own), the measured runs `--rebuild` every package. Build time is the
sum of the packages' build durations from the manifest (compile, repair, and for cross and
container the import under qemu), and the whole `refinery` run is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PY, Row, bench_env, median, table, timed  # noqa: E402
from tests.fixtures.projects import make_wheel, write_simple_index  # noqa: E402

SDISTS = ("markupsafe==3.0.4", "psutil==7.2.2", "ujson==6.1.0", "kiwisolver==1.5.1")
STORE = Path.home() / ".cache" / "refinery-bench" / "cross"
TARGET = "manylinux2014_s390x"


def prepare(store: Path = STORE) -> Path:
    """A file:// index of the sdists and their build requirements (host wheels); made once."""
    files = store / "files"
    marker = store / "ready.json"
    if marker.is_file() and json.loads(marker.read_text()) == list(SDISTS):
        return store / "simple"
    files.mkdir(parents=True, exist_ok=True)
    env = {**bench_env(), "PIP_CONFIG_FILE": "/dev/null"}
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--no-deps", "--no-binary", ":all:", "--dest", str(files),
                    *SDISTS], check=True, env=env)
    # what their [build-system] requires, and what that needs, as wheels for this host
    requires = set()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from refinery_lib.build_requirements import read_build_requires

    for sdist in files.glob("*.tar.gz"):
        requires |= set(read_build_requires(sdist).requires)
    subprocess.run([*pip, "download", "--only-binary", ":all:", "--dest", str(files),
                    *sorted(requires)], check=True, env=env)
    write_simple_index(files, store / "simple")
    marker.write_text(json.dumps(list(SDISTS)))
    return store / "simple"


def pip_wheel_all(index: Path, work: Path) -> float:
    """Native builds of the sdists, one after the other (isolated, as the refinery's)."""
    env = bench_env()
    work.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for sdist in sorted((index.parent / "files").glob("*.tar.gz")):
        out = work / "pip" / sdist.name
        t = timed([sys.executable, "-m", "pip", "wheel", "--no-deps", "--index-url",
                   index.as_uri(), "--wheel-dir", str(out), str(sdist)], env=env,
                  log=work / f"pip-{sdist.name}.log")
        if t.returncode != 0:
            raise RuntimeError(f"pip wheel {sdist.name} failed: see {work}")
        total += t.seconds
    return total


def refine(index: Path, work: Path, *extra: str, log: str) -> tuple[float, float, dict]:
    """(whole run, sum of build durations, manifest) of one refinery run for the target."""
    argv = [sys.executable, "-m", "refinery_lib.cli", "--input", str(work / "in"),
            "--output", str(work / "out"), "--cache", str(work / "cache"), "--python", PY,
            "--platform-tag", TARGET, "--index-url", index.as_uri(), "--jobs", "1",
            "--max-attempts", "1", *extra]
    t = timed(argv, env=bench_env(), log=work / log)
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    builds = [e for e in manifest["entries"] if e["status"] in ("built", "failed")]
    return t.seconds, sum(float(e["metadata"].get("duration") or 0) for e in builds), manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-container", action="store_true")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = run(args.repeats, not args.skip_container, args.workdir)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 1 if any(r.ok is False for r in rows) else 0


def run(repeats: int = 3, container: bool = True, workdir: Path | None = None) -> list[Row]:
    index = prepare()
    work = workdir or Path(tempfile.mkdtemp(prefix="refinery-cross-bench-"))
    names = [s.split("==")[0] for s in SDISTS]
    for spec in SDISTS:
        name, version = spec.split("==")
        make_wheel(work / "cross" / "in", name, version, "cp311-cp311-manylinux2014_x86_64")
    first, _, manifest = refine(index, work / "cross", log="cross-first.log")
    # built, or cached when --workdir names a cache of an earlier run
    bad = [e["name"] for e in manifest["entries"] if e["status"] not in ("built", "cached")]
    if bad:
        raise RuntimeError(f"cross builds failed: {bad}; see {work / 'cross'}")
    rebuild = [a for n in names for a in ("--rebuild", n)]
    pips, crosses, wholes = [], [], []
    for i in range(repeats):
        pips.append(pip_wheel_all(index, work / f"pip{i}"))
        whole, builds, manifest = refine(index, work / "cross", *rebuild, log=f"cross{i}.log")
        assert all(e["status"] == "built" for e in manifest["entries"]), manifest
        crosses.append(builds)
        wholes.append(whole)
    tp, tc = median(pips), median(crosses)
    rows = [
        Row(f"9. cross build of {len(names)} real C/C++ sdists vs pip wheel for this host",
            tc, "s", tp, tc / tp, "<= 1.3x", tc / tp <= 1.3,
            note="sum of build durations: compile, repair, import under qemu"),
        Row("9. (the whole refinery run, --rebuild)", median(wholes), "s", tp,
            median(wholes) / tp, "", None),
        Row("9. (first cross run: zig's target libc/libc++ and the target Python export)",
            first, "s", None, None, "", None),
    ]
    if container:
        for spec in SDISTS:
            name, version = spec.split("==")
            make_wheel(work / "emu" / "in", name, version, "cp311-cp311-manylinux2014_x86_64")
        started = time.monotonic()
        _, emu, manifest = refine(index, work / "emu", "--container-preset", "debian",
                                  log="emulated.log")
        rows.append(Row("9. emulated container builder (qemu) vs cross, same sdists", emu, "s",
                        tc, emu / tc, ">= 3x", emu / tc >= 3,
                        note=f"container statuses: "
                        f"{ {e['name']: e['status'] for e in manifest['entries']} }; "
                        f"run {time.monotonic() - started:.0f} s"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
