"""Fuzzing the decoder and the dialect mappers (hypothesis, a bounded number of examples per run).

Whatever a runner sends, the only outcomes are a DecodeError (a 400 with a message) or rows that the
store's Arrow schemas accept: no other exception, which would be a 500 or fail a whole batch.
"""
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tasktrail.ingest.decode import DecodeError, decode
from tasktrail.ingest.map import Mapper
from tasktrail.proto import names as n
from tasktrail.store.rows import to_arrow

from .helpers import fixture_requests
from .strategies import odd_sql, time_values

EXAMPLES = int(os.environ.get("TASKTRAIL_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def schemas():
    """The real store the mapped rows go into (its Arrow schemas, its NOT NULL columns, its caches)."""
    from tasktrail.store.duckdb import DuckDBStore
    with tempfile.TemporaryDirectory() as d:
        store = DuckDBStore(os.path.join(d, "s.duckdb"))
        yield store
        store.close()


def _outcome(signal, body, fmt, store, tally):
    """Decode + map + to_arrow + commit; a DecodeError is an answer, anything else raised is a bug."""
    import hashlib
    import time

    from tasktrail.store.api import LedgerEntry

    try:
        out = Mapper().map(signal, decode(signal, body, fmt))
    except DecodeError:
        tally["refused"] += 1
        return
    schemas = store.arrow_schemas()
    rows = {t: (r if t == "resources" else to_arrow(r, schemas[t])) for t, r in out.rows.items() if r}
    h = hashlib.blake2b(body + signal.encode() + fmt.encode(), digest_size=16).hexdigest()
    store.submit(rows, out.records, LedgerEntry(h, time.time_ns() // 1000, "fuzz", signal, len(body))).result(30)
    tally["mapped"] += 1


# Attribute keys the dialects read, plus anything.
KEYS = sorted({getattr(n, k) for k in dir(n) if k.startswith(("TT_", "RV_")) and isinstance(getattr(n, k), str)}
              | {n.SERVICE_NAME, n.REVISION, "invocation_id", "task_id", "celery.action", "messaging.message.id"})
EVENTS = [spec.event_name for spec in n.TASKTRAIL_V1_EVENTS] + ["task.started", "task.failed", "whatever"]

leaf = st.one_of(
    st.builds(lambda v: common_pb2.AnyValue(string_value=v), st.text(max_size=30)),
    st.builds(lambda v: common_pb2.AnyValue(int_value=v), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda v: common_pb2.AnyValue(double_value=v), st.floats(allow_nan=True)),
    st.builds(lambda v: common_pb2.AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: common_pb2.AnyValue(bytes_value=v), st.binary(max_size=20)),
    st.just(common_pb2.AnyValue()),
)
any_value = st.recursive(leaf, lambda inner: st.one_of(
    st.builds(lambda vs: common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=vs)), st.lists(inner, max_size=3)),
    st.builds(lambda kv: common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(
        values=[common_pb2.KeyValue(key=k, value=v) for k, v in kv])),
              st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3))), max_leaves=6)
attrs = st.lists(st.builds(lambda k, v: common_pb2.KeyValue(key=k, value=v),
                           st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), any_value), max_size=12)
ids = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20))
span_ids = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=10))
times = st.one_of(st.integers(0, 2**64 - 1), st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9))

log_record = st.builds(lambda t, ev, body, a, tid, sid, sev: logs_pb2.LogRecord(
    time_unix_nano=t, event_name=ev, body=body, attributes=a, trace_id=tid, span_id=sid, severity_number=sev),
    times, st.sampled_from(EVENTS), any_value, attrs, st.one_of(st.just(b""), ids), st.one_of(st.just(b""), span_ids),
    st.integers(0, 2**31 - 1))
span = st.builds(lambda tid, sid, name, t0, dt, a, kind, code: trace_pb2.Span(
    trace_id=tid, span_id=sid, name=name, start_time_unix_nano=t0, end_time_unix_nano=min(t0 + dt, 2**64 - 1),
    attributes=a, kind=kind, status=trace_pb2.Status(code=code)),
    ids, span_ids, st.text(max_size=20), times, st.integers(0, 10**12), attrs, st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1))
scope = st.sampled_from(["", n.TT_SCOPE, "rustvello", "opentelemetry.instrumentation.celery", "x"])


@FUZZ
@given(res=attrs, sc=scope, records=st.lists(log_record, max_size=8))
def test_log_requests_map_or_are_refused(schemas, res, sc, records):
    body = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=resource_pb2.Resource(attributes=res),
        scope_logs=[logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name=sc), log_records=records)])])
    _outcome("logs", body.SerializeToString(), "protobuf", schemas, TALLY)


@FUZZ
@given(res=attrs, sc=scope, spans=st.lists(span, max_size=6))
def test_trace_requests_map_or_are_refused(schemas, res, sc, spans):
    body = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=res),
        scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name=sc), spans=spans)])])
    _outcome("traces", body.SerializeToString(), "protobuf", schemas, TALLY)


REAL = fixture_requests()


@FUZZ
@given(pick=st.integers(0, len(REAL) - 1), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                          min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)), fmt=st.sampled_from(["protobuf", "json"]))
def test_mutated_real_requests_and_raw_bytes(schemas, pick, flips, cut, fmt):
    signal, body = REAL[pick]
    data = bytearray(body)
    for pos, val in flips:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _outcome(signal, bytes(data), fmt, schemas, TALLY)


# --- runner_state: the writer's fold agrees with a rebuild, whatever the order and batching -----------

CLASSES = [None, "Runner", "BaseRunner", "", "ThreadRunner", "PersistentProcessRunner", "PPRWorker"]
HOSTS = [None, "", "unknown", "h1", "h2"]
PIDS = [None, 0, 1, 2]
PARENTS = [None, "", "p1", "p2"]
runner_report = st.tuples(st.integers(0, 6), st.sampled_from(["r1", "r2"]),
                          st.sampled_from(["context", "started", "stopped", "heartbeat"]),
                          st.sampled_from(CLASSES), st.sampled_from(HOSTS), st.sampled_from(PIDS),
                          st.sampled_from(PARENTS))
stamp = st.tuples(st.integers(0, 6), st.sampled_from(["r1", "r2"]), st.sampled_from([None, "w1"]),
                  st.sampled_from(["REGISTERED", "PENDING", "RUNNING", "SUCCESS", "KILLED"]))


def _placeholder(report) -> bool:
    return report[3] in (None, "Runner", "BaseRunner", "") or report[4] in (None, "", "unknown")


@settings(FUZZ, max_examples=min(EXAMPLES, 50))  # each example commits a few batches and rebuilds: ~0.4 s
@given(reports=st.lists(runner_report, min_size=1, max_size=14), stamps=st.lists(stamp, max_size=6),
       order=st.sampled_from(["shuffled", "placeholders first", "placeholders last"]),
       perm=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 20), max_size=4))
def test_runner_state_fold_agrees_with_rebuild(schemas, reports, stamps, order, perm, cuts):
    """Runner events (placeholders such as pynenc's `Runner` among real classes, hosts and pids) and
    transitions, in any order and split into any batches: the folded runner_state equals what a rebuild
    computes from the log, and each field holds the most specific, then latest, report."""
    import time
    import uuid

    from tasktrail.proto.model import RunnerEvent, Transition
    from tasktrail.store.api import LedgerEntry

    app = uuid.uuid4().hex
    t0 = 1_750_000_000_000_000
    rows = [("runner_events", RunnerEvent(t0 + ts, app, rid, kind, cls, parent, host, pid, None, None, None,
                                          "fuzz", None))
            for ts, rid, kind, cls, host, pid, parent in reports]
    rows += [("transitions", Transition(t0 + ts, app, f"i{k}", "t", status, None, rid, worker, None, None, "fuzz",
                                        None, None, None, None, None, None, None, None, None, None, None, None,
                                        None, None))
             for k, (ts, rid, worker, status) in enumerate(stamps)]
    perm.shuffle(rows)
    if order != "shuffled":  # every placeholder report before (or after) every real one
        first = order == "placeholders first"
        rows.sort(key=lambda r: r[0] == "runner_events" and _placeholder(
            (0, 0, 0, r[1].runner_class, r[1].hostname)) != first)
    bounds = sorted({c % (len(rows) + 1) for c in cuts} | {0, len(rows)})
    for a, b in zip(bounds, bounds[1:]):
        batch = {"runner_events": [r for t, r in rows[a:b] if t == "runner_events"],
                 "transitions": [r for t, r in rows[a:b] if t == "transitions"]}
        schemas.submit({k: v for k, v in batch.items() if v}, b - a,
                       LedgerEntry(uuid.uuid4().hex, time.time_ns() // 1000, "fuzz", "logs", 1)).result(30)
    read = "SELECT * FROM runner_state WHERE app_id = ? ORDER BY runner_id"
    folded = schemas.query(read, [app]).rows
    schemas.rebuild_state()
    assert folded == schemas.query(read, [app]).rows
    # The rule itself, from the reports: the most specific (real over placeholder), then latest, then largest.
    cols = [c for c in schemas.query(read + " LIMIT 0", [app]).columns]
    by = {r[cols.index("runner_id")]: dict(zip(cols, r)) for r in folded}
    real = {"runner_class": lambda v: v not in ("Runner", "BaseRunner", ""),
            "hostname": lambda v: v not in ("", "unknown"), "pid": lambda v: v > 0,
            "parent_runner_id": lambda v: v != ""}
    for rid, got in by.items():
        for col, pos in (("runner_class", 3), ("hostname", 4), ("pid", 5), ("parent_runner_id", 6)):
            seen = [(real[col](r[pos]), r[0], r[pos]) for r in reports if r[1] == rid and r[pos] is not None]
            assert got[col] == (max(seen)[2] if seen else None), (rid, col, seen, got)


TALLY = {"mapped": 0, "refused": 0}


def test_fuzz_tally(record):
    """Runs last in this module: puts the counts in docs/reliability.md."""
    total = TALLY["mapped"] + TALLY["refused"]
    assert total >= 3 * min(EXAMPLES, 50)
    record("Fuzzing", "hypothesis: generated OTLP logs and traces (every tasktrail.v1 event, rustvello and Celery "
                      "attribute keys, random AnyValues, ids of any length, any timestamps) and real rustvello "
                      "requests with flipped bytes or cut short, as protobuf and as JSON", total,
           f"{TALLY['mapped']} mapped and committed to a real store, {TALLY['refused']} refused with "
           f"a DecodeError (400); no other exception")


# --- the fold and the read-time history agree, whatever the delivery -------------------------------------
STATUS_NAMES = ["REGISTERED", "PENDING", "RUNNING", "RETRY", "SUCCESS", "FAILED", "PAUSED", "KILLED", "REROUTED",
                "CONCURRENCY_CONTROLLED", "CONCURRENCY_CONTROLLED_FINAL", "PENDING_RECOVERY", "RUNNING_RECOVERY"]
T0 = 1_750_000_000 * 10**9

# One record: (sender 0-2, status, attempt, tick, with seq, with record id)
history_record = st.tuples(st.integers(0, 2), st.sampled_from(STATUS_NAMES), st.one_of(st.none(), st.integers(0, 3)),
                           st.integers(0, 6), st.booleans(), st.booleans())


@pytest.fixture(scope="module")
def history_store():
    from tasktrail.query.service import QueryService
    from tasktrail.store.duckdb import DuckDBStore
    with tempfile.TemporaryDirectory() as d:
        store = DuckDBStore(os.path.join(d, "h.duckdb"))
        yield store, QueryService(store)
        store.close()


HISTORY_CASES = {"n": 0, "records": 0}


@FUZZ
@given(records=st.lists(history_record, min_size=1, max_size=10), skews=st.tuples(*[st.integers(-3, 3)] * 3),
       cuts=st.lists(st.integers(0, 30), max_size=4), dupes=st.lists(st.integers(0, 30), max_size=5),
       shuffle=st.randoms(use_true_random=False), same_tick=st.booleans())
def test_fold_and_read_time_history_agree(history_store, records, skews, cuts, dupes, shuffle, same_tick):
    """Duplicated records, shuffled arrival orders over several requests, equal timestamps and hosts whose
    clocks are seconds apart: the writer's fold (invocation_state: the list, /metrics, anomalies) and the
    read-time history (detail, history) agree on the current status, times and attempts; every record
    counts once; times never go back."""
    import hashlib
    import uuid

    from tasktrail.ingest.pipeline import Ingestor

    store, qs = history_store
    inv = "fz-" + uuid.uuid4().hex[:10]
    made = []
    for k, (sender, status, attempt, tick, with_seq, with_id) in enumerate(records):
        a = [common_pb2.KeyValue(key=n.TT_INVOCATION_ID, value=common_pb2.AnyValue(string_value=inv)),
             common_pb2.KeyValue(key=n.TT_STATUS, value=common_pb2.AnyValue(string_value=status)),
             common_pb2.KeyValue(key=n.TT_RUNNER_ID, value=common_pb2.AnyValue(string_value=f"s{sender}"))]
        if attempt is not None:
            a.append(common_pb2.KeyValue(key=n.TT_ATTEMPT, value=common_pb2.AnyValue(int_value=attempt)))
        if with_seq:
            a.append(common_pb2.KeyValue(key=n.TT_SEQ, value=common_pb2.AnyValue(int_value=k)))
        if with_id:
            a.append(common_pb2.KeyValue(key=n.TT_RECORD_ID, value=common_pb2.AnyValue(string_value=f"{inv}-{k}")))
        ts = T0 + (0 if same_tick else tick * 10**9) + skews[sender] * 10**9
        made.append(logs_pb2.LogRecord(time_unix_nano=ts, event_name=n.EV_STATUS, attributes=a))
    # Deliveries: the records shuffled and cut into requests, then some of them again in other requests
    # (at-least-once: a copy comes in another request; identical records inside one request are several).
    sent = list(made)
    shuffle.shuffle(sent)
    bounds = sorted({c % (len(sent) + 1) for c in cuts} | {0, len(sent)})
    batches = [sent[lo:hi] for lo, hi in zip(bounds, bounds[1:])]
    again = sorted({d % len(made) for d in dupes})
    if again:
        batches.append([made[d] for d in again])
        batches.append([made[again[-1]]])
    shuffle.shuffle(batches)
    ing = Ingestor(store)
    for records_of in batches:
        body = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
            resource=resource_pb2.Resource(attributes=[common_pb2.KeyValue(
                key=n.SERVICE_NAMESPACE, value=common_pb2.AnyValue(string_value="fuzz-history"))]),
            scope_logs=[logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name=n.TT_SCOPE),
                                           log_records=records_of)])]).SerializeToString()
        from tasktrail.store.api import LedgerEntry
        rows, count, _ = ing.prepare("logs", body, "protobuf", "fuzz")
        h = hashlib.blake2b(body + inv.encode(), digest_size=16).hexdigest()
        store.submit(rows, count, LedgerEntry(h, T0 // 1000, "fuzz", "logs", len(body))).result(30)
    hist = qs.history(inv)
    detail = qs.invocation(inv)
    item = next(i for i in qs.invocations(q=inv)["items"] if i["invocation_id"] == inv)
    # Each distinct record once (identical records of one request are distinct, rustvello's retried FAILED
    # reads as its RETRY, nothing else is dropped).
    distinct = {m.SerializeToString() for m in made}
    assert len(hist) <= len(made) and len(hist) >= min(1, len(distinct))
    times = [h["timestamp"] for h in hist]
    assert times == sorted(times)
    assert detail["status"] == item["status"] == hist[-1]["status"]
    assert item["created_at"] == detail["created_at"] == hist[0]["timestamp"]
    assert item["updated_at"] == hist[-1]["timestamp"]
    assert item["attempts"] == len(detail["attempts"]) == sum(1 for h in hist if h["status"] == "RUNNING")
    if detail["duration_s"] is not None:
        assert detail["duration_s"] >= 0
    HISTORY_CASES["n"] += 1
    HISTORY_CASES["records"] += sum(len(b) for b in batches)


def test_history_tally(record):
    assert HISTORY_CASES["n"] >= min(EXAMPLES, 50)
    record("Fuzzing", "hypothesis: one invocation's status records from three senders whose clocks are up to 6 s "
                      "apart, with and without seq and record ids, equal timestamps, duplicated and shuffled "
                      "over several requests; the writer's fold against the read-time history",
           HISTORY_CASES["n"], f"{HISTORY_CASES['records']} records delivered; status, times and attempts agree "
                               "between the list (fold) and the detail and history (read), times never go back")


# --- reads: time parameters at their extremes, SQL answers holding odd values ----------------------------
READS = {"times": 0, "refused_times": 0, "sql": 0, "refused_sql": 0, "cells": 0}


@FUZZ
@given(since=time_values, until=time_values)
def test_time_parameters_parse_clamped_or_refuse(since, until):
    """Any text as since/until: a time inside 1970-2300 (so the arithmetic a read does on its window never
    overflows), or BadRequest naming the parameter; never another exception."""
    from datetime import timedelta

    from tasktrail.query.errors import BadRequest
    from tasktrail.query.service import iso
    from tasktrail.query.times import EARLIEST, LATEST, parse_time

    got = []
    for name, value in (("since", since), ("until", until)):
        try:
            t = parse_time(value, name)
        except BadRequest as exc:
            assert name in str(exc)
            READS["refused_times"] += 1
            continue
        READS["times"] += 1
        assert t is None or EARLIEST <= t <= LATEST
        got.append(t)
    if len(got) == 2 and None not in got:
        t0, t1 = got
        lookback = t0 - max(abs(t1 - t0), timedelta(hours=1))  # the timeline's look-back, the widest step back
        assert iso(lookback) and iso(t1 + timedelta(days=1))


@settings(FUZZ, max_examples=min(EXAMPLES, 100))
@given(sql=odd_sql)
def test_sql_answers_hold_odd_values_as_cells(schemas, sql):
    """SELECTs over values Python, Arrow or JSON cannot hold as they are (infinities, BC dates, 128-bit
    integers, NaN, BIT, INTERVAL, nested ones), read the way the SQL endpoint reads them: a JSON answer of
    readable cells, or a refusal (400: DuckDB's own parse and cast errors); nothing else."""
    import orjson

    from tasktrail.query import sql_guard
    from tasktrail.query.sql_answer import AnswerBuilder
    from tasktrail.store.api import QueryError

    from tasktrail.query.errors import BadRequest

    try:
        sql_guard.check(sql)
        answer = schemas.stream(sql, AnswerBuilder(max_rows=100, max_bytes=1 << 20, timeout_s=10), timeout_s=10)
    except (BadRequest, QueryError):  # both answer 400
        READS["refused_sql"] += 1
        return
    body = orjson.loads(answer.body())
    assert body["columns"] and len(body["rows"]) >= 1
    for row in body["rows"]:
        assert len(row) == len(body["columns"])
        READS["cells"] += len(row)
    READS["sql"] += 1


def test_reads_tally(record):
    assert READS["times"] > 0 and READS["sql"] > 0
    record("Fuzzing", "hypothesis: since/until as any time of years 1-9999 at any offset, relative times up to "
                      "10^500 seconds, edge values and random text; SELECTs over odd values (infinite and BC dates "
                      "and timestamps, nanoseconds, 24:00, NaN, 128-bit integers, BIT, INTERVAL, TIMETZ, GEOMETRY, "
                      "test_all_types() columns) bare and inside lists, structs and maps",
           READS["times"] + READS["refused_times"] + READS["sql"] + READS["refused_sql"],
           f"{READS['times']} times parsed into 1970-2300, {READS['refused_times']} refused with 400 naming the "
           f"parameter; {READS['sql']} SQL answers of {READS['cells']} readable cells, {READS['refused_sql']} "
           "refused by DuckDB's own parse or cast errors (400); no other exception")
