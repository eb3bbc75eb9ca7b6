"""Attempts, variants, timeouts, recipes, hints, fallback-latest and requeue, with real builds."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_refinery
from tests.fixtures.projects import make_wheel

pytestmark = pytest.mark.slow
FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def refine(tmp, index_url, env, wheels, config=None, *flags):
    for w in wheels:
        make_wheel(tmp / "in", *w)
    args = ["--input", str(tmp / "in"), "--output", str(tmp / "out"), "--cache",
            str(tmp / "cache"), "--python", PY, "--platform-tag", "native", "--index-url",
            index_url, "--jobs", "2", "--attempt-backoff-base", "0.01",
            "--attempt-backoff-max", "0.02", *flags]
    if config:
        cfg = tmp / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        args += ["--config", str(cfg)]
    res = run_refinery(args, env=env)
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    return res, {e["name"]: e for e in manifest["entries"]}


def attempts(tmp, package):
    con = sqlite3.connect(tmp / "cache" / "history.db")
    rows = con.execute("SELECT metadata FROM events WHERE package=? AND status='attempt' "
                       "ORDER BY ts, id", (package,)).fetchall()
    return [json.loads(r[0]) for r in rows]


WITH_FLAG = {"build": {
    "variant_order": ["isolated", "with-flag"],
    "variants": {"with-flag": {"isolation": True,
                               "env": {"CFLAGS": "-DREFINERY_VARIANT_OK"}}}}}


def test_attempts_variants_backoff_and_adaptive_order(tmp_path, index_url, isolated_pip_env):
    res, entries = refine(tmp_path, index_url, isolated_pip_env,
                          [("needs-variant", "1.0", FOREIGN), ("broken", "0.1", FOREIGN)],
                          WITH_FLAG)
    assert res.returncode == 1
    nv = entries["needs-variant"]
    assert nv["status"] == "built"
    assert (nv["metadata"]["variant"], nv["metadata"]["attempt"]) == ("with-flag", 2)
    logs = sorted(p.name for p in (tmp_path / "cache" / "logs").iterdir())
    assert "needs_variant-1.0-attempt1-isolated.log" in logs
    assert "needs_variant-1.0-attempt2-with-flag.log" in logs
    # broken: three attempts over the variant cycle, backoff = base * 2^(n-1) capped
    broken = attempts(tmp_path, "broken")
    assert [a["variant"] for a in broken] == ["isolated", "with-flag", "isolated"]
    assert [a["backoff"] for a in broken] == [0.01, 0.02, 0.0]
    assert all(a["ok"] is False and a["exit_code"] != 0 for a in broken)
    assert entries["broken"]["metadata"]["attempts"] == 3
    for n, v in ((1, "isolated"), (2, "with-flag"), (3, "isolated")):
        assert (tmp_path / "cache" / "logs" / f"broken-0.1-attempt{n}-{v}.log").exists()

    # history now says with-flag works for needs-variant: it goes first on a rebuild
    res2, entries2 = refine(tmp_path, index_url, isolated_pip_env, [], WITH_FLAG,
                            "--rebuild", "needs-variant")
    nv2 = entries2["needs-variant"]
    assert (nv2["status"], nv2["metadata"]["variant"], nv2["metadata"]["attempt"]) == (
        "built", "with-flag", 1)


def test_timeout_kills_the_build(tmp_path, index_url, isolated_pip_env):
    res, entries = refine(tmp_path, index_url, isolated_pip_env, [("sleepy", "1.0", FOREIGN)],
                          None, "--attempt-timeout", "3", "--max-attempts", "1")
    assert res.returncode == 1
    e = entries["sleepy"]
    assert e["status"] == "failed" and "timeout" in e["detail"]
    (a,) = attempts(tmp_path, "sleepy")
    assert a["timed_out"] is True
    log = Path(e["metadata"]["log_path"]).read_text()
    assert "killed after 3 s timeout" in log


def test_flaky_build_passes_on_second_attempt(tmp_path, index_url, isolated_pip_env):
    state = tmp_path / "flaky-state"
    res, entries = refine(tmp_path, index_url, isolated_pip_env, [("flaky", "1.0", FOREIGN)],
                          {"overrides": {"flaky": {"env": {"FLAKY_STATE": str(state)}}}})
    assert res.returncode == 0, res.stderr[-2000:]
    assert entries["flaky"]["metadata"]["attempt"] == 2
    assert [a["ok"] for a in attempts(tmp_path, "flaky")] == [False, True]


def test_missing_header_named_with_its_log_line(tmp_path, index_url, isolated_pip_env):
    res, entries = refine(tmp_path, index_url, isolated_pip_env,
                          [("missing-header", "1.0", FOREIGN)], None, "--max-attempts", "1")
    assert res.returncode == 1
    e = entries["missing-header"]
    hint = next(h for h in e["metadata"]["hints"] if "refinery_missing.h" in h["line"])
    log_lines = Path(e["metadata"]["logs"][0]).read_text().splitlines()
    assert "refinery_missing.h" in log_lines[hint["line_no"] - 1]
    assert "refinery_missing.h" in e["detail"]


def test_auto_apply_suggestions_dry_run(tmp_path, index_url, isolated_pip_env):
    marker = tmp_path / "recipe-ran"
    config = {"overrides": {"needs-zstd": {"recipe_steps": [["touch", str(marker)]]}}}
    res, entries = refine(tmp_path, index_url, isolated_pip_env,
                          [("needs-zstd", "1.0", FOREIGN)], config,
                          "--max-attempts", "1", "--auto-apply-suggestions", "--dry-run-recipes")
    assert res.returncode == 1
    e = entries["needs-zstd"]
    assert "zstd.h" in e["detail"] and "libzstd-dev" in e["detail"]  # apt package named
    assert "libzstd-devel" in json.dumps(e["metadata"]["hints"])  # and the dnf one
    # one extra hint-based retry, recorded as a system_recipe event; dry run: nothing ran
    con = sqlite3.connect(tmp_path / "cache" / "history.db")
    rows = con.execute("SELECT status, metadata FROM events WHERE package='needs-zstd' "
                       "ORDER BY ts, id").fetchall()
    statuses = [r[0] for r in rows]
    assert statuses.count("attempt") == 2 and statuses.count("system_recipe") == 1
    recipe = json.loads(next(m for s, m in rows if s == "system_recipe"))
    assert "libzstd-dev" in recipe["system_packages"] and recipe["applied"] is False
    assert not marker.exists()
    logs = [Path(p).read_text() for p in e["metadata"]["logs"]]
    assert "dry run" in logs[0] and "apt-get install" in logs[1] and "dry run" in logs[1]


def test_recipe_runs_on_host_only_when_allowed(tmp_path, index_url, isolated_pip_env):
    include = tmp_path / "include"
    header = include / "refinery_missing.h"
    config = {"overrides": {"missing-header": {
        "env": {"CPATH": str(include)},
        "recipe_steps": [["mkdir", "-p", str(include)], ["touch", str(header)]]}}}
    res, entries = refine(tmp_path, index_url, isolated_pip_env,
                          [("missing-header", "1.0", FOREIGN)], config, "--max-attempts", "1")
    assert entries["missing-header"]["status"] == "failed" and not header.exists()
    res, entries = refine(tmp_path, index_url, isolated_pip_env, [], config,
                          "--max-attempts", "1", "--allow-system-recipes")
    assert res.returncode == 0, res.stderr[-2000:]
    assert entries["missing-header"]["status"] == "built" and header.exists()


def test_fallback_latest_picks_newest_allowed(tmp_path, index_url, isolated_pip_env):
    wheels = [("flip", "1.0", FOREIGN), ("flip-user", "1.0", "py3-none-any", ("flip<2",))]
    res, entries = refine(tmp_path, index_url, isolated_pip_env, wheels, None,
                          "--max-attempts", "1", "--fallback-latest")
    assert res.returncode == 0, res.stderr[-2000:]
    e = entries["flip"]
    assert (e["status"], e["version"], e["metadata"]["fallback_from"]) == ("built", "1.1", "1.0")
    assert "fallback-latest" in e["detail"]
    assert e["wheel"].startswith("flip-1.1-")


def test_missing_build_dependency_is_planned_and_parent_rebuilt(
    tmp_path, index_url, isolated_pip_env
):
    res, entries = refine(tmp_path, index_url, isolated_pip_env,
                          [("needs-build-dep", "1.0", FOREIGN)], None, "--max-attempts", "1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert entries["needs-build-dep"]["status"] == "built"
    first = attempts(tmp_path, "needs-build-dep")
    assert [a["ok"] for a in first] == [False, True]
    assert "cfast" in json.dumps(first[0]["hints"])
    assert "planning them and running again" in res.stderr
    # cfast was built (into the cache) for the build alone: no output package
    assert_build_only(tmp_path, "cfast", "built")


def assert_build_only(tmp, name, status):
    """`name` was planned as build-only, made into the cache with `status`, and is nowhere in
    the output (files, manifest, simple index)."""
    plan = json.loads((tmp / "cache" / "workflow" / "results" / "plan" / "plan.json").read_text())
    (node,) = [n for n in plan["nodes"] if n["name"] == name]
    assert node["build_only"] is True
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    assert name not in {e["name"] for e in manifest["entries"]}
    wheel = f"{name.replace('-', '_')}-"
    assert not [p for p in (tmp / "out").glob("*.whl") if p.name.startswith(wheel)]
    assert not (tmp / "out" / "simple" / name).exists()
    assert [p for p in (tmp / "cache" / "wheels").glob("*.whl") if p.name.startswith(wheel)]
    con = sqlite3.connect(tmp / "cache" / "history.db")
    assert (status,) in con.execute("SELECT status FROM events WHERE package=?", (name,))


def test_undeclared_build_import_is_planned_build_only(tmp_path, index_url, isolated_pip_env):
    """setup.py imports some_build_tool it does not declare: the first run's build fails with
    "No module named 'some_build_tool'", the requeue plans the tool, which is built for the
    build alone and never listed in the manifest."""
    res, entries = refine(tmp_path, index_url, isolated_pip_env,
                          [("imports-build-tool", "1.0", FOREIGN)], None, "--max-attempts", "1")
    assert "planning them and running again" in res.stderr, res.stderr[-3000:]
    results = tmp_path / "cache" / "workflow" / "results"
    missing_deps = results / "missing_deps" / "missing_deps.json"
    assert json.loads(missing_deps.read_text()) == {"imports-build-tool": ["some-build-tool"]}
    # an isolated build still cannot import it (it is no declared build requirement)
    parent = entries["imports-build-tool"]
    assert parent["status"] == "failed" and "some_build_tool" in parent["detail"]
    assert set(entries) == {"imports-build-tool"}
    assert_build_only(tmp_path, "some-build-tool", "built")
