"""`refinery --profile slurm` on a real single-node SLURM: builds run as SLURM jobs, a rerun
after fixing the one failing package submits exactly that build, a rerun after that nothing."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from refinery_lib.scheduling import build_resources
from tests.fixtures.projects import make_wheel

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

FOREIGN = "cp311-cp311-manylinux2014_s390x"
# the `broken` fixture's C source has the statement `this is not C;`: these macros empty it,
# a per-package override (env) that fixes the build and changes only its params
FIX_BROKEN = {"overrides": {"broken": {"env": {"CFLAGS": "-Dthis= -Dis= -Dnot= -DC="}}}}


def _refine(tmp: Path, index_url: str, env: dict, *extra: str, timeout: float = 900):
    """refinery as a user runs it; a run that hangs gets SIGINT (Snakemake ignores SIGTERM and
    cancels its SLURM jobs on SIGINT), then SIGKILL."""
    argv = [
        sys.executable, "-m", "refinery_lib.cli",
        "--input", str(tmp / "in"), "--output", str(tmp / "out"), "--cache", str(tmp / "cache"),
        "--python", f"{sys.version_info[0]}.{sys.version_info[1]}", "--platform-tag", "native",
        "--index-url", index_url, "--jobs", "2", "--profile", "slurm", *extra,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"refinery --profile slurm hung for {timeout} s:\n{out[-5000:]}")
    return proc.returncode, out


def _slurm_records(jobcomp_log: Path, workdir: Path) -> dict[str, dict[str, str]]:
    """job id -> fields of every SLURM job that ran in `workdir`, from the job completion log
    (one line of `Key=Value` fields per finished job)."""
    records = {}
    if jobcomp_log.exists():
        for line in jobcomp_log.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("WorkDir") == str(workdir):
                records[fields["JobId"]] = fields
    return records


def _slurm_jobs(jobcomp_log: Path, workdir: Path) -> dict[str, str]:
    """job id -> final state (COMPLETED, FAILED, ...)."""
    return {j: f["JobState"] for j, f in _slurm_records(jobcomp_log, workdir).items()}


def _requested(fields: dict[str, str]) -> dict[str, int]:
    """What the job asked SLURM for: runtime in minutes, memory in MB."""
    tres = dict(item.split("=", 1) for item in fields["Tres"].split(","))
    mem = tres["mem"]
    mem_mb = int(float(mem[:-1]) * (1024 if mem.endswith("G") else 1))
    return {"runtime": int(fields["TimeLimit"]), "mem_mb": mem_mb}


def _rules_of(workdir: Path) -> dict[str, str]:
    """job id -> "rule wildcards" from the plugin's logs: slurm_logs/rule_R/WILDCARDS/ID.log."""
    found = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        parts = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts
        found[log.stem] = " ".join([parts[0].removeprefix("rule_"), *parts[1:-1]])
    return found


def _entries(tmp: Path) -> dict[str, dict]:
    path = tmp / "out" / "manifest.json"
    assert path.exists(), "no manifest was written"
    manifest = json.loads(path.read_text())
    return {e["name"]: e for e in manifest["entries"]}


def _cancel_leftovers(workdir: Path) -> None:
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in out.splitlines() if line.split()[1:] == [str(workdir)]]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def test_refinery_on_slurm_builds_as_jobs_and_reruns_only_the_fixed_package(
    tmp_path, index_url, isolated_pip_env, slurm_cluster
):
    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    make_wheel(tmp_path / "in", "broken", "0.1", FOREIGN)
    make_wheel(tmp_path / "in", "hello-pure", "1.0", "py3-none-any")
    workdir = tmp_path / "cache" / "workflow"  # refinery runs Snakemake here
    jobcomp = slurm_cluster.jobcomp_log
    try:
        # run 1: both builds are SLURM jobs; the broken one fails, the run goes on
        rc, out = _refine(tmp_path, index_url, isolated_pip_env)
        assert rc == 1, out
        status = {name: e["status"] for name, e in _entries(tmp_path).items()}
        assert status == {"cfast": "built", "broken": "failed", "hello-pure": "reused"}, out
        jobs1 = _slurm_jobs(jobcomp, workdir)
        rules = _rules_of(workdir)
        builds1 = {rules.get(j): state for j, state in jobs1.items()
                   if rules.get(j, "").startswith("build_wheel")}
        assert builds1 == {"build_wheel cfast-1.0": "COMPLETED",
                           "build_wheel broken-0.1": "FAILED"}, (jobs1, rules, out)
        # the wheel came out of the SLURM job
        assert list((tmp_path / "out").glob("cfast-1.0-*.whl"))

        # builds of packages history knows nothing about get the defaults
        records = _slurm_records(jobcomp, workdir)
        unknown = build_resources(tmp_path / "nothing.db", "broken")
        for job in jobs1:
            if rules.get(job, "").startswith("build_wheel"):
                assert _requested(records[job]) == {k: unknown[k] for k in ("runtime", "mem_mb")}
        # ... the next build of broken what its history says (it failed after a few seconds)
        learnt = build_resources(tmp_path / "cache" / "history.db", "broken")
        assert learnt != unknown

        # run 2, after fixing broken through its override: exactly one new SLURM job, its build
        fix = tmp_path / "fix.json"
        fix.write_text(json.dumps(FIX_BROKEN))
        rc, out = _refine(tmp_path, index_url, isolated_pip_env, "--config", str(fix))
        assert rc == 0, out
        assert _entries(tmp_path)["broken"]["status"] == "built", out
        assert _entries(tmp_path)["cfast"]["status"] == "built"
        jobs2 = _slurm_jobs(jobcomp, workdir)
        rules = _rules_of(workdir)
        new = {rules.get(j, j): state for j, state in jobs2.items() if j not in jobs1}
        assert new == {"build_wheel broken-0.1": "COMPLETED"}, (new, out)
        (job,) = set(jobs2) - set(jobs1)
        assert _requested(_slurm_records(jobcomp, workdir)[job]) == {
            k: learnt[k] for k in ("runtime", "mem_mb")
        }

        # run 3, nothing changed: nothing submitted
        rc, out = _refine(tmp_path, index_url, isolated_pip_env, "--config", str(fix))
        assert rc == 0, out
        assert "nothing to be done" in out.lower()
        assert _slurm_jobs(jobcomp, workdir) == jobs2
    finally:
        _cancel_leftovers(workdir)
