"""`run:` jobs: scripts/ adapters run in Snakemake's process, side by side in threads."""

import logging
import sys
import threading
import types

import pytest

from refinery_lib import workflow
from refinery_lib.workflow import run_inline

SCRIPT = """
import logging, time
name = snakemake.wildcards.name
for i in range(20):
    logging.getLogger("refinery_lib.steps").info("%s line %d", name, i)
    time.sleep(0.001)
if name == "bad":
    raise RuntimeError("the step broke")
open(snakemake.output[0], "w").write(name)
"""


def _job(tmp_path, name):
    return dict(
        input=[],
        output=[str(tmp_path / f"{name}.out")],
        params=types.SimpleNamespace(),
        wildcards=types.SimpleNamespace(name=name),
        log=[str(tmp_path / "logs" / f"{name}.log")],
        config={},
    )


def test_jobs_in_threads_keep_their_own_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", sys.path[:])
    script = tmp_path / "step.py"
    script.write_text(SCRIPT)
    path_before = sys.path[:]
    errors = []

    def job(name):
        try:
            run_inline(script, **_job(tmp_path, name))
        except RuntimeError as exc:
            errors.append((name, str(exc)))

    names = ("one", "two", "bad", "three", "four")
    threads = [threading.Thread(target=job, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("one", "two", "three", "four"):
        text = (tmp_path / "logs" / f"{name}.log").read_text()
        assert text.count(f"{name} line") == 20 and "line" not in text.replace(f"{name} line", "")
        assert (tmp_path / f"{name}.out").read_text() == name
    bad = (tmp_path / "logs" / "bad.log").read_text()
    assert "step failed: the step broke" in bad and "Traceback" in bad
    assert errors == [("bad", "the step broke")]
    assert sys.path == path_before
    # one dispatching handler on each domain logger, however many jobs ran; none left behind
    for name in ("refinery_lib", "refinery"):
        handlers = logging.getLogger(name).handlers
        assert sum(isinstance(h, workflow._JobLogs) for h in handlers) == 1
    assert workflow._JOB_LOGS.jobs == {}


def test_script_sees_the_snakemake_object(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text(
        "open(snakemake.output[0], 'w').write(f'{snakemake.inline} {snakemake.scriptdir}')\n"
    )
    run_inline(script, **_job(tmp_path, "x"))
    assert (tmp_path / "x.out").read_text() == f"True {tmp_path}"


def test_system_exit_of_a_script_fails_the_job(tmp_path):
    script = tmp_path / "exit.py"
    script.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(SystemExit):
        run_inline(script, **_job(tmp_path, "y"))
    assert "step failed: 3" in (tmp_path / "logs" / "y.log").read_text()
