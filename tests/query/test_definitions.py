"""query/definitions.py: the latest app configuration, runner settings and task definition reported, each
with the time of its report, read back through the service's overview, runner and task answers."""
import json

import pytest

from tasktrail.proto.emitter import Runner

from .common import NOW, ago, iso

RUNNER = Runner("cfg-r1", "ThreadRunner", hostname="h1", pid=10)
OTHER = Runner("cfg-r2", "PersistentProcessRunner", hostname="h2", pid=20)
FIRST = {"logging_level": "info", "dev_mode_force_sync_tasks": False, "redis_url": "redis://u:hunter2@h:6379/0"}
CHANGED = {**FIRST, "logging_level": "debug"}
COMPONENTS = {"broker": "RedisBroker", "orchestrator": "RedisOrchestrator"}
OPTIONS = {"max_retries": 3, "retry_for": ["builtins.ValueError"], "running_concurrency": "keys",
           "key_arguments": ["user"], "parallel_batch_size": 100, "call_result_cache": True}


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("cfg-app", RUNNER)
    em.runner_started(timestamp=ago(900))
    em.app_config(FIRST, components=COMPONENTS, timestamp=ago(900))
    em.app_config(CHANGED, components=COMPONENTS, timestamp=ago(300))       # a value changed: re-sent
    em.runner_config({"runner_loop_sleep_time_sec": 0.1, "min_threads": 1}, timestamp=ago(899))
    em.runner_config({"runner_loop_sleep_time_sec": 0.5, "min_threads": 2}, runner=OTHER, timestamp=ago(200))
    em.task_definition("mod.job", {**OPTIONS, "max_retries": 1}, timestamp=ago(898))
    em.task_definition("mod.job", OPTIONS, timestamp=ago(100))
    em.status("j-1", "REGISTERED", task_id="mod.job", timestamp=ago(97))
    em.status("j-1", "RUNNING", timestamp=ago(96))
    em.status("j-1", "SUCCESS", timestamp=ago(95))
    em.flush()
    em.shutdown()
    plain = local.emitter("plain-app", RUNNER)
    plain.status("p-1", "REGISTERED", task_id="mod.other", timestamp=ago(50))
    plain.shutdown()
    alone = local.emitter("config-only")
    alone.app_config({"x": 1}, timestamp=ago(40))
    alone.shutdown()
    return local.service(clock=lambda: NOW)


def _log(local, sql, params=()):
    return local.store.query(sql, params, timeout_s=10, max_rows=1000).rows


def test_overview_carries_each_apps_latest_config(qs, local):
    apps = {a["app_id"]: a for a in qs.overview()["apps"]}
    cfg = apps["cfg-app"]["config"]
    assert cfg["components"] == COMPONENTS
    assert cfg["settings"]["logging_level"] == "debug"             # the later report holds
    assert cfg["reported_at"] == iso(ago(300)) and cfg["reported_by"] == "cfg-r1"
    assert cfg["settings"]["redis_url"] == "redis://u:***@h:6379/0"  # masked before it was sent
    assert "hunter2" not in json.dumps(_log(local, "SELECT body FROM definitions"))
    assert apps["plain-app"]["config"] is None
    # an app that said nothing but its configuration is an app seen
    alone = apps["config-only"]
    assert alone["invocations"] == 0 and alone["config"]["settings"] == {"x": 1}
    # an app filter keeps every listed app's config
    assert {a["app_id"]: a["config"] is not None for a in qs.overview("cfg-app")["apps"]}["cfg-app"]


def test_runner_settings_and_time(qs):
    r = qs.runner("cfg-r1")
    assert r["settings"] == {"runner_loop_sleep_time_sec": 0.1, "min_threads": 1}
    assert r["settings_reported_at"] == iso(ago(899))
    assert r["app_config"]["settings"]["logging_level"] == "debug"
    other = qs.runner("cfg-r2")  # the record's runner context names a runner of its own
    assert other["settings"] == {"runner_loop_sleep_time_sec": 0.5, "min_threads": 2}
    assert other["runner_class"] == "PersistentProcessRunner"


def test_task_definition_is_the_latest_report(qs):
    d = qs.task("mod.job")["definition"]
    assert d["options"] == OPTIONS and d["reported_at"] == iso(ago(100)) and d["app_id"] == "cfg-app"
    assert qs.task("mod.other")["definition"] is None


def test_agrees_with_a_scan_of_the_log(qs, local):
    """The read model's answer is the latest row per (app, kind, subject) of the definitions table."""
    rows = _log(local, "SELECT app_id, kind, subject_id, body, ts FROM definitions WHERE app_id = 'cfg-app' "
                       "ORDER BY ts")
    last = {}
    for app_id, kind, subject, body, ts in rows:
        last[(app_id, kind, subject)] = json.loads(body)
    assert last[("cfg-app", "task", "mod.job")]["options"] == qs.task("mod.job")["definition"]["options"]
    assert last[("cfg-app", "runner", "cfg-r2")]["settings"] == qs.runner("cfg-r2")["settings"]
    assert len(rows) == 6


def test_bad_definitions_are_kept_raw(local):
    """A definition without its required JSON object is no definition: kept as a raw record, not lost."""
    em = local.emitter("bad-app", RUNNER)
    em._emit("tasktrail.task.definition", None, ago(10), {"tasktrail.task.id": "x.y",
                                                          "tasktrail.task.options": "not json"})
    em._emit("tasktrail.app.config", None, ago(10), {"tasktrail.app.settings": "[1, 2]"})
    em.shutdown()
    assert _log(local, "SELECT count(*) FROM definitions WHERE app_id = 'bad-app'") == [(0,)]
    kept = _log(local, "SELECT event_name FROM log_records WHERE app_id = 'bad-app' ORDER BY event_name")
    assert kept == [("tasktrail.app.config",), ("tasktrail.task.definition",)]


def test_retention_keeps_each_latest_report(tmp_path):
    """Retention removes old reports of a definition but never its latest, however old (store/retention.py)."""
    from tasktrail.store.retention import RetentionPolicy

    from ..helpers import LocalStore
    store = LocalStore(tmp_path / "r.duckdb")
    try:
        em = store.emitter("ret-app", RUNNER)
        for days, level in ((300, "info"), (200, "debug")):
            em.app_config({"logging_level": level}, timestamp=ago(days * 86400))
        em.task_definition("old.task", {"max_retries": 1}, timestamp=ago(250 * 86400))
        em.task_definition("new.task", {"max_retries": 1}, timestamp=ago(300 * 86400))
        em.task_definition("new.task", {"max_retries": 2}, timestamp=ago(10))
        em.shutdown()
        store.store._con.execute("UPDATE ingest_ledger SET received_at = received_at - INTERVAL 400 DAY")
        store.store.retain(RetentionPolicy(90, 150, 100))
        rows = _log(store, "SELECT kind, subject_id, body FROM definitions ORDER BY kind, subject_id")
        assert [(k, s, json.loads(b)) for k, s, b in rows] == [
            ("app", "ret-app", {"components": {}, "settings": {"logging_level": "debug"}}),
            ("task", "new.task", {"options": {"max_retries": 2}}),
            ("task", "old.task", {"options": {"max_retries": 1}})]
    finally:
        store.close()
