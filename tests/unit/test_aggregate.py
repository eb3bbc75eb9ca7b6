"""Aggregation over records laid out as the workflow leaves them (after a failed job too)."""

import json
import sqlite3

import pytest

from refinery_lib.aggregate import aggregate, closure_check, summary_table
from refinery_lib.files import write_json
from refinery_lib.history import new_event
from refinery_lib.models import Action, Outcome, PlanNode, Status, node_key
from refinery_lib.wheels import sha256_file
from tests.fixtures.config import unit_settings
from tests.fixtures.projects import make_wheel

_settings = unit_settings


def _node(name, version, action, **kw):
    return PlanNode(name=name, version=version, action=action, key=node_key(name, version), **kw)


def _layout(tmp_path, s):
    out = s.paths.output
    pure = make_wheel(out, "pure", "1.0", "py3-none-any", ("dep>=1",))
    built = make_wheel(out, "dep", "2.0", "cp311-cp311-manylinux2014_s390x")
    nodes = [
        _node("pure", "1.0", Action.REUSE),
        _node("dep", "2.0", Action.BUILD),
        _node("bad", "0.1", Action.BUILD),
        _node("child", "1.0", Action.BUILD, build_deps=(node_key("bad", "0.1"),)),
        PlanNode(
            "ghost",
            "",
            Action.MISSING,
            key="ghost-none",
            detail="no version of ghost",
            requirement="ghost>=1",
        ),
    ]
    write_json(
        s.paths.plan,
        {
            "nodes": [n.to_json() for n in nodes],
            "invalid": [{"file": "junk.whl", "path": "/in/junk.whl", "reason": "not a zip"}],
            "events": [new_event("ghost", "", Status.MISSING, "no version of ghost")],
        },
    )
    write_json(
        s.paths.reuse_record,
        [
            Outcome(
                "pure",
                "1.0",
                Status.REUSED,
                path=str(pure),
                wheel=pure.name,
                sha256="0" * 64,
                events=[new_event("pure", "1.0", Status.REUSED)],
            ).to_json()
        ],
    )
    write_json(
        s.paths.outcome(node_key("dep", "2.0")),
        Outcome(
            "dep",
            "2.0",
            Status.BUILT,
            path=str(built),
            wheel=built.name,
            sha256="1" * 64,
            metadata={"variant": "isolated", "duration": 3.0},
            events=[new_event("dep", "2.0", Status.BUILT, duration=3.0)],
        ).to_json(),
    )
    write_json(
        s.paths.failure(node_key("bad", "0.1")),
        Outcome(
            "bad",
            "0.1",
            Status.FAILED,
            detail="error: boom",
            events=[new_event("bad", "0.1", Status.FAILED, "error: boom")],
        ).to_json(),
    )


def test_manifest_after_failed_job(tmp_path):
    s = _settings(tmp_path)
    _layout(tmp_path, s)
    m = aggregate(s, run_id="run-1")
    by = {e["name"]: e for e in m["entries"]}
    assert {k: v["status"] for k, v in by.items()} == {
        "pure": "reused",
        "dep": "built",
        "bad": "failed",
        "child": "failed",
        "ghost": "missing",
        "junk.whl": "invalid",
    }
    assert "dependency bad-0.1 failed" in by["child"]["detail"]
    assert m["ok"] is False and m["summary"]["failed"] == 2
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["run_id"] == "run-1" and "events" not in on_disk["entries"][0]
    # the output index lists landed wheels only, with hashes
    page = (tmp_path / "out" / "simple" / "dep" / "index.html").read_text()
    assert "dep-2.0-cp311-cp311-manylinux2014_s390x.whl#sha256=" + "1" * 64 in page
    assert not (tmp_path / "out" / "simple" / "bad").exists()
    # provenance: every landed wheel in the manifest, a file only for built ones
    assert by["pure"]["provenance"]["origin"]["input_file"] == ""
    assert by["dep"]["provenance"]["build"] == {"variant": "isolated", "duration": 3.0}
    prov = sorted(p.name for p in (tmp_path / "out" / "provenance").iterdir())
    assert prov == ["dep-2.0-cp311-cp311-manylinux2014_s390x.whl.json"]
    # history: each event once, even when aggregation runs again
    db = tmp_path / "cache" / "history.db"
    count = sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0]
    aggregate(s, run_id="run-1")
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM events").fetchone()[0] == count
    table = summary_table(m | {"path": "x"})
    assert "bad" in table and "ghost" in table and "junk.whl" in table


def test_outcome_beats_stale_failure_record(tmp_path):
    s = _settings(tmp_path)
    _layout(tmp_path, s)
    fixed = make_wheel(s.paths.output, "bad", "0.1", "cp311-cp311-manylinux2014_s390x")
    write_json(
        s.paths.outcome(node_key("bad", "0.1")),
        Outcome("bad", "0.1", Status.BUILT, path=str(fixed), wheel=fixed.name).to_json(),
    )
    m = aggregate(s, run_id="run-2")
    assert {e["name"]: e["status"] for e in m["entries"]}["bad"] == "built"


@pytest.mark.parametrize("with_pip", [False, True], ids=["run", "verify"])
def test_closure_check_reports_unsatisfied_dependency(tmp_path, with_pip):
    s = _settings(tmp_path)
    make_wheel(s.paths.output, "pure", "1.0", "py3-none-any", ("dep>=1",))
    entry = Outcome("pure", "1.0", Status.REUSED, wheel="pure-1.0-py3-none-any.whl")
    bad = closure_check(s, [entry], confirm_with_pip=with_pip)
    assert bad["ok"] is False and "dep" in bad["detail"]
    make_wheel(s.paths.output, "dep", "2.0", "cp311-cp311-manylinux2014_s390x")
    dep = Outcome("dep", "2.0", Status.BUILT, wheel="dep-2.0-cp311-cp311-manylinux2014_s390x.whl")
    good = closure_check(s, [entry, dep], confirm_with_pip=with_pip)
    assert good["ok"] is True and good["checked"] == 2
    # a run checks with packaging only; `refinery verify` has pip's resolver confirm it
    assert good["method"] == ("pip" if with_pip else "packaging")


def test_closure_check_rejects_wrong_platform(tmp_path):
    s = _settings(tmp_path)
    make_wheel(s.paths.output, "dep", "2.0", "cp311-cp311-manylinux_2_28_s390x")
    dep = Outcome("dep", "2.0", Status.BUILT, wheel="dep-2.0-cp311-cp311-manylinux_2_28_s390x.whl")
    assert closure_check(s, [dep])["ok"] is False
    assert closure_check(s, [dep], confirm_with_pip=True)["ok"] is False


def test_metadata_closure_for_large_sets(tmp_path, monkeypatch):
    import refinery_lib.aggregate as agg

    s = _settings(tmp_path)
    make_wheel(
        s.paths.output, "pure", "1.0", "py3-none-any", ("dep>=2", "win; sys_platform=='win32'")
    )
    make_wheel(s.paths.output, "dep", "1.5", "cp311-cp311-manylinux2014_s390x")
    entries = [
        Outcome("pure", "1.0", Status.REUSED, wheel="pure-1.0-py3-none-any.whl"),
        Outcome("dep", "1.5", Status.BUILT, wheel="dep-1.5-cp311-cp311-manylinux2014_s390x.whl"),
    ]
    monkeypatch.setattr(agg, "PIP_CLOSURE_LIMIT", 1)  # the packaging check alone, even in verify
    bad = closure_check(s, entries, confirm_with_pip=True)
    assert bad["ok"] is False and bad["method"] == "packaging"
    assert "pure 1.0 requires dep>=2: output has 1.5" in bad["detail"]
    make_wheel(s.paths.output, "dep", "2.0", "cp311-cp311-manylinux2014_s390x")
    entries[1] = Outcome(
        "dep", "2.0", Status.BUILT, wheel="dep-2.0-cp311-cp311-manylinux2014_s390x.whl"
    )
    good = closure_check(s, entries, confirm_with_pip=True)
    assert good["ok"] is True and good["method"] == "packaging" and good["checked"] == 2


def test_build_only_nodes_are_no_output_packages(tmp_path, caplog):
    """Build requirements the requeue planned (build-only) stay out of the output folder, the
    manifest, OUTPUT/simple and the closure check; their events reach the history."""
    s = _settings(tmp_path)
    out = s.paths.output
    app = make_wheel(out, "app", "1.0", "cp311-cp311-manylinux2014_s390x")
    # build.py places every built wheel in the output folder, build-only ones too; this one
    # needs a package that is in no output, so a closure check over it would fail
    tool = make_wheel(out, "tool", "2.0", "cp311-cp311-manylinux2014_s390x", ("toolrt>=1",))
    fetched = make_wheel(s.paths.downloads, "helper", "3.0", "py3-none-any")
    tool_key, bad_key = node_key("tool", "2.0"), node_key("badtool", "0.1")
    nodes = [
        _node("app", "1.0", Action.BUILD, build_deps=(tool_key,), input_files=("app.whl",)),
        _node("tool", "2.0", Action.BUILD, build_only=True, needed_by=("app==1.0",)),
        _node("helper", "3.0", Action.FETCH, build_only=True, needed_by=("app==1.0",)),
        PlanNode("toolrt", "", Action.MISSING, key="toolrt-none", build_only=True,
                 detail="beyond the depth"),
        _node("badtool", "0.1", Action.BUILD, build_only=True, needed_by=("other==1.0",)),
        _node("other", "1.0", Action.BUILD, build_deps=(bad_key,), input_files=("o.whl",)),
        _node("lazy", "0.2", Action.BUILD, build_only=True, needed_by=("app==1.0",)),
    ]
    write_json(s.paths.plan, {"nodes": [n.to_json() for n in nodes]})
    write_json(
        s.paths.outcome(node_key("app", "1.0")),
        Outcome("app", "1.0", Status.BUILT, path=str(app), wheel=app.name, sha256="1" * 64,
                events=[new_event("app", "1.0", Status.BUILT)]).to_json(),
    )
    write_json(
        s.paths.outcome(tool_key),
        Outcome("tool", "2.0", Status.BUILT, path=str(tool), wheel=tool.name, sha256="2" * 64,
                events=[new_event("tool", "2.0", Status.BUILT)]).to_json(),
    )
    write_json(
        s.paths.fetch_record,
        [Outcome("helper", "3.0", Status.FETCHED, path=str(fetched), wheel=fetched.name,
                 sha256="3" * 64, events=[new_event("helper", "3.0", Status.FETCHED)]).to_json()],
    )
    write_json(
        s.paths.failure(bad_key),
        Outcome("badtool", "0.1", Status.FAILED, detail="error: no compiler",
                events=[new_event("badtool", "0.1", Status.FAILED, "error: no compiler")]
                ).to_json(),
    )
    with caplog.at_level("INFO", logger="refinery_lib"):
        m = aggregate(s, run_id="run-bo")
    by = {e["name"]: e for e in m["entries"]}
    assert {k: v["status"] for k, v in by.items()} == {"app": "built", "other": "failed"}
    # the dependent's entry says why, since the build-only package has no entry of its own
    assert "badtool-0.1 failed" in by["other"]["detail"]
    assert "error: no compiler" in by["other"]["detail"]
    assert m["summary"] == {"built": 1, "failed": 1}
    assert m["closure"]["ok"] is True and m["closure"]["checked"] == 1
    assert sorted(p.name for p in out.glob("*.whl")) == [app.name]
    assert fetched.exists()  # the cache keeps it for the builds that need it
    assert sorted(p.name for p in (out / "simple").iterdir()) == ["app", "index.html"]
    assert "tool" not in (out / "simple" / "index.html").read_text()
    assert sorted(p.name for p in (out / "provenance").iterdir()) == [f"{app.name}.json"]
    # one log line for each build-only package that did not land
    for name in ("badtool", "lazy", "toolrt"):
        assert sum(name in r.getMessage() and r.levelname == "WARNING"
                   for r in caplog.records) == 1, name
    con = sqlite3.connect(tmp_path / "cache" / "history.db")
    events = {r[0]: r[1] for r in con.execute("SELECT package, status FROM events")}
    assert events["tool"] == "built" and events["helper"] == "fetched"
    assert events["badtool"] == "failed"


def test_wheel_of_a_former_build_only_node_lands_again(tmp_path):
    """A package built while it was build-only (its wheel removed from the output) becomes an
    output package: its outcome is not made again, aggregation places the cached wheel."""
    s = _settings(tmp_path)
    tool = make_wheel(s.paths.wheels, "tool", "2.0", "cp311-cp311-manylinux2014_s390x")
    node = _node("tool", "2.0", Action.BUILD, input_files=("tool.whl",))
    write_json(s.paths.plan, {"nodes": [node.to_json()]})
    write_json(
        s.paths.outcome(node.key),
        Outcome("tool", "2.0", Status.BUILT, path=str(s.paths.output / tool.name),
                wheel=tool.name, sha256=sha256_file(tool)).to_json(),
    )
    m = aggregate(s, run_id="run-back")
    assert [e["status"] for e in m["entries"]] == ["built"] and m["closure"]["ok"] is True
    assert (s.paths.output / tool.name).read_bytes() == tool.read_bytes()


def test_wheels_the_last_manifest_landed_leave_the_output_when_this_run_does_not(tmp_path):
    """The output says what the manifest says: a wheel the last run placed whose package now
    failed (or was replaced) is removed, but only while it is the file the refinery wrote;
    a file the user changed, or put there, stays."""
    from refinery_lib.aggregate import _withdraw_unlisted

    out = tmp_path / "out"
    ours = make_wheel(out, "gone", "1.0", "cp311-cp311-manylinux2014_s390x")
    kept = make_wheel(out, "kept", "1.0")
    edited = make_wheel(out, "edited", "1.0")
    users = make_wheel(out, "users", "1.0")
    entries = [{"name": p.name.split("-")[0], "version": "1.0", "status": status,
                "wheel": p.name, "sha256": sha256_file(p)}
               for p, status in ((ours, "built"), (kept, "reused"), (edited, "fetched"))]
    write_json(out / "manifest.json", {"entries": entries})
    edited.write_bytes(edited.read_bytes() + b"\0")
    _withdraw_unlisted(out / "manifest.json", out, {kept.name})
    assert sorted(p.name for p in out.glob("*.whl")) == sorted([kept.name, edited.name,
                                                                users.name])
    (out / "manifest.json").write_text("{garbage")  # a damaged manifest withdraws nothing
    _withdraw_unlisted(out / "manifest.json", out, set())
    assert len(list(out.glob("*.whl"))) == 3


def test_the_aggregation_reads_only_declared_records(tmp_path, monkeypatch):
    """Every file the aggregation reads under RESULTS is a file of the WorkflowFiles table,
    declared by a rule (an output, log or benchmark the .smk files name through RESULTS, the
    aggregate rule's input among them) or, for a failure record, which no rule can declare
    (Snakemake removes a failed job's outputs), by Paths.failure; no folder is listed."""
    import builtins
    import io
    import re
    from pathlib import Path

    from refinery_lib.aggregate import read_outcomes
    from refinery_lib.settings import WorkflowFiles
    from tests.conftest import REPO

    s = _settings(tmp_path)
    _layout(tmp_path, s)
    dep = node_key("dep", "2.0")
    s.paths.benchmark(dep).parent.mkdir(parents=True)
    s.paths.benchmark(dep).write_text("s\tmax_rss\n1.0\t12.5\n")
    write_json(s.paths.fetch_record, [])
    read, listed = [], []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        read.append(Path(file))
        return real_open(file, *args, **kwargs)

    def listing(name):
        real = getattr(Path, name)

        def wrapper(self, *args, **kwargs):
            listed.append(self)
            return real(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    for name in ("glob", "rglob", "iterdir"):
        monkeypatch.setattr(Path, name, listing(name))
    collected = read_outcomes(s)
    monkeypatch.undo()
    assert collected.entries[1].metadata["max_rss_mb"] == 12.5  # the benchmark was read
    assert not [p for p in listed if p.is_relative_to(s.paths.results)]
    files = WorkflowFiles(s.paths.results)
    table = {name: getattr(files, name) for name, entry in vars(WorkflowFiles).items()
             if hasattr(entry, "relative")}
    patterns = {name: re.compile(re.escape(str(value("{key}") if callable(value) else value))
                                 .replace(re.escape("{key}"), "[^/]+") + "$")
                for name, value in table.items()}
    rules = "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    entries = set()
    for path in read:
        if path.is_relative_to(s.paths.results):
            (name,) = [n for n, pattern in patterns.items() if pattern.match(str(path))]
            entries.add(name)
    assert entries == {"plan", "reuse_record", "fetch_record", "outcome", "benchmark", "failure"}
    for name in entries - {"failure"}:
        assert f"RESULTS.{name}" in rules, f"no rule declares {name}"
    assert "RESULTS.failure" not in rules
