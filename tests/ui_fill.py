"""Fill a served tasktrail for the browser tests: a real rustvello run plus emitter traffic that
covers every entity, a still-running invocation, and hostile strings in names and arguments."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tasktrail.demo import RUSTVELLO_RUN
from tasktrail.proto.emitter import Emitter, Runner

XSS_TASK = "shop.<script>window.__xss=1</script>"
XSS_ARG = '"><img src=x onerror="window.__xss=2">'


def run_rustvello(server, workdir: Path, n: int = 10) -> dict:
    proc = subprocess.run([sys.executable, str(RUSTVELLO_RUN), server.otlp_http,
                           "tok123", str(workdir / "rv.db"), str(n)], capture_output=True, text=True, timeout=180,
                          cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def emit_shop(server, *, connect=None, now: datetime | None = None) -> dict:
    """A workflow root with six children (one failed, one still running), events, a trigger run,
    atomic-service decisions and windows, heartbeats, sent to `server` over OTLP or through
    `connect(app_id, runner)` (an Emitter), at times before `now` (default the clock). Returns the ids
    the tests look for."""
    runner = Runner("runner-A", "PersistentProcessRunner", hostname="host-a", pid=11)
    em = connect("shop", runner) if connect else Emitter(f"http://{server.otlp_grpc}", "shop", runner, token="tok123")
    workers = [Runner(f"worker-A{i}", "PPRWorker", parent_id="runner-A", hostname="host-a", pid=20 + i)
               for i in range(3)]
    now = now or datetime.now(timezone.utc)

    def t(s):
        return now - timedelta(seconds=s)

    em.runner_started(timestamp=t(600))
    for w in workers:
        em.runner_started(w, timestamp=t(599))
    em.heartbeat(atomic_eligible=True, consumed_queues=["default"], timestamp=t(5))
    root = str(uuid.uuid4())
    em.status(root, "REGISTERED", task_id=XSS_TASK, arguments={"q": XSS_ARG}, workflow_id=root,
              workflow_type="shop.flow", timestamp=t(300))
    em.status(root, "PENDING", runner=workers[0], timestamp=t(299))
    em.status(root, "RUNNING", runner=workers[0], attempt=0, timestamp=t(298))
    kids = []
    for k in range(6):
        c = str(uuid.uuid4())
        kids.append(c)
        w = workers[1 + k % 2]
        em.status(c, "REGISTERED", task_id=f"shop.step{k % 3}", runner=workers[0], parent_invocation_id=root,
                  workflow_id=root, workflow_type="shop.flow", timestamp=t(297 - k))
        em.status(c, "PENDING", runner=w, timestamp=t(296 - k))
        em.status(c, "RUNNING", runner=w, attempt=0, timestamp=t(295 - k * 10))
        if k == 5:
            continue  # still running
        failed = k == 3
        em.status(c, "FAILED" if failed else "SUCCESS", runner=w, timestamp=t(290 - k * 10),
                  error_type="KeyError" if failed else None, error_message="'sku'" if failed else None,
                  error_traceback="Traceback (most recent call last):\nKeyError: 'sku'" if failed else None,
                  result=[k] if not failed else None)
    em.status(root, "SUCCESS", runner=workers[0], result="ok", timestamp=t(200))
    em.event("ev-1", "order.paid", {"order": 7}, matched_condition_ids=["c1"], emitted_by_invocation_id=root,
             timestamp=t(250))
    em.trigger_run("tr-1", task_id="shop.ship", event_ids=["ev-1"], source_invocation_ids=[root],
                   triggered_invocation_id=kids[0], logic="and",
                   participants=[{"context_type": "EventContext", "event_id": "ev-1"}], timestamp=t(249))
    runner = Runner("runner-A", "PersistentProcessRunner", hostname="host-a", pid=11)
    for i in range(4):
        em.atomic_decision("ASSIGNED" if i % 2 == 0 else "NOT_ASSIGNED_SLOT", runner=runner, position=0,
                           runner_count=1, cycle_start=t(300), slot_start=t(300), slot_end=t(60),
                           timestamp=t(280 - i * 60))
        em.atomic_execution(f"as-{i}", "COMPLETED", runner=runner, start=t(280 - i * 60), end=t(275 - i * 60),
                            timestamp=t(275 - i * 60))
    assert em.flush()
    em.shutdown()
    return {"root": root, "kids": kids, "running": kids[5], "failed": kids[3]}
