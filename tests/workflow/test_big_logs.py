"""A build that prints a lot, through the whole workflow: it still builds, its attempt log keeps
the head and the tail of the output with a marker between, and the build step's memory does
not grow with the output (it read the log whole: 215 MB of RSS for 64 MiB printed, 611 MB for
200 MB; now about 57 MB either way)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refinery_lib import logcap
from tests.conftest import build_tools_wheels
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

pytestmark = pytest.mark.slow

FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
PRINTED_MIB = 64
#: the build step's peak RSS may not exceed this (it is about 57 MB; reading the 64 MiB log
#: whole took it to 215 MB)
BUILD_STEP_MAX_MB = 128


def _loud_index(root: Path) -> str:
    """A file:// index holding `loud`, whose setup.py prints PRINTED_MIB MiB while it builds
    the wheel (not while the fixture's sdist is made), then its last line."""
    files = root / "files"
    project = write_project(root / "p", "loud", "1.0", c_ext=False)
    setup = project / "setup.py"
    setup.write_text(
        "import sys\n"
        "if 'bdist_wheel' in sys.argv:\n"
        "    block = ''.join('compiling unit %08d %s\\n' % (i, '.' * 60) for i in range(4096))\n"
        f"    for _ in range({PRINTED_MIB} * 1024 * 1024 // len(block)):\n"
        "        sys.stdout.write(block)\n"
        "    print('the very last line of the loud build', flush=True)\n" + setup.read_text()
    )
    build_sdist(project, files)
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    return (root / "simple").as_uri()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _peak_rss_mb(pid: int, marker: str) -> float | None:
    """VmHWM (the process's own peak RSS) of `pid`, if its command line holds `marker`."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if marker.encode() not in fh.read():
                return None
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def test_a_build_printing_64_mib_builds_with_a_capped_log_and_bounded_memory(
    tmp_path, isolated_pip_env
):
    index = _loud_index(tmp_path / "index")
    make_wheel(tmp_path / "in", "loud", "1.0", FOREIGN)
    argv = [sys.executable, "-m", "refinery_lib.cli",
            "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--python", PY, "--platform-tag", "native",
            "--index-url", index]
    # the build step is Snakemake's run of scripts/build_wheel.py: its VmHWM is a high-water
    # mark, so looking every 0.1 s while it lives sees its peak
    build_step_mb: list[float] = []
    out_file = tmp_path / "refinery-output.txt"
    with open(out_file, "wb") as out, subprocess.Popen(
        argv, env=isolated_pip_env, stdout=out, stderr=subprocess.STDOUT
    ) as run:
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline:
            for pid in _descendants(run.pid):
                mb = _peak_rss_mb(pid, "build_wheel.py")
                if mb is not None:
                    build_step_mb.append(mb)
            time.sleep(0.1)
        if run.poll() is None:
            run.kill()
    output = out_file.read_text(errors="replace")
    assert run.returncode == 0, output[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = [e for e in manifest["entries"] if e["name"] == "loud"]
    assert entry["status"] == "built", output[-3000:]

    log = tmp_path / "cache" / "logs" / "loud-1.0-attempt1-isolated.log"
    size = log.stat().st_size
    assert size < logcap.HEAD_BYTES + logcap.TAIL_BYTES + 64 * 1024  # not the 64 MiB
    with open(log, encoding="utf-8") as fh:
        head = fh.read(logcap.HEAD_BYTES)
        fh.seek(max(0, size - logcap.TAIL_BYTES - 4096))
        tail = fh.read()
    assert "compiling unit 00000000 " in head  # the start of what the build printed
    marker = re.search(r"^\*\*\* refinery: [\d.]+ MiB \((\d+) bytes\) of output elided here "
                       r"\(kept the first 4 MiB and the last 4 MiB\) \*\*\*$", tail, re.M)
    assert marker and int(marker.group(1)) > (PRINTED_MIB - 10) * 1024 * 1024
    assert "the very last line of the loud build" in tail[marker.end():]
    assert re.search(r"^\*\*\* exit code 0 after ", tail[marker.end():], re.M)

    assert build_step_mb, "the build step (build_wheel.py) was not seen running"
    assert max(build_step_mb) < BUILD_STEP_MAX_MB, build_step_mb[-5:]
