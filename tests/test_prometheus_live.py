"""Debian's real Prometheus against a live tasktrail fed by a real rustvello 0.9 run.

Prometheus scrapes tasktrail every second and evaluates the shipped rules (deploy/prometheus) every second,
their `for:` cut to FOR seconds (a test cannot wait minutes; the expressions, labels and annotations are the
shipped ones). A rustvello worker process is killed (kill -9) while it runs a task: Prometheus's own
/api/v1/alerts shows TasktrailWorkOrphaned pending, then firing, naming the app, the task and the dead
runner, and its link opens the tasktrail page listing that invocation. Every Grafana dashboard panel's
expression then evaluates through Prometheus's query API and returns data, the dashboard's variables
resolve, and every panel's links open a tasktrail page.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml

from .helpers import PROMETHEUS, is_running, json_steps, require_prometheus_tools, start_server, wait_until

require_prometheus_tools()

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
APP = Path(__file__).with_name("rv_alerts_app.py")
DEAD_AFTER = 4.0
FOR = "4s"
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval gives for a 1 s scrape, and then some


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_rules_for_test(tmp: Path) -> list[Path]:
    """The shipped rule files, each `for:` cut to FOR and every group evaluated each second."""
    out = []
    for name in ("tasktrail-alerts.yml", "tasktrail-recording.yml"):
        spec = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
        for group in spec["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = FOR
        out.append(tmp / name)
        out[-1].write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def start_prometheus(tmp: Path, target: str) -> tuple[subprocess.Popen, str]:
    rules = shipped_rules_for_test(tmp)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
              "rule_files": [str(r) for r in rules],
              "scrape_configs": [{"job_name": "tasktrail", "static_configs": [{"targets": [target]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(url + "/-/ready", timeout=2).status_code == 200, timeout=30, interval=0.2,
               message="Prometheus to be ready")
    return proc, url


def _spawn(role, srv, db, *extra):
    err = open(db.parent / f"{role}.stderr", "w")
    return subprocess.Popen([sys.executable, str(APP), role, srv.otlp_http, "tok123", str(db), *extra],
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=db.parent)


def query(prom: str, expr: str) -> list[dict]:
    """An instant query through Prometheus's HTTP API; fails on any error it reports."""
    r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert r["status"] == "success", (expr, r)
    return r["data"]["result"]


def panel_expr(expr: str, instance: str) -> str:
    """A panel's expression as Grafana sends it for one tasktrail and every app."""
    return (expr.replace("$instance", instance).replace("$app", ".*").replace("$__rate_interval", RATE_INTERVAL))


def link_url(url: str, tasktrail_url: str, labels: dict) -> str:
    def label(m):
        return quote(labels[m.group(1)], safe="")
    url = re.sub(r"\$\{__field\.labels\.(\w+):percentencode\}", label, url)
    url = re.sub(r"\$\{__field\.labels\.(\w+)\}", lambda m: labels[m.group(1)], url)
    assert "$" not in url.replace("${tasktrail_url}", ""), url
    return url.replace("${tasktrail_url}", tasktrail_url)


@pytest.mark.slow
def test_killed_worker_fires_the_orphan_alert_and_every_dashboard_panel_has_data(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123",
                       "--runner-dead-after", str(DEAD_AFTER))
    target = srv.web.removeprefix("http://")
    db = tmp_path / "rv.db"
    prom = main = victim = None
    try:
        prom, prom_url = start_prometheus(tmp_path, target)
        main = _spawn("main", srv, db, "120")
        steps = json_steps(main)
        wait_until(lambda: "hang" in steps, timeout=60, message="the rustvello run to get going")
        victim = _spawn("victim", srv, db)  # after main made rustvello's tables
        hang = steps["hang"]["id"]
        wait_until(lambda: is_running(srv, hang), timeout=60, message="the victim to run the doomed task")
        task = srv.get(f"/invocations/{hang}").json()["task_id"]
        os.kill(victim.pid, signal.SIGKILL)  # mid-task: no worker.stopped, no outcome
        victim.wait(10)
        killed_at = time.monotonic()

        # Prometheus's own view of the alert: pending first, then firing (FOR later).
        seen: list[tuple[float, str]] = []

        def orphan_alert():
            alerts = httpx.get(prom_url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            mine = [a for a in alerts if a["labels"]["alertname"] == "TasktrailWorkOrphaned"
                    and a["labels"].get("task") == task]
            for a in mine:
                if not seen or seen[-1][1] != a["state"]:
                    seen.append((time.monotonic() - killed_at, a["state"]))
            return next((a for a in mine if a["state"] == "firing"), None)
        firing = wait_until(orphan_alert, timeout=DEAD_AFTER + 5 + 10 + 15, interval=0.25,
                            message="TasktrailWorkOrphaned to fire in Prometheus")
        assert [state for _, state in seen] == ["pending", "firing"], seen
        labels = firing["labels"]
        orphan = next(a for a in srv.get("/anomalies").json()["items"]
                      if a["kind"] == "orphaned" and a["invocation_id"] == hang)
        assert labels["app"] == "alerts" and labels["runner"] == orphan["runner_id"], labels
        assert labels["severity"] == "critical" and labels["job"] == "tasktrail" and labels["instance"] == target
        ann = firing["annotations"]
        assert ann["summary"] == f"1 invocation(s) of {task} orphaned by dead runner {orphan['runner_id']} (app alerts)"
        assert ann["tasktrail_url"] == f"{srv.web}/anomalies?kind=orphaned&app=alerts"
        assert ann["tasktrail_url"] in ann["description"] and "/runners/" in ann["description"]
        page = httpx.get(ann["tasktrail_url"], timeout=30)
        assert page.status_code == 200 and hang in page.text
        runner_link = re.search(r"(http://\S+/runners/\S+)", ann["description"]).group(1)
        assert httpx.get(runner_link, timeout=30).status_code == 200, runner_link

        # Every dashboard panel, as Grafana would ask for it.
        dash = json.loads((DEPLOY / "grafana" / "tasktrail.json").read_text())
        variables = {v["name"]: v for v in dash["templating"]["list"] if v["type"] == "query"}

        def label_values(definition: str) -> list[str]:
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
            r = httpx.get(f"{prom_url}/api/v1/label/{m.group(2)}/values",
                          params={"match[]": m.group(1).replace("$instance", target)}, timeout=10).json()
            assert r["status"] == "success", (definition, r)
            return r["data"]
        assert label_values(variables["instance"]["definition"]) == [target]
        assert label_values(variables["tasktrail_url"]["definition"]) == [srv.web]
        assert label_values(variables["app"]["definition"]) == ["alerts"]

        def results():
            out = {}
            for p in dash["panels"]:
                for t in p["targets"]:
                    res = query(prom_url, panel_expr(t["expr"], target))
                    if not any(math.isfinite(float(r["value"][1])) for r in res):
                        return None  # not yet: rates need a few scrapes of finished work
                    out[p["title"]] = res
            return out
        answers = wait_until(results, timeout=30, interval=1, message="every panel to return data")
        for p in dash["panels"]:
            res = answers[p["title"]]
            series = res[0]["metric"]
            for link in p["links"] + p["fieldConfig"]["defaults"].get("links", []):
                url = link_url(link["url"], srv.web, series)
                assert httpx.get(url, timeout=30).status_code == 200, (p["title"], url)
        by = lambda title, key: {r["metric"].get(key): float(r["value"][1]) for r in answers[title]}  # noqa: E731
        assert by("Anomalies by kind", "kind")["orphaned"] == 1
        assert by("Work in flight", "status")["RUNNING"] >= 1
        failure = {r["metric"]["task"]: float(r["value"][1]) for r in answers["Failure rate per task"]}
        assert any(t.endswith("flaky") and v == 1 for t, v in failure.items()), failure
        assert any(t.endswith("work") and v == 0 for t, v in failure.items()), failure
        assert by("Runners", "state").get("dead", 0) >= 1
        assert by("Store size", None)[None] > 0
        # The recording rules evaluate too.
        assert query(prom_url, "app_task:tasktrail_invocations_finished:rate5m")
        assert query(prom_url, 'app_task_quantile:tasktrail_task_duration_seconds:histogram_quantile_rate5m'
                               '{quantile="0.95"}')
    finally:
        for p in (victim, main):
            if p is not None and p.poll() is None:
                p.kill()
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(15)
            except subprocess.TimeoutExpired:
                prom.kill()
        srv.stop()
