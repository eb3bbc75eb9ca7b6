"""A big log costs the panel bounded memory: the live view (SSE) following it from its start
reads and sends it a CHUNK at a time, whatever its size. Memory is measured with tracemalloc
(the app runs in this process, in TestClient's thread)."""

from __future__ import annotations

import tracemalloc

from web.logs import CHUNK, LogFile, Tailer

MiB = 1 << 20


def _write_log(path, mib: int) -> tuple[int, int]:
    """A log of `mib` MiB of short lines, a few long ones among them: (lines, long lines).
    A line longer than the tailer's max_line may come as two or three events."""
    block = "".join(f"compiling unit {i:06d} .......................................\n"
                    for i in range(2000))
    lines = long = 0
    with open(path, "w") as fh:
        for n in range(mib * MiB // len(block)):
            fh.write(block)
            lines += 2000
            if n % 50 == 0:
                fh.write("L" * 100_000 + "\n")  # longer than the tailer's max_line
                lines, long = lines + 1, long + 1
    return lines, long


def test_tailer_reads_a_big_log_a_chunk_per_poll(tmp_path):
    path = tmp_path / "big-1.0-attempt1-isolated.log"
    lines, long = _write_log(path, 8)
    log = LogFile(path, "1.0", 1, "isolated", 0, 0.0)
    t = Tailer(lambda: log)
    sizes, count, last_id = [], 0, 0
    while True:
        events = t.poll()
        if not events:  # caught up
            break
        sizes.append(sum(map(len, events)))
        count += len(events)
        last_id = int(events[-1].split("\n", 1)[0].removeprefix("id: "))
    t.close()
    assert last_id == path.stat().st_size  # to the end, every byte once (ids are offsets)
    assert lines <= count <= lines + 2 * long
    assert max(sizes) <= 2 * CHUNK  # a poll's events: about a CHUNK of the log


def test_sse_following_a_big_log_from_its_start_uses_bounded_memory(client, settings):
    path = settings.logs_dir / "cfast-1.0-attempt3-isolated.log"
    lines, long = _write_log(path, 4)
    url = "/logs/cfast/1.0/stream?attempt=3&variant=isolated&offset=0&idle=0.3"
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        biggest, data = 0, 0
        with client.stream("GET", url) as r:
            assert r.status_code == 200
            tail = b""
            for chunk in r.iter_raw():
                biggest = max(biggest, len(chunk))
                text = tail + chunk
                data += text.count(b"\ndata: ")
                tail = text[-6:]  # a "\ndata: " cut in two is counted once, with the next
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert lines < data <= lines + 2 * long + 1  # the whole log came, then the idle notice
    assert biggest <= 2 * CHUNK  # one poll's events per body chunk
    assert peak < 2 * MiB  # not the log's 4 MiB, nor its events
