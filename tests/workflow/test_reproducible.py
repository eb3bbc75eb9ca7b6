"""Byte-identical rebuilds, `refinery verify`, `refinery diff` and `--replay`, on real builds."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import OLD_SETUPTOOLS, run_refinery
from tests.fixtures.projects import make_wheel

pytestmark = pytest.mark.slow
FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def refine(tmp, name, index_url, env, *extra):
    args = ["--input", str(tmp / "in"), "--output", str(tmp / f"out-{name}"), "--cache",
            str(tmp / f"cache-{name}"), "--python", PY, "--platform-tag", "native",
            "--index-url", index_url, "--max-attempts", "1", *extra]
    res = run_refinery(args, env=env)
    manifest = json.loads((tmp / f"out-{name}" / "manifest.json").read_text())
    return res, {e["name"]: e for e in manifest["entries"]}


def test_clean_caches_give_identical_wheels_and_verify_says_so(
    tmp_path, index_url, isolated_pip_env
):
    for pkg in ("cfast", "sde-pure", "clocky"):
        make_wheel(tmp_path / "in", pkg, "1.0", FOREIGN)
    _, a = refine(tmp_path, "a", index_url, isolated_pip_env)
    _, b = refine(tmp_path, "b", index_url, isolated_pip_env)
    for pkg in ("cfast", "sde-pure"):
        assert a[pkg]["status"] == b[pkg]["status"] == "built"
        assert a[pkg]["sha256"] == b[pkg]["sha256"], pkg
    assert a["clocky"]["sha256"] != b["clocky"]["sha256"]  # it embeds the clock
    # provenance per wheel, in the manifest and next to the wheels
    prov = json.loads((tmp_path / "out-a" / "provenance" / f"{a['cfast']['wheel']}.json")
                      .read_text())
    assert prov["sdist"]["sha256"] and prov["sdist"]["url"].endswith("cfast-1.0.tar.gz")
    assert prov["build"]["variant"] == "isolated" and "setuptools" in prov["build"]["build_deps"]
    assert prov == a["cfast"]["provenance"]

    res = run_refinery(["verify", "--cache", str(tmp_path / "cache-a"), "--json"])
    assert res.returncode == 1, res.stderr  # clocky is not reproducible
    report = json.loads(res.stdout)
    by = {r["name"]: r for r in report["verify"]["results"]}
    assert by["cfast"]["reproducible"] is True and by["sde-pure"]["reproducible"] is True
    assert by["clocky"]["reproducible"] is False
    assert by["clocky"]["first_difference"] == "clocky/_build_time.py"
    assert report["closure"]["ok"] is True
    assert all(s["ok"] for s in report["smoke"])
    verified = json.loads((tmp_path / "out-a" / "manifest.json").read_text())
    flags = {e["name"]: e.get("reproducible") for e in verified["entries"]}
    assert flags["cfast"] is True and flags["clocky"] is False


def test_diff_explains_two_runs(tmp_path, index_url, isolated_pip_env):
    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    make_wheel(tmp_path / "in", "hello", "1.0", "py3-none-any")
    refine(tmp_path, "a", index_url, isolated_pip_env)
    (tmp_path / "in" / f"cfast-1.0-{FOREIGN}.whl").unlink()
    make_wheel(tmp_path / "in", "cfast", "1.1", FOREIGN)
    make_wheel(tmp_path / "in", "broken", "0.1", FOREIGN)
    refine(tmp_path, "b", index_url, isolated_pip_env)
    res = run_refinery(["diff", str(tmp_path / "out-a"), str(tmp_path / "out-b"), "--json"])
    assert res.returncode == 1
    d = json.loads(res.stdout)
    assert d["version_changed"] == [{"name": "cfast", "old": "1.0", "new": "1.1"}]
    assert d["added"] == [{"name": "broken", "version": "0.1", "status": "failed"}]
    text = run_refinery(["diff", str(tmp_path / "out-a" / "manifest.json"),
                         str(tmp_path / "out-b" / "manifest.json")]).stdout
    assert "cfast: version 1.0 -> 1.1" in text and "+ broken 0.1 (failed)" in text
    same = run_refinery(["diff", str(tmp_path / "out-a"), str(tmp_path / "out-a")])
    assert same.returncode == 0 and "no differences" in same.stdout


def test_replay_reuses_recorded_build_dependency_versions(tmp_path, index_url, isolated_pip_env):
    import yaml

    make_wheel(tmp_path / "in", "cfast", "1.0", FOREIGN)
    cfg = tmp_path / "old-toolchain.yaml"
    cfg.write_text(yaml.safe_dump({"overrides": {"cfast": {
        "build_constraints": [f"setuptools=={OLD_SETUPTOOLS}"]}}}))
    _, first = refine(tmp_path, "a", index_url, isolated_pip_env, "--config", str(cfg))
    assert first["cfast"]["metadata"]["build_deps"]["setuptools"] == OLD_SETUPTOOLS
    # without the pin a new run takes the newest setuptools ...
    _, fresh = refine(tmp_path, "b", index_url, isolated_pip_env)
    assert fresh["cfast"]["metadata"]["build_deps"]["setuptools"] != OLD_SETUPTOOLS
    # ... and a replay of the first manifest the recorded one, with the recorded variant
    res, replay = refine(tmp_path, "c", index_url, isolated_pip_env,
                         "--replay", str(tmp_path / "out-a" / "manifest.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    meta = replay["cfast"]["metadata"]
    assert meta["build_deps"]["setuptools"] == OLD_SETUPTOOLS
    assert meta["variant"] == first["cfast"]["metadata"]["variant"]
    assert replay["cfast"]["sha256"] == first["cfast"]["sha256"]
