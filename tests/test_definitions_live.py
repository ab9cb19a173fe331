"""A runner that is not pynenc (any Python runner: Celery, rustvello's Python side, a home-grown loop) sends
the same definitions through the tasktrail.v1 emitter over a real OTLP socket, and any other runner as plain
OTLP/JSON with the settings as a kvlist: tasktrail shows them as it shows pynenc's."""
import json
import time
from urllib.parse import quote

import httpx
import pytest

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import json_kv, sql, wait_until

APP_SETTINGS = {"worker_prefetch_multiplier": 4, "task_acks_late": True, "timezone": "UTC",
                "broker_url": "amqp://guest:s3cret@rabbit:5672//", "result_backend_token": "abc"}
COMPONENTS = {"broker": "amqp", "state_backend": "redis", "serializer": "json", "runner": "prefork"}
RUNNER_SETTINGS = {"concurrency": 8, "pool": "prefork", "max_tasks_per_child": 100}
OPTIONS = {"max_retries": 5, "retry_for": ["shop.errors.Declined"], "rate_limit": "10/m", "acks_late": True}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_python_runner_sends_definitions_through_the_emitter(server, protocol):
    endpoint = f"http://{server.otlp_grpc}" if protocol == "grpc" else server.otlp_http
    app = f"celeryish-{protocol.split('/')[0]}"
    runner = Runner("celery@h1", "CeleryWorker", hostname="h1", pid=4242)
    em = Emitter(endpoint=endpoint, app_id=app, runner=runner, protocol=protocol, token="tok123")
    em.runner_started()
    em.app_config(APP_SETTINGS, components=COMPONENTS)
    em.runner_config(RUNNER_SETTINGS)
    em.task_definition("shop.pay", OPTIONS)
    em.status("pay-1", "REGISTERED", task_id="shop.pay")
    em.flush()
    em.shutdown()

    def config():
        items = {a["app_id"]: a for a in server.get("/overview").json()["apps"]}
        return (items.get(app) or {}).get("config")
    cfg = wait_until(config, timeout=15, message="the app config")
    masked = {**APP_SETTINGS, "broker_url": "amqp://guest:***@rabbit:5672//", "result_backend_token": "***"}
    assert cfg["components"] == COMPONENTS and cfg["settings"] == masked and cfg["reported_by"] == "celery@h1"
    r = server.get(f"/runners/{quote('celery@h1', safe='')}", params={"app": app}).json()
    assert r["settings"] == RUNNER_SETTINGS and r["settings_reported_at"] and r["runner_class"] == "CeleryWorker"
    d = wait_until(lambda: server.get("/tasks/shop.pay", params={"app": app}).json().get("definition"),
                   timeout=15, message="the task definition")
    assert d["options"] == OPTIONS and d["app_id"] == app
    assert "s3cret" not in str(sql(server, "SELECT body FROM definitions"))


def test_any_runner_sends_definitions_as_otlp_json(server):
    """A runner with no Python (an OTel SDK in Rust, Go, …): settings as an OTLP kvlist, sent twice (a
    retried request): stored once, shown as sent."""
    now = time.time_ns()
    kvlist = {"kvlistValue": {"values": [json_kv("concurrency", 3), json_kv("loop_sleep_s", 0.5)]}}
    record = {"timeUnixNano": str(now), "eventName": "tasktrail.runner.config",
              "attributes": [{"key": "tasktrail.runner.settings", "value": kvlist},
                             json_kv("tasktrail.runner.id", "rv-worker-1"),
                             json_kv("tasktrail.runner.class", "RustWorker"),
                             json_kv("tasktrail.record.id", "rv-cfg-1")]}
    body = {"resourceLogs": [{"resource": {"attributes": [json_kv("service.namespace", "rv-app")]},
                              "scopeLogs": [{"scope": {"name": "tasktrail"}, "logRecords": [record]}]}]}
    for _ in range(2):
        r = httpx.post(server.otlp_http + "/v1/logs", json=body, headers={"authorization": "Bearer tok123"})
        assert r.status_code == 200, r.text
    got = wait_until(lambda: server.get("/runners/rv-worker-1").json().get("settings"), timeout=15,
                     message="the runner settings")
    assert got == {"concurrency": 3, "loop_sleep_s": 0.5}
    assert sql(server, "SELECT count(*) FROM definitions WHERE subject_id = 'rv-worker-1'") == [[1]]


def test_masking_rules():
    from tasktrail.proto.masking import mask
    got = mask({"redis_url": "redis://u:pw@h:6379/0", "password": "x", "token": "", "api_key": "k",
                "max_tokens": 5, "auth_enabled": True, "bypass_cache": "y", "plain_url": "http://h/x",
                "nested": {"client_secret": "s", "dsn": "postgresql://a:b@c/d"}, "urls": ["amqp://g:p@r//"]})
    assert got == {"redis_url": "redis://u:***@h:6379/0", "password": "***", "token": "", "api_key": "***",
                   "max_tokens": 5, "auth_enabled": True, "bypass_cache": "y", "plain_url": "http://h/x",
                   "nested": {"client_secret": "***", "dsn": "postgresql://a:***@c/d"}, "urls": ["amqp://g:***@r//"]}


def test_masking_rules_for_harder_secrets():
    """Passwords holding @ or /, query-string and libpq parameters, numbers and bytes under secret names."""
    from tasktrail.proto.masking import mask
    got = mask({"a": "redis://u:p@ss@host/0", "b": "redis://u:pa/ss@h/0", "c": "http://h/x?password=X&y=1",
                "d": "host=db password=X user=u", "e": "https://h/?token=T&key=K&api_key=Z&page=2",
                "f": "http://u:p@h/path?email=a@b.com", "g": "http://host/x@y", "password": 12345,
                "pin_token": 7, "max_tokens": 5, "token_ttl": 300, "pwd": "x", "passwd": "y", "secret": b"zz",
                "dsn": b"redis://u:pw@h/0", "h": "host=db password='a b' x=1"})
    assert got == {"a": "redis://u:***@host/0", "b": "redis://u:***@h/0", "c": "http://h/x?password=***&y=1",
                   "d": "host=db password=*** user=u", "e": "https://h/?token=***&key=***&api_key=***&page=2",
                   "f": "http://u:***@h/path?email=a@b.com", "g": "http://host/x@y", "password": "***",
                   "pin_token": "***", "max_tokens": 5, "token_ttl": 300, "pwd": "***", "passwd": "***",
                   "secret": "***", "dsn": "redis://u:***@h/0", "h": "host=db password=*** x=1"}


def test_pages_carry_previews_and_no_secret(server):
    """Over a real server: megabyte values make neither the pages nor their JSON twins big, a secret sent raw
    (plain OTLP/JSON) shows on no page and in no answer, and a task known only by its definition answers 200."""
    em = Emitter(server.otlp_http, "big-app", Runner("r-1", "ThreadRunner"), protocol="http/protobuf", token="tok123")
    em.runner_started()
    em.app_config({"blob": "z" * 3_000_000, "level": "info"})
    em.runner_config({"blob": "x" * 1_000_000})
    em.task_definition("shop.ship", {"blob": "y" * 5_000_000})
    em.task_definition("only.defined", {"max_retries": 2})
    em.flush()
    em.shutdown()
    raw = json.dumps({"broker_url": "redis://u:RawPass1@h/0", "password": "RawPass2"})
    record = {"timeUnixNano": str(time.time_ns()), "eventName": "tasktrail.app.config",
              "attributes": [json_kv("tasktrail.app.settings", raw)]}
    body = {"resourceLogs": [{"resource": {"attributes": [json_kv("service.namespace", "raw-app")]},
                              "scopeLogs": [{"scope": {"name": "tasktrail"}, "logRecords": [record]}]}]}
    assert httpx.post(server.otlp_http + "/v1/logs", json=body, headers={"authorization": "Bearer tok123"}).is_success
    wait_until(lambda: len(sql(server, "SELECT * FROM definitions")) == 5, timeout=20, message="the definitions")
    for path in ("/", "/runners/r-1", "/tasks/shop.ship", "/tasks/only.defined", "/api/v1/overview",
                 "/api/v1/runners/r-1", "/api/v1/tasks/shop.ship", "/api/v1/tasks/only.defined"):
        r = httpx.get(server.web + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code)
        assert len(r.content) < 100_000, (path, len(r.content))
        assert "RawPass" not in r.text, path
    t = server.get("/tasks/only.defined").json()
    assert t["invocations"] == 0 and t["definition"]["options"] == {"max_retries": 2}
    d = server.get("/tasks/shop.ship").json()["definition"]
    assert d["values"]["options.blob"]["bytes"] == 5_000_000 and d["values"]["options.blob"]["truncated"]
    assert server.get("/tasks/never.seen").status_code == 404


def test_the_pynenc_reporter_reads_many_tasks_in_turn():
    """A look reads the options of a bounded number of tasks, each in turn (proto/pynenc_config.py)."""
    from tasktrail.proto.pynenc_config import TASKS_PER_LOOK, ConfigReporter
    rep = ConfigReporter(ex=None)
    rep._tasks["a"] = {f"t{i}": i for i in range(TASKS_PER_LOOK * 2 + 5)}
    seen = [t for _ in range(3) for t in rep._next_tasks("a")]
    assert len(seen) == TASKS_PER_LOOK * 3 and set(seen) == set(range(TASKS_PER_LOOK * 2 + 5))
