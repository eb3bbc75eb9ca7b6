"""Bounded build logs (`logcap`): a command's output keeps its head and its tail, with a
marker where the middle went; memory stays bounded whatever is printed, and log readers
stream. Memory is measured with tracemalloc (allocations of every thread of this process)."""

from __future__ import annotations

import io
import re
import sys
import tracemalloc
from pathlib import Path

import pytest

from refinery_lib import logcap, proc
from refinery_lib.attempt_env import offline_miss, shared_unmet
from refinery_lib.hints import match_log
from refinery_lib.logcap import BoundedLog, human, iter_lines
from refinery_lib.pep517.build_in_env import LACKS
from refinery_lib.reproducible import installed_build_deps
from refinery_lib.safe_env import Redactor

KiB, MiB = 1 << 10, 1 << 20
MARKER = re.compile(r"^\*\*\* refinery: (\S+ \S+) \((\d+) bytes\) of output elided here "
                    r"\(kept the first (\S+ \S+) and the last (\S+ \S+)\) \*\*\*$", re.M)
NOTICE = re.compile(r"^\*\*\* refinery: this command printed more than .* held back.*\*\*\*\n",
                    re.M)


def _peak(fn):
    """fn()'s result and the peak of memory allocated meanwhile (bytes, all threads)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _feed(text: str, head: int, tail: int, piece: int = 4096, **kw) -> tuple[str, BoundedLog]:
    out = io.StringIO()
    log = BoundedLog(out, head=head, tail=tail, **kw)
    for i in range(0, len(text), piece):
        log.write(text[i:i + piece])
    log.finish()
    return out.getvalue(), log


def _lines(n: int, start: int = 0) -> str:
    return "".join(f"line {i:07d} of the build's output\n" for i in range(start, start + n))


def test_human_sizes():
    assert [human(n) for n in (0, 512, 1536, 4 * MiB, 200_489_012, 3 << 30)] == [
        "0 B", "512 B", "1.5 KiB", "4 MiB", "191.2 MiB", "3 GiB"]


def test_output_within_the_caps_is_kept_whole():
    text = _lines(100)
    written, log = _feed(text, head=len(text), tail=10)
    assert written == text and log.total == len(text) and log.elided == 0
    # past the head but within head + tail: nothing elided, only the notice line added
    written, log = _feed(text, head=1000, tail=len(text))
    assert NOTICE.search(written) and not MARKER.search(written)
    assert NOTICE.sub("", written) == text and log.elided == 0


def test_head_tail_and_marker_with_exact_counts():
    text = _lines(40_000)  # about 1.3 MB
    head, tail = 64 * KiB, 32 * KiB
    written, log = _feed(text, head, tail, piece=7777)
    assert log.total == len(text)
    notice, marker = NOTICE.search(written), MARKER.search(written)
    assert notice and marker and notice.end() == marker.start()
    kept_head, kept_tail = written[:notice.start()], written[marker.end() + 1:]
    # whole lines: the head is the output's start, the tail its end
    assert text.startswith(kept_head) and kept_head.endswith("\n")
    assert text.endswith(kept_tail) and kept_tail.startswith("line ")
    assert head - 100 < len(kept_head) <= head and tail - 100 < len(kept_tail) <= tail
    assert len(kept_head) + log.elided + len(kept_tail) == log.total
    assert marker.group(2) == str(log.elided) and marker.group(1) == human(log.elided)
    assert marker.group(3, 4) == ("64 KiB", "32 KiB")
    assert len(written) <= head + tail + len(notice.group()) + len(marker.group()) + 1


def test_non_ascii_output_is_cut_on_characters_and_counted_in_bytes(tmp_path):
    text = "".join(f"Größe {i} — ✓ 字節\n" for i in range(20_000))
    path = tmp_path / "x.log"
    with open(path, "w", encoding="utf-8") as fh:
        log = BoundedLog(fh, head=10_000, tail=10_000)
        for i in range(0, len(text), 999):
            log.write(text[i:i + 999])
        log.finish()
    data = path.read_bytes()
    written = data.decode("utf-8")  # valid UTF-8: no character was cut in two
    assert log.total == len(text.encode())
    assert len(data) <= 20_000 + 400
    marker = MARKER.search(written)
    kept_tail = written[marker.end() + 1:]
    kept_head = written[:NOTICE.search(written).start()]
    assert len(kept_head.encode()) + log.elided + len(kept_tail.encode()) == log.total
    assert text.endswith(kept_tail) and text.startswith(kept_head)


def test_a_line_without_end_is_cut_anywhere():
    text = "x" * 300_000
    written, log = _feed(text, head=1000, tail=2000, piece=65536)
    kept_head, rest = written.split("\n", 1)
    assert kept_head == "x" * 1000
    assert rest.endswith("\n" + "x" * 2000) and log.elided == 300_000 - 3000


def test_secrets_cut_by_the_head_and_the_tail_are_still_redacted():
    secret = "hunter2-very-secret-value"
    # the secret straddles the head's end, sits in the middle, and straddles the tail's start,
    # all on one long line (no line break to snap to) and written in pieces that split it
    filler = "a" * (1000 - 10)
    middle = "b" * 12_000 + secret + "b" * 12_000
    end = secret + "c" * (1000 - 10)
    text = filler + secret + middle + end
    for piece in (7, 13, 4096):
        written, log = _feed(text, head=1000, tail=1000, piece=piece,
                             redactor=Redactor(secrets=(secret,)))
        assert "hunter" not in written and "secret-value" not in written
        assert log.elided > 0 and written.startswith(filler)
        assert written.endswith("c" * 900)


def test_memory_stays_bounded_and_the_file_small_whatever_is_written(tmp_path):
    path = tmp_path / "big.log"
    chunk = _lines(1700)  # about 56 KiB, written again and again: 50 MiB in all
    n = 50 * MiB // len(chunk)
    cap = 1 * MiB

    def write():
        with open(path, "w", encoding="utf-8") as fh:
            log = BoundedLog(fh, head=cap, tail=cap)
            for _ in range(n):
                log.write(chunk)
            log.finish()
            return log

    log, peak = _peak(write)
    assert log.total == n * len(chunk) and log.elided > 45 * MiB
    assert path.stat().st_size <= 2 * cap + 1024  # the caps, the notice and the marker
    assert peak < cap + 2 * MiB  # the held-back tail and one piece, not the output


def test_a_command_printing_32_mib_leaves_a_capped_log(tmp_path):
    """Through proc.run, with a real child process: head, notice, marker, tail and the exit
    code trailer; the parent's memory (the copier thread's too) stays bounded."""
    log_path = tmp_path / "attempt.log"
    code = ("import sys\nw = sys.stdout.write\n"
            "for i in range(320_000):\n    w('output line %07d %s\\n' % (i, 'x' * 80))\n")

    res, peak = _peak(lambda: proc.run([sys.executable, "-c", code], log_path=log_path,
                                       timeout=120))
    assert res.returncode == 0 and not res.timed_out
    size = log_path.stat().st_size
    assert size <= logcap.HEAD_BYTES + logcap.TAIL_BYTES + 2048
    text = log_path.read_text()
    assert text.startswith("$ ") and "\noutput line 0000000 " in text
    marker = MARKER.search(text)
    assert marker and int(marker.group(2)) > 20 * MiB and NOTICE.search(text)
    assert marker.group(3, 4) == (human(logcap.HEAD_BYTES), human(logcap.TAIL_BYTES))
    assert f"output line {319_999:07d} " in text[marker.end():]
    assert re.search(r"\n\*\*\* exit code 0 after [0-9.]+ s\n\Z", text)
    assert peak < logcap.TAIL_BYTES + 4 * MiB


# -- readers: a log file is read in bounded blocks -------------------------------------------
def _big_log(path: Path, mib: int) -> Path:
    """A build log of `mib` MiB: build's report at the start, noise, pip's and build_in_env's
    lines at the end, as the readers look for them."""
    block = _lines(10_000)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("* Installed build dependency versions:\n  - setuptools==70.3.0\n"
                 "  - wheel==0.43.0\n* Building wheel...\n")
        for _ in range(mib * MiB // len(block)):
            fh.write(block)
        fh.write("ERROR: No matching distribution found for helperdyn\n"
                 "subprocess.CalledProcessError: Command '['python', '-m', 'pip', 'install', "
                 "'x']' returned non-zero exit status 1.\n"
                 f"{LACKS}helperdyn, other>=1\n*** exit code 3 after 1.00 s\n")
    return path


def test_build_log_readers_take_a_path_and_stream_it(tmp_path):
    path = _big_log(tmp_path / "a.log", 8)

    def read():
        return installed_build_deps(path), shared_unmet(path), offline_miss(path)

    (deps, lacking, missing), peak = _peak(read)
    assert deps == {"setuptools": "70.3.0", "wheel": "0.43.0"}
    assert lacking == ["helperdyn", "other>=1"]
    assert missing == ["helperdyn"]
    assert peak < 4 * MiB  # blocks of the file, never the file
    # the same answers as from the text, for a normal log
    small = _big_log(tmp_path / "b.log", 0).read_text()
    assert (installed_build_deps(small), shared_unmet(small), offline_miss(small)) == (
        deps, lacking, missing)


def _endless(path, head: bytes, byte: bytes, mib: int, tail: bytes):
    """A log of `head`, one line of `mib` MiB of `byte`, and `tail`, written a MiB at a time."""
    with open(path, "wb") as fh:
        fh.write(head)
        for _ in range(mib):
            fh.write(byte * MiB)
        fh.write(tail)
    return path


def test_iter_lines_gives_an_endless_line_in_pieces(tmp_path):
    path = _endless(tmp_path / "one-line.log", b"first\n", b"y", 24, b"\nlast")
    lines, peak = _peak(lambda: [len(x) if len(x) > 10 else x for x in iter_lines(path)])
    assert lines[0] == "first" and lines[-1] == "last"
    assert sum(lines[1:-1]) == 24 * MiB and max(lines[1:-1]) <= logcap.MAX_LINE
    assert peak < 8 * MiB  # a block and a piece, not the 24 MiB line
    assert list(iter_lines(path, start=len("first\n") + 24 * MiB + 1)) == ["last"]


def test_match_log_reads_a_log_with_an_endless_line_in_bounded_memory(tmp_path):
    path = _endless(tmp_path / "endless.log", b"building\n", b"z", 40,
                    b"\nx.c:1:10: fatal error: zstd.h: No such file or directory\n")
    catalog = tmp_path / "hints.yaml"
    catalog.write_text("- {id: zstd-header, category: headers, patterns: ['zstd\\.h: No such"
                       " file'], dnf: [libzstd-devel], apt: [libzstd-dev], steps: [], note: n}\n")
    hints, peak = _peak(lambda: match_log(path, catalog))
    assert [(h.id, h.line_no) for h in hints] == [("zstd-header", 3)]
    assert peak < 30 * MiB  # a few 4 MiB blocks, not the 40 MiB line


@pytest.mark.parametrize("start", [0, 5])
def test_iter_lines_from_an_offset(tmp_path, start):
    path = tmp_path / "s.log"
    path.write_bytes(b"abcd\nefgh\r\nij")
    assert list(iter_lines(path, start)) == (["abcd", "efgh\r", "ij"] if not start
                                             else ["efgh\r", "ij"])
