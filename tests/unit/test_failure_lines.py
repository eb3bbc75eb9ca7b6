"""A failure is one line that helps: the first real error of a build log, the hint, the log
path; and the summary table shows that line whole."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from refinery_lib import build, container_images, container_run, failure_lines
from refinery_lib.aggregate import summary_table
from refinery_lib.build import AttemptResult, _failure, _Run, failure_line
from refinery_lib.errors import BuildError
from refinery_lib.failure_lines import REASON_SEP, first_error_line
from refinery_lib.models import Action, PlanNode, node_key
from refinery_lib.workflow import build_failure_exits
from tests.fixtures.config import unit_settings

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"

# real captured logs (tests/fixtures/logs/README.md) -> the start of the line that says why;
# before this, the summary said "ERROR Backend subprocess exited" for most of them
REAL: dict[str, str] = {
    "python-ldap": "Modules/common.h:15:10: fatal error: lber.h: No such file or directory",
    "gxx-absent": "error: [Errno 2] No such file or directory: 'g++'",
    "lxml": "Error: Please make sure the libxml2 and libxslt development packages",
    "import-at-build": "ModuleNotFoundError: No module named 'Cython'",
    "cmake-too-old": "CMake Error at CMakeLists.txt:1 (cmake_minimum_required): CMake 9.1 or "
    "higher is required.",
    "dbus-python": '../subprojects/dbus-gmain/meson.build:107:11: ERROR: Dependency "dbus-1" '
    "not found",
    # pip's nested output, "<"-marked and wrapped by build, under pip's ×/╰─> decoration
    "pygobject": '../cairo/meson.build:31:12: ERROR: Dependency "cairo" not found (tried '
    "pkg-config and cmake)",
    "m2crypto": "error: command 'swig' failed: No such file or directory",
    "rust-cross-target": "error[E0463]: can't find crate for `std`",
    "rust-too-old": "error: rustc 1.95.0 is not supported by the following package: "
    "refinery-rust-too-old@0.1.0 requires rustc 1.99",
    "cross-zig-header": "build_probe/probe.c:3:10: fatal error: 'jpeglib.h' file not found",
    "cryptography-norust": "error: can't find Rust compiler",
    "mysqlclient-2.2": "Exception: Can not find valid pkg-config name.",
    "gssapi": "/bin/sh: 1: krb5-config: not found",
    "build-dep-missing": "ERROR: Could not find a version that satisfies the requirement "
    "numpy==0.9.2",
    "s390x-x86-asm": "build_probe/probe.c:3: Error: Unrecognized opcode: `pause'",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_first_error_line_of_real_build_logs(name):
    line = first_error_line(LOGS / f"{name}.log")
    assert line.startswith(REAL[name]), line
    assert len(line) <= failure_lines.ERROR_LINE_MAX


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "build.log"
    path.write_text(text, encoding="utf-8")
    return path


PIP_NOISE = """\
# refinery build of demo 1.0: attempt 1, variant isolated
$ python -m build --wheel /work/src
< ERROR: pip's dependency resolver does not currently take into account all the packages
* Building wheel...
  error: subprocess-exited-with-error

  × Building wheel for demo (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [12 lines of output]
      running build_ext
      warning: no previously-included files matching '*.pyc'
      src/demo.c: In function 'f':
      src/demo.c:10:5: warning: unused variable 'x' [-Wunused-variable]
      src/demo.c:12:3: note: declared here
      src/demo.c:14:9: error: 'PyFoo' undeclared (first use in this function)
      src/demo.c:20:1: error: expected ';' before '}' token
      error: command '/usr/bin/gcc' failed with exit code 1
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for demo
ERROR: Could not build wheels for demo, which is required to install pyproject.toml-based projects
ERROR Backend subprocess exited when trying to invoke build_wheel
*** exit code 1 after 2.10 s
"""


def test_pip_decoration_notes_and_wrappers_are_skipped(tmp_path):
    assert first_error_line(_log(tmp_path, PIP_NOISE)) == (
        "src/demo.c:14:9: error: 'PyFoo' undeclared (first use in this function)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # clang and zig cc word their diagnostics as gcc does
        ("In file included from a.c:1:\nb.h:2:10: fatal error: 'ffi.h' file not found\n"
         "1 error generated.\n", "b.h:2:10: fatal error: 'ffi.h' file not found"),
        ("zig: warning: argument unused\nerror: unable to find dynamic system library 'z'\n",
         "error: unable to find dynamic system library 'z'"),
        # cargo
        ("   Compiling demo v0.1.0\nerror[E0425]: cannot find value `y` in this scope\n"
         " --> src/lib.rs:3:5\nerror: could not compile `demo`\n",
         "error[E0425]: cannot find value `y` in this scope"),
        # an import at build time
        ("Traceback (most recent call last):\n  File \"setup.py\", line 2, in <module>\n"
         "    import numpy\nModuleNotFoundError: No module named 'numpy'\n",
         "ModuleNotFoundError: No module named 'numpy'"),
        ("/usr/bin/python3: No module named build\n", "/usr/bin/python3: No module named build"),
        # meson and CMake, whose message goes on on the next line
        ("Run-time dependency zlib found: NO\nmeson.build:9:0: ERROR: Dependency \"zlib\" not "
         "found\n", 'meson.build:9:0: ERROR: Dependency "zlib" not found'),
        ("-- Configuring incomplete\nCMake Error at CMakeLists.txt:4 (find_package):\n"
         "  Could not find a package configuration file provided by \"Eigen3\"\n",
         'CMake Error at CMakeLists.txt:4 (find_package): Could not find a package '
         'configuration file provided by "Eigen3"'),
        # GNU ld
        ("/usr/bin/ld: cannot find -lssl: No such file or directory\n"
         "collect2: error: ld returned 1 exit status\n",
         "/usr/bin/ld: cannot find -lssl: No such file or directory"),
        # colours do not hide an error
        ("\x1b[1msrc/x.c:1:2: \x1b[31merror:\x1b[0m boom\n", "src/x.c:1:2: error: boom"),
    ],
)
def test_first_error_line_of_each_tool(tmp_path, text, expected):
    assert first_error_line(_log(tmp_path, text)) == expected
    assert first_error_line(text) == expected  # the log's text works as its path does


def test_without_an_error_line_the_last_mention_then_the_last_line(tmp_path):
    weak = "checking things\nbuild failed somewhere\nwriting the summary\n\n"
    assert first_error_line(weak) == "build failed somewhere"
    assert first_error_line("configure ok\nlast words here\n\n") == "last words here"
    assert first_error_line("") == ""
    assert first_error_line(tmp_path / "missing.log") == ""


def test_a_long_line_keeps_its_error_in_view():
    command = "gcc " + " ".join(f"-I/very/long/include/path/{i}" for i in range(40))
    line = first_error_line(f"{command} /bin/sh: 1: krb5-config: not found\n")
    assert line.endswith("krb5-config: not found")
    assert len(line) <= failure_lines.ERROR_LINE_MAX and line.startswith("…")


def test_a_huge_log_is_read_at_both_ends_only(tmp_path, monkeypatch):
    monkeypatch.setattr(failure_lines, "ERROR_WINDOW", 64 << 10)
    path = tmp_path / "huge.log"
    filler = "compiling object file number something or other\n" * 20_000  # about 1 MB
    path.write_text(
        "head line\n" + filler + "mid.c:1:1: error: in the middle\n" + filler
        + "tail.c:9:9: error: near the end\nlast line\n"
    )
    # the middle is never read: the first error of the two windows is the one at the end
    assert first_error_line(path) == "tail.c:9:9: error: near the end"
    path.write_text("early.c:1:1: error: near the start\n" + filler * 2)
    assert first_error_line(path) == "early.c:1:1: error: near the start"


def test_a_200_mb_log_costs_two_windows_of_memory(tmp_path):
    path = tmp_path / "big.log"
    block = ("x" * 99 + "\n").encode() * 50_000  # 5 MB of lines at each end
    with path.open("wb") as fh:
        fh.write(block)
        fh.seek(200 << 20)  # a hole: 200 MB on paper, 10 MB on disk
        fh.write(b"\n" + block)
        fh.write(b"src/z.c:2:3: fatal error: zlib.h: No such file or directory\n")
    tracemalloc.start()
    try:
        started = time.monotonic()
        line = first_error_line(path)
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert line == "src/z.c:2:3: fatal error: zlib.h: No such file or directory"
    assert peak < 8 * failure_lines.ERROR_WINDOW  # the whole file would be 200 MB
    assert took < 10  # regexes run on the lines with an error word only


def test_one_error_line_helper_for_every_builder():
    # the host builder's and the container builder's reasons come from the same function
    assert build.first_error_line is failure_lines.first_error_line
    for container_side in (container_run, container_images):
        assert container_side.first_error_line is failure_lines.first_error_line
        assert not hasattr(container_side, "_last_line")
    assert not hasattr(build, "_last_error")


ZSTD_HINT = {
    "id": "zstd",
    "category": "headers",
    "line_no": 40,
    "line": "x.c:1:10: fatal error: zstd.h: No such file or directory",
    "apt": ["libzstd-dev"],
    "dnf": ["libzstd-devel"],
    "note": "Zstandard headers are missing.",
}


def test_failure_line_joins_error_hint_and_log():
    line = failure_line("x.c:1:10: fatal error: zstd.h: No such file or directory",
                        [ZSTD_HINT, {**ZSTD_HINT, "id": "other"}], Path("/c/logs/x.log"))
    assert line == (
        "x.c:1:10: fatal error: zstd.h: No such file or directory"
        " — hint: Zstandard headers are missing (zstd; apt: libzstd-dev; dnf: libzstd-devel)"
        " (+1 more in the manifest)"
        " — log: /c/logs/x.log"
    )
    assert failure_line("", [], None) == "failed (no error line in the log)"


def test_failed_build_detail_is_one_line_and_the_reason_is_kept(tmp_path):
    settings = unit_settings(tmp_path)
    node = PlanNode("demo", "1.0", Action.BUILD, key=node_key("demo", "1.0"))
    run = _Run(node, settings)
    log = tmp_path / "demo-1.0-attempt1-isolated.log"
    log.write_text(PIP_NOISE)
    result = AttemptResult(1, "isolated", log, ok=False, duration=2.0, exit_code=1)
    result.error_line = first_error_line(log)
    result.detail = f"attempt 1 (isolated) failed (exit 1): {result.error_line}"
    result.hints = [ZSTD_HINT]
    run.attempts.append(result)
    err = _failure(run, result)
    assert isinstance(err, BuildError)
    detail = str(err)
    assert "\n" not in detail and detail.count(REASON_SEP) == 2
    assert detail.startswith("src/demo.c:14:9: error: 'PyFoo' undeclared")
    assert detail.endswith(f"log: {log}")
    assert "Backend subprocess" not in detail
    meta = err.metadata  # what the manifest entry keeps
    assert meta["reason"].startswith("1 attempt(s) failed; last: attempt 1 (isolated)")
    assert "hints: zstd (log line 40" in meta["reason"]
    assert meta["error_line"] == result.error_line
    assert run.events[-1]["detail"] == detail and run.events[-1]["status"] == "failed"


def _manifest(detail: str, name: str = "demo") -> dict:
    return {
        "summary": {"built": 1, "failed": 1},
        "entries": [
            {"name": "ok", "version": "1.0", "status": "built", "detail": "fine"},
            {"name": name, "version": "1.0.post12345", "status": "failed", "detail": detail},
        ],
        "closure": {"ok": True, "detail": "fine"},
        "path": "/out/manifest.json",
    }


def test_summary_table_never_cuts_the_reason():
    log = "/cache/logs/" + "a-very-long-package-name-" * 4 + "1.0-attempt3-isolated.log"
    detail = failure_line(
        "src/module/with/a/deep/path/file.c:123:45: error: conflicting types for "
        "'some_function_with_a_long_name'; have 'int(void)' but the header says otherwise",
        [ZSTD_HINT], Path(log),
    )
    name = "a-package-name-longer-than-its-column-of-thirty"
    table = summary_table(_manifest(detail, name), width=80)
    lines = table.splitlines()
    assert max(len(ln) for ln in lines if log not in ln) <= 80
    words = " ".join(lines)
    for word in detail.replace(REASON_SEP, " ").split():
        assert word in words  # every word of it, none cut
    assert any(ln.strip() == f"log: {log}" for ln in lines)  # the path whole, on one line
    assert any(ln.startswith(name) for ln in lines) and "1.0.post12345" in table
    # what is printed whole is still printed safely: escapes shown, not acted on
    table = summary_table(_manifest("error: boom\x1b[2J", name="evil\x1b[2Jname"))
    assert "\x1b" not in table and "evil\\x1b[2Jname" in table



def test_a_failed_build_ends_its_job_quietly():
    """scripts/build_wheel.py: exit status 1 for Snakemake, and no traceback (before, the
    job printed one, then Snakemake's RuleException and WorkflowError around it)."""
    code = ("from refinery_lib.errors import BuildError\n"
            "from refinery_lib.workflow import build_failure_exits\n"
            "with build_failure_exits():\n"
            "    raise BuildError('x.c:1:1: error: boom')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    # a bug is no build failure: its traceback stays
    with pytest.raises(ValueError), build_failure_exits():
        raise ValueError("a bug")
