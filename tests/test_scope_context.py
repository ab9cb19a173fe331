"""A runner context sent once on the scope (the emitter's own sender since issue 20, proto/otlp_encode.py)
reads as if every record carried it: the same rows in every table as the same records carrying it
themselves; a record's own attribute wins over its scope's; and the encoder writes what the generated
opentelemetry-proto classes would."""
import json

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from tasktrail.proto import model
from tasktrail.proto.emitter import Runner
from tasktrail.proto.otlp_sender import encode

from .helpers import LocalStore, _LocalSender


def _set(value, v):
    """The pre-issue-20 encoder's value rule, on the generated classes: the reference."""
    t = type(v)
    if t is str:
        value.string_value = v
    elif t is bool:
        value.bool_value = v
    elif t is int:
        value.int_value = v
    elif t is float:
        value.double_value = v
    elif t in (list, tuple):
        values = value.array_value.values
        for x in v:
            _set(values.add(), x)
    elif t is bytes:
        value.bytes_value = v
    else:
        value.string_value = str(v)


def _reference(resource, records):
    req = logs_service_pb2.ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for k, v in resource.items():
        _set(rl.resource.attributes.add(key=k).value, v)
    scopes = {}
    for ts, event_name, body, number, text, attrs, scope, context in records:
        sl = scopes.get((scope, id(context)))
        if sl is None:
            sl = scopes[(scope, id(context))] = rl.scope_logs.add()
            sl.scope.name = scope
            for k, v in (context or {}).items():
                _set(sl.scope.attributes.add(key=k).value, v)
        lr = sl.log_records.add(time_unix_nano=ts, observed_time_unix_nano=ts, severity_number=number,
                                severity_text=text)
        if event_name:
            lr.event_name = event_name
        if body is not None:
            _set(lr.body, body)
        for k, v in attrs.items():
            _set(lr.attributes.add(key=k).value, v)
    return req


def test_the_encoder_writes_what_the_generated_classes_read():
    ctx = Runner("w-1", "ThreadRunner", parent_id="r-1", hostname="h", pid=70_000, thread_id=2**40).attributes()
    long_key = "k" * 200
    values = {"s": "text", "empty": "", "long": "é" * 300, "utf8": "naïve ✓", long_key: "v" * 130,
              "tasktrail.status": "RUNNING", "tasktrail.task.id": "t" * 140, "zero": 0, "small": 127,
              "two": 128, "two_max": 16383, "three": 16384, "big": 2**40, "max": 2**63 - 1, "neg": -1,
              "min": -2**63, "t": True, "f": False, "pi": 3.25, "list": ["a", 1, 2.5, True], "tuple": ("x",),
              "raw": b"\x00\xff" * 100, "none": None, "dict": {"a": 1}}
    records = [(1_796_000_000_000_000_000 + i, "tasktrail.status" if i % 2 else None,
                ["tasktrail.status", "a log line " * 20, None, {"b": 2}][i % 4], [9, 17, 0][i % 3],
                ["INFO", "ERROR", ""][i % 3], {**values, "i": i}, ["tasktrail", "my.logger"][i % 2],
                [ctx, None][i % 2 if i < 4 else 0]) for i in range(6)]
    resource = {"service.namespace": "shop", "pid": 4, "tasktrail.runner.id": "r-1"}
    got = logs_service_pb2.ExportLogsServiceRequest.FromString(encode(resource, records))
    assert got == _reference(resource, records)
    scopes = got.resource_logs[0].scope_logs
    # One ScopeLogs per (scope name, context), the context once on it.
    assert [(sl.scope.name, len(sl.scope.attributes), len(sl.log_records)) for sl in scopes] == \
        [("tasktrail", 6, 3), ("my.logger", 0, 2), ("my.logger", 6, 1)]


class _Both(_LocalSender):
    """Each record to two stores: as the emitter sends it (its context on the scope), and as it was sent
    before (the context in each record's own attributes)."""

    def __init__(self, scoped: LocalStore, inline: LocalStore) -> None:
        super().__init__(scoped)
        self.inline = _LocalSender(inline)

    def add(self, record) -> bool:
        *head, attrs, scope, context = record
        self.inline.add((*head, {**attrs, **(context or {})}, scope))
        return super().add(record)

    def flush(self, timeout_ms: int = 10_000) -> bool:
        self.inline.resource = self.resource
        return super().flush(timeout_ms) and self.inline.flush(timeout_ms)


def _rows(store: LocalStore) -> dict:
    out = {}
    for table in model.TABLES:
        if table == "resources":  # its first-seen time is the time of storing
            continue
        rows = store.store.query(f"SELECT * FROM {table}").rows
        out[table] = sorted((tuple(json.loads(v) if isinstance(v, str) and v[:1] == "{" else v for v in r)
                             for r in rows), key=repr)
    return out


@pytest.fixture
def two(tmp_path):
    scoped, inline = LocalStore(tmp_path / "scoped.duckdb"), LocalStore(tmp_path / "inline.duckdb")
    yield scoped, inline
    scoped.close()
    inline.close()


def test_context_on_the_scope_maps_to_the_same_rows_as_on_each_record(two):
    scoped, inline = two
    em = scoped.emitter("shop", Runner("r-1", "ThreadRunner", pid=11))
    em._sender = _Both(scoped, inline)
    em._sender.resource = em.resource
    parent = Runner("r-1", "ThreadRunner", pid=11)
    worker = Runner("w-1", "ProcessWorker", parent_id="r-1", hostname="h2", pid=12, thread_id=3)
    other = Runner("r-9", None, hostname=None, pid=None)   # a context this process does not hold: the id alone
    em.runner_started(worker)
    em.status("inv-1", "REGISTERED", task_id="shop.pay", runner=parent, arguments={"n": 1}, call_id="c-1")
    em.status("inv-1", "RUNNING", task_id="shop.pay", runner=worker, owner_runner_id="w-1", attempt=0)
    em.log("paying", invocation_id="inv-1", task_id="shop.pay", runner=worker, logger_name="shop.pay")
    em.status("inv-1", "SUCCESS", task_id="shop.pay", runner=worker, result=[1, 2])
    em.status("inv-2", "PENDING", task_id="shop.ship")                # no context: the resource's
    em.heartbeat(other, atomic_eligible=True, consumed_queues=["q1"])
    em.atomic_decision("assigned", runner=parent, position=0, runner_count=2)
    em.runner_config({"threads": 4}, runner=worker)
    em.queue_depth("q1", 3, runner=worker)
    em.runner_stopped(worker)
    em.flush()
    got, want = _rows(scoped), _rows(inline)
    assert got == want
    assert len(got["transitions"]) == 4 and len(got["log_records"]) == 1 and len(got["queue_depths"]) == 1
    q = scoped.store.query
    assert sorted(q("SELECT status, runner_id, worker_id FROM transitions").rows) == [
        ("PENDING", "r-1", None), ("REGISTERED", "r-1", None), ("RUNNING", "r-1", "w-1"), ("SUCCESS", "r-1", "w-1")]
    assert set(q("SELECT runner_id, kind, hostname, pid FROM runner_events").rows) >= {
        ("w-1", "started", "h2", 12), ("w-1", "stopped", "h2", 12), ("r-9", "heartbeat", None, None)}
    assert q("SELECT runner_id, worker_id FROM log_records").rows == [("r-1", "w-1")]


def test_a_records_own_attribute_wins_over_its_scopes(tmp_path):
    store = LocalStore(tmp_path / "a.duckdb")
    try:
        ctx = Runner("w-1", "ProcessWorker", parent_id="r-1", hostname="h", pid=5).attributes()
        rec = (1_796_000_000_000_000_000, "tasktrail.status", "tasktrail.status", 9, "INFO",
               {"tasktrail.invocation.id": "inv-1", "tasktrail.status": "RUNNING",
                "tasktrail.runner.hostname": "own-host", "tasktrail.record.id": "x-1"}, "tasktrail", ctx)
        store.send("logs", encode({"service.namespace": "shop"}, [rec]))
        (row,) = store.store.query("SELECT runner_id, worker_id FROM transitions").rows
        assert row == ("r-1", "w-1")
        hosts = store.store.query("SELECT hostname FROM runner_events WHERE runner_id = 'w-1'").rows
        assert hosts == [("own-host",)]
    finally:
        store.close()


def test_the_hot_path_transition_stores_what_status_stores(tmp_path):
    store = LocalStore(tmp_path / "a.duckdb")
    try:
        em = store.emitter("shop")
        worker = Runner("w-1", "ProcessWorker", parent_id="r-1")
        when = 1_796_000_000_000_000_000
        em.status("inv-a", "RUNNING", runner=worker, owner_runner_id="w-1", task_id="shop.pay", timestamp=when)
        em.transition("inv-b", "RUNNING", worker, "w-1", "shop.pay", when)
        with pytest.raises(ValueError, match="not a canonical status"):
            em.transition("inv-c", "running", worker)
        em.flush()
        rows = store.store.query("SELECT invocation_id, ts, task_id, status, runner_id, worker_id, owner_runner_id "
                                 "FROM transitions ORDER BY invocation_id").rows
        assert [r[1:] for r in rows] == [rows[0][1:]] * 2 and [r[0] for r in rows] == ["inv-a", "inv-b"]
        assert rows[0][2:] == ("shop.pay", "RUNNING", "r-1", "w-1", "w-1")
    finally:
        store.close()


def test_the_sdk_path_puts_the_context_on_each_record():
    """A LoggerProvider of your own has no scope per context: the context rides on each record, as before."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from tasktrail.proto.emitter import Emitter

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    em = Emitter("unused", "shop", logger_provider=provider)
    worker = Runner("w-1", "ProcessWorker", parent_id="r-1", hostname="h", pid=5)
    em.transition("inv-1", "RUNNING", worker, "w-1", "shop.pay")
    em.log("paying", invocation_id="inv-1", runner=worker)
    (status, line) = [d.log_record for d in memory.get_finished_logs()]
    for rec in (status, line):
        assert {k: rec.attributes[k] for k in worker.attributes()} == worker.attributes()
    assert status.attributes["tasktrail.status"] == "RUNNING" and line.body == "paying"
    provider.shutdown()
