"""The retry queue file: validation, editing, atomic drain, and several processes at once."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from refinery_lib.retry_queue import (
    QueueError,
    RequestNotFound,
    RetryQueue,
    RetryRequest,
    packages_from_text,
    steps_from_text,
    steps_to_text,
)

PROCESSES = 6
PER_PROCESS = 25


def test_requests_are_normalized_and_validated():
    r = RetryRequest("My_Pkg", "1.0.post1", python_tag="3.11", platform_tag="manylinux2014_s390x")
    assert (r.name, r.version, r.python_tag) == ("my-pkg", "1.0.post1", "cp311")
    for bad in ("../etc", "", "a b", "-x", "pkg/../../x"):
        with pytest.raises(QueueError):
            RetryRequest(bad)
    for bad in ("1.0/../../x", "not a version", "1.0; rm -rf /"):
        with pytest.raises(QueueError):
            RetryRequest("pkg", bad)
    with pytest.raises(QueueError):
        RetryRequest("pkg", python_tag="python3")
    with pytest.raises(QueueError):
        RetryRequest("pkg", platform_tag="../x")
    with pytest.raises(QueueError):
        RetryRequest("pkg", recipe_steps=["echo hi"])  # a shell string, not an argument list
    with pytest.raises(QueueError):
        RetryRequest("pkg", recipe_steps=[[]])
    with pytest.raises(QueueError):
        RetryRequest("pkg", system_packages=["gcc; reboot"])


@pytest.mark.parametrize("fields", [
    {"name": "cfast\n"}, {"name": "cfast\r\n"}, {"name": "\ncfast"},
    {"name": "cfast", "platform_tag": ".."}, {"name": "cfast", "platform_tag": "linux_s390x\n"},
    {"name": "cfast", "platform_tag": "manylinux2014_s390x.."},
    {"name": "cfast", "platform_tag": "Manylinux2014_S390X"},
    {"name": "cfast", "platform_tag": "macosx_11_0_arm64"},  # the run would refuse it
    {"name": "cfast", "python_tag": "cp311\x00"}, {"name": "cfast", "python_tag": "cp3.11"},
    {"name": "cfast", "python_tag": ".."}, {"name": "cfast", "python_tag": "cp311 cp312"},
    {"name": "cfast", "version": "1.0\n2.0"}, {"name": "cfast", "system_packages": ["gcc\n"]},
    {"name": "cfast", "id": "abcdef12\n"},
])
def test_validation_matches_whole_values_only(fields):
    """`re.match` with `$` lets a trailing newline through; every check is a fullmatch."""
    with pytest.raises(QueueError):
        RetryRequest(**fields)


def test_accepted_targets():
    for tag in ("manylinux2014_s390x", "manylinux_2_28_s390x", "musllinux_1_2_s390x",
                "linux_s390x", "native"):
        assert RetryRequest("cfast", platform_tag=tag).platform_tag == tag
    assert RetryRequest("cfast", python_tag=" 3.12 ").python_tag == "cp312"


def test_dead_letters_are_kept_aside_until_requeued_or_deleted(tmp_path):
    q = RetryQueue(tmp_path / "q.json")
    a = q.add(RetryRequest("alpha", recipe_steps=[["make"]]))
    b = q.add(RetryRequest("beta"))
    taken = q.drain()
    (dead_a, dead_b) = q.bury(taken, "the run did not start: SystemExit: 2")
    assert len(q) == 0 and q.drain() == []  # never drained again
    assert [(d.id, d.name, d.reason) for d in q.dead()] == [
        (a.id, "alpha", "the run did not start: SystemExit: 2"),
        (b.id, "beta", "the run did not start: SystemExit: 2")]
    later = q.add(RetryRequest("later"))
    revived = q.revive(a.id)
    assert revived == a  # the same request, at the end of the queue
    assert [r.id for r in q.requests()] == [later.id, a.id]
    assert q.delete_dead(b.id).name == "beta"
    assert q.dead() == []
    with pytest.raises(RequestNotFound):
        q.revive(b.id)
    with pytest.raises(RequestNotFound):
        q.delete_dead(b.id)
    assert json.loads(q.path.read_text())["dead"] == []


def test_invalid_stored_requests_become_dead_letters(tmp_path):
    """A queue written by a laxer version stays usable: the bad entry is set aside, visible."""
    q = RetryQueue(tmp_path / "q.json")
    good = RetryRequest("good")
    q.path.write_text(json.dumps({"format": 1, "requests": [
        {"name": "evil\n", "platform_tag": "..", "id": "0123456789abcdef"}, good.to_json(),
        "not even an object"]}))
    assert [r.id for r in q.drain()] == [good.id]
    dead = q.dead()
    assert [d.id for d in dead][0] == "0123456789abcdef"
    assert all(d.reason.startswith("not a valid request") for d in dead) and len(dead) == 2
    with pytest.raises(QueueError):
        q.revive("0123456789abcdef")  # still invalid: stays a dead letter
    assert len(q.dead()) == 2
    for d in dead:
        q.delete_dead(d.id)
    assert q.dead() == [] and len(q) == 0


def test_recipe_text_round_trip():
    steps = [["dnf", "install", "-y", "openblas-devel"], ["sh", "-c", "echo 'a b' > /tmp/x"]]
    assert steps_from_text(steps_to_text(steps)) == steps
    assert steps_from_text("\n  \necho hi\n") == [["echo", "hi"]]
    with pytest.raises(QueueError):
        steps_from_text("echo 'unterminated")
    assert packages_from_text("gcc, make  gcc") == ["gcc", "make"]


def test_add_edit_reorder_delete_drain(tmp_path):
    q = RetryQueue.in_cache(tmp_path)
    assert len(q) == 0 and q.drain() == []
    a = q.add(RetryRequest("alpha", "1.0"))
    b = q.add(RetryRequest("beta"))
    c = q.add(RetryRequest("gamma"))
    assert [r.name for r in q.requests()] == ["alpha", "beta", "gamma"]
    edited = q.update(b.id, recipe_steps=[["make", "deps"]], version="2.0")
    assert edited.recipe_steps == [["make", "deps"]] and edited.version == "2.0"
    with pytest.raises(QueueError):
        q.update(b.id, version="nope")
    assert q.get(b.id).version == "2.0"  # a refused edit changes nothing
    with pytest.raises(QueueError):
        q.update(b.id, name="other")
    q.reorder([c.id, a.id])
    assert [r.name for r in q.requests()] == ["gamma", "alpha", "beta"]
    with pytest.raises(RequestNotFound):
        q.reorder(["0" * 32])
    assert q.delete(a.id).name == "alpha"
    with pytest.raises(RequestNotFound):
        q.delete(a.id)
    data = json.loads(q.path.read_text())
    assert data["format"] == 1 and [r["name"] for r in data["requests"]] == ["gamma", "beta"]
    assert [r.name for r in q.drain()] == ["gamma", "beta"]
    assert len(q) == 0 and json.loads(q.path.read_text())["requests"] == []


def test_put_back_puts_requests_back_in_front_once(tmp_path):
    q = RetryQueue(tmp_path / "q.json")
    first = q.add(RetryRequest("first"))
    taken = q.drain()
    later = q.add(RetryRequest("later"))
    q.put_back(taken)
    q.put_back(taken)
    assert [r.id for r in q.requests()] == [first.id, later.id]


def test_corrupt_queue_file_is_reported_not_overwritten(tmp_path):
    q = RetryQueue(tmp_path / "q.json")
    q.path.write_text("{ not json")
    with pytest.raises(QueueError):
        q.add(RetryRequest("x"))
    assert q.path.read_text() == "{ not json"


def test_a_hand_written_list_is_read(tmp_path):
    q = RetryQueue(tmp_path / "q.json")
    q.path.write_text(json.dumps([{"name": "Foo", "version": "1.0"}]))
    assert [(r.name, r.version) for r in q.requests()] == [("foo", "1.0")]


def _enqueue(path: str, worker: int, barrier) -> None:
    q = RetryQueue(path)
    barrier.wait()
    for i in range(PER_PROCESS):
        q.add(RetryRequest(f"pkg-{worker}-{i}", note=f"{worker}:{i}"))


def _drain_while_enqueueing(path: str, barrier, out) -> None:
    q = RetryQueue(path)
    barrier.wait()
    got = []
    for _ in range(40):
        got += [r.note for r in q.drain()]
        os.sched_yield()
    out.put(got)


def test_concurrent_enqueues_and_drains_lose_and_double_nothing(tmp_path):
    """Processes enqueue at once while another drains: every request comes out exactly once."""
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "retry_queue.json")
    barrier = ctx.Barrier(PROCESSES + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_enqueue, args=(path, w, barrier)) for w in range(PROCESSES)]
    procs.append(ctx.Process(target=_drain_while_enqueueing, args=(path, barrier, out)))
    for p in procs:
        p.start()
    drained_meanwhile = out.get(timeout=120)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rest = [r.note for r in RetryQueue(path).drain()]
    seen = drained_meanwhile + rest
    expected = {f"{w}:{i}" for w in range(PROCESSES) for i in range(PER_PROCESS)}
    assert len(seen) == len(expected) == PROCESSES * PER_PROCESS
    assert set(seen) == expected
    # each process's requests stay in the order it added them
    for w in range(PROCESSES):
        mine = [int(n.split(":")[1]) for n in seen if n.startswith(f"{w}:")]
        assert mine == sorted(mine)
    assert len(RetryQueue(path)) == 0
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".retry_queue.json.")]


def test_concurrent_enqueues_then_one_drain(tmp_path):
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "retry_queue.json")
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_enqueue, args=(path, w, barrier)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(RetryQueue(path)) == PROCESSES * PER_PROCESS
    notes = [r.note for r in RetryQueue(path).drain()]
    assert len(notes) == len(set(notes)) == PROCESSES * PER_PROCESS
    assert RetryQueue(path).drain() == []
