"""Allow-listed build environments, and secrets kept out of logs, history and manifests."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys

import pytest

from refinery_lib import proc
from refinery_lib.errors import ConfigError
from refinery_lib.history import History, new_event
from refinery_lib.safe_env import (
    Redactor,
    build_base_env,
    check_pass_env,
    engine_env,
    redact,
    secrets_in,
)
from tests.fixtures.config import unit_settings as settings_for

TOKEN = "Zq9-" * 6


def test_build_env_is_allow_listed():
    host = {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "CFLAGS": "-O1",
            "WORKER_TOKEN": TOKEN, "WORKER_URL": "http://w", "PIP_INDEX_URL": "https://u:p@x",
            "PIP_CERT": "/ca.pem", "AWS_SECRET_ACCESS_KEY": "k" * 20, "GITHUB_TOKEN": "g" * 20,
            "SOME_RANDOM": "1"}
    env = build_base_env(environ=host)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "CFLAGS": "-O1",
                   "PIP_CERT": "/ca.pem"}
    assert build_base_env(["SOME_RANDOM"], environ=host)["SOME_RANDOM"] == "1"
    # a name listed on purpose still never brings the worker's own variables
    assert "WORKER_TOKEN" not in build_base_env(["WORKER_TOKEN"], environ=host)


def test_pass_env_refuses_the_workers_names():
    assert check_pass_env(["FOO", "FOO", "BAR_1"]) == ("FOO", "BAR_1")
    with pytest.raises(ValueError, match="WORKER_TOKEN"):
        check_pass_env(["WORKER_TOKEN"])
    with pytest.raises(ValueError, match="not a variable name"):
        check_pass_env(["A B"])


def test_pass_env_setting_is_checked(tmp_path):
    s = settings_for(tmp_path, build={"pass_env": ["MY_SDK_ROOT"]})
    assert s.pass_env == ("MY_SDK_ROOT",)
    with pytest.raises(ConfigError, match="WORKER_URL"):
        settings_for(tmp_path, build={"pass_env": ["WORKER_URL"]})


def test_secrets_found_and_redacted():
    env = {"WORKER_TOKEN": TOKEN, "SHORT_TOKEN": "abc", "PATH": "/bin",
           "PIP_INDEX_URL": "https://alice:pa55word-x@idx.example/simple",
           "PIP_EXTRA_INDEX_URL": "https://ghp_abcdefgh@other.example/simple"}
    secrets = secrets_in(env)
    assert TOKEN in secrets and "pa55word-x" in secrets and "ghp_abcdefgh" in secrets
    assert "abc" not in secrets  # too short to replace everywhere
    text = f"token={TOKEN} url=https://alice:pa55word-x@idx.example/simple/x/ again pa55word-x"
    out = redact(text, secrets)
    assert TOKEN not in out and "pa55word-x" not in out
    assert out == "token=*** url=https://***@idx.example/simple/x/ again ***"
    # any URL's user info goes, known or not
    assert redact("see http://u:p@h/ and ssh://git@h", ()) == "see http://***@h/ and ssh://***@h"


def test_redactor_catches_a_secret_split_across_reads():
    secret = "S" * 10 + "ecret-value"
    for cut in range(1, len(secret)):
        r = Redactor((secret,), hold=0)
        out = r.feed("x" * 5000 + secret[:cut]) + r.feed(secret[cut:] + "y" * 5000) + r.flush()
        assert secret not in out and out.count("***") == 1, cut
    long_line = ("a" * 100_000 + secret) * 3 + "\n"
    r = Redactor((secret,))
    pieces = [long_line[i:i + 4096] for i in range(0, len(long_line), 4096)]
    out = "".join(r.feed(p) for p in pieces) + r.flush()
    assert out == long_line.replace(secret, "***")


def test_command_output_is_redacted_in_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_TOKEN", TOKEN)
    log = tmp_path / "build.log"
    code = (f"import sys; print('leaking', {TOKEN!r}); sys.stdout.write({TOKEN!r}[:5]);"
            f"sys.stdout.flush(); print({TOKEN!r}[5:] + ' done')")
    proc.run([sys.executable, "-c", code], log_path=log)
    text = log.read_text()
    assert TOKEN not in text and "leaking ***\n*** done" in text


def test_command_log_ends_even_if_a_child_keeps_the_pipe(tmp_path):
    """A daemon that escaped the group keeps stdout open; the step still ends: run returns
    while that daemon (which holds the log's pipe) is still alive. Uncontained (a command in
    the caller's group, or where `contain.py` cannot run): a contained command's daemon is
    killed when it ends (tests/unit/test_proc.py)."""
    log = tmp_path / "l.log"
    pid_file = tmp_path / "daemon.pid"
    script = f"echo started; (setsid sh -c 'echo $$ > {pid_file}; exec sleep 300' &); " \
             f"while [ ! -s {pid_file} ]; do :; done; echo parent-done"
    res = proc.run(["sh", "-c", script], log_path=log, contain=False)
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)  # still running: run did not wait for the pipe to close
    finally:
        os.kill(pid, signal.SIGKILL)
    assert res.returncode == 0
    assert "parent-done" in log.read_text()


def test_history_and_engine_env_hold_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_TOKEN", TOKEN)
    db = tmp_path / "h.db"
    History(db).record([new_event("p", "1", "failed", f"error: {TOKEN}", log_tail=TOKEN)], "r1")
    raw = sqlite3.connect(db).execute("SELECT detail, metadata FROM events").fetchone()
    assert raw[0] == "error: ***" and json.loads(raw[1]) == {"log_tail": "***"}
    assert "WORKER_TOKEN" not in engine_env({"X": "1"}) and engine_env({"X": "1"})["X"] == "1"
    assert engine_env()["PATH"] == os.environ["PATH"]


def test_printable_defuses_terminal_control():
    from refinery_lib.safe_env import printable

    assert printable("plain-1.0.whl") == "plain-1.0.whl"
    assert printable("new\nline\x1b[2J.whl") == "new\\nline\\x1b[2J.whl"
