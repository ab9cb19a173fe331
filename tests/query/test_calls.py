"""query/calls.py and query/contexts.py, and the retries' errors of query/tasks.py: the calls a runner names
(tasktrail.call.id), every invocation of one call, the runner context (class, host, pid, thread) behind each
record of a history, and a retry's exception in the task's error breakdown (also rustvello's, whose
retry_scheduled carries no error: it takes its task.failed's). Every expectation is the scenario sent."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import NotFound

from ..helpers import LocalStore, fixture_requests
from .common import NOW, ago, iso

CLIENT = Runner("ext-1", "ExternalRunner", hostname="h0", pid=5, thread_id=55)
RUNNER = Runner("ppr-1", "PersistentProcessRunner", hostname="h1", pid=10, thread_id=100)
WORKERS = [Runner(f"ppr-1-w{i}", "PPRWorker", parent_id="ppr-1", hostname="h1", pid=11 + i, thread_id=110 + i)
           for i in range(2)]
CALL_A, CALL_B = "shop.pay:3f1c", "shop.pay:9e7a"
ARGS = {CALL_A: '{"amount": "10"}', CALL_B: '{"amount": "99"}'}


def _run(em, inv, call, t, worker, *, retries=(), outcome="SUCCESS"):
    """One invocation: registered by the client naming `call` (None: no call), then one attempt per retry
    (each failing with its (type, message)) and a last one ending in `outcome`; returns the (status,
    context) of each record sent."""
    sent = [("REGISTERED", CLIENT)]
    em.status(inv, "REGISTERED", task_id="shop.pay", runner=CLIENT, arguments=ARGS.get(call), call_id=call,
              timestamp=ago(t))
    for k, (etype, msg) in enumerate(list(retries) + [(None, None)]):
        em.status(inv, "PENDING", runner=RUNNER, timestamp=ago(t - 1 - 3 * k))
        em.status(inv, "RUNNING", runner=worker, timestamp=ago(t - 2 - 3 * k))
        sent += [("PENDING", RUNNER), ("RUNNING", worker)]
        if etype is None:
            em.status(inv, outcome, runner=worker, timestamp=ago(t - 3 - 3 * k))
            sent.append((outcome, worker))
        else:
            em.status(inv, "RETRY", runner=worker, error_type=etype, error_message=msg, timestamp=ago(t - 3 - 3 * k))
            sent.append(("RETRY", worker))
    return sent


@pytest.fixture(scope="module")
def scenario(local):
    em = local.emitter("shop", RUNNER)
    sent = {
        "inv-a": _run(em, "inv-a", CALL_A, 900, WORKERS[0],
                      retries=[("ValueError", "bad 1"), ("ValueError", "bad 2")]),
        "inv-b": _run(em, "inv-b", CALL_A, 600, WORKERS[1]),
        "inv-c": _run(em, "inv-c", CALL_B, 500, WORKERS[0], outcome="FAILED"),
        "inv-d": _run(em, "inv-d", None, 400, WORKERS[1]),
    }
    em.shutdown()
    return local.service(clock=lambda: NOW), sent


def test_a_call_lists_every_invocation_of_it(scenario):
    qs, _ = scenario
    c = qs.call(CALL_A)
    assert (c["call_id"], c["app_id"], c["task_id"], c["arguments"], c["source"]) == (
        CALL_A, "shop", "shop.pay", ARGS[CALL_A], "tasktrail.v1")
    assert [i["invocation_id"] for i in c["invocations"]] == ["inv-b", "inv-a"]  # newest first
    assert [i["status"] for i in c["invocations"]] == ["SUCCESS", "SUCCESS"]
    assert [i["created_at"] for i in c["invocations"]] == [iso(ago(600)), iso(ago(900))]
    assert [i["registered_at"] for i in c["invocations"]] == [iso(ago(600)), iso(ago(900))]
    assert [i["duration_s"] for i in c["invocations"]] == [pytest.approx(3), pytest.approx(9)]
    assert c["invocation_count"] == 2 and c["counts_by_status"] == {"SUCCESS": 2} and not c["truncated"]
    one = qs.call(CALL_A, limit=1)
    assert [i["invocation_id"] for i in one["invocations"]] == ["inv-b"] and one["truncated"]
    assert [i["invocation_id"] for i in qs.call(CALL_B)["invocations"]] == ["inv-c"]
    with pytest.raises(NotFound, match="call shop.pay:nope is not in the log"):
        qs.call("shop.pay:nope")
    with pytest.raises(NotFound):
        qs.call(CALL_A, app="another-app")


def test_an_invocation_names_its_call_and_a_task_lists_its_calls(scenario):
    qs, _ = scenario
    assert {i: qs.invocation(i)["call_id"] for i in ("inv-a", "inv-b", "inv-c", "inv-d")} == {
        "inv-a": CALL_A, "inv-b": CALL_A, "inv-c": CALL_B, "inv-d": None}  # inv-d's runner named none
    assert qs.invocation_page("inv-a")["call_id"] == CALL_A
    calls = qs.task("shop.pay", since="all")["calls"]
    assert calls == [{"call_id": CALL_B, "invocations": 1, "last_at": iso(ago(500)), "arguments": ARGS[CALL_B]},
                     {"call_id": CALL_A, "invocations": 2, "last_at": iso(ago(600)), "arguments": ARGS[CALL_A]}]


def test_every_history_record_shows_the_context_that_made_it(scenario):
    qs, sent = scenario
    for inv, records in sent.items():
        for history in (qs.history(inv), qs.invocation_page(inv)["history"]):
            assert [h["status"] for h in history] == [s for s, _ in records], inv
            assert [(h["runner_class"], h["hostname"], h["pid"], h["thread_id"]) for h in history] == [
                (r.runner_class, r.hostname, r.pid, r.thread_id) for _, r in records], inv


def test_retries_say_why(scenario):
    qs, _ = scenario
    retries = [(h["error_type"], h["error_message"]) for h in qs.history("inv-a") if h["status"] == "RETRY"]
    assert retries == [("ValueError", "bad 1"), ("ValueError", "bad 2")]
    tried = qs.invocation("inv-a")["attempts"]
    assert [(a["status"], a["error_type"], a["error_message"]) for a in tried] == [
        ("RETRY", "ValueError", "bad 1"), ("RETRY", "ValueError", "bad 2"), ("SUCCESS", None, None)]
    errors = {e["error_type"]: (e["count"], e["failed"], e["retried"], e["invocations"])
              for e in qs.task("shop.pay", since="all")["errors"]}
    assert errors == {"ValueError": (2, 0, 2, 1), "(no type)": (1, 1, 0, 1)}  # inv-c failed saying nothing


def test_rustvello_retries_take_their_failures_error(tmp_path):
    """rustvello 0.9 sends task.failed (with the error type) then task.retry_scheduled (without) for an
    attempt it retries: the task's errors count that attempt once, as a retry of that type."""
    store = LocalStore(tmp_path / "rv.duckdb")
    try:
        for signal, body in fixture_requests():
            store.send(signal, body)
        qs = store.service()
        raw = store.store.query("""SELECT status, attempt, error_type FROM transitions
                                   WHERE task_id = 'python::rvapp.boom' AND status IN ('FAILED', 'RETRY')
                                   ORDER BY ts, batch, rowid""", (), timeout_s=10, max_rows=100).rows
        retried = {a for s, a, _ in raw if s == "RETRY"}
        want_type = {t for s, _, t in raw if s == "FAILED"}
        assert retried and len(want_type) == 1  # the capture retries, with one error type
        errors = qs.task("python::rvapp.boom", since="all")["errors"]
        failed_last = sum(1 for s, a, _ in raw if s == "FAILED" and a not in retried)
        assert [(e["error_type"], e["failed"], e["retried"]) for e in errors] == [
            (want_type.pop(), failed_last, len(retried))]
        # Each record of its history shows the thread that sent it (rustvello's thread.id).
        inv = store.store.query("SELECT any_value(invocation_id) FROM transitions WHERE task_id = 'python::rvapp.boom'",
                                (), timeout_s=10, max_rows=1).rows[0][0]
        threads = dict(store.store.query("""SELECT record_id, json_extract(attrs, '$."thread.id"')::BIGINT
                                            FROM transitions WHERE invocation_id = ?""", [inv],
                                         timeout_s=10, max_rows=100).rows)
        history = qs.history(inv)
        assert len(history) >= 5 and {1, 6} <= set(threads.values())
        assert [h["thread_id"] for h in history] == [threads[h["record_id"]] for h in history]
    finally:
        store.close()


def test_retention_removes_a_calls_rows_with_its_invocations(tmp_path):
    from datetime import datetime, timedelta

    from tasktrail.store.retention import RetentionPolicy

    store = LocalStore(tmp_path / "ret.duckdb")
    try:
        em = store.emitter("shop", RUNNER)
        _run(em, "old-1", CALL_A, 900, WORKERS[0])
        em.shutdown()
        qs = store.service(clock=lambda: NOW)
        assert [i["invocation_id"] for i in qs.call(CALL_A)["invocations"]] == ["old-1"]
        # A pass as if 100 days from now, keeping 90: the scenario and its arrival are both past the window.
        report = store.store.retain(RetentionPolicy(90, 90), now=datetime.utcnow() + timedelta(days=100))
        assert report.invocations == 1
        with pytest.raises(NotFound):
            qs.call(CALL_A)
        assert store.store.query("SELECT count(*) FROM invocation_calls", (), timeout_s=10, max_rows=1).rows == [(0,)]
    finally:
        store.close()


def test_a_tasks_call_shows_its_latest_arguments_even_when_a_later_record_has_none(tmp_path):
    """The task page's call list and the call page agree on the arguments: the latest record that carries them,
    whichever invocation sent it (a later record of the call without arguments does not hide them)."""
    store = LocalStore(tmp_path / "args.duckdb")
    try:
        em = store.emitter("shop", RUNNER)
        em.status("i1", "REGISTERED", task_id="t.args", runner=CLIENT, call_id="CALL", arguments='{"v": "A-old"}',
                  timestamp=ago(50))
        em.status("i2", "REGISTERED", task_id="t.args", runner=CLIENT, call_id="CALL", arguments='{"v": "B-newest"}',
                  timestamp=ago(30))
        em.status("i1", "REGISTERED", task_id="t.args", runner=CLIENT, call_id="CALL", timestamp=ago(10))
        em.shutdown()
        qs = store.service(clock=lambda: NOW)
        assert qs.task("t.args", since="all")["calls"] == [
            {"call_id": "CALL", "invocations": 2, "last_at": iso(ago(10)), "arguments": '{"v": "B-newest"}'}]
        assert qs.call("CALL")["arguments"] == '{"v": "B-newest"}'
    finally:
        store.close()
