"""The progress display: plain lines from a results folder filled over time, the ETA from a
real history, Snakemake's output kept off the terminal; no Snakemake needed."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from refinery_lib import progress
from refinery_lib.files import write_json
from refinery_lib.history import History, new_event
from refinery_lib.progress import (
    PlainReporter,
    RunFiles,
    Watcher,
    eta_seconds,
    expected_durations,
    format_seconds,
    run_workflow,
    slots_from_argv,
    snakemake_output_args,
)
from tests.fixtures.config import unit_settings


def test_snakemake_output_args_quiet_unless_verbose():
    assert snakemake_output_args(True) == []
    quiet = snakemake_output_args(False)
    assert quiet[0] == "--quiet"
    # host: the banner (workflow id, command line, config MD5); progress: "N of M steps";
    # rules and reason: the block of every job
    assert {"host", "progress", "rules", "reason"} <= set(quiet[1:])
    assert "all" not in quiet  # errors still reach Snakemake's log


def _node(name: str, version: str, action: str) -> dict:
    return {"key": f"{name.replace('-', '_')}-{version}", "name": name, "version": version,
            "action": action}


PLAN = {"nodes": [_node("pure", "1.0", "reuse"), _node("helper", "2.0", "fetch"),
                  _node("cfast", "1.1", "build"), _node("cdep", "0.5", "build"),
                  _node("ghost", "", "missing")]}


def _outcome(name, version, status, detail="", duration=None):
    meta = {"duration": duration} if duration is not None else {}
    return {"name": name, "version": version, "status": status, "detail": detail,
            "metadata": meta, "events": []}


class Results:
    """A results folder and a logs folder as a run fills them, step by step."""

    def __init__(self, tmp_path: Path):
        self.results = tmp_path / "results"
        self.logs = tmp_path / "logs"
        self.logs.mkdir(parents=True)

    def plan(self, plan=PLAN):
        write_json(self.results / "plan" / "plan.json", plan)

    def attempt(self, key, n, variant="isolated"):
        (self.logs / f"{key}-attempt{n}-{variant}.log").write_text(f"# attempt {n}\n")

    def built(self, key, name, version, duration):
        write_json(self.results / "outcomes" / f"{key}.json",
                   _outcome(name, version, "built", duration=duration))

    def failed(self, key, name, version, detail):
        write_json(self.results / "failures" / f"{key}.json",
                   _outcome(name, version, "failed", detail))

    def batch(self, rel, name, version, status):
        write_json(self.results / rel, [_outcome(name, version, status)])


def _wait_for(stream: io.StringIO, text: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while text not in stream.getvalue():
        if time.monotonic() > end:
            raise AssertionError(f"{text!r} never shown; got:\n{stream.getvalue()}")
        time.sleep(0.02)


FAIL_DETAIL = ("src/cdep.c:3:1: error: unknown type name 'this' — log: "
               "/cache/logs/cdep-0.5-attempt2-isolated.log")


def test_plain_lines_follow_a_results_folder_filled_over_time(tmp_path):
    run = Results(tmp_path)
    out = io.StringIO()
    watcher = Watcher(RunFiles(run.results, run.logs, time.time() - 1), PlainReporter(out),
                      interval=0.02)
    watcher.start()
    try:
        time.sleep(0.1)
        assert out.getvalue() == ""  # no plan yet: nothing to count
        run.plan()
        _wait_for(out, "plan:")
        run.batch("reuse/reused.json", "pure", "1.0", "reused")
        _wait_for(out, "reused")
        run.attempt("cfast-1.1", 1)
        _wait_for(out, "building cfast 1.1 (attempt 1)")
        run.attempt("cdep-0.5", 1)
        _wait_for(out, "building cdep 0.5 (attempt 1)")
        run.built("cfast-1.1", "cfast", "1.1", 12.34)
        _wait_for(out, "built cfast")
        run.attempt("cdep-0.5", 2)
        _wait_for(out, "(attempt 2)")
        run.failed("cdep-0.5", "cdep", "0.5", FAIL_DETAIL)
        _wait_for(out, "failed cdep")
        run.batch("fetch/fetched.json", "helper", "2.0", "fetched")
    finally:
        watcher.stop()
    assert out.getvalue().splitlines() == [
        "plan: 4 packages: 1 to reuse, 1 to fetch, 2 to build",
        "[1/4] reused 1 wheel",
        "building cfast 1.1 (attempt 1)",
        "building cdep 0.5 (attempt 1)",
        "[2/4] built cfast 1.1 in 12.3 s",
        "building cdep 0.5 (attempt 2)",
        f"[3/4] failed cdep 0.5: {FAIL_DETAIL}",
        "[4/4] fetched 1 wheel",  # the final look after Snakemake ended
    ]


def test_records_of_an_earlier_run_are_counted_not_announced(tmp_path):
    run = Results(tmp_path)
    run.plan()
    run.built("cfast-1.1", "cfast", "1.1", 3.0)
    run.failed("cdep-0.5", "cdep", "0.5", "old failure")  # this run tries it again
    run.attempt("cdep-0.5", 3)  # an attempt log of the earlier run
    old = time.time() - 3600
    for path in [*run.results.rglob("*.json"), *run.logs.iterdir()]:
        os.utime(path, (old, old))
    out = io.StringIO()
    watcher = Watcher(RunFiles(run.results, run.logs, time.time() - 1), PlainReporter(out))
    watcher.poll()
    run.attempt("cdep-0.5", 1)
    watcher.poll()
    assert out.getvalue().splitlines() == [
        "plan: 4 packages: 1 to reuse, 1 to fetch, 2 to build; 1 done by an earlier run",
        "building cdep 0.5 (attempt 1)",
    ]
    run.failed("cdep-0.5", "cdep", "0.5", "new failure")
    watcher.poll()
    assert out.getvalue().splitlines()[-1] == "[2/4] failed cdep 0.5: new failure"


def test_plain_heartbeat_names_what_is_still_building(tmp_path):
    run = Results(tmp_path)
    run.plan()
    now = [1000.0]
    out = io.StringIO()
    reporter = PlainReporter(out, clock=lambda: now[0], heartbeat=60)
    watcher = Watcher(RunFiles(run.results, run.logs, time.time() - 1), reporter,
                      averages={"cfast": 100.0, "cdep": 50.0}, clock=lambda: now[0])
    run.attempt("cfast-1.1", 1)
    watcher.poll()
    now[0] += 61
    watcher.poll()
    last = out.getvalue().splitlines()[-1]
    assert last == "still building cfast 1.1 (1 min 01 s); 0/4 done, ETA 1 min 29 s"


def test_the_watcher_never_crashes_the_run(tmp_path, caplog):
    run = Results(tmp_path)
    (run.results / "plan").mkdir(parents=True)
    (run.results / "plan" / "plan.json").write_text("{half a plan")
    out = io.StringIO()
    watcher = Watcher(RunFiles(run.results, run.logs, time.time() - 1), PlainReporter(out),
                      interval=0.02)
    with caplog.at_level(logging.DEBUG, logger="refinery_lib.progress"):
        watcher.start()
        time.sleep(0.2)
        run.plan()  # the plan is whole now: the watcher goes on
        _wait_for(out, "plan: 4 packages")
        (run.results / "failures").mkdir()
        (run.results / "failures" / "junk.json").write_text("not json")  # one bad record
        run.built("cfast-1.1", "cfast", "1.1", 1.0)
        _wait_for(out, "built cfast 1.1")  # does not hide the others
        watcher.stop()
    errors = [r for r in caplog.records if "cannot read the run" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.DEBUG
    assert len([r for r in caplog.records if "no JSON record" in r.getMessage()]) == 1
    assert not watcher._thread.is_alive()


def _history(tmp_path: Path) -> Path:
    db = tmp_path / "history.db"
    h = History(db)
    events = [
        new_event("slow", "1.0", "built", duration=100.0),
        new_event("slow", "1.1", "built", duration=120.0),
        new_event("quick", "1.0", "built", duration=10.0),
        new_event("quick", "1.0", "attempt", duration=999.0),  # attempts are not builds
        new_event("pure", "1.0", "reused"),
    ]
    h.record(events, "run-1")
    return db


def test_eta_from_a_real_history(tmp_path):
    averages = expected_durations(_history(tmp_path))
    assert averages == {"slow": 110.0, "quick": 10.0}
    # unknown counts as the median of the known (60 s); slow has run 30 of its 110 s
    assert eta_seconds(["quick", "unknown"], {"slow": 30.0}, averages, slots=1) == 150.0
    assert eta_seconds(["quick", "unknown"], {"slow": 30.0}, averages, slots=2) == 80.0
    # never before the longest build ends, whatever the slots
    assert eta_seconds(["slow"], {}, averages, slots=8) == 110.0
    assert eta_seconds([], {}, averages, slots=1) == 0.0
    assert eta_seconds(["quick"], {}, {}, slots=1) is None


def test_eta_reads_the_history_without_writing_it(tmp_path):
    missing = tmp_path / "none.db"
    assert expected_durations(missing) == {}
    assert not missing.exists()
    db = _history(tmp_path)
    before = db.read_bytes()
    assert expected_durations(db)["quick"] == 10.0
    assert db.read_bytes() == before


def test_small_helpers():
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(185) == "3 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"
    assert slots_from_argv(["snakemake", "--cores", "4", "--jobs", "2"]) == 4
    assert slots_from_argv(["snakemake"]) == 1


# a stand-in for Snakemake: chatter on both streams, records written over time, exit 1
FAKE_SNAKEMAKE = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    results, logs, plan, manifest = sys.argv[1:5]
    results, logs = Path(results), Path(logs)
    print("SNAKEMAKE banner: Workflow ID 1234", flush=True)
    print("Select jobs to execute...", file=sys.stderr, flush=True)
    (results / "plan").mkdir(parents=True, exist_ok=True)
    (results / "plan" / "plan.json").write_text(plan)
    time.sleep(0.3)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "cdep-0.5-attempt1-isolated.log").write_text("# attempt 1")
    time.sleep(0.3)
    (results / "failures").mkdir(exist_ok=True)
    (results / "failures" / "cdep-0.5.json").write_text(json.dumps(
        {"name": "cdep", "version": "0.5", "status": "failed", "detail": "x.c:1: error: boom"}))
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuleException: CalledProcessError in rule build_wheel", file=sys.stderr)
    if manifest:
        Path(manifest).write_text("{}")
    print("WorkflowError: At least one job did not complete successfully.", file=sys.stderr)
    sys.exit(1)
""")


def _fake_snakemake(tmp_path: Path, settings, manifest: bool) -> list[str]:
    script = tmp_path / "fake_snakemake.py"
    script.write_text(FAKE_SNAKEMAKE)
    settings.paths.manifest.parent.mkdir(parents=True, exist_ok=True)  # as the CLI does
    plan = json.dumps({"nodes": [_node("cdep", "0.5", "build")]})
    return [sys.executable, str(script), str(settings.paths.results), str(settings.paths.logs),
            plan, str(settings.paths.manifest) if manifest else "", "--cores", "2"]


def test_run_workflow_shows_progress_and_keeps_snakemake_in_its_log(tmp_path, capfd,
                                                                     monkeypatch):
    monkeypatch.setattr(progress, "POLL_SECONDS", 0.05)
    settings = unit_settings(tmp_path)
    argv = _fake_snakemake(tmp_path, settings, manifest=True)
    out = io.StringIO()
    env = {**os.environ, "REFINERY_RUN_ID": "run-7"}
    rc = run_workflow(argv, env, settings, verbose=False, stream=out, tty=False,
                      new_session=False, interrupt_grace=5)
    assert rc == 1
    shown = out.getvalue()
    assert shown.splitlines() == [
        "plan: 1 package: 1 to build",
        "building cdep 0.5 (attempt 1)",
        "[1/1] failed cdep 0.5: x.c:1: error: boom",
    ]
    terminal = capfd.readouterr()
    for noise in ("SNAKEMAKE", "Select jobs", "Traceback", "RuleException", "WorkflowError"):
        assert noise not in shown + terminal.out + terminal.err
    log = settings.paths.results / "logs" / "snakemake-run-7.log"
    assert "Select jobs to execute" in log.read_text() and "RuleException" in log.read_text()


def test_run_workflow_names_the_log_when_snakemake_fails_without_a_manifest(tmp_path):
    settings = unit_settings(tmp_path)
    argv = _fake_snakemake(tmp_path, settings, manifest=False)
    out = io.StringIO()
    env = {**os.environ, "REFINERY_RUN_ID": "run-8"}
    assert run_workflow(argv, env, settings, verbose=False, stream=out, tty=False) == 1
    log = settings.paths.results / "logs" / "snakemake-run-8.log"
    assert out.getvalue().splitlines()[-2:] == [
        "refinery: snakemake failed: RuleException: CalledProcessError in rule build_wheel",
        f"refinery: its output: {log}",
    ]


def test_run_workflow_verbose_brings_back_everything(tmp_path, capfd):
    settings = unit_settings(tmp_path)
    argv = _fake_snakemake(tmp_path, settings, manifest=True)
    out = io.StringIO()
    assert run_workflow(argv, dict(os.environ), settings, verbose=True, stream=out) == 1
    terminal = capfd.readouterr()
    assert "Select jobs to execute" in terminal.err and "SNAKEMAKE banner" in terminal.out
    assert out.getvalue() == ""  # Snakemake speaks for itself
    assert not (settings.paths.results / "logs").exists()


def test_ctrl_c_stops_the_display_and_is_raised(tmp_path, monkeypatch):
    settings = unit_settings(tmp_path)
    started = threading.Event()

    def interrupted(argv, **kwargs):
        started.set()
        time.sleep(0.1)
        raise KeyboardInterrupt

    monkeypatch.setattr("refinery_lib.proc.run", interrupted)
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(KeyboardInterrupt):
        run_workflow(["snakemake"], {}, settings, verbose=False, stream=io.StringIO(),
                     tty=False)
    assert started.is_set()
    left = [t for t in threading.enumerate()
            if t.ident not in before and t.name == "refinery-progress"]
    assert not left


def test_live_display_on_a_terminal(tmp_path):
    pytest.importorskip("rich")
    run = Results(tmp_path)
    run.plan()
    out = io.StringIO()
    reporter = progress.make_reporter(out, tty=True)
    assert isinstance(reporter, progress.LiveReporter)
    watcher = Watcher(RunFiles(run.results, run.logs, time.time() - 1), reporter,
                      averages={"cfast": 20.0})
    run.attempt("cfast-1.1", 1)
    watcher.poll()
    run.failed("cdep-0.5", "cdep", "0.5", FAIL_DETAIL)
    watcher.poll()
    watcher.stop()
    screen = out.getvalue()
    assert "1/4 packages" in screen and "building cfast 1.1" in screen and "ETA" in screen
    assert f"failed cdep 0.5: {FAIL_DETAIL}" in screen  # failures stay above the display
    assert "built" not in screen.replace("building", "")  # the rest is the display's


def test_a_dry_run_shows_its_job_list(tmp_path, capfd):
    settings = unit_settings(tmp_path)
    argv = [sys.executable, "-c", "print('job list: build_wheel 3')", "--dry-run"]
    out = io.StringIO()
    assert run_workflow(argv, dict(os.environ), settings, verbose=False, stream=out) == 0
    assert "job list: build_wheel 3" in capfd.readouterr().out  # its output is the point
    assert out.getvalue() == "" and not (settings.paths.results / "logs").exists()


def test_run_workflow_says_when_there_was_nothing_to_do(tmp_path):
    """Snakemake's "Nothing to be done" is in its log now, not on screen: the refinery says
    it in one line (a rerun of a finished run)."""
    settings = unit_settings(tmp_path)
    script = tmp_path / "idle_snakemake.py"
    script.write_text("print('Building DAG of jobs...')\n"
                      "print('Nothing to be done (all requested files are present and up to "
                      "date).')\n")
    out = io.StringIO()
    env = {**os.environ, "REFINERY_RUN_ID": "run-9"}
    assert run_workflow([sys.executable, str(script)], env, settings, verbose=False,
                        stream=out, tty=False) == 0
    assert out.getvalue().splitlines()[-1] == (
        "refinery: nothing to be done: every package is up to date")
