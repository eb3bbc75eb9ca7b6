"""Tokens, path traversal, validation of names and versions, escaping of stranger's text."""

from __future__ import annotations

import pytest

from refinery_lib.retry_queue import RetryQueue, RetryRequest
from tests.web.conftest import TOKEN, XSS, client_for

GUARDED = [
    ("get", "/api/queue", None),
    ("post", "/api/queue", {"name": "cfast"}),
    ("put", "/api/queue/{id}", {"recipe_steps": [["evil"]]}),
    ("delete", "/api/queue/{id}", None),
    ("post", "/api/queue/reorder", {"ids": []}),
    ("post", "/package/broken/retry", {}),
    ("post", "/api/worker/trigger", None),
    ("get", "/api/worker/status", None),
]


@pytest.fixture
def guarded(token_settings):
    queued = RetryQueue(token_settings.queue_path).add(RetryRequest("cdep", "0.5"))
    return client_for(token_settings), queued


def _call(client, method, url, body, **kw):
    return client.request(method.upper(), url, json=body, **kw)


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"X-Worker-Token": TOKEN + "x"}, 403)],
                         ids=["missing-token", "wrong-token"])
@pytest.mark.parametrize(("method", "url", "body"), GUARDED)
def test_missing_or_wrong_token_is_refused_and_changes_nothing(guarded, token_settings, method,
                                                                url, body, headers, status):
    client, queued = guarded
    before = token_settings.queue_path.read_bytes()
    r = _call(client, method, url.format(id=queued.id), body, headers=headers)
    assert r.status_code == status
    assert token_settings.queue_path.read_bytes() == before


@pytest.mark.parametrize(("method", "url", "body"), GUARDED)
def test_token_in_url_or_forged_cookie_is_not_accepted(guarded, token_settings, method, url,
                                                       body):
    """?token= (even the right one) and cookies that hold no live session are no credential."""
    client, queued = guarded
    before = token_settings.queue_path.read_bytes()
    for cookie in (None, TOKEN, "x" * 43):
        client.cookies.clear()
        if cookie:
            client.cookies.set("refinery_session", cookie)
            client.cookies.set("worker_token", cookie)  # a cookie holding the raw token
        r = _call(client, method, url.format(id=queued.id), body, params={"token": TOKEN})
        assert r.status_code == 401, cookie
    assert token_settings.queue_path.read_bytes() == before


def test_token_by_header_or_session(guarded):
    client, _ = guarded
    assert client.get("/api/queue", headers={"X-Worker-Token": TOKEN}).json()["length"] == 1
    assert client.get("/api/queue", params={"token": TOKEN}).status_code == 401
    assert client.post("/api/session/token", json={"token": TOKEN}).status_code == 200
    assert client.get("/api/queue").json()["length"] == 1


def test_session_token_sets_a_strict_httponly_cookie_without_the_token(guarded):
    client, _ = guarded
    r = client.post("/api/session/token", headers={"X-Worker-Token": "nope"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert client.post("/api/session/token", params={"token": TOKEN}).status_code == 401
    assert client.post("/api/session/token").status_code == 401
    r = client.post("/api/session/token", headers={"X-Worker-Token": TOKEN})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("refinery_session=") and TOKEN not in cookie
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "secure" not in lowered
    # the client keeps the cookie: the queue answers now, as in a browser
    assert client.get("/api/queue").status_code == 200
    assert client.delete("/api/session/token").status_code == 200
    assert client.get("/api/queue").status_code == 401


def test_without_worker_token_everything_is_open(client):
    assert client.get("/api/queue").status_code == 200
    r = client.post("/api/session/token")
    assert r.json() == {"ok": True, "auth_required": False}


def test_queue_page_hides_requests_without_token(guarded):
    client, queued = guarded
    page = client.get("/queue").text
    assert queued.id not in page and "unlock" in page.lower()
    assert queued.id in client.get("/queue", headers={"X-Worker-Token": TOKEN}).text


@pytest.mark.parametrize("url", [
    "/logs/..%2F..%2Fetc/passwd",
    "/logs/%2e%2e/%2e%2e",
    "/logs/..%2f..%2f..%2fetc%2fpasswd/1.0",
    "/logs/broken/..%2F..%2F..%2Fetc%2Fpasswd",
    "/logs/broken/0.1%2F..%2F..%2Fhistory.db",
    "/logs/broken/0.1/raw?variant=..%2F..%2Fhistory.db",
    "/logs/broken/0.1/raw?variant=isolated%2F..%2F..%2Fhistory",
    "/logs/%2Fetc%2Fpasswd/1.0/raw",
    "/logs/broken/..%252F..%252Fhistory.db/raw",
    "/logs/broken/0.1/stream?variant=..%2F..%2F..%2Fetc%2Fpasswd&idle=0.1",
    "/logs/..%5C..%5Cetc/1.0",
    "/static/..%2F..%2Frefinery_lib%2Fqueue.py",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
])
def test_no_url_reads_outside_the_logs_folder(client, url):
    r = client.get(url)
    assert r.status_code in (400, 404, 422), (url, r.status_code)
    assert "root:" not in r.text and "SQLite format" not in r.text
    assert "QueueError" not in r.text and "[project]" not in r.text


def test_symlinked_log_pointing_outside_is_refused(client, settings, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (settings.logs_dir / "cfast-1.0-attempt9-isolated.log").symlink_to(secret)
    r = client.get("/logs/cfast/1.0/raw", params={"attempt": 9})
    assert r.status_code == 404 and "top secret" not in r.text


def test_script_tags_from_metadata_and_logs_are_escaped(client):
    for url in ("/", "/package/evil-pkg", "/logs/evil-pkg/6.6"):
        page = client.get(url).text
        assert XSS not in page, url
        assert "&lt;script&gt;alert(" in page, url
    # JSON stays JSON; the API is not HTML
    api = client.get("/api/packages/evil-pkg").json()
    assert api["failures"][0]["hints"][0]["id"] == XSS


def test_script_tags_in_queued_notes_are_escaped(client, settings):
    RetryQueue(settings.queue_path).add(RetryRequest("cfast", note=XSS,
                                                     recipe_steps=[["echo", XSS]]))
    page = client.get("/queue").text
    assert XSS not in page and "&lt;script&gt;" in page


def test_pages_send_a_strict_content_security_policy(client):
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
    assert client.get("/").headers["x-content-type-options"] == "nosniff"


def test_invalid_names_and_versions_are_400(client):
    assert client.get("/package/-bad-").status_code == 400
    assert client.get("/package/a%20b").status_code == 400
    assert client.get("/logs/cfast/not-a-version").status_code == 400
    assert client.post("/package/..%2e/retry", json={}).status_code in (400, 404)
    r = client.post("/package/cfast/retry", json={"version": "1.0 && reboot"})
    assert r.status_code == 422
    r = client.post("/api/queue", json={"name": "x", "recipe_steps": "rm -rf /"})
    assert r.status_code == 422
    r = client.post("/api/queue", json={"name": "x", "unknown": 1})
    assert r.status_code == 422
    assert client.put("/api/queue/not-an-id", json={}).status_code == 422
