"""The timeline read model: lanes per runner context, packed sub-lanes, segments and points.

Rules follow pynmon's builder (reference §6.2): PENDING, RUNNING and PAUSED are bars
that run to the next status (or to the window's end, `ongoing`, unless the last status
is final); every other status is a point. An element sits on the lane of the runner
context that made the transition. Within a lane, an invocation's elements form one
interval, and intervals are packed greedily into sub-lanes so overlapping work never
shares a row (touching at a boundary is not overlapping).
"""
from __future__ import annotations

import gc
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Optional, Sequence

from tasktrail.proto.status import FINAL_STATUSES, SEGMENT_STATUSES

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasktrail.proto import history_batch
from tasktrail.proto.history import settle

from . import atomic, events, occupancy, timeline_options
from .adjust import at
from .errors import BadRequest
from .params import iso
from .runners import best_of
from .workflows import CATEGORIES

TERMINAL = FINAL_STATUSES | {"KILLED"}
DEFAULT_LIMIT = 2000
MAX_LIMIT = 20_000
SPAN = timedelta(hours=1)  # a window given by one bound only, or by none, is this long


# What _build reads of each record: a narrow row, so only these columns become Python values.
NARROW = ("invocation_id", "task_id", "timestamp", "status", "runner_id", "worker_id", "parent_invocation_id", "us")
_INV, _TASK, _TS, _STATUS, _RUNNER, _WORKER, _PARENT, _US = range(len(NARROW))
_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def histories(tbl: pa.Table):
    """Each invocation's records (window_sql's Arrow table: grouped by invocation, arrival order) in the
    order and at the times of its settled history (proto/history.py: each record once, causal order,
    adjusted clocks, the dialects' readings): yields (invocation_id, [NARROW tuples]). Histories that
    plain order settles (nearly all) are decided for the whole window at once (proto/history_batch.py),
    the rest one at a time."""
    n = tbl.num_rows
    if not n:
        return
    grp = history_batch.group(tbl.select(["us", "invocation_id", "status", "attempt", "seq", "record_id",
                                          "runner_id", "worker_id", "source"]).rename_columns(
        ["ts", "invocation_id", "status", "attempt", "seq", "record_id", "runner_id", "worker_id", "source"]))
    order = grp.order
    narrow = tbl.select(list(NARROW)).take(pa.array(order))
    rows = list(zip(*(c.to_pylist() for c in narrow.columns)))
    ends = (np.nonzero(np.diff(grp.of_row[order]))[0] + 1).tolist() + [n]
    start = 0
    for k, end in enumerate(ends):
        if grp.plain[k]:
            yield rows[start][_INV], rows[start:end]
        else:
            yield rows[start][_INV], _settled(tbl.take(pa.array(np.sort(order[start:end]))).to_pylist())
        start = end


def _settled(records: list[dict]) -> list[tuple]:
    """One invocation's records (window_sql's columns, arrival order) as its settled history (settle), as
    NARROW tuples."""
    for r in records:
        r["ts"] = r["us"]
    out = []
    for d in settle(records):
        ts = d["timestamp"] if d["ts"] == d["us"] else at(d["ts"]).strftime(_ISO)
        out.append((d["invocation_id"], d["task_id"], ts, d["status"], d["runner_id"], d["worker_id"],
                    d["parent_invocation_id"], d["ts"]))
    return out


def build(rows: pa.Table, since: str, until: str, contexts: dict[str, dict],
          iv: Optional[occupancy.Intervals] = None) -> tuple[list, list, tuple]:
    """`rows`: window_sql's Arrow table, grouped by invocation, arrival order; times (and
    since/until) are fixed-width RFC 3339 strings, which order as the times do. `iv` gathers the
    occupancy's status intervals (query/occupancy.py) from the same histories.
    Returns (lanes, edges, (first time, last time) drawn or Nones). Tens of thousands of small dicts are
    made here and none is cyclic, so the cyclic collector is paused meanwhile (it otherwise doubles the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(rows, since, until, contexts, iv)
    finally:
        if enabled:
            gc.enable()


def _build(rows: pa.Table, since: str, until: str, contexts: dict[str, dict], iv) -> tuple[list, list, tuple]:
    lanes, parents = _elements(rows, since, until, iv)
    out_lanes, span = _pack(lanes, contexts)
    seen = set(pc.unique(rows.column("invocation_id")).to_pylist())
    edges = [{"parent": p, "child": c} for c, p in parents.items() if p in seen]
    return out_lanes, edges, span


def _elements(rows: pa.Table, since: str, until: str, iv: Optional[occupancy.Intervals] = None) -> tuple[dict, dict]:
    """({lane id: {invocation id: entry with its segments, points and bounds _lo/_hi}}, {child: parent})."""
    lanes: dict[str, dict[str, dict]] = {}
    parents: dict[str, str] = {}
    segment_statuses, terminal = SEGMENT_STATUSES, TERMINAL
    for inv_id, hist in histories(rows):
        task = parent = None
        for h in hist:
            if task is None and h[_TASK]:
                task = h[_TASK]
            if parent is None and h[_PARENT]:
                parent = h[_PARENT]
        if parent:
            parents[inv_id] = parent
        if iv is not None:
            iv.add(task, hist, _STATUS, _US)
        last = hist[-1][_STATUS]
        n = len(hist)
        for k in range(n):
            h = hist[k]
            ts, status = h[_TS], h[_STATUS]
            if status in segment_statuses:
                nxt = hist[k + 1] if k + 1 < n else None
                if nxt is not None:
                    end, ongoing, nxt_status = nxt[_TS], False, nxt[_STATUS]
                else:
                    ongoing = last not in terminal
                    end, nxt_status = (until if ongoing else ts), None
                if end > until:
                    end = until
                if end < since:
                    continue
                start = ts if ts > since else since
                element = {"status": status, "start": start, "end": end, "ongoing": ongoing, "next_status": nxt_status}
                lo, hi, key = start, end, "segments"
            else:
                if ts < since or ts > until:
                    continue
                element = {"status": status, "timestamp": ts}
                lo = hi = ts
                key = "points"
            lane = h[_WORKER] or h[_RUNNER] or "(unknown)"
            per_lane = lanes.get(lane)
            if per_lane is None:
                per_lane = lanes[lane] = {}
            entry = per_lane.get(inv_id)
            if entry is None:
                entry = per_lane[inv_id] = {"invocation_id": inv_id, "task_id": task, "segments": [], "points": [],
                                            "_lo": lo, "_hi": hi}
            else:
                if lo < entry["_lo"]:
                    entry["_lo"] = lo
                if hi > entry["_hi"]:
                    entry["_hi"] = hi
            entry[key].append(element)
    return lanes, parents


def _pack(lanes: dict, contexts: dict[str, dict]) -> tuple[list[dict], tuple]:
    """(lanes with their entries packed greedily into sub-lanes (touching is not overlapping), workers
    right under their runner, runners in order of first activity; (first, last) time of any entry)."""
    out_lanes = []
    first: dict[str, str] = {}
    last = None
    for lane_id, entries in lanes.items():
        items = sorted(entries.values(), key=itemgetter("_lo", "_hi"))
        first[lane_id] = items[0]["_lo"]
        hi_lane = max(e["_hi"] for e in items)
        last = hi_lane if last is None or hi_lane > last else last
        sublanes: list[list] = []
        ends: list = []
        for e in items:
            lo, hi = e.pop("_lo"), e.pop("_hi")
            for k, end in enumerate(ends):
                if end <= lo:  # touching at a boundary is not overlapping
                    sublanes[k].append(e)
                    ends[k] = hi
                    break
            else:
                sublanes.append([e])
                ends.append(hi)
        ctx = contexts.get(lane_id, {})
        out_lanes.append({
            "runner_id": lane_id, "runner_class": ctx.get("runner_class"), "hostname": ctx.get("hostname"),
            "pid": ctx.get("pid"), "parent_runner_id": ctx.get("parent_runner_id"),
            "parent_runner_class": ctx.get("parent_runner_class"), "sublanes": sublanes,
        })
    group = {ln["runner_id"]: ln["parent_runner_id"] or ln["runner_id"] for ln in out_lanes}
    group_first: dict[str, str] = {}
    for rid, g in group.items():
        group_first[g] = min(group_first.get(g, first[rid]), first[rid])
    out_lanes.sort(key=lambda ln: (group_first[group[ln["runner_id"]]], group[ln["runner_id"]],
                                   ln["parent_runner_id"] is not None, first[ln["runner_id"]], ln["runner_id"]))
    return out_lanes, (min(first.values(), default=None), last)


ISO = "'%Y-%m-%dT%H:%M:%S.%fZ'"


def window_sql(filters: list[str]) -> str:
    """The rows a timeline of [since, until) needs, in one statement (the chosen ids never travel
    to Python and back): every transition inside the window of the first `limit` invocations
    active in it, plus, for each, its transitions in the look-back range before the window, which is
    what opens a bar across the window's start and what its history's order needs. Invocations count as
    active with a transition inside, or a PENDING/RUNNING/PAUSED one open across the start.
    Times come back as fixed-width RFC 3339 strings, which compare as times, and as micros; rows are in
    arrival order per invocation (the history rule orders them: proto/history.py).
    Parameters: since, until, filters, lookback, since, filters, limit, lookback, until."""
    extra = (" AND " + " AND ".join(filters)) if filters else ""
    return f"""
        WITH inside AS (
            SELECT invocation_id, ts FROM transitions WHERE ts >= ? AND ts < ? {extra}),
        open_before AS (
            SELECT invocation_id, max(ts) AS ts FROM transitions
            WHERE ts >= ? AND ts < ? {extra}
            GROUP BY invocation_id HAVING arg_max(status, status_order(ts, status)) IN ('PENDING', 'RUNNING', 'PAUSED')),
        chosen AS (
            SELECT invocation_id, min(ts) AS first_ts FROM (
                SELECT invocation_id, ts FROM inside UNION ALL SELECT invocation_id, ts FROM open_before)
            GROUP BY invocation_id),
        picked AS (
            SELECT invocation_id, count(*) OVER () AS total FROM chosen ORDER BY first_ts, invocation_id LIMIT ?)
        SELECT (SELECT any_value(total) FROM picked) AS total, r.invocation_id, r.task_id,
               strftime(r.ts, {ISO}) AS timestamp, r.status, r.previous_status, r.attempt, r.runner_id,
               r.worker_id, r.parent_invocation_id, epoch_us(r.ts) AS us, r.seq, r.record_id, r.source
        FROM transitions r
        WHERE r.ts >= ? AND r.ts < ? AND r.invocation_id IN (SELECT invocation_id FROM picked)
        ORDER BY r.invocation_id, r.batch, r.rowid"""


def default_window(latest: Optional[datetime], now: datetime, span) -> tuple[datetime, datetime]:
    """The last `span` up to now; when nothing happened in it, the last `span` of data instead."""
    if latest is not None and latest < now - span:
        return latest - span + (span / 20), latest + span / 20
    return now - span, now


def window(q, since: Optional[datetime], until: Optional[datetime], app: Optional[str],
           now: datetime) -> tuple[datetime, datetime]:
    """The window drawn: [since, until), a missing bound an hour from the other (until: now); without
    either, the last hour (`default_window`)."""
    if since is None and until is None:
        latest = q("SELECT max(ts) FROM transitions" + (" WHERE app_id = ?" if app else ""),
                   [app] if app else []).rows[0][0]
        since, until = default_window(latest, now, SPAN)
    elif since is None:
        since = until - SPAN
    elif until is None:
        until = now
    if until <= since:
        raise BadRequest("until must be after since")
    return since, until


def _filters(app, task, workflow, runner, invocations, hide_system=None) -> tuple[list, list]:
    """(clauses, params); `hide_system`: (since, until) of the rows read, to leave out system tasks' invocations."""
    filters, params = [], []
    if hide_system:
        clause, args = timeline_options.system_filter(*hide_system)
        filters.append(clause)
        params += args
    if app:
        filters.append("app_id = ?")
        params.append(app)
    for col, val in (("task_id", task), ("workflow_id", workflow)):
        if val:
            filters.append(f"invocation_id IN (SELECT invocation_id FROM transitions WHERE {col} = ?)")
            params.append(val)
    if runner:
        filters.append("invocation_id IN (SELECT invocation_id FROM transitions WHERE runner_id = ? OR worker_id = ?)")
        params += [runner, runner]
    if invocations is not None:
        filters.append("invocation_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(invocations))
    return filters, params


def _contexts(q, rows: pa.Table) -> dict[str, dict]:
    """{lane id: its runner context's class, host, pid and parent}; a lane is the worker, else the runner."""
    worker = rows.column("worker_id")  # '' is no worker (the history's `or`)
    lanes_of = pc.coalesce(pc.if_else(pc.equal(worker, ""), pa.scalar(None, pa.string()), worker),
                           rows.column("runner_id"))
    lane_ids = sorted(x for x in pc.unique(lanes_of).to_pylist() if x)
    if not lane_ids:
        return {}
    out = _described(q, lane_ids)
    # A worker's parent that ran no work of its own has no lane: its class names the lanes' header.
    parents = _described(q, sorted({d["parent_runner_id"] for d in out.values() if d["parent_runner_id"]} - set(out)))
    for d in out.values():
        d["parent_runner_class"] = (out.get(d["parent_runner_id"]) or parents.get(d["parent_runner_id"]) or {}).get(
            "runner_class")
    return out


def _described(q, ids: list[str]) -> dict[str, dict]:
    """{runner id: its class, host, pid and parent} as runner_state keeps them."""
    if not ids:
        return {}
    return {d["runner_id"]: d for d in q(f"""
        SELECT runner_id, {best_of('runner_class')} AS runner_class, {best_of('hostname')} AS hostname,
               {best_of('pid')} AS pid, {best_of('parent_runner_id')} AS parent_runner_id
        FROM runner_state WHERE runner_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY runner_id""", [ids]).dicts()}


def read(q, *, since: Optional[datetime], until: Optional[datetime], now: datetime, lookback_s: float,
         limit: int = DEFAULT_LIMIT, app: Optional[str] = None, task: Optional[str] = None,
         workflow: Optional[str] = None, runner: Optional[str] = None,
         invocations: Optional[Sequence[str]] = None, opts: Optional[dict] = None) -> dict:
    """Lanes, sub-lanes, segments and points of the first `limit` invocations active in the window, with
    the window's event markers and atomic-service windows, the occupancy of what is drawn
    (query/occupancy.py) over the range drawn (`view`) and the options applied (`options`;
    query/timeline_options.py: `opts`, default all defaults). Looks back one window length (at least
    `lookback_s`) for work still open at its start."""
    opts = opts or timeline_options.options()
    t0, t1 = window(q, since, until, app, now)
    lookback = t0 - max(t1 - t0, timedelta(seconds=lookback_s))
    filters, fparams = _filters(app, task, workflow, runner, invocations,
                                None if opts["show_system"] else (lookback, t1))
    rows = q.arrow(window_sql(filters), [t0, t1, *fparams, lookback, t0, *fparams, limit, lookback, t1])
    total = int(rows.column("total")[0].as_py()) if rows.num_rows else 0
    shown = pc.count_distinct(rows.column("invocation_id")).as_py()
    iv = occupancy.Intervals(opts["histogram_status"], CATEGORIES, occupancy.us(t1))
    lanes, edges, (lo, hi) = build(rows, iso(t0), iso(t1), _contexts(q, rows), iv)
    out = {"since": iso(t0), "until": iso(t1), "lanes": lanes, "edges": edges,
           "markers": events.markers(q, app=app, since=t0, until=t1, limit=1000),
           "atomic_windows": atomic.windows(q, t0, t1, app) if opts["show_atomic_service"] else [],
           "total": total, "shown": shown, "truncated": total > shown}
    v0, v1 = timeline_options.view(lo, hi, out, (t0, t1), opts["fit"])
    out["view"] = {"since": iso(v0), "until": iso(v1), "fit": opts["fit"]}
    out["occupancy"] = occupancy.occupancy(iv, (t0, t1), (v0, v1), opts["resolution_s"])
    out["options"] = {**{k: opts[k] for k in ("resolution", "resolution_s", "show_system", "show_atomic_service",
                                              "fit")},
                      "histogram_status": [c.lower() for c in opts["histogram_status"]],
                      "system_hidden": 0 if opts["show_system"] else timeline_options.hidden_system(q, t0, t1, app)}
    return out
