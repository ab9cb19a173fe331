"""A minute of app "opts" for the timeline options' API and browser tests, sent as tasktrail.v1 records
through the emitter to a live server:

- `opts-R`, a PersistentProcessRunner with four PPRWorker workers, each running 40 140 ms invocations 150 ms
  apart (`opts.fast` on even workers, `opts.slow` on odd ones), each PENDING 60 ms before it runs,
  while one `opts.loop` runs for the whole minute: an occupancy bucket is touched by dozens of intervals
  while only a handful are in flight at once;
- pynenc's two core tasks and Celery's `celery.backend_cleanup` (system tasks), and `opts.core_tasks_like`
  (not one);
- one atomic-service execution window on `opts-R`.

`intervals(records, categories, until)` works the status intervals out of what was sent (the scenario's own
record, not the store), and `brute_peak` counts the most open at once over every time point."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tasktrail.proto.emitter import Emitter, Runner

APP = "opts"
WORKERS = 4
RUNS = 40
SYSTEM_TASKS = ["pynenc.core_tasks.recover_pending_invocations", "pynenc.core_tasks.recover_running_invocations",
                "celery.backend_cleanup"]
CATS = {"registered": {"REGISTERED", "REROUTED", "CONCURRENCY_CONTROLLED"},
        "pending": {"PENDING", "PENDING_RECOVERY", "RETRY"}, "running": {"RUNNING", "RUNNING_RECOVERY"}}


def emit_opts(server, *, end_ago_s: float = 30.0, span_s: float = 60.0) -> dict:
    """Send the scenario ending `end_ago_s` before now. Returns {records: [(inv, task, status, time)],
    system: [invocation ids of system tasks], others, atomic_run, since, until}."""
    r = Runner("opts-R", "PersistentProcessRunner", hostname="opts-host", pid=10)
    em = Emitter(f"http://{server.otlp_grpc}", APP, r, token="tok123")
    workers = [Runner(f"opts-W{k}", "PPRWorker", parent_id=r.runner_id, hostname="opts-host", pid=11 + k)
               for k in range(WORKERS)]
    t0 = datetime.now(timezone.utc) - timedelta(seconds=end_ago_s + span_s)
    records: list[tuple] = []

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    def send(inv, task, status, t, runner, **kw):
        em.status(inv, status, task_id=task, runner=runner, timestamp=t, **kw)
        records.append((inv, task, status, t))

    em.runner_started(timestamp=at(-2))
    for w in workers:
        em.runner_started(w, timestamp=at(-1))
    send("opts-loop", "opts.loop", "REGISTERED", at(0), r)
    send("opts-loop", None, "PENDING", at(0.5), workers[0])
    send("opts-loop", None, "RUNNING", at(1), workers[0], attempt=0)
    send("opts-loop", None, "SUCCESS", at(span_s), workers[0])
    for k, w in enumerate(workers):
        for j in range(RUNS):
            inv, s = f"opts-{k}-{j:02d}", at(10 + 0.017 * k + 0.15 * j)
            send(inv, ("opts.fast", "opts.slow")[k % 2], "REGISTERED", s - timedelta(milliseconds=100), r)
            send(inv, None, "PENDING", s - timedelta(milliseconds=60), w)
            send(inv, None, "RUNNING", s, w, attempt=0)
            send(inv, None, "SUCCESS", s + timedelta(milliseconds=140), w)
    system, others = [], []
    for i, task in enumerate(SYSTEM_TASKS + ["opts.core_tasks_like"]):
        inv = f"opts-sys-{i}"
        (system if task in SYSTEM_TASKS else others).append(inv)
        send(inv, task, "REGISTERED", at(20 + 5 * i), r)
        send(inv, None, "PENDING", at(20.2 + 5 * i), workers[2])
        send(inv, None, "RUNNING", at(20.5 + 5 * i), workers[2], attempt=0)
        send(inv, None, "SUCCESS", at(22 + 5 * i), workers[2])
    em.atomic_execution("opts-as", "completed", runner=r, start=at(40), end=at(45), timestamp=at(45))
    assert em.flush()
    em.shutdown()
    return {"records": records, "system": system, "others": others, "atomic_run": "opts-as",
            "invocations": len({x[0] for x in records}), "since": at(-5), "until": at(span_s + 5)}


def wait_stored(server, sent: dict) -> dict:
    """Wait until every sent transition and the atomic window are stored; returns the window's query."""
    from .helpers import sql, wait_until
    wait_until(lambda: sql(server, f"SELECT count(DISTINCT record_id) FROM transitions WHERE app_id = '{APP}'")[0][0]
               == len(sent["records"]), timeout=30, message="every transition of app opts")
    window = {"app": APP, "since": sent["since"].isoformat(), "until": sent["until"].isoformat()}
    wait_until(lambda: server.get("/timeline", params=window).json()["atomic_windows"], timeout=30,
               message="the atomic window")
    return window


def intervals(records, categories, until: datetime) -> list[tuple]:
    """(invocation, task, category, start, end) of each sent history's statuses in `categories`: from one
    sent record to the next, the last to `until`."""
    by_inv: dict[str, list] = {}
    for inv, task, status, t in records:
        by_inv.setdefault(inv, []).append((t, status, task))
    out = []
    for inv, hist in by_inv.items():
        hist.sort(key=lambda x: x[0])
        task = next(t for _, _, t in hist if t)
        for k, (t, status, _) in enumerate(hist):
            cat = next((c for c in categories if status in CATS[c]), None)
            end = hist[k + 1][0] if k + 1 < len(hist) else until
            if cat and end > t:
                out.append((inv, task, cat, t, end))
    return out


def brute_peak(ivs) -> int:
    """The most intervals [start, end) open at one instant, counted at every start and end and 1 µs before."""
    one = timedelta(microseconds=1)
    points = {p for *_, a, b in ivs for p in (a, b, a - one, b - one)}
    return max((sum(1 for *_, a, b in ivs if a <= p < b) for p in points), default=0)


def parse(ts: str) -> datetime:
    """An API time (RFC 3339 UTC with microseconds) as an aware datetime."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
