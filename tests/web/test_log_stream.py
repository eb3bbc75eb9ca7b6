"""Following a growing log: the tailer, and the SSE endpoint over HTTP."""

from __future__ import annotations

import os

from web.logs import LogFile, Tailer, find_logs


def _log(path) -> LogFile:
    return LogFile(path, "1.0", 1, "isolated", 0, 0.0)


def _data(events: list[str]) -> list[str]:
    return [line[6:] for ev in events for line in ev.splitlines() if line.startswith("data: ")]


def test_tailer_sends_whole_lines_as_they_complete(tmp_path):
    path = tmp_path / "x-1.0-attempt1-isolated.log"
    path.write_text("one\ntw")
    t = Tailer(lambda: _log(path))
    assert _data(t.poll()) == ["one"]
    assert t.poll() == []
    with open(path, "a") as fh:
        fh.write("o\nthree\n")
    events = t.poll()
    assert _data(events) == ["two", "three"]
    assert events[-1].startswith(f"id: {path.stat().st_size}\n")  # resume point for the browser


def test_tailer_resumes_from_an_offset_and_follows_a_replaced_log(tmp_path):
    path = tmp_path / "x-1.0-attempt1-isolated.log"
    path.write_text("old 1\nold 2\n")
    t = Tailer(lambda: _log(path), offset=len("old 1\n"))
    assert _data(t.poll()) == ["old 2"]
    # a rebuild removes the log and writes a new one at the same path
    path.unlink()
    path.write_text("new 1\n")
    events = t.poll()
    assert "event: reset" in events[0]
    assert _data(events[1:]) == ["new 1"]


def test_tailer_waits_for_a_log_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "x-1.0-attempt1-isolated.log"
    t = Tailer(lambda: _log(path) if path.exists() else None)
    assert t.poll() == []
    path.write_text("first\n")
    assert _data(t.poll()) == ["first"]


def test_tailer_sends_a_runaway_line_without_newline(tmp_path):
    path = tmp_path / "x-1.0-attempt1-isolated.log"
    path.write_text("x" * 100)
    t = Tailer(lambda: _log(path), max_line=10)
    assert _data(t.poll()) == ["x" * 100]


def test_find_logs_matches_versions_by_pep440(settings):
    found = find_logs(settings.logs_dir, "broken", "0.1.0")
    assert [(f.attempt, f.variant) for f in found] == [(1, "isolated"), (2, "no-isolation")]
    assert find_logs(settings.logs_dir, "cdep", "0.1") == []


def test_sse_endpoint_streams_lines_appended_while_connected(client, settings):
    log = settings.logs_dir / "broken-0.1-attempt1-isolated.log"
    size = log.stat().st_size
    url = f"/logs/broken/0.1/stream?attempt=1&variant=isolated&offset={size}&idle=20"
    seen = []
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "retry: 2000"
        with open(log, "a") as fh:  # the build writes while the page watches
            fh.write("linking <b>_speed</b>.so\n")
            fh.flush()
            os.fsync(fh.fileno())
        for line in lines:
            seen.append(line)
            if line.startswith("data: "):
                break
    assert seen[-1] == "data: linking <b>_speed</b>.so"
    assert f"id: {log.stat().st_size}" in seen


def test_sse_resumes_from_last_event_id_and_ends_when_idle(client, settings):
    log = settings.logs_dir / "broken-0.1-attempt1-isolated.log"
    first = log.read_text().splitlines(keepends=True)[0]
    r = client.get("/logs/broken/0.1/stream?attempt=1&variant=isolated&idle=0.2",
                   headers={"Last-Event-ID": str(len(first))})
    data = [line for line in r.text.splitlines() if line.startswith("data: ")]
    assert data[0] == "data: broken/_speed.c:9: error: expected ';' this is not C"
    assert "event: idle" in r.text
