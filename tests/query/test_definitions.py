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


# --- issue 18 review: huge values, masking on read, tasks known by their definition, components alone ---
def _raw(local, app: str, records: list) -> None:
    """Store OTLP/JSON log records of `app` as any runner would send them (no emitter, so nothing masked)."""
    from ..helpers import json_kv
    local.send("logs", {"resourceLogs": [{"resource": {"attributes": [json_kv("service.namespace", app)]},
                                          "scopeLogs": [{"scope": {"name": "tasktrail"}, "logRecords": records}]}]})


def _record(event: str, attrs: dict, seconds_ago: float = 30) -> dict:
    from ..helpers import json_kv
    ts = int(ago(seconds_ago).timestamp() * 1e9)
    return {"timeUnixNano": str(ts), "eventName": event,
            "attributes": [{"key": k, "value": v} if isinstance(v, dict) else json_kv(k, v) for k, v in attrs.items()]}


def _kv(d: dict) -> dict:
    from ..helpers import json_kv
    return {"kvlistValue": {"values": [{"key": k, "value": v} if isinstance(v, dict) else json_kv(k, v)
                                       for k, v in d.items()]}}


@pytest.fixture
def fresh(tmp_path):
    from ..helpers import LocalStore
    store = LocalStore(tmp_path / "d.duckdb")
    yield store
    store.close()


def test_huge_values_are_previews_cut_on_a_character(fresh):
    """A 3 MB setting and a 5 MB option: each answer carries a preview of --preview-bytes, cut on a character
    boundary, with the whole size (compared with DuckDB's own strlen of the stored value)."""
    from tasktrail.query.values import PreviewLimits
    em = fresh.emitter("big-app", Runner("r-1", "ThreadRunner"))
    em.app_config({"blob": "€" * 1_000_000, "logging_level": "info"}, components={"broker": "RedisBroker"},
                  timestamp=ago(60))
    em.runner_config({"blob": "z" * 3_000_000, "min_threads": 2}, timestamp=ago(60))
    em.task_definition("shop.ship", {"blob": "y" * 5_000_000, "max_retries": 3}, timestamp=ago(60))
    em.status("s-1", "REGISTERED", task_id="shop.ship", timestamp=ago(50))
    em.shutdown()
    sizes = {k: _log(fresh, f"SELECT strlen(json_extract_string(body, '$.{sec}.blob')) FROM definitions "
                            f"WHERE kind = '{k}'")[0][0] for k, sec in (("app", "settings"), ("runner", "settings"),
                                                                         ("task", "options"))}
    assert sizes == {"app": 3_000_000, "runner": 3_000_000, "task": 5_000_000}
    for limit in (4096, 100):
        qs = fresh.service(clock=lambda: NOW, previews=PreviewLimits(value_bytes=limit))
        overview, runner, task = qs.overview(), qs.runner("r-1"), qs.task("shop.ship")
        for answer in (overview, runner, task):
            assert len(json.dumps(answer)) < 12 * limit + 20_000  # no answer carries a whole value
        cfg = {a["app_id"]: a for a in overview["apps"]}["big-app"]["config"]
        for got, values, key, kind, whole in (
                (cfg["settings"], cfg["values"], "settings.blob", "app", "€"),
                (runner["settings"], runner["settings_values"], "settings.blob", "runner", "z"),
                (runner["app_config"]["settings"], runner["app_config"]["values"], "settings.blob", "app", "€"),
                (task["definition"]["options"], task["definition"]["values"], "options.blob", "task", "y")):
            preview = got["blob"]
            shown = len(preview.encode("utf-8"))
            assert limit - len(whole.encode()) < shown <= limit and set(preview) == {whole}  # whole characters
            assert values == {key: {"bytes": sizes[kind], "preview_bytes": shown, "truncated": True, "url": None}}
        assert cfg["settings"]["logging_level"] == "info" and cfg["components"] == {"broker": "RedisBroker"}
        assert runner["settings"]["min_threads"] == 2 and task["definition"]["options"]["max_retries"] == 3


SECRETS = ("RawPass1", "RawPass2", "RawPass3", "RawPass4", "RawPass5", "RawPass6", "RawPass7")


def test_secrets_sent_raw_never_leave_the_server(fresh):
    """A runner that does not mask (plain OTLP, kvlists, nested kvlists, arrays) and a row stored raw before
    tasktrail masked at ingest: no answer and no SQL read of the table shows a secret."""
    settings = json.dumps({"broker_url": "redis://u:RawPass1@h/0", "password": "RawPass2", "workers": 4})
    _raw(fresh, "raw-app", [
        _record("tasktrail.app.config", {"tasktrail.app.settings": settings}),
        _record("tasktrail.runner.config", {
            "tasktrail.runner.id": "raw-r", "tasktrail.runner.class": "RustWorker",
            "tasktrail.runner.settings": _kv({"secret_key": "RawPass3", "pool": "threads",
                                              "db": _kv({"password": "RawPass4", "host": "db"}),
                                              "brokers": {"arrayValue": {"values": [
                                                  {"stringValue": "amqp://g:RawPass5@r//"}]}}})}),
        _record("tasktrail.task.definition", {"tasktrail.task.id": "raw.task", "tasktrail.task.options": _kv(
            {"dsn": "host=db password=RawPass6 user=u", "hook": "https://h/x?token=RawPass7&a=1"})})])
    qs = fresh.service(clock=lambda: NOW)
    cfg = {a["app_id"]: a for a in qs.overview()["apps"]}["raw-app"]["config"]
    assert cfg["settings"] == {"broker_url": "redis://u:***@h/0", "password": "***", "workers": 4}
    r = qs.runner("raw-r")
    assert r["settings"] == {"secret_key": "***", "pool": "threads", "db": {"password": "***", "host": "db"},
                             "brokers": ["amqp://g:***@r//"]}
    d = qs.task("raw.task")["definition"]
    assert d["options"] == {"dsn": "host=db password=*** user=u", "hook": "https://h/x?token=***&a=1"}
    stored = json.dumps(_log(fresh, "SELECT body FROM definitions"))
    assert not [s for s in SECRETS if s in stored]  # masked at ingest: SQL shows none either
    # a row stored raw (before ingest masked): masked when read
    fresh.store._con.execute("""UPDATE definitions SET body = '{"options": {"pwd": "RawPass8", "n": 1, '
                                '"url": "redis://u:p@ss@RawHost/0"}}' WHERE subject_id = 'raw.task'""")
    d = fresh.service(clock=lambda: NOW).task("raw.task")["definition"]
    assert d["options"] == {"pwd": "***", "n": 1, "url": "redis://u:***@RawHost/0"}


def test_a_task_known_only_by_its_definition(fresh):
    """A task that only reported its definition, and one whose invocations retention removed, answer zero
    counts and the definition; a task neither ran nor defined stays 404."""
    from tasktrail.query.errors import NotFound
    from tasktrail.store.retention import RetentionPolicy
    em = fresh.emitter("def-app", RUNNER)
    em.task_definition("only.defined", {"max_retries": 2}, timestamp=ago(60))
    em.task_definition("ran.long.ago", {"max_retries": 4}, timestamp=ago(400 * 86400))
    em.status("old-1", "REGISTERED", task_id="ran.long.ago", timestamp=ago(400 * 86400))
    em.status("old-1", "SUCCESS", timestamp=ago(400 * 86400 - 1))
    em.shutdown()
    fresh.store._con.execute("UPDATE ingest_ledger SET received_at = received_at - INTERVAL 400 DAY")
    fresh.store.retain(RetentionPolicy(90, 150, 100))
    assert _log(fresh, "SELECT count(*) FROM transitions WHERE invocation_id = 'old-1'") == [(0,)]
    qs = fresh.service(clock=lambda: NOW)
    for task_id, retries in (("only.defined", 2), ("ran.long.ago", 4)):
        t = qs.task(task_id)
        assert t["invocations"] == 0 and t["counts_by_status"] == {} and t["recent"] == []
        assert t["definition"]["options"] == {"max_retries": retries} and t["apps"] == ["def-app"]
    with pytest.raises(NotFound):
        qs.task("never.seen")


def test_app_components_alone_are_a_configuration(fresh):
    """An app config with components and no settings is kept (settings {}); one with neither stays raw."""
    _raw(fresh, "comp-app", [_record("tasktrail.app.config", {"tasktrail.app.components": _kv({"broker": "amqp"})})])
    _raw(fresh, "none-app", [_record("tasktrail.app.config", {"tasktrail.runner.id": "x"})])
    cfg = {a["app_id"]: a for a in fresh.service(clock=lambda: NOW).overview()["apps"]}["comp-app"]["config"]
    assert cfg["components"] == {"broker": "amqp"} and cfg["settings"] == {}
    assert _log(fresh, "SELECT count(*) FROM definitions WHERE app_id = 'none-app'") == [(0,)]
    assert _log(fresh, "SELECT count(*) FROM log_records WHERE app_id = 'none-app'") == [(1,)]
