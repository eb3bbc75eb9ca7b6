"""Prints how fast the hint catalog loads and scans build logs.

    python bench/hints_bench.py [--mb 20]

The big log repeats the successful captured build logs (real compiler output, no errors) and
ends with one missing-header error, so every line is scanned.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from refinery_lib import hint_catalog, hints
from refinery_lib.hint_prefilter import Prefilter

LOGS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "logs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=20.0, help="size of the synthetic log")
    args = parser.parse_args()

    t = time.perf_counter()
    catalog = hint_catalog.load_catalog()
    load_s = time.perf_counter() - t
    patterns = sum(len(e.patterns) for e in catalog)
    literals = len(Prefilter.of(catalog).by_literal)
    print(f"catalog: {len(catalog)} entries, {patterns} patterns, {literals} prefilter literals")
    print(f"load + validate + compile: {load_s * 1000:.0f} ms")

    real = sorted(LOGS.glob("*.log"))
    t = time.perf_counter()
    found = sum(len(hints.match_log(p)) for p in real)
    real_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in real)
    print(f"{len(real)} captured logs ({size / 1e3:.0f} kB): {found} hints", end=" ")
    print(f"in {real_s * 1000:.0f} ms")

    clean = "".join(p.read_text() for p in (LOGS / "psycopg2-ok.log", LOGS / "header-probe-ok.log"))
    text = clean * max(1, int(args.mb * 1e6 / len(clean)))
    text += "src/x.c:1:10: fatal error: zstd.h: No such file or directory\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.log"
        path.write_text(text)
        t = time.perf_counter()
        result = hints.match_log(path)
        big_s = time.perf_counter() - t
    lines = text.count("\n")
    assert [h.id for h in result] == ["zstd"] and result[0].line_no == lines
    mb = len(text) / 1e6
    print(
        f"synthetic log {mb:.1f} MB, {lines} lines: {big_s:.2f} s "
        f"({mb / big_s:.1f} MB/s, {lines / big_s / 1e3:.0f}k lines/s)"
    )


if __name__ == "__main__":
    main()
