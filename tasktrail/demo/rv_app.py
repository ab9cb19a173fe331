"""A real rustvello 0.9 app: run as `python rv_app.py ENDPOINT TOKEN DB N` (tests and `tasktrail demo`).

rustvello reports its own lifecycle over OTLP (rustvello-otel.v1). Beside it, this app sends what
rustvello 0.9 does not, through tasktrail's emitter (tasktrail.v1, OTLP/HTTP to the same ENDPOINT):
- rustvello's unified log lines (its Rust runtime writes them to stderr; read back here and parsed by
  tasktrail's log-line parser, each sent with the invocation, task and runner context it names);
- its tasks' log lines (Python logging, each tied to the invocation that wrote it);
- once the batch of `add` calls is done, an event `demo.batch.done` that triggers a `report` invocation,
  with the trigger run that links the two — the convention any runner without triggers of its own can follow;
- its queue depths (`App.queue_depths()`, every second: tasktrail.proto.rustvello_queues, one call), for /queues.

Prints one JSON object: {invocation_id: status} as rustvello itself reports them.
"""
import json
import logging
import os
import sys
import threading
import time
import uuid
from datetime import datetime

import rustvello

endpoint, token, db, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
APP_ID = "live"
app = rustvello.App(app_id=APP_ID, backend="sqlite", db_path=db, otlp_endpoint=endpoint, otlp_bearer_token=token)
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


class UnifiedLogs:
    """rustvello's unified log lines (fd 2 of this process) to tasktrail as log records, echoed to stderr as
    before. Started before rustvello logs anything; `stop()` drains what was written."""

    LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40}

    def __init__(self, emitter) -> None:
        from tasktrail.proto.emitter import Runner
        from tasktrail.query.log_explorer import parse
        self.emitter, self.parse, self.Runner = emitter, parse, Runner
        self.read_fd, write_fd = os.pipe()
        self.stderr = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        with os.fdopen(self.read_fd, "rb") as pipe:
            for raw in pipe:
                os.write(self.stderr, raw)
                try:
                    self._send(raw.decode("utf-8", "replace"))
                except Exception:  # a line the parser cannot read stays on stderr only
                    pass

    def _send(self, line: str) -> None:
        for entry in self.parse(line):
            if entry["format"] != "rustvello" or entry["logger"] != APP_ID:  # not the OTel SDK's own lines
                continue
            runners = entry["runners"]
            # The context's full ids (compact_context off): the last is the one that wrote, its parent before it.
            runner = (self.Runner(runners[-1]["id"], None, parent_id=runners[-2]["id"] if len(runners) > 1 else None,
                                  hostname=None, pid=None) if runners else None)
            target, _, message = entry["message"].partition(" ")
            self.emitter.log(message or target, level=self.LEVELS.get(entry["level"], 20),
                             invocation_id=entry["invocation_id"], task_id=entry["task_id"], runner=runner,
                             logger_name=target if message else "rustvello",
                             timestamp=datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")))

    def stop(self) -> None:
        os.dup2(self.stderr, 2)   # the last writer of the pipe closes: the pump reads to its end
        self.thread.join(5)


def emitter():
    """tasktrail's emitter for this app, or None without the OTel SDK (pip install 'tasktrail[emitter]')."""
    try:
        from tasktrail.proto.emitter import Emitter
        return Emitter(endpoint, APP_ID, protocol="http", token=token or None, service_name="rustvello-demo")
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
    unified = depths = None
    if em is not None:
        from tasktrail.proto.rustvello_queues import report_queue_depths
        depths = report_queue_depths(app, emitter=em, interval_s=1.0)
        log.addHandler(ToTasktrail(em))
        log.setLevel(logging.INFO)
        unified = UnifiedLogs(em)
        rustvello.init_logging(level="info", compact_context=False)  # full ids in each line's context
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
    app.stop()
    if depths is not None:
        depths.stop()
    if unified is not None:
        unified.stop()
    if em is not None:
        em.flush()
        em.shutdown()
    print(json.dumps(statuses))
