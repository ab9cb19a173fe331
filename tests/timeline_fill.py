"""Two minutes of a busy app for the timeline's browser tests (app "burst"), sent as tasktrail.v1 records
through the emitter: what pynenc's runners write when client processes call tasks.

- `burst-pr`, a PersistentProcessRunner on host burst-main, with three PPRWorker workers, each busy for the
  whole two minutes (a `burst.loop` each): long-lived contexts, never collapsed;
- a workflow `burst.flow` on worker 0 whose four children are registered by it and run on workers 1 and 2
  (parent → child connectors);
- 40 short-lived ExternalRunner contexts, one per client process (24 on host client-1, 16 on client-2, one
  pid each): each registers a `burst.job` run by a worker (every fourth one instant) and runs a `burst.ping`
  itself in 3 ms (instant bars).

So the timeline has 43 runner contexts; collapsed by parent, host and class they are 3 worker lanes and
2 ExternalRunner lanes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tasktrail.proto.emitter import Emitter, Runner

APP = "burst"
EXTERNALS = 40
CLIENT_HOSTS = {"client-1": 24, "client-2": 16}
WORKERS = 3


def emit_burst(server, *, end_ago_s: float = 20.0, span_s: float = 120.0) -> dict:
    """Send the burst; it ends `end_ago_s` before now and lasts `span_s`. Returns its ids and counts."""
    pr = Runner("burst-pr", "PersistentProcessRunner", hostname="burst-main", pid=100)
    em = Emitter(f"http://{server.otlp_grpc}", APP, pr, token="tok123")
    workers = [Runner(f"burst-w{k}", "PPRWorker", parent_id=pr.runner_id, hostname="burst-main", pid=101 + k)
               for k in range(WORKERS)]
    hosts = [h for h, n in CLIENT_HOSTS.items() for _ in range(n)]
    externals = [Runner(f"burst-ext-{i:02d}", "ExternalRunner", hostname=hosts[i], pid=2000 + i) for i in range(EXTERNALS)]
    t0 = datetime.now(timezone.utc) - timedelta(seconds=end_ago_s + span_s)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    em.runner_started(timestamp=at(-2))
    for w in workers:
        em.runner_started(w, timestamp=at(-1))
    # Each worker busy for the whole span.
    for k, w in enumerate(workers):
        inv = f"burst-loop-{k}"
        em.status(inv, "REGISTERED", task_id="burst.loop", runner=w, timestamp=at(0))
        em.status(inv, "PENDING", runner=w, timestamp=at(0.2))
        em.status(inv, "RUNNING", runner=w, attempt=0, timestamp=at(0.4))
        em.status(inv, "SUCCESS", runner=w, result=k, timestamp=at(span_s))
    # A workflow on worker 0 and its children on workers 1 and 2.
    root = "burst-flow"
    em.status(root, "REGISTERED", task_id="burst.flow", runner=workers[0], workflow_id=root,
              workflow_type="burst.flow", timestamp=at(10))
    em.status(root, "PENDING", runner=workers[0], timestamp=at(10.2))
    em.status(root, "RUNNING", runner=workers[0], attempt=0, timestamp=at(10.5))
    children = []
    for k in range(4):
        c = f"burst-flow-step-{k}"
        children.append(c)
        w = workers[1 + k % 2]
        em.status(c, "REGISTERED", task_id="burst.step", runner=workers[0], parent_invocation_id=root,
                  workflow_id=root, workflow_type="burst.flow", timestamp=at(20 + k * 15))
        em.status(c, "PENDING", runner=w, timestamp=at(20.5 + k * 15))
        em.status(c, "RUNNING", runner=w, attempt=0, timestamp=at(21 + k * 15))
        em.status(c, "SUCCESS", runner=w, result=k, timestamp=at(27 + k * 15))
    em.status(root, "SUCCESS", runner=workers[0], result="ok", timestamp=at(90))
    # 40 client processes, one ExternalRunner context each.
    jobs, pings, instant_jobs = [], [], []
    gap = (span_s - 10) / EXTERNALS
    for i, ext in enumerate(externals):
        s = 5 + i * gap
        em.runner_started(ext, timestamp=at(s - 0.01))
        job = f"burst-job-{i:02d}"
        jobs.append(job)
        w = workers[i % WORKERS]
        em.status(job, "REGISTERED", task_id="burst.job", runner=ext, arguments={"i": i}, timestamp=at(s))
        em.status(job, "PENDING", runner=w, timestamp=at(s + 0.1))
        em.status(job, "RUNNING", runner=w, attempt=0, timestamp=at(s + 0.2))
        instant = i % 4 == 0
        if instant:
            instant_jobs.append(job)
        em.status(job, "SUCCESS", runner=w, result=i, timestamp=at(s + (0.2 if instant else 1.5)))
        ping = f"burst-ping-{i:02d}"
        pings.append(ping)
        for k, st in enumerate(("REGISTERED", "PENDING", "RUNNING", "SUCCESS")):
            em.status(ping, st, task_id="burst.ping", runner=ext, attempt=0 if st == "RUNNING" else None,
                      timestamp=at(s + 0.05 + k * 0.001))
        em.runner_stopped(ext, timestamp=at(s + 0.06))
    assert em.flush()
    em.shutdown()
    return {"root": root, "children": children, "jobs": jobs, "pings": pings, "instant_jobs": instant_jobs,
            "loops": [f"burst-loop-{k}" for k in range(WORKERS)], "contexts": WORKERS + EXTERNALS,
            "collapsed_lanes": WORKERS + len(CLIENT_HOSTS), "invocations": 1 + 4 + 2 * EXTERNALS + WORKERS,
            "since": at(-5), "until": at(span_s + 5)}
