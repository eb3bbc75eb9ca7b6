"""The build's contracts are types (issue #15): a failed build's `BuildError` carries its
events and metadata as constructor fields, and the metadata of every attempt event is an
`AttemptMeta` that reads back, key for key, what the history stored."""

from __future__ import annotations

import json

import pytest

from refinery_lib.attempts import AttemptMeta, BuildEnvKind, EarlierTry, variant_stats
from refinery_lib.build import build_package
from refinery_lib.errors import BuildError, SdistUnpackError
from refinery_lib.history import History, ReadOnlyHistory
from refinery_lib.models import Action, PlanNode
from refinery_lib.settings import Settings
from tests.fixtures.projects import build_sdist, write_project


@pytest.fixture(scope="module")
def failed(tmp_path_factory) -> tuple[BuildError, Settings]:
    """A real build of a package whose C does not compile: two attempts, then the failure."""
    tmp = tmp_path_factory.mktemp("failed-build")
    sdist = build_sdist(write_project(tmp / "src", "notc", "1.0", broken=True), tmp / "sdists")
    settings = Settings.from_config({
        "input": "in", "output": "out", "cache": "cache", "results": "res",
        "target": {"platform_tag": "native"},
        "index": {"url": "http://127.0.0.1:9/simple"},
        "build": {"variants": {"plain": {"isolation": False}}, "variant_order": ["plain"],
                  "max_attempts": 2, "backoff_base": 0},
    }, tmp)
    node = PlanNode("notc", "1.0", Action.BUILD, "notc-1.0", source={"filename": sdist.name})
    with pytest.raises(BuildError) as caught:
        build_package(node, sdist, settings)
    return caught.value, settings


def test_a_failed_build_carries_its_events_and_metadata(failed):
    exc, _ = failed
    assert [e["status"] for e in exc.events] == ["attempt", "attempt", "failed"]
    assert exc.metadata == exc.events[-1]["metadata"]
    assert exc.metadata["attempts"] == 2 and exc.metadata["variant"] == "plain"
    assert exc.metadata["missing_python_deps"] == []
    assert exc.log_path is not None and exc.log_path.name == "notc-1.0-attempt2-plain.log"
    assert str(exc) == exc.events[-1]["detail"]


def test_attempt_metadata_reads_back_what_the_history_stored(failed, tmp_path):
    exc, settings = failed
    db = tmp_path / "history.db"
    History(db).record(exc.events, "r1")
    rows = sorted(ReadOnlyHistory(db).attempt_metadata("notc"), key=lambda r: r["attempt"])
    written = [json.loads(json.dumps(e["metadata"])) for e in exc.events[:2]]
    assert rows == written
    metas = [AttemptMeta.from_json(row) for row in rows]
    assert [m.to_json() for m in metas] == rows
    assert [(m.attempt, m.ok, m.build_env, m.builder) for m in metas] == [
        (1, False, BuildEnvKind.ONLINE, "local"), (2, False, BuildEnvKind.ONLINE, "local")]
    assert [m.backoff for m in metas] == [0.0, 0.0]  # base 0; the last attempt waits none
    assert metas[0].exit_code not in (None, 0) and metas[0].log_path.endswith("attempt1-plain.log")
    assert variant_stats(db, "notc") == {"plain": (0, 2)}


def test_build_error_fields_default_to_empty():
    exc = BuildError("no sdist", hints=[{"id": "h"}])
    assert (exc.log_path, exc.hints, exc.events, exc.metadata) == (None, [{"id": "h"}], [], {})
    unpack = SdistUnpackError("truncated", events=[{"status": "failed"}], metadata={"a": 1})
    assert unpack.events == [{"status": "failed"}] and unpack.metadata == {"a": 1}


def test_build_env_kinds_are_the_words_the_history_holds():
    assert [str(k) for k in BuildEnvKind] == ["shared", "offline", "online"]
    assert json.dumps({"build_env": BuildEnvKind.SHARED}) == '{"build_env": "shared"}'
    assert BuildEnvKind("offline") is BuildEnvKind.OFFLINE


def test_earlier_tries_keep_their_keys():
    earlier = (EarlierTry(BuildEnvKind.SHARED, ("dyn",), "/l/shared/x.log", 1.0),
               EarlierTry(BuildEnvKind.OFFLINE, ("dyn",), "/l/offline/x.log", 2.0))
    meta = AttemptMeta(3, "isolated", True, exit_code=0, duration=9.5,
                       build_env=BuildEnvKind.ONLINE, earlier=earlier)
    data = meta.to_json()
    assert data["shared_missing"] == ["dyn"] and data["offline_log"] == "/l/offline/x.log"
    assert data["offline_duration"] == 2.0 and "backoff" not in data
    assert AttemptMeta.from_json(json.loads(json.dumps(data))) == meta


def test_an_old_row_reads_with_defaults():
    """A row of an older refinery (no build_env, builder or cross_specific yet)."""
    meta = AttemptMeta.from_json({"attempt": 1, "variant": "isolated", "ok": True,
                                  "duration": 3, "log_path": "/l/x.log", "hints": []})
    assert meta.build_env is BuildEnvKind.ONLINE and meta.builder == ""
    assert meta.counts_for_variant and meta.duration == 3.0
    with pytest.raises(ValueError):
        AttemptMeta.from_json(["not", "metadata"])
