"""Issue 18 in a real headless Chromium: the overview shows each app's configuration (component classes and
settings, with when they were reported), a runner's page its settings, a task's page its definition, with the
values a real pynenc 0.4 run held (read in the pynenc process) and the ones a non-pynenc runner sent."""
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import SHOTS, json_steps, require_chromium, require_python312, start_server, wait_until

require_chromium()
PY312 = require_python312()
pytest.importorskip("playwright.sync_api")
HERE = Path(__file__).parent
OTHER = Runner("celery@ui", "CeleryWorker", hostname="h9", pid=9)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui-config")
    srv = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123")
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{srv.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_BACKEND": "memory", "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([PY312, str(HERE / "pn_config_app.py")], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=open(work / "pn.stderr", "w"), text=True)
    steps = json_steps(proc)
    wait_until(lambda: "first" in steps or proc.poll() is not None, timeout=120, message="the pynenc run")
    assert "first" in steps, (work / "pn.stderr").read_text()[-3000:]
    (work / "go").touch()
    wait_until(lambda: "changed" in steps, timeout=30, message="the changed values")
    (work / "stop").touch()
    assert proc.wait(60) == 0
    held = steps["changed"]
    em = Emitter(f"http://{srv.otlp_grpc}", "celery-ui", OTHER, token="tok123")
    em.app_config({"worker_concurrency": 8, "broker_url": "redis://:pw@r:6379/0"}, components={"broker": "redis"})
    em.status("c-1", "REGISTERED", task_id="shop.ship")
    em.task_definition("shop.pack", {"label": "é" * 2_000_000, "max_retries": 2})  # a 4 MB option
    em.task_definition("only.defined", {"max_retries": 6})                         # never ran
    em.flush()
    em.shutdown()

    def arrived():
        apps = {a["app_id"]: a.get("config") for a in srv.get("/overview").json()["apps"]}
        cfg = apps.get(held["app_id"])
        return cfg and cfg["settings"]["logging_level"] == "debug" and apps.get("celery-ui")
    wait_until(arrived, timeout=30, message="both apps' config")
    yield srv, held
    srv.stop()


def _rows(page, selector: str) -> dict:
    return dict(page.eval_on_selector_all(selector, """els => els.map(e => [e.dataset.setting || e.dataset.component,
        e.querySelector('td').textContent.trim()])"""))


def test_overview_runner_and_task_pages_show_them(filled, browser):
    srv, held = filled
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(srv.web + "/")
    card = f'.app-config[data-app="{held["app_id"]}"]'
    assert _rows(page, f"{card} table.components tr") == held["components"]
    shown = _rows(page, f"{card} table.settings tr")
    s = held["settings"]
    assert shown == {"dev_mode_force_sync_tasks": "no", "logging_level": "debug", "log_format": s["log_format"],
                     "argument_print_mode": "keys",
                     "auto_final_invocation_purge_hours": str(s["auto_final_invocation_purge_hours"]),
                     "atomic_service_interval_minutes": "4.0", "runner_considered_dead_after_minutes": "3.0",
                     "max_pending_seconds": "7.5"}
    assert page.locator(f"{card} .reported time").count() == 1
    # A runner that is not pynenc: its own names, its secret masked.
    other = _rows(page, '.app-config[data-app="celery-ui"] table.settings tr')
    assert other == {"broker_url": "redis://:***@r:6379/0", "worker_concurrency": "8"}
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "config-overview.png"), full_page=True)

    page.goto(srv.web + f"/runners/{quote(held['runner']['id'], safe='')}")
    rs = _rows(page, ".runner-settings table.settings tr")
    r = held["runner"]["settings"]
    assert rs["runner_loop_sleep_time_sec"] == "0.02" and rs["min_threads"] == str(r["min_threads"]) \
        and rs["max_threads"] == str(r["max_threads"]) == "3"
    assert rs["atomic_service_check_interval_minutes"] == str(held["settings"]["atomic_service_check_interval_minutes"])
    assert page.locator(".runner-settings .reported time").count() == 1
    page.screenshot(path=str(SHOTS / "config-runner.png"), full_page=True)

    page.goto(srv.web + f"/tasks/pn_config_tasks.charge?app={held['app_id']}")
    opts = _rows(page, "#task-definition table.options tr")
    t = held["tasks"]["pn_config_tasks.charge"]
    assert opts["max_retries"] == "5" == str(t["max_retries"])
    assert opts["retry_for"] == ", ".join(t["retry_for"]) == "builtins.ValueError, builtins.KeyError"
    assert opts["key_arguments"] == "user" and opts["running_concurrency"] == "keys"
    assert opts["registration_concurrency"] == "arguments" and opts["parallel_batch_size"] == "7"
    assert opts["call_result_cache"] == "yes"
    assert page.locator("#task-figures").count() == 1  # beside its figures
    page.screenshot(path=str(SHOTS / "config-task.png"), full_page=True)
    page.goto(srv.web + "/tasks/shop.ship")
    assert "No runner has reported this task's options." in page.locator("#task-definition").inner_text()
    # A 4 MB option: a preview cut on a character, its size beside it, the page small.
    r = page.goto(srv.web + "/tasks/shop.pack")
    assert len(r.body()) < 60_000
    label = page.locator('#task-definition tr[data-setting="label"] td')
    preview = label.evaluate("td => td.firstChild.textContent")
    assert set(preview) == {"é"} and 4096 - 2 < len(preview.encode()) <= 4096
    assert label.locator(".cut").get_attribute("data-bytes") == str(len(("é" * 2_000_000).encode()))
    assert _rows(page, "#task-definition table.options tr")["max_retries"] == "2"
    assert page.locator('#task-definition tr[data-setting="max_retries"]').count() == 1  # shown once
    # A task known only by its definition: its page, zero counts.
    r = page.goto(srv.web + "/tasks/only.defined")
    assert r.status == 200 and _rows(page, "#task-definition table.options tr") == {"max_retries": "6"}
    page.close()
