"""What a person sees of a run with one failing package: progress lines and one line that
says why, not Snakemake's banner, tracebacks and error blocks (issue #14, items 4 and 5)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import run_refinery
from tests.fixtures.projects import make_wheel

FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"

pytestmark = pytest.mark.slow


def test_a_failed_build_is_one_line_among_progress_lines(tmp_path, index_url,
                                                         isolated_pip_env):
    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    make_wheel(tmp_path / "in", "broken", "0.1", FOREIGN)
    res = run_refinery(
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--cache",
         str(tmp_path / "cache"), "--python", PY, "--platform-tag", "native", "--index-url",
         index_url, "--jobs", "2", "--max-attempts", "1"],
        env=isolated_pip_env,
    )
    shown = res.stdout + res.stderr
    assert res.returncode == 1, shown[-3000:]
    # Snakemake's banner and chatter, and the noise of a failed job, are in its log only
    for noise in ("Traceback", "RuleException", "WorkflowError", "Select jobs to execute",
                  "Workflow ID", "Config MD5"):
        assert noise not in shown, f"{noise!r} on screen:\n{shown[-3000:]}"
    log = tmp_path / "cache" / "logs" / "broken-0.1-attempt1-isolated.log"
    assert log.exists()
    # the output is no terminal: plain progress lines, one per event
    assert re.search(r"^\[ ?\d/2\] built cfast 1\.0 in [\d.]+ s$", res.stderr, re.M), shown
    failed = re.search(r"^\[ ?\d/2\] failed broken 0\.1: (.*)$", res.stderr, re.M)
    assert failed, shown
    # the compiler's own error line, and where the whole log is
    assert "error: unknown type name" in failed[1] and f"log: {log}" in failed[1]
    assert "Backend subprocess exited" not in failed[1]
    # the summary table shows the same line whole: no reason is cut
    assert "error: unknown type name" in res.stdout and str(log) in res.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = next(e for e in manifest["entries"] if e["name"] == "broken")
    assert entry["detail"] == failed[1]
    assert entry["metadata"]["reason"].startswith("1 attempt(s) failed")
    assert Path(entry["metadata"]["log_path"]) == log
