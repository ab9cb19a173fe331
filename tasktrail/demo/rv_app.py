"""A real rustvello 0.9 app: run as `python rv_app.py ENDPOINT TOKEN DB N` (tests and `tasktrail demo`).

rustvello reports its own lifecycle over OTLP (rustvello-otel.v1). Beside it, this app sends what
rustvello 0.9 does not, through tasktrail's emitter (tasktrail.v1, OTLP/HTTP to the same ENDPOINT): its
tasks' log lines (Python logging, each tied to the invocation that wrote it) and, once the batch of `add`
calls is done, an event `demo.batch.done` that triggers a `report` invocation, with the trigger run
that links the two — the convention any runner without triggers of its own can follow.

Prints one JSON object: {invocation_id: status} as rustvello itself reports them.
"""
import json
import logging
import sys
import time
import uuid

import rustvello

endpoint, token, db, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = rustvello.App(app_id="live", backend="sqlite", db_path=db, otlp_endpoint=endpoint, otlp_bearer_token=token)
log = logging.getLogger("demo.rustvello")


class ToTasktrail(logging.Handler):
    """Python log lines of rustvello tasks to tasktrail, with the invocation rustvello says is running."""

    def __init__(self, emitter) -> None:
        super().__init__(logging.INFO)
        self.emitter = emitter

    def emit(self, record: logging.LogRecord) -> None:
        exc = None
        if record.exc_info and record.exc_info[0] is not None:
            exc = (record.exc_info[0].__name__, str(record.exc_info[1]), self.format(record))
        self.emitter.log(record.getMessage(), level=record.levelno, invocation_id=rustvello.get_current_invocation_id(),
                         task_id=rustvello.get_current_task_key(), logger_name=record.name, exception=exc,
                         timestamp=record.created)


def emitter():
    """tasktrail's emitter for this app, or None without the OTel SDK (pip install 'tasktrail[emitter]')."""
    try:
        from tasktrail.proto.emitter import Emitter
        return Emitter(endpoint, "live", protocol="http", token=token or None, service_name="rustvello-demo")
    except ImportError:
        return None


@app.task
def add(x, y):
    log.info("adding %s and %s", x, y)
    time.sleep(0.01)
    return x + y


@app.task(max_retries=2, retry_for=(ValueError,))
def boom(x):
    log.warning("boom(%s) is about to fail", x)
    raise ValueError(f"bad {x}")


@app.task
def report(total):
    log.info("batch done: total %s", total)
    return f"total {total}"


@app.workflow
def fan(k):
    log.info("fanning out %s adds", k)
    return [add(i, i).result(timeout=30) for i in range(k)]


def batch_done(em, adds) -> object:
    """The event `demo.batch.done` and the `report` invocation it triggers, with the trigger run linking them."""
    total = sum(inv.result(timeout=60) for inv in adds)
    event_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    em.event(event_id, "demo.batch.done", {"adds": len(adds), "total": total},
             matched_condition_ids=["on demo.batch.done"], valid_condition_ids=["on demo.batch.done"])
    rep = report(total)
    em.trigger_run(run_id, trigger_id="on demo.batch.done", task_id=f"python::{__name__}.report", logic="and",
                   condition_ids=["on demo.batch.done"], valid_condition_ids=["on demo.batch.done"],
                   event_ids=[event_id], triggered_invocation_id=str(rep.id), arguments_preview=f"total={total}",
                   claimed_at=time.time(), executed_at=time.time())
    return rep


if __name__ == "__main__":
    em = emitter()
    if em is not None:
        log.addHandler(ToTasktrail(em))
        log.setLevel(logging.INFO)
    app.run(num_workers=4, block=False)
    adds = [add(i, 1) for i in range(n)]
    invs = adds + [boom(1), fan(3)]
    if em is not None:
        try:
            invs.append(batch_done(em, adds))
        except Exception as exc:  # the demo goes on without its event
            print(f"no batch event: {exc}", file=sys.stderr)
    for inv in invs:
        try:
            inv.result(timeout=60)
        except Exception:
            pass
    time.sleep(0.5)
    statuses = {str(inv.id): str(inv.status).rsplit(".", 1)[-1].upper() for inv in invs}
    app.flush_telemetry()
    if em is not None:
        em.flush()
        em.shutdown()
    app.stop()
    print(json.dumps(statuses))
