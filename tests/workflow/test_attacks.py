"""The real pipeline against an attacker: a build that hunts for secrets, input files named to
break Snakemake, and an index whose pages and redirects lead to other schemes.

Each case is what a stranger controls (an sdist's setup.py, a file name in a wheelhouse, an
index page): it must get nothing, change nothing outside the output and the cache, and the
good wheels of the same run must land unchanged."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.conftest import build_tools_wheels, run_refinery
from tests.fixtures.projects import build_sdist, make_wheel, write_simple_index

pytestmark = pytest.mark.slow
FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
TOKEN = "tok-" + "Zq9" * 8  # the panel's token, as a worker would hold it
INDEX_PASSWORD = "index-pass-" + "x7" * 6

# setup.py of a build that looks for secrets: in its own environment, and in the environment
# of every process above it (as root it may read them: redaction must still hide the token)
SNOOP_SETUP = """\
import os
from setuptools import setup

if not os.environ.get("REFINERY_FIXTURE_SDIST"):
    print("SNOOP names:", " ".join(sorted(os.environ)))
    print("SNOOP token in env:", os.environ.get("WORKER_TOKEN", "-"))
    pid = os.getppid()
    while pid > 1:
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\\0")
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            break
        for item in env:
            if item.startswith(b"WORKER_TOKEN="):
                print("SNOOP found in parent", pid, item.decode())
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    os.makedirs("snoop", exist_ok=True)
    with open(os.path.join("snoop", "seen.py"), "w") as fh:
        fh.write("NAMES = %r\\n" % sorted(os.environ))
setup()
"""


def _snoop_project(root: Path) -> Path:
    proj = root / "snoop-1.0"
    (proj / "snoop").mkdir(parents=True)
    (proj / "snoop" / "__init__.py").write_text("")
    (proj / "setup.py").write_text(SNOOP_SETUP)
    (proj / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "snoop"
        version = "1.0"
        requires-python = ">=3.8"

        [tool.setuptools]
        packages = ["snoop"]
        """))
    return proj


class _Handler(http.server.SimpleHTTPRequestHandler):
    """A static index, plus redirects to other schemes where the test asks for them."""

    redirects: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        target = self.redirects.get(self.path)
        if target:
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_index(tmp_path):
    """An http index with: snoop (a real sdist), `filelink` whose page links to a local sdist
    by file://, `ftpfile` whose sdist link redirects to ftp://, `redirpage` whose page
    redirects to a file:// page."""
    root = tmp_path / "index"
    files = root / "files"
    files.mkdir(parents=True)
    build_sdist(_snoop_project(tmp_path / "projects"), files)
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    # sdists the index must never make the refinery build, kept outside the served folder
    local = tmp_path / "local"
    proj = _snoop_project(tmp_path / "local-projects")
    for name in ("filelink", "ftpfile", "redirpage"):
        text = (proj / "pyproject.toml").read_text().replace('name = "snoop"', f'name = "{name}"')
        (proj / "pyproject.toml").write_text(text)
        sdist = build_sdist(proj, local)
        text = text.replace(f'name = "{name}"', 'name = "snoop"')
        (proj / "pyproject.toml").write_text(text)
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        page = root / "simple" / name
        page.mkdir()
        href = {"filelink": sdist.as_uri(), "ftpfile": f"/redir/{sdist.name}",
                "redirpage": "unused"}[name]
        (page / "index.html").write_text(
            f'<html><body><a href="{href}#sha256={digest}">{sdist.name}</a></body></html>\n')
        file_page = local / name
        file_page.mkdir()
        (file_page / "index.html").write_text(
            f'<html><body><a href="{sdist.as_uri()}#sha256={digest}">{sdist.name}</a>'
            "</body></html>\n")
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    _Handler.redirects = {
        "/redir/" + next(local.glob("ftpfile-*")).name: f"ftp://127.0.0.1:{port}/ftpfile.tar.gz",
        "/simple/redirpage/": (local / "redirpage").as_uri() + "/index.html",
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://alice:{INDEX_PASSWORD}@127.0.0.1:{port}/simple"
    server.shutdown()


def test_hostile_sdists_names_and_index_get_nothing(tmp_path, hostile_index, isolated_pip_env):
    inp = tmp_path / "in"
    good = make_wheel(inp, "goodpure", "1.0")
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()
    for name in ("snoop", "filelink", "ftpfile", "redirpage"):
        make_wheel(inp, name, "1.0", FOREIGN)
    (inp / "brace{x}.whl").write_bytes(good.read_bytes())
    (inp / "angle<y>.whl").write_bytes(b"not a zip")
    env = {**isolated_pip_env, "WORKER_TOKEN": TOKEN, "WORKER_URL": "http://127.0.0.1:9/run",
           "PIP_INDEX_URL": f"http://bob:{INDEX_PASSWORD}@127.0.0.1:9/simple"}
    res = run_refinery(
        ["--input", str(inp), "--output", str(tmp_path / "out"), "--cache",
         str(tmp_path / "cache"), "--python", PY, "--platform-tag", "native", "--index-url",
         hostile_index, "--jobs", "2", "--attempt-backoff-base", "0.01",
         "--attempt-backoff-max", "0.02"], env=env)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entries = {e["name"]: e for e in manifest["entries"]}

    # odd file names are scanned like any other file, and the good wheel lands unchanged
    assert entries["goodpure"]["status"] == "reused", res.stderr[-3000:]
    landed = tmp_path / "out" / good.name
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == good_sha
    for odd in ("brace{x}.whl", "angle<y>.whl"):
        assert entries[odd]["status"] == "invalid"
        assert "bad wheel file name" in entries[odd]["detail"]

    # the build ran, without the token or any WORKER_*/host PIP_* variable in its environment
    assert entries["snoop"]["status"] == "built", res.stderr[-3000:]
    log = "".join(p.read_text(errors="replace")
                  for p in (tmp_path / "cache" / "logs").rglob("snoop*.log"))
    names = next(line for line in log.splitlines() if line.startswith("SNOOP names:")).split()
    assert not [n for n in names if n.startswith("WORKER_")]
    assert "PIP_INDEX_URL" in names  # the refinery's own index setting, not the host's
    assert "SNOOP token in env: -" in log
    # ... and what it dug out of a parent's /proc/PID/environ was redacted in the log
    if "SNOOP found in parent" in log:
        assert "WORKER_TOKEN=***" in log
    # nothing written by the run holds the token or the index password
    for path in tmp_path.rglob("*"):
        if inp in path.parents or tmp_path / "index" in path.parents:
            continue
        if path.is_file() and path.suffix in {".log", ".json", ".db", ".txt", ".html", ""}:
            data = path.read_bytes()
            assert TOKEN.encode() not in data, path
            assert INDEX_PASSWORD.encode() not in data, path

    # links and redirects to other schemes were not followed: nothing of them was built
    for name in ("filelink", "ftpfile", "redirpage"):
        assert entries[name]["status"] != "built", entries[name]
    assert not list((tmp_path / "cache").rglob("filelink-1.0.tar.gz"))
    assert not list((tmp_path / "cache").rglob("redirpage-1.0.tar.gz"))
    assert "refusing a redirect" in entries["ftpfile"]["detail"]
    assert "ignored a link to another scheme: file:///" in entries["filelink"]["detail"]
    assert "redirect" in entries["redirpage"]["detail"].lower()  # urllib refuses file: itself
    assert (tmp_path / "cache" / "workflow" / "refinery-config.yaml").stat().st_mode & 0o077 == 0
    assert res.returncode == 1  # the refused ones failed, and the run says so
