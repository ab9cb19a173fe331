"""Prometheus's own tools on what tasktrail ships: a live /metrics passes `promtool check metrics`; the rules
in deploy/prometheus pass `promtool check rules` and their unit tests (`promtool test rules`), where every
alert fires on a bad series and stays quiet on a good one and links to a tasktrail page; the example
scrape config passes `promtool check config`; the Grafana dashboard is provisioning-ready.
(tests/test_prometheus_live.py runs a real Prometheus against a live tasktrail.)"""
from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import PB, PROMTOOL, fixture_requests, require_prometheus_tools, start_server, wait_until

require_prometheus_tools()

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROM = DEPLOY / "prometheus"
ALERTS, RECORDING, UNIT_TESTS = PROM / "tasktrail-alerts.yml", PROM / "tasktrail-recording.yml", \
    PROM / "tests" / "tasktrail-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "tasktrail.json"

# Every label /metrics may carry: none holds an invocation id, each has a bounded set of values.
BOUNDED_LABELS = {"app", "status", "task", "kind", "runner", "state", "signal", "transport", "reason", "le",
                  "version", "public_url", "generation"}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60)


def alert_names() -> list[str]:
    return [r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_live_metrics_pass_promtool_and_carry_no_invocation_ids(server):
    """Every family of a busy /metrics: stored rustvello requests, a refused request, a runner with
    heartbeats, work stuck waiting (an anomaly that names its task)."""
    for sig, body in fixture_requests():
        assert httpx.post(f"{server.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
    assert httpx.post(f"{server.otlp_http}/v1/logs", content=b"\xff\xff", headers=PB).status_code == 400
    em = Emitter(f"http://{server.otlp_grpc}", "shop", Runner("r-1", "ThreadRunner"), token="tok123")
    stuck = str(uuid.uuid4())
    em.runner_started()
    em.heartbeat()
    em.status(stuck, "REGISTERED", task_id="shop.mail", timestamp=datetime.now(timezone.utc) - timedelta(hours=1))
    assert em.flush()
    em.shutdown()

    def families():
        fams = {f.name: f for f in text_string_to_metric_families(httpx.get(server.web + "/metrics").text)}
        subjects = fams.get("tasktrail_anomalies_by_subject")
        return fams if subjects and subjects.samples and "tasktrail_runner_last_heartbeat_timestamp_seconds" in fams \
            and fams["tasktrail_runner_last_heartbeat_timestamp_seconds"].samples else None
    fams = wait_until(families, timeout=30, interval=0.5, message="the stuck invocation and the heartbeat")
    text = httpx.get(server.web + "/metrics").text
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and checked.stdout == checked.stderr == "", checked.stdout + checked.stderr

    for name in ("tasktrail_info", "tasktrail_invocations", "tasktrail_status_transitions",
                 "tasktrail_invocations_finished", "tasktrail_task_duration_seconds", "tasktrail_runners",
                 "tasktrail_app_last_record_timestamp_seconds", "tasktrail_anomalies", "tasktrail_anomalies_by_subject",
                 "tasktrail_ingest_requests", "tasktrail_ingest_records", "tasktrail_ingest_rejected_requests",
                 "tasktrail_ingest_queue_records", "tasktrail_store_size_bytes", "tasktrail_store_batches_committed",
                 "tasktrail_store_failed_batches"):
        assert name in fams, name
        assert len(fams[name].documentation) > 20, (name, fams[name].documentation)  # HELP says what it counts
    assert [s.labels for s in fams["tasktrail_anomalies_by_subject"].samples] == [
        {"app": "shop", "kind": "pending_too_long", "task": "shop.mail", "runner": ""}]
    (info,) = fams["tasktrail_info"].samples
    assert info.labels["public_url"] == server.web and info.value == 1
    ids = {r[0] for r in httpx.post(server.api + "/sql", json={"sql": "select invocation_id from invocations"}
                                    ).json()["rows"]}
    assert stuck in ids and len(ids) > 5
    for fam in fams.values():
        for s in fam.samples:
            assert set(s.labels) <= BOUNDED_LABELS, (s.name, s.labels)
            assert not ids & set(s.labels.values()), (s.name, s.labels)


def test_rules_and_scrape_config_pass_promtool():
    r = promtool("check", "rules", str(ALERTS), str(RECORDING))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in r.stdout
    r = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_fires_on_bad_series_and_stays_quiet_on_good_ones():
    r = promtool("test", "rules", str(UNIT_TESTS))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    spec = yaml.safe_load(UNIT_TESTS.read_text())
    fired, quiet = {}, set()
    for t in spec["tests"]:
        for a in t.get("alert_rule_test", []):
            if a["exp_alerts"]:
                fired.setdefault(a["alertname"], []).extend(a["exp_alerts"])
            else:
                quiet.add(a["alertname"])
    names = alert_names()
    assert len(names) >= 10 and len(set(names)) == len(names)
    assert set(fired) == set(names), set(names) ^ set(fired)
    assert quiet == set(names), set(names) ^ quiet
    for name, alerts in fired.items():
        for a in alerts:
            ann = a["exp_annotations"]
            url = ann["tasktrail_url"]
            assert url.startswith(("https://tasktrail.example.com/", "http://tt:8000/")) and url in ann["description"]
            # It names what it is about: its app, task and runner, else the tasktrail instance.
            labels = a["exp_labels"]
            about = [labels[k] for k in ("app", "task", "runner") if labels.get(k)] or [labels["instance"]]
            assert all(v in ann["summary"] and v in ann["description"] for v in about), (name, about)


def test_recording_rules_cover_throughput_failure_rate_and_quantiles_per_task():
    rules = [r["record"] for g in yaml.safe_load(RECORDING.read_text())["groups"] for r in g["rules"]]
    assert {"app_task:tasktrail_invocations_finished:rate5m", "app_task:tasktrail_invocations_failed:ratio_rate5m",
            "app_task_quantile:tasktrail_task_duration_seconds:histogram_quantile_rate5m"} <= set(rules)
    tested = {e["expr"] for t in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for e in t.get("promql_expr_test", [])}
    assert all(any(r in e for e in tested) for r in rules if r.startswith("app_task")), tested


def test_dashboard_is_provisioning_ready_and_every_panel_links_to_tasktrail():
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["id"] is None and d["schemaVersion"] >= 36 and "__inputs" not in d
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "tasktrail_info" in variables["tasktrail_url"]["definition"]
    ds = {"type": "prometheus", "uid": "${datasource}"}
    titles = [p["title"] for p in d["panels"]]
    for wanted in ("Invocations by status", "Failure rate per task", "p95 duration per task", "Work in flight",
                   "Anomalies by kind", "Runners", "Ingest throughput", "Ingest refusals", "Store size"):
        assert any(t.startswith(wanted) for t in titles), (wanted, titles)
    for p in d["panels"]:
        assert p["datasource"] == ds and all(t["datasource"] == ds for t in p["targets"]), p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        assert p["links"] and all(link["url"].startswith("${tasktrail_url}/") for link in p["links"]), p["title"]
        for link in p["fieldConfig"]["defaults"].get("links", []):
            assert link["url"].startswith("${tasktrail_url}/"), p["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(set(ids)) == len(ids)


def test_public_url_is_the_served_address_unless_given(tmp_path):
    def info(srv):
        fams = {f.name: f for f in text_string_to_metric_families(httpx.get(srv.web + "/metrics").text)}
        return fams["tasktrail_info"].samples[0].labels
    srv = start_server(str(tmp_path / "a.duckdb"), "--public-url", "https://ops.example.com/tasktrail/")
    try:
        assert info(srv)["public_url"] == "https://ops.example.com/tasktrail"
        assert any("public URL  https://ops.example.com/tasktrail" in line for line in srv.output)
    finally:
        srv.stop()
    import sys
    bad = subprocess.run([sys.executable, "-m", "tasktrail", "serve", "--db", str(tmp_path / "b.duckdb"),
                          "--public-url", "ops.example.com"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "public_url must be an http:// or https:// URL" in bad.stderr
