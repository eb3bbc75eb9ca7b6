"""Regenerate the bundled demo: a wheelhouse and a local PEP 503 index with the sdist.

    python examples/make_examples.py

The wheelhouse holds a pure wheel and a compiled wheel tagged for s390x (foreign on most
hosts), whose sdist sits in examples/index; refining for `--platform-tag native` rebuilds it
with a real C compile, offline.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.fixtures.projects import (  # noqa: E402
    build_sdist,
    make_wheel,
    write_project,
    write_simple_index,
)

FOREIGN_TAG = "cp311-cp311-manylinux2014_s390x"


def main() -> None:
    wheelhouse = HERE / "wheelhouse"
    index = HERE / "index"
    for folder in (wheelhouse, index):
        shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        project = write_project(Path(tmp), "demo-cext", "1.0")
        build_sdist(project, index / "files")
    write_simple_index(index / "files", index / "simple")
    make_wheel(wheelhouse, "demo-app", "1.0", "py3-none-any", ("demo-cext>=1.0",),
               files={"demo_app/__init__.py": b"from demo_cext import add\n"})
    # the compiled wheel as another platform would have shipped it
    make_wheel(wheelhouse, "demo-cext", "1.0", FOREIGN_TAG,
               files={"demo_cext/__init__.py": b"from ._speed import add\n",
                      "demo_cext/_speed.cpython-311-s390x-linux-gnu.so": b"\x7fELF(s390x)"})
    print(f"wrote {wheelhouse} and {index}")


if __name__ == "__main__":
    main()
