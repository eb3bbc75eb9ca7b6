"""The JSON APIs and the OpenAPI schema that documents them."""

from __future__ import annotations


def test_openapi_builds_and_lists_every_api(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path, method in [
        ("/api/top-failures", "get"), ("/api/top-slowest", "get"), ("/api/hints", "get"),
        ("/api/stats", "get"), ("/api/queue", "get"), ("/api/queue", "post"),
        ("/api/queue/{request_id}", "put"), ("/api/queue/{request_id}", "delete"),
        ("/api/queue/reorder", "post"), ("/api/worker/trigger", "post"),
        ("/api/worker/status", "get"), ("/api/session/token", "post"),
        ("/package/{name}/retry", "post"), ("/logs/{name}/{version}", "get"),
        ("/logs/{name}/{version}/stream", "get"), ("/logs/{name}/{version}/raw", "get"),
        ("/api/packages/{name}", "get"),
    ]:
        assert method in paths.get(path, {}), (path, method)
    retry = paths["/package/{name}/retry"]["post"]
    assert "application/json" in retry["requestBody"]["content"]
    assert "text/event-stream" in paths["/logs/{name}/{version}/stream"]["get"]["responses"]["200"][
        "content"]
    assert client.get("/docs").status_code == 200


def test_top_failures(client):
    data = client.get("/api/top-failures").json()
    assert data[0]["package"] == "broken" and data[0]["failures"] == 2
    assert {d["package"] for d in data} == {"broken", "evil-pkg"}
    assert len(client.get("/api/top-failures", params={"limit": 1}).json()) == 1
    assert client.get("/api/top-failures", params={"limit": 0}).status_code == 422


def test_top_slowest_has_average_and_failures(client):
    data = {d["package"]: d for d in client.get("/api/top-slowest").json()}
    assert list(data)[0] == "slowpoke"
    assert data["broken"]["avg_duration"] == 3.5 and data["broken"]["failures"] == 2
    assert data["cfast"]["failures"] == 0


def test_hints_api_searches(client):
    assert len(client.get("/api/hints").json()) == 3
    found = client.get("/api/hints", params={"q": "cargo"}).json()
    assert [h["id"] for h in found] == ["rust-toolchain"]
    assert found[0]["apt"] == ["rustc", "cargo"]
    assert client.get("/api/hints", params={"category": "ai-ml"}).json()[0]["dnf"] == [
        "openblas-devel"]


def test_stats(client):
    data = client.get("/api/stats").json()
    assert data["status_counts"]["failed"] == 3 and data["status_counts"]["built"] == 3
    assert data["events"] == sum(data["status_counts"].values())
    assert data["queue_depth"] == 0 and data["worker_mode"] == "none"
    rates = {r["package"]: r for r in data["failure_rate"]}
    assert rates["broken"]["rate"] == 1.0 and rates["cfast"]["rate"] == 0.0
    variants = {v["variant"]: v for v in data["variant_success"]}
    assert variants["isolated"]["attempts"] == 4 and variants["isolated"]["successes"] == 2
    assert {o["status"] for o in data["outcomes_over_time"]} >= {"built", "failed", "reused"}


def test_package_api(client):
    data = client.get("/api/packages/Broken").json()
    assert data["name"] == "broken" and data["summary"]["failed"] == 2
    assert data["failures"][0]["hints"][0]["id"] == "c-syntax-error"
    assert data["failures"][0]["log_url"] == "/logs/broken/0.1?attempt=2&variant=no-isolation"
    assert data["retry"]["recipe_steps"] == [["gcc", "--version"]]
    assert client.get("/api/packages/nothing-here").status_code == 404


def test_log_as_json(client):
    r = client.get("/logs/broken/0.1", headers={"Accept": "application/json"})
    data = r.json()
    assert [(f["attempt"], f["variant"]) for f in data["logs"]] == [
        (1, "isolated"), (2, "no-isolation")]
    assert data["text"].startswith("compiling")
    raw = client.get(data["logs"][0]["raw"])
    assert raw.headers["content-type"].startswith("text/plain")
    assert "this is not C" in raw.text


def test_the_packaged_hint_catalog_is_served(settings):
    from dataclasses import replace

    from tests.web.conftest import client_for

    client = client_for(replace(settings, hints_path=None))
    entries = client.get("/api/hints").json()
    assert len(entries) > 50 and "gcc-missing" in {e["id"] for e in entries}
    assert "gcc-missing" in client.get("/hints", params={"q": "gcc"}).text
