"""docs/conventions.md stays true: its OTLP/JSON request, posted as is, gives the history it promises."""
import json
import re
from pathlib import Path

import httpx

DOC = Path(__file__).resolve().parents[1] / "docs" / "conventions.md"


def test_the_documented_otlp_json_request(server):
    body = re.search(r"```json\n(.*?)```", DOC.read_text(), re.S).group(1)
    json.loads(body)  # the doc's JSON is valid JSON
    r = httpx.post(server.otlp_http + "/v1/logs", content=body,
                   headers={"Content-Type": "application/json", "Authorization": "Bearer tok123"})
    assert r.status_code == 200, r.text
    hist = server.get("/invocations/inv-js-1/history").json()
    assert [(h["status"], h["worker_id"], h["runner_id"]) for h in hist] == [
        ("REGISTERED", "worker-1", "runner-1"), ("RUNNING", "worker-1", "runner-1"),
        ("SUCCESS", "worker-1", "runner-1")]
    assert [h["seq"] for h in hist] == sorted(h["seq"] for h in hist) and all(h["record_id"] for h in hist)
    # The documented record ids make a re-delivery (a retry, a collector's re-batch) count once.
    again = json.loads(body)
    again["resourceLogs"][0]["scopeLogs"][0]["logRecords"].reverse()
    r = httpx.post(server.otlp_http + "/v1/logs", json=again, headers={"Authorization": "Bearer tok123"})
    assert r.status_code == 200 and len(server.get("/invocations/inv-js-1/history").json()) == 3
    detail = server.get("/invocations/inv-js-1").json()
    assert len(detail["attempts"]) == 1
    assert (detail["task_id"], detail["arguments"], detail["result"]) == ("shop.send_invoice", '{"order": 7}', '"sent"')
    runners = {r["runner_id"]: r for r in server.get("/runners", params={"app": "shop"}).json()}
    assert runners["worker-1"]["parent_runner_id"] == "runner-1" and runners["worker-1"]["last_heartbeat"]
    assert server.get("/runners/worker-1").json()["heartbeats"][0]["consumed_queues"] == ["default"]


def test_the_documented_javascript_example_runs(tmp_path):
    """The doc's Node.js example, run with the OpenTelemetry JS SDK from npm, reaches tasktrail."""
    import os
    import shutil
    import subprocess

    from .helpers import start_server, wait_until

    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            raise RuntimeError("node and npm are needed for the JavaScript example")
        import pytest
        pytest.skip("node/npm not installed")
    cache = Path(__file__).resolve().parents[1] / "test-artifacts" / "js"
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "node_modules" / "@opentelemetry" / "sdk-logs").exists():
        (cache / "package.json").write_text('{"name": "tt-js-example", "private": true}')
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "@opentelemetry/api-logs@0.223",
                        "@opentelemetry/sdk-logs@0.223", "@opentelemetry/exporter-logs-otlp-http@0.223",
                        "@opentelemetry/resources@2"], cwd=cache, check=True, timeout=300)
    srv = start_server(str(tmp_path / "js.duckdb"))
    try:
        js = re.search(r"```js\n(.*?)```", DOC.read_text(), re.S).group(1)
        js = js.replace("http://127.0.0.1:4318", srv.otlp_http)
        (cache / "example.js").write_text(js)
        run = subprocess.run(["node", "example.js"], cwd=cache, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        hist = wait_until(lambda: srv.get("/invocations/inv-js-1/history").json()
                          if srv.get("/invocations/inv-js-1/history").status_code == 200 else None,
                          message="the JS example's invocation")
        assert [h["status"] for h in hist] == ["REGISTERED", "RUNNING", "SUCCESS"]
        assert srv.get("/runners/worker-1").json()["heartbeats"][0]["consumed_queues"] == ["default"]
    finally:
        srv.stop()
