"""The one liveness rule of runner contexts (query/anomalies.py's module doc says it in full) and its one
vocabulary, `Liveness.state`: alive, stopped or dead — what /, /runners, /ops, the anomalies, /metrics and
the atomic services' current cycle all say. A client (a context that only submits work) is alive while it or
its process is heard from, else stopped: never dead, never flagged silent; pages tag its role `client`.
"""
from __future__ import annotations

from datetime import datetime
from functools import cached_property

from tasktrail.proto import names as n


def _host(col: str) -> str:
    return f"""coalesce({col}->>'$."{n.TT_RUNNER_HOSTNAME}"', {col}->>'$."{n.HOST_NAME}"')"""


def _pid(col: str) -> str:
    return (f"""TRY_CAST(coalesce({col}->>'$."{n.TT_RUNNER_PID}"', {col}->>'$."{n.PROCESS_PID}"') """
            "AS BIGINT)")


def process_last_seen(q, since: datetime) -> dict:
    """{(app_id, hostname, pid): last record time} of every process heard from since `since`, from any
    record its resource names (bounded to the recent past, so zone maps skip the rest of the log)."""
    seen: dict = {}
    rows = q(f"""
        WITH recent AS (
            SELECT resource_id, max(ts) AS last FROM metric_points WHERE ts >= $s GROUP BY 1
            UNION ALL SELECT resource_id, max(ts) FROM log_records WHERE ts >= $s GROUP BY 1
            UNION ALL SELECT resource_id, max(coalesce(end_ts, start_ts)) FROM spans WHERE start_ts >= $s GROUP BY 1)
        SELECT r.app_id, {_host('r.attributes')} AS host, {_pid('r.attributes')} AS pid, max(recent.last) AS last
        FROM recent JOIN resources r USING (resource_id) GROUP BY ALL
        UNION ALL
        SELECT app_id, hostname, pid, max(greatest(last_event, last_transition)) FROM runner_state
        WHERE pid IS NOT NULL AND greatest(last_event, last_transition) >= $s GROUP BY ALL""", {"s": since}).rows
    for app, host, pid, last in rows:
        if host is None or pid is None or last is None:
            continue
        key = (app, host, int(pid))
        if key not in seen or last > seen[key]:
            seen[key] = last
    return seen


# classes that only ever submit work (TasktrailCeleryControl: tasktrail acting on Celery, celery_control.py)
CLIENT_CLASSES = frozenset({"ExternalRunner", "CeleryClient", "TasktrailCeleryControl"})
STATES = ("alive", "stopped", "dead")  # the one liveness vocabulary: /, /runners, /ops, anomalies, /metrics


def stopped(ctx: dict) -> bool:
    """A runner row whose last word is its stop (a later record means it started again)."""
    return ctx["stopped_at"] is not None and (ctx["last_activity"] is None or ctx["last_activity"] <= ctx["stopped_at"])


class Liveness:
    """The one liveness rule (module doc) over the runner cache, read once per use. Rows carry app_id,
    runner_id, parent_runner_id, hostname, pid, heartbeats, last_activity and stopped_at."""

    COLUMNS = """r.app_id, r.runner_id, r.runner_class, r.parent_runner_id, r.hostname, r.pid, r.stopped_at,
                 coalesce(r.heartbeats, 0) AS heartbeats, greatest(r.last_event, r.last_transition) AS last_activity,
                 r.first_seen, r.started_at, r.last_work"""
    ROWS = f"SELECT {COLUMNS} FROM runner_state r"

    def __init__(self, q, dead: datetime, rows: list[dict] | None = None) -> None:
        """`rows`: every runner_state row with ROWS's columns when the caller read them (in a read of its
        own, query/runners.listing_all), else read here."""
        self.q, self.dead = q, dead
        self.runners = {(d["app_id"], d["runner_id"]): d for d in (q(self.ROWS).dicts() if rows is None else rows)}
        self._working_parents = {(d["app_id"], d["parent_runner_id"]) for d in self.runners.values()
                                 if d["parent_runner_id"] and self._works(d)}

    @staticmethod
    def _works(d: dict) -> bool:
        return bool(d["heartbeats"]) or d["last_work"] is not None or d["started_at"] is not None

    def role(self, ctx: dict) -> str:
        """'client' for a context that only submits work (module doc), else 'runner'."""
        key = (ctx["app_id"], ctx["runner_id"])
        d = self.runners.get(key, ctx)
        if d["runner_class"] in CLIENT_CLASSES:
            return "client"
        return "runner" if self._works(d) or key in self._working_parents else "client"

    @cached_property
    def procs(self) -> dict:  # read only when a context without heartbeats needs it
        return process_last_seen(self.q, self.dead)

    def parent(self, ctx: dict) -> dict | None:
        return self.runners.get((ctx["app_id"], ctx["parent_runner_id"]))

    def under_stopped(self, ctx: dict) -> bool:
        """It, or the runner it works under, said it stopped (a worker does not outlive its runner); a client
        also once a runner of its process (app, host, pid) stopped after the client's last record."""
        parent = self.parent(ctx)
        if stopped(ctx) or (parent is not None and stopped(parent)):
            return True
        if ctx["hostname"] is None or ctx["pid"] is None or self.role(ctx) != "client":
            return False
        stop = self._process_stops.get((ctx["app_id"], ctx["hostname"], int(ctx["pid"])))
        return stop is not None and (ctx["last_activity"] is None or ctx["last_activity"] <= stop)

    @cached_property
    def _process_stops(self) -> dict:
        """{(app, host, pid): the latest stop of a runner of that process still stopped}."""
        out: dict = {}
        for d in self.runners.values():
            if stopped(d) and d["hostname"] is not None and d["pid"] is not None:
                key = (d["app_id"], d["hostname"], int(d["pid"]))
                out[key] = max(out.get(key, d["stopped_at"]), d["stopped_at"])
        return out

    def alive(self, ctx: dict) -> bool:
        last = ctx["last_activity"]
        if self.under_stopped(ctx):
            return False
        if last is not None and last >= self.dead:
            return True
        if ctx["heartbeats"]:
            return False  # it heartbeats and stopped: its own word counts
        parent = self.parent(ctx)
        if parent is not None and (parent["last_activity"] or self.dead) > self.dead:
            return True
        return ctx["hostname"] is not None and ctx["pid"] is not None and \
            (ctx["app_id"], ctx["hostname"], int(ctx["pid"])) in self.procs


    def state(self, ctx: dict) -> str:
        """The one liveness word (STATES) of a context: `alive` (the rule above), `stopped` (it or the runner
        it works under said so, or a client no longer heard from: leaving is a client's normal end), else
        `dead` (a runner gone silent without a stop: the runner_silent anomaly)."""
        if self.under_stopped(ctx):
            return "stopped"
        if self.alive(ctx):
            return "alive"
        return "stopped" if self.role(ctx) == "client" else "dead"

    def states(self) -> dict:
        """{(app_id, runner_id): state} of every context."""
        return {key: self.state(d) for key, d in self.runners.items()}
