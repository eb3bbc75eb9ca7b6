"""The floor of figure 2: the least a single Python process must do to reuse a wheelhouse.

    python bench/floor_reuse.py INPUT OUTPUT

For every wheel of INPUT: its name, version and tags from the file name and its METADATA from
the zip, both parsed with `packaging`; its sha256; a copy into OUTPUT. Nothing else: no plan,
no manifest, no index, no history.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

from packaging.metadata import Metadata
from packaging.utils import parse_wheel_filename


def reuse(src: Path, dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for wheel in sorted(src.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        with zipfile.ZipFile(wheel) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = Metadata.from_email(zf.read(meta_name), validate=False)
        if meta.name.replace("_", "-").lower() != name:
            raise SystemExit(f"{wheel.name}: METADATA names {meta.name}")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        shutil.copyfile(wheel, dest / wheel.name)
        count += len(digest) > 0
    return count


if __name__ == "__main__":
    n = reuse(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{n} wheels reused")
