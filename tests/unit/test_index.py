import hashlib
import json

import pytest

from refinery_lib.errors import IndexAccessError, UnsafeNameError
from refinery_lib.index import SimpleIndex, _parse_html_page, _parse_json_page, safe_filename
from refinery_lib.models import DistFile


def test_html_page_fields():
    html = (
        '<a href="../../files/foo-1.0.tar.gz#sha256=abc" data-requires-python="&gt;=3.9">x</a>'
        '<a href="https://h/foo-0.9-py3-none-any.whl" data-yanked="" '
        'data-core-metadata="sha256=def">y</a>'
        '<a href="../../files/..%2F..%2Fetc%2Fpasswd">evil</a>'
    )
    files = _parse_html_page(html, "http://idx/simple/foo/")
    assert [f.filename for f in files] == ["foo-1.0.tar.gz", "foo-0.9-py3-none-any.whl"]
    sdist, wheel = files
    assert sdist.url == "http://idx/files/foo-1.0.tar.gz" and sdist.sha256 == "abc"
    assert sdist.requires_python == ">=3.9" and not sdist.yanked
    assert wheel.yanked and wheel.metadata_url == "https://h/foo-0.9-py3-none-any.whl.metadata"


def test_json_page_fields():
    data = {
        "files": [
            {
                "filename": "foo-1.0.tar.gz",
                "url": "../../f/foo-1.0.tar.gz",
                "hashes": {"sha256": "aa"},
                "requires-python": ">=3.8",
                "yanked": "bad release",
                "core-metadata": {"sha256": "x"},
            },
            {"filename": "../escape.whl", "url": "x", "hashes": {}},
        ]
    }
    (f,) = _parse_json_page(data, "https://idx/simple/foo/")
    assert f.url == "https://idx/f/foo-1.0.tar.gz" and f.sha256 == "aa" and f.yanked
    assert f.metadata_url.endswith(".tar.gz.metadata")


@pytest.mark.parametrize("name", ["../x.whl", "a/b.whl", "..", "", ".hidden"])
def test_unsafe_filenames(name):
    with pytest.raises(UnsafeNameError):
        safe_filename(name)


def test_download_verifies_sha256_and_caches(tmp_path):
    src = tmp_path / "files" / "foo-1.0.tar.gz"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    idx = SimpleIndex("file:///nonexistent")
    dl = tmp_path / "dl"
    path = idx.download(DistFile("foo-1.0.tar.gz", src.as_uri(), good), dl)
    assert path.read_bytes() == b"payload"
    mtime = path.stat().st_mtime_ns
    idx.download(DistFile("foo-1.0.tar.gz", src.as_uri(), good), dl)
    assert path.stat().st_mtime_ns == mtime
    with pytest.raises(IndexAccessError, match="sha256 mismatch"):
        idx.download(DistFile("bar-1.0.tar.gz", src.as_uri(), "0" * 64), dl)
    # no partial file left (the hidden folder holds the recorded digests)
    assert sorted(p.name for p in dl.iterdir()) == [".sha256", "foo-1.0.tar.gz"]


@pytest.mark.parametrize("index_gives_sha", [True, False])
def test_a_damaged_cached_download_is_downloaded_again(tmp_path, index_gives_sha):
    """A cached file changed since its download is never handed out again: checked against
    the index's sha256, or the one recorded at download when the index gives none."""
    src = tmp_path / "files" / "foo-1.0.tar.gz"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    dist = DistFile("foo-1.0.tar.gz", src.as_uri(), good if index_gives_sha else "")
    idx = SimpleIndex("file:///nonexistent")
    dl = tmp_path / "dl"
    path = idx.download(dist, dl)
    assert (dl / ".sha256" / "foo-1.0.tar.gz").read_text().strip() == good
    path.write_bytes(b"paYload")  # same size, one byte changed
    assert idx.download(dist, dl).read_bytes() == b"payload"


def test_a_cached_file_with_no_known_digest_is_downloaded_again(tmp_path):
    """Left by an older version, with no recorded digest and none from the index: nothing
    says it is intact, so it is fetched again (once: then its digest is recorded)."""
    src = tmp_path / "files" / "foo-1.0.tar.gz"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "foo-1.0.tar.gz").write_bytes(b"stale")
    dist = DistFile("foo-1.0.tar.gz", src.as_uri(), "")
    idx = SimpleIndex("file:///nonexistent")
    assert idx.download(dist, dl).read_bytes() == b"payload"
    mtime = (dl / "foo-1.0.tar.gz").stat().st_mtime_ns
    idx.download(dist, dl)
    assert (dl / "foo-1.0.tar.gz").stat().st_mtime_ns == mtime


def test_project_files_across_indexes_first_wins(tmp_path):
    for idx_name, body in (("a", "foo-1.0.tar.gz"), ("b", "foo-2.0.tar.gz")):
        page = tmp_path / idx_name / "simple" / "foo"
        page.mkdir(parents=True)
        (page / "index.html").write_text(f'<a href="{body}">{body}</a>')
    idx = SimpleIndex((tmp_path / "a" / "simple").as_uri(), ((tmp_path / "b" / "simple").as_uri(),))
    assert sorted(str(r.version) for r in idx.releases("Foo")) == ["1.0", "2.0"]
    assert idx.project_files("nothing-here") == []


def test_unsupported_scheme():
    with pytest.raises(IndexAccessError, match="scheme"):
        SimpleIndex("ftp://x/simple").project_files("foo")


def test_json_content_detected(tmp_path):
    page = tmp_path / "simple" / "foo"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        json.dumps(
            {"files": [{"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz", "hashes": {}}]}
        )
    )
    assert [
        f.filename for f in SimpleIndex((tmp_path / "simple").as_uri()).project_files("foo")
    ] == ["foo-1.0.tar.gz"]


def test_links_keep_the_pages_scheme_family():
    html = ('<a href="file:///etc/x-1.0.tar.gz">local</a>'
            '<a href="ftp://h/y-1.0.tar.gz">ftp</a>'
            '<a href="https://cdn/z-1.0.tar.gz">web</a>'
            '<a href="http://cdn/w-1.0.tar.gz">web too</a>')
    refused: list[str] = []
    files = _parse_html_page(html, "https://idx/simple/p/", refused)
    assert [f.filename for f in files] == ["z-1.0.tar.gz", "w-1.0.tar.gz"]
    assert refused == ["file:///etc/x-1.0.tar.gz", "ftp://h/y-1.0.tar.gz"]
    data = {"files": [{"filename": "x-1.0.tar.gz", "url": "file:///etc/x-1.0.tar.gz"},
                      {"filename": "y-1.0.tar.gz", "url": "../../f/y-1.0.tar.gz"}]}
    assert [f.url for f in _parse_json_page(data, "http://idx/simple/p/")] == [
        "http://idx/f/y-1.0.tar.gz"]
    # a folder index may link local files, not web ones
    files = _parse_html_page('<a href="../../f/a-1.0.tar.gz">a</a><a href="https://h/b-1.0.tar.gz">'
                             'b</a>', "file:///srv/simple/p/index.html")
    assert [f.url for f in files] == ["file:///srv/f/a-1.0.tar.gz"]


def test_a_web_index_never_opens_local_files(tmp_path):
    src = tmp_path / "foo-1.0.tar.gz"
    src.write_bytes(b"x")
    with pytest.raises(IndexAccessError, match="no configured index is a file index"):
        SimpleIndex("https://idx.example/simple").download(
            DistFile("foo-1.0.tar.gz", src.as_uri(), ""), tmp_path / "dl")


class _Flaky:
    """An http server answering the first `fail` requests with `code`, then serving `body`."""

    def __init__(self, fail: int, code: int = 503, body: bytes = b""):
        import http.server
        import threading

        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests += 1
                if outer.requests <= fail:
                    self.send_response(code)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def quick_retries(monkeypatch):
    from refinery_lib import index

    monkeypatch.setattr(index, "RETRY_WAIT_INITIAL", 0.01)
    monkeypatch.setattr(index, "RETRY_WAIT_MAX", 0.02)


def test_a_brief_outage_is_retried(quick_retries):
    page = b'<a href="/f/foo-1.0.tar.gz#sha256=ab">foo-1.0.tar.gz</a>'
    flaky = _Flaky(fail=2, code=503, body=page)
    try:
        files = SimpleIndex(flaky.url).project_files("foo")
    finally:
        flaky.close()
    assert [f.filename for f in files] == ["foo-1.0.tar.gz"] and flaky.requests == 3


def test_an_index_that_does_not_answer_is_unreachable_not_empty(quick_retries):
    from refinery_lib.errors import IndexUnreachableError

    flaky = _Flaky(fail=99, code=500)
    idx = SimpleIndex(flaky.url)
    try:
        with pytest.raises(IndexUnreachableError, match="index-unreachable: .*/simple/foo/"):
            idx.project_files("foo")
    finally:
        flaky.close()
    assert flaky.requests == 4 and idx.unreachable_for("foo").startswith("index-unreachable")
    # a refused connection too, naming the URL
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(IndexUnreachableError, match=f"cannot reach http://127.0.0.1:{port}/"):
        SimpleIndex(f"http://127.0.0.1:{port}/simple").project_files("foo")


def test_not_found_is_not_retried(quick_retries):
    flaky = _Flaky(fail=99, code=404)
    try:
        assert SimpleIndex(flaky.url).project_files("foo") == []
    finally:
        flaky.close()
    assert flaky.requests == 1


def test_netrc_credentials_go_to_the_index_host_only(tmp_path, monkeypatch):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine idx.example login alice password s3cret-pw\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    auth = SimpleIndex("https://idx.example/simple", ("https://other.example/simple",))._auth()
    assert list(auth) == ["idx.example"]
    import base64

    assert auth["idx.example"]["Authorization"] == "Basic " + base64.b64encode(
        b"alice:s3cret-pw").decode()
