"""A real pynenc 0.4 app (Python 3.12, memory and SQLite backends) with tasktrail's exporter: the app's
configuration, its runner's settings and its tasks' definitions appear in tasktrail's API with the values
pynenc itself holds (app.conf, the orchestrator's conf, runner.conf, task.conf read in the pynenc process),
and a value changed in the running process is sent again."""
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from .helpers import json_steps, require_python312, sql, start_server, wait_until

PY312 = require_python312()
HERE = Path(__file__).parent


def _config(srv, app_id):
    apps = {a["app_id"]: a for a in srv.get("/overview").json()["apps"]}
    return (apps.get(app_id) or {}).get("config")


def _shown(srv, held: dict):
    """(app config, runner answer, {task: definition}) as tasktrail's API shows them."""
    runner = srv.get(f"/runners/{quote(held['runner']['id'], safe='')}")
    tasks = {t: srv.get(f"/tasks/{quote(t, safe='')}", params={"app": held["app_id"]}) for t in held["tasks"]}
    return (_config(srv, held["app_id"]), runner.json() if runner.status_code == 200 else {},
            {t: r.json().get("definition") if r.status_code == 200 else None for t, r in tasks.items()})


def _equal(srv, held: dict):
    cfg, runner, tasks = _shown(srv, held)
    same = (cfg and cfg["components"] == held["components"] and cfg["settings"] == held["settings"]
            and runner.get("settings") == held["runner"]["settings"]
            and all(d and d["options"] == held["tasks"][t] for t, d in tasks.items()))
    return (cfg, runner, tasks) if same else None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_pynenc_config_runner_settings_and_task_definitions(tmp_path, backend):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123")
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{srv.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_BACKEND": backend, "PN_DB": str(tmp_path / "pn.sqlite"), "PYTHONPATH": str(HERE)}
    err = open(tmp_path / "pn.stderr", "w")
    proc = subprocess.Popen([PY312, str(HERE / "pn_config_app.py")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    steps = json_steps(proc)
    try:
        wait_until(lambda: "first" in steps or proc.poll() is not None, timeout=120, message="the pynenc run")
        assert "first" in steps, (tmp_path / "pn.stderr").read_text()[-3000:]
        held = steps["first"]
        # What the builder set is what pynenc holds (so the comparison below is about something).
        assert held["settings"]["logging_level"] == "warning" and held["settings"]["argument_print_mode"] == "keys"
        assert held["components"]["state_backend"] == ("SQLiteStateBackend" if backend == "sqlite"
                                                       else "MemStateBackend")
        cfg, runner, tasks = wait_until(lambda: _equal(srv, held), timeout=30,
                                        message=f"pynenc's config in tasktrail: {_shown(srv, held)}")
        assert runner["runner_class"] == "ThreadRunner" and runner["settings"]["max_threads"] == 3
        assert runner["settings_reported_at"] and cfg["reported_at"]
        assert runner["app_config"]["settings"]["max_pending_seconds"] == 7.5
        charge = tasks["pn_config_tasks.charge"]["options"]
        assert charge["retry_for"] == ["builtins.ValueError", "builtins.KeyError"]
        assert charge["key_arguments"] == ["user"]
        assert charge["running_concurrency"] == "keys" and charge["call_result_cache"] is True

        (tmp_path / "go").touch()  # the pynenc process changes one value of each
        wait_until(lambda: "changed" in steps, timeout=30, message="the values changed")
        changed = steps["changed"]
        assert changed["settings"]["logging_level"] == "debug" and changed["runner"]["settings"][
            "runner_loop_sleep_time_sec"] == 0.02 and changed["tasks"]["pn_config_tasks.charge"]["max_retries"] == 5
        cfg2, runner2, tasks2 = wait_until(lambda: _equal(srv, changed), timeout=30,
                                           message=f"the changed values in tasktrail: {_shown(srv, changed)}")
        assert cfg2["reported_at"] > cfg["reported_at"]
        assert runner2["settings_reported_at"] > runner["settings_reported_at"]
        assert tasks2["pn_config_tasks.plain"] == tasks["pn_config_tasks.plain"]  # unchanged: not re-sent
        # Sent once at start and once per change, not at every look (the store keeps a row per report).
        reports = dict(((k, s), n) for k, s, n in sql(srv, f"""
            SELECT kind, subject_id, count(*) FROM definitions WHERE app_id = '{held["app_id"]}' GROUP BY ALL"""))
        want = {("app", held["app_id"]): 2, ("runner", held["runner"]["id"]): 2,
                ("task", "pn_config_tasks.charge"): 2, ("task", "pn_config_tasks.plain"): 1}
        assert {k: reports.get(k) for k in want} == want, reports
        # pynenc's own tasks (its recovery services, when the atomic service ran them): sent once each
        assert all(n == 1 and k[1].startswith("pynenc.") for k, n in reports.items() if k not in want), reports
        (tmp_path / "stop").touch()
        assert proc.wait(60) == 0, (tmp_path / "pn.stderr").read_text()[-3000:]
        assert steps["done"]["stats"]["errors"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()
