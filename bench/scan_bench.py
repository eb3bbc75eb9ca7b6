"""Figure 4: wheels per second of `refinery_lib.wheels.scan_folder`, and of a minimal loop.

    python bench/scan_bench.py FOLDER [--passes 3]

Prints one JSON object: the best-of-`passes` rate of `scan_folder(FOLDER)` (what the scan job
runs: file name, every entry checked as an installer would, RECORD's hashes included, METADATA,
sha256 of the whole file) and of the floor, a loop doing only the unavoidable part of that
(parse the file name, open the zip, read METADATA, read and hash every entry, hash the file),
over the same files, page cache warm (the folder was just written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zipfile
from pathlib import Path

from packaging.utils import parse_wheel_filename

from refinery_lib.wheels import scan_folder


def floor_scan(folder: Path) -> int:
    n = 0
    for path in sorted(folder.iterdir()):
        parse_wheel_filename(path.name)
        with zipfile.ZipFile(path) as zf:
            meta = next(i for i in zf.infolist() if i.filename.endswith(".dist-info/METADATA"))
            zf.read(meta)
            for info in zf.infolist():  # what RECORD's hashes are checked against
                hashlib.sha256(zf.read(info)).digest()
        hashlib.sha256(path.read_bytes()).hexdigest()
        n += 1
    return n


def best_rate(fn, folder: Path, passes: int) -> tuple[float, int]:
    best, count = 0.0, 0
    for _ in range(passes):
        t = time.perf_counter()
        result = fn(folder)
        elapsed = time.perf_counter() - t
        count = result if isinstance(result, int) else len(result)
        best = max(best, count / elapsed)
    return best, count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--passes", type=int, default=3)
    args = p.parse_args(argv)
    records = scan_folder(args.folder)
    invalid = sum(not r.valid for r in records)
    rate, n = best_rate(scan_folder, args.folder, args.passes)
    floor, _ = best_rate(floor_scan, args.folder, args.passes)
    print(json.dumps({"wheels": n, "invalid": invalid, "scan_rate": rate, "floor_rate": floor}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
