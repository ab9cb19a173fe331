"""status_counts, app_log_span and open_invocations (store/status_counts.py, store/open_invocations.py): kept by the
writer's fold as invocations move from status to status, they must always equal what grouping invocation_state
(and log_records) gives, whatever the delivery: invocations split over batches, records re-delivered, out of
order, a first record without a task, retention removing some, a store whose counts were left behind by a version
that did not keep them."""
from __future__ import annotations

import time
from datetime import datetime

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasktrail.proto.model import LogRecord, Transition
from tasktrail.store.api import LedgerEntry
from tasktrail.store.duckdb import DuckDBStore
from tasktrail.store.retention import RetentionPolicy

T0 = 1_790_000_000_000_000  # micros
LIVES = (("REGISTERED", "PENDING", "RUNNING", "SUCCESS"), ("REGISTERED", "RUNNING", "FAILED"),
         ("REGISTERED", "weird", "running", "SUCCESS"),                 # statuses outside the model, as sent
         ("REGISTERED", "PENDING", "RUNNING", "RETRY", "PENDING", "RUNNING", "SUCCESS"), ("REGISTERED", "PENDING"))


def _t(ts: int, app: str, inv: str, task, status: str, rid: str) -> Transition:
    none = dict.fromkeys(Transition._fields)
    return Transition(**{**none, "ts": T0 + ts, "app_id": app, "invocation_id": inv, "task_id": task,
                         "status": status, "runner_id": "r", "attempt": 0, "source": "tasktrail.v1", "record_id": rid})


def _log(ts: int, app: str, n: int) -> LogRecord:
    none = dict.fromkeys(LogRecord._fields)
    return LogRecord(**{**none, "ts": T0 + ts, "app_id": app, "resource_id": "res", "severity_number": 9,
                        "body": f"line {n}", "record_id": f"log-{app}-{n}"})


def _submit(store: DuckDBStore, rows: dict, tag: str, received_us: int = 0) -> None:
    n = sum(len(v) for v in rows.values())
    store.submit(rows, n, LedgerEntry(tag, received_us or int(time.time() * 1e6), "test", "logs", n)).result(10)


def _expected(store: DuckDBStore) -> tuple[set, set, dict, dict]:
    """What grouping invocation_state and log_records gives: (counts, log spans, {app: (first_ts, last_ts)},
    {(app, task): latest created_at})."""
    counts = set(store.query("SELECT app_id, task_id, status, count(*) FROM invocation_state GROUP BY ALL").rows)
    spans = set(store.query("SELECT app_id, min(ts), max(ts) FROM log_records GROUP BY app_id").rows)
    apps = {a: (f, l) for a, f, l in store.query("SELECT app_id, min(first_ts), max(last_ts) FROM invocation_state "
                                                 "GROUP BY ALL").rows}
    runs = {(a, t): c for a, t, c in store.query("SELECT app_id, task_id, max(created_at) FROM invocation_state "
                                                 "GROUP BY ALL").rows}
    return counts, spans, apps, runs


def _kept(store: DuckDBStore) -> tuple[set, set]:
    counts = set(store.query("SELECT app_id, task_id, status, n FROM status_counts").rows)
    spans = set(store.query("SELECT app_id, first_ts, last_ts FROM app_log_span").rows)
    return counts, spans


def _check(store: DuckDBStore) -> None:
    from tasktrail.query.tasks import task_runs

    want, want_spans, want_apps, want_runs = _expected(store)
    got, spans = _kept(store)
    assert got == want                       # no row at 0 or below: a row is deleted when its count falls to 0
    assert spans == want_spans
    apps = {a: (f, l) for a, f, l in store.query("SELECT app_id, min(first_record), max(last_record) "
                                                 "FROM status_counts GROUP BY ALL").rows}
    assert apps == want_apps                 # an app's first and last record: exact
    hints = {(a, t): c for a, t, c in store.query("SELECT app_id, task_id, max(last_created) FROM status_counts "
                                                  "GROUP BY ALL").rows}
    assert all(hints[k] >= c for k, c in want_runs.items())    # at least the latest created_at: a hint
    assert task_runs(store.query) == want_runs                  # checked by the reader: exact
    opened = store.query("SELECT * FROM open_invocations ORDER BY ALL").rows
    assert opened == store.query("SELECT * EXCLUDE (id_hash) FROM invocation_state WHERE status NOT IN "
                                 "('SUCCESS', 'FAILED', 'CONCURRENCY_CONTROLLED_FINAL') ORDER BY ALL").rows


@st.composite
def deliveries(draw):
    """Requests of transitions and log lines: invocations of two apps and three tasks (one whose first
    record lacks its task), each record maybe sent twice, the whole cut into requests in a shuffled order."""
    records = []
    for i in range(draw(st.integers(1, 14))):
        app, life = draw(st.sampled_from(["a", "b"])), draw(st.sampled_from(LIVES))
        task = draw(st.sampled_from(["t1", "t2", "t3"]))
        stop = draw(st.integers(1, len(life)))
        for k, status in enumerate(life[:stop]):
            no_task = k == 0 and draw(st.booleans())
            records.append(("transitions", _t(i * 10_000 + k * 100, app, f"inv-{i}", None if no_task else task,
                                              status, f"rec-{i}-{k}")))
    for n in range(draw(st.integers(0, 6))):
        records.append(("log_records", _log(draw(st.integers(-10**9, 10**9)), draw(st.sampled_from("ab")), n)))
    records += draw(st.lists(st.sampled_from(records), max_size=6))        # re-delivered
    records = draw(st.permutations(records))
    cuts = sorted(draw(st.lists(st.integers(0, len(records)), max_size=8)))
    out, lo = [], 0
    for c in cuts + [len(records)]:
        part: dict = {}
        for table, row in records[lo:c]:
            part.setdefault(table, []).append(row)
        if part:
            out.append(part)
        lo = c
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=deliveries())
def test_counts_equal_the_grouped_state_whatever_the_delivery(tmp_path_factory, requests):
    path = tmp_path_factory.mktemp("counts") / "tt.duckdb"
    store = DuckDBStore(str(path))
    try:
        for n, rows in enumerate(requests):
            _submit(store, rows, f"req-{n}")
            _check(store)
    finally:
        store.close()


def _fill(path, n: int = 30) -> None:
    store = DuckDBStore(str(path))
    try:
        for i in range(n):
            life = LIVES[i % len(LIVES)]
            rows = [_t(i * 10_000 + k, "a", f"inv-{i}", f"t{i % 3}", s, f"rec-{i}-{k}") for k, s in enumerate(life)]
            _submit(store, {"transitions": rows[:2], "log_records": [_log(i, "a", i)]}, f"r{i}a")
            _submit(store, {"transitions": rows[2:]}, f"r{i}b")
        _check(store)
    finally:
        store.close()


def test_counts_left_behind_are_rebuilt_at_open_and_follow_retention(tmp_path):
    path = tmp_path / "tt.duckdb"
    _fill(path)
    con = duckdb.connect(str(path))      # as a version that did not keep the counts would leave them
    con.execute("DELETE FROM status_counts WHERE status = 'SUCCESS'")
    con.execute("DELETE FROM app_log_span")
    con.execute("DELETE FROM open_invocations WHERE status = 'PENDING'")
    con.close()
    store = DuckDBStore(str(path))
    try:
        _check(store)
        assert sum(r[3] for r in _kept(store)[0]) == 30
        store.retain(RetentionPolicy(1, 1, 10_000), now=datetime(2100, 1, 1))   # everything is past the window
        assert store.query("SELECT count(*) FROM invocation_state").rows[0][0] == 0
        assert _kept(store) == (set(), set())
    finally:
        store.close()


def test_a_late_record_of_an_invocation_retention_removed(tmp_path):
    """Retention removes an unfinished invocation the writer still remembers; its next record must not uncount
    the status it had (the remembered histories are forgotten with the recount)."""
    store = DuckDBStore(str(tmp_path / "tt.duckdb"))
    try:
        old = [_t(-10**15, "a", "x", "t0", "REGISTERED", "x0"), _t(-10**15 + 1, "a", "x", "t0", "RUNNING", "x1")]
        _submit(store, {"transitions": old}, "old", received_us=T0 - 10**15)
        assert store.retain(RetentionPolicy(30, 30, 10_000)).invocations == 1
        _submit(store, {"transitions": [_t(0, "a", "x", "t0", "SUCCESS", "x2")]}, "new")
        _check(store)
        assert _kept(store)[0] == {("a", "t0", "SUCCESS", 1)}
    finally:
        store.close()


def test_a_retention_pass_that_removes_nothing_leaves_the_writer_alone(tmp_path):
    """The server runs retention at start: with nothing to remove it must queue no recount on the writer (a
    job ends the batch the writer is gathering, and a journal's requests were then committed before their
    time); once it removes something, the recount runs."""
    store = DuckDBStore(str(tmp_path / "tt.duckdb"))
    jobs, real = [], store.on_writer
    store.on_writer = lambda fn: (jobs.append(fn), real(fn))[1]
    try:
        rep = store.retain(RetentionPolicy(30, 30, 10_000))   # as at start: an empty store
        assert not rep.removed and jobs == []
        old = [_t(-10**15, "a", "y", "t0", "SUCCESS", "y0")]
        _submit(store, {"transitions": old}, "old", received_us=T0 - 10**15)
        _submit(store, {"transitions": [_t(0, "a", "x", "t0", "SUCCESS", "x0")]}, "new")
        assert store.retain(RetentionPolicy(30, 30, 10_000)).invocations == 1 and len(jobs) == 1
        rep = store.retain(RetentionPolicy(30, 30, 10_000))   # nothing old is left
        assert not rep.removed and len(jobs) == 1
        _check(store)
    finally:
        store.close()


def test_many_distinct_tasks_in_one_batch(tmp_path):
    """Thousands of (app, task, status) keys in one write are merged from Arrow, not bound one by one."""
    store = DuckDBStore(str(tmp_path / "tt.duckdb"))
    try:
        rows = [_t(i, "a", f"inv-{i}", f"task-{i}", "RUNNING", f"r-{i}") for i in range(3000)]
        _submit(store, {"transitions": rows}, "many")
        _submit(store, {"transitions": [r._replace(ts=r.ts + 1, status="SUCCESS", record_id=r.record_id + "s")
                                        for r in rows]}, "done")
        _check(store)
        assert len(_kept(store)[0]) == 3000      # the RUNNING rows are gone at 0
    finally:
        store.close()


def test_rebuild_recomputes_the_counts(tmp_path):
    path = tmp_path / "tt.duckdb"
    _fill(path, 12)
    store = DuckDBStore(str(path))
    try:
        assert store.rebuild_state() == 12
        _check(store)
    finally:
        store.close()


def test_retention_beside_a_busy_writer_leaves_the_counts_true(tmp_path):
    """Retention runs on its own connection while the writer moves the same count rows with every batch:
    neither may fail, and once both are done the counts equal the cache again."""
    import threading

    path = tmp_path / "tt.duckdb"
    store = DuckDBStore(str(path))
    try:
        old = [_t(-10**15 + i, "a", f"old-{i}", "t0", "SUCCESS", f"old-{i}") for i in range(50)]   # 1978: retained
        _submit(store, {"transitions": old}, "old", received_us=T0 - 10**15)
        errors, stop = [], threading.Event()

        def busy() -> None:
            try:
                for b in range(400):
                    if stop.is_set() and b > 20:
                        return
                    life = LIVES[b % len(LIVES)]
                    rows = [_t(b * 1000 + k, "a", f"new-{b}", "t0", s, f"new-{b}-{k}") for k, s in enumerate(life)]
                    _submit(store, {"transitions": rows[:1]}, f"n{b}a")
                    _submit(store, {"transitions": rows[1:]}, f"n{b}b")
            except Exception as exc:   # noqa: BLE001 (reported below)
                errors.append(exc)

        writer = threading.Thread(target=busy)
        writer.start()
        time.sleep(0.2)
        reports = [store.retain(RetentionPolicy(30, 30, 10_000)) for _ in range(3)]
        stop.set()
        writer.join(120)
        assert not errors
        assert reports[0].invocations == 50
        _check(store)
    finally:
        store.close()
