"""Synthetic wheelhouses: N valid tiny wheels (pure, abi3, foreign-arch), optional sdists.

    python bench/synth.py OUT --n 1000 [--kinds pure,abi3,foreign] [--index INDEX_DIR]
                          [--arch x86_64] [--tools]

Every wheel is a real, valid wheel (METADATA, WHEEL, RECORD with hashes; the fixtures'
`make_wheel`), named `syn-<kind>-<i>` 1.0, so the refinery scans, plans and reuses it like
any other:

- ``pure``: ``py3-none-any``, reusable for every target;
- ``abi3``: ``cp39-abi3-manylinux_2_17_<arch>``, reusable for CPython >= 3.9 on <arch>;
- ``foreign``: ``cpXY-cpXY-manylinux_2_17_<other arch>``, not reusable: it has to be fetched
  or rebuilt from its sdist.

``--index DIR`` writes a matching sdist of every foreign wheel (a real setuptools project, pure
Python by default so it builds in about a second) into ``DIR/files`` and a static PEP 503 index
of them into ``DIR/simple`` (``file://DIR/simple`` is then the ``--index-url``). ``--tools``
adds the setuptools wheel isolated builds need, so the index serves a build completely offline.
Without ``--index`` and with foreign wheels, the refinery would report them missing.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from refinery_lib.platform_tags import host_arch  # noqa: E402
from tests.fixtures.projects import make_wheel, write_project, write_simple_index  # noqa: E402

KINDS = ("pure", "abi3", "foreign")
PY_TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
#: where setuptools wheels for isolated builds may already be on this machine, newest first
TOOL_DIRS = (REPO / "tests" / ".cache", Path("/opt/pypi/files"))
TOOLS_CACHE = Path.home() / ".cache" / "refinery-bench"


def foreign_arch(arch: str) -> str:
    return "s390x" if arch != "s390x" else "x86_64"


def wheel_tag(kind: str, arch: str) -> str:
    if kind == "pure":
        return "py3-none-any"
    if kind == "abi3":
        return f"cp39-abi3-manylinux_2_17_{arch}.manylinux2014_{arch}"
    if kind == "foreign":
        other = foreign_arch(arch)
        return f"{PY_TAG}-{PY_TAG}-manylinux_2_17_{other}.manylinux2014_{other}"
    raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")


@dataclass
class Wheelhouse:
    folder: Path
    wheels: list[Path] = field(default_factory=list)
    sdists: list[Path] = field(default_factory=list)
    index_url: str = ""


def _payload(name: str, version: str, i: int) -> dict[str, bytes]:
    """A few hundred bytes of module, different per wheel (no two wheels hash the same)."""
    mod = name.replace("-", "_")
    body = f"__version__ = {version!r}\nSEED = {i}\n\ndef add(a, b):\n    return a + b\n"
    return {f"{mod}/__init__.py": body.encode()}


def make_sdist(dest: Path, name: str, version: str, *, c_ext: bool = False,
               build_sleep: float = 0.0, prelude: str = "") -> Path:
    """A real sdist of a tiny setuptools project (the fixtures' project), written with tarfile.

    `python -m build --sdist` takes about a second per project; writing the archive directly
    (the project's files plus PKG-INFO) takes a millisecond and builds the same wheel.
    `prelude` is Python code put at the top of its setup.py (what the build does besides).
    """
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    out = dest / f"{dist}.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        proj = write_project(Path(tmp), name, version, c_ext=c_ext, build_sleep=build_sleep)
        if prelude:
            setup = proj / "setup.py"
            setup.write_text(prelude + setup.read_text())
        pkg_info = textwrap.dedent(
            f"""\
            Metadata-Version: 2.1
            Name: {name}
            Version: {version}
            Summary: refinery benchmark fixture
            Requires-Python: >=3.8
            """
        ).encode()
        with tarfile.open(out, "w:gz") as tf:
            info = tarfile.TarInfo(f"{dist}/PKG-INFO")
            info.size, info.mtime = len(pkg_info), 0
            tf.addfile(info, io.BytesIO(pkg_info))
            for path in sorted(proj.rglob("*")):
                if path.is_file():
                    tf.add(path, arcname=f"{dist}/{path.relative_to(proj)}")
    return out


def tool_wheels() -> list[Path]:
    """setuptools as a wheel, for isolated builds against a local index: found on this machine
    or downloaded once (pip, PyPI) into ~/.cache/refinery-bench."""
    for folder in (TOOLS_CACHE, *TOOL_DIRS):
        found = sorted(folder.glob("setuptools-*-py3-none-any.whl")) if folder.is_dir() else []
        if found:
            return [max(found, key=lambda p: _version_key(p.name))]
    TOOLS_CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "--dest", str(TOOLS_CACHE), "setuptools"],
        check=True, capture_output=True,
    )
    return sorted(TOOLS_CACHE.glob("setuptools-*.whl"))[-1:]


def _version_key(filename: str) -> tuple[int, ...]:
    from packaging.utils import parse_wheel_filename

    return tuple(parse_wheel_filename(filename)[1].release)


def write_index(index: Path, sdists: list[Path], tools: bool) -> str:
    """PEP 503 index of `index/files` (sdists written there already); returns its file:// URL."""
    files = index / "files"
    files.mkdir(parents=True, exist_ok=True)
    if tools:
        for wheel in tool_wheels():
            shutil.copy(wheel, files)
    write_simple_index(files, index / "simple")
    return (index / "simple").resolve().as_uri()


def empty_index(index: Path) -> str:
    """An index with no projects: the planner finds nothing there and nothing leaves the host."""
    (index / "files").mkdir(parents=True, exist_ok=True)
    (index / "simple").mkdir(parents=True, exist_ok=True)
    (index / "simple" / "index.html").write_text("<html><body></body></html>\n")
    return (index / "simple").resolve().as_uri()


def make_wheelhouse(
    folder: Path,
    n: int,
    kinds: tuple[str, ...] = ("pure", "abi3"),
    *,
    arch: str | None = None,
    index: Path | None = None,
    tools: bool = False,
    prefix: str = "syn",
    c_ext: bool = False,
) -> Wheelhouse:
    """`n` wheels, kinds taken in turn; with `index`, sdists of the foreign ones there."""
    arch = arch or host_arch()
    folder.mkdir(parents=True, exist_ok=True)
    house = Wheelhouse(folder)
    for i in range(n):
        kind = kinds[i % len(kinds)]
        name = f"{prefix}-{kind}-{i:05d}"
        house.wheels.append(
            make_wheel(folder, name, "1.0", wheel_tag(kind, arch), files=_payload(name, "1.0", i))
        )
        if kind == "foreign" and index is not None:
            house.sdists.append(make_sdist(index / "files", name, "1.0", c_ext=c_ext))
    if index is not None:
        house.index_url = write_index(index, house.sdists, tools)
    return house


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder of the wheelhouse (created)")
    p.add_argument("--n", type=int, default=100, help="number of wheels")
    p.add_argument("--kinds", default="pure,abi3",
                   help=f"comma-separated, taken in turn: {', '.join(KINDS)}")
    p.add_argument("--arch", default=host_arch(), help="the target's architecture (abi3 wheels "
                   "are for it, foreign wheels for another one)")
    p.add_argument("--index", type=Path, help="write sdists of the foreign wheels and a PEP 503 "
                   "index here")
    p.add_argument("--tools", action="store_true", help="put a setuptools wheel on the index")
    p.add_argument("--c-ext", action="store_true", help="sdists with a C extension")
    p.add_argument("--prefix", default="syn", help="project name prefix")
    args = p.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    for k in kinds:
        wheel_tag(k, args.arch)  # validates
    house = make_wheelhouse(args.out, args.n, kinds, arch=args.arch, index=args.index,
                            tools=args.tools, prefix=args.prefix, c_ext=args.c_ext)
    print(f"{len(house.wheels)} wheels in {house.folder}")
    if args.index:
        print(f"{len(house.sdists)} sdists; --index-url {house.index_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
