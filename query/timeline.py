"""The timeline read model: lanes per runner context, packed sub-lanes, segments and points.

Rules follow pynmon's builder (reference §6.2): PENDING, RUNNING and PAUSED are bars
that run to the next status (or to the window's end, `ongoing`, unless the last status
is final); every other status is a point. An element sits on the lane of the runner
context that made the transition. Within a lane, an invocation's elements form one
interval, and intervals are packed greedily into sub-lanes so overlapping work never
shares a row (touching at a boundary is not overlapping).
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from tasktrail.proto.status import FINAL_STATUSES, SEGMENT_STATUSES

from .adjust import adjust

TERMINAL = FINAL_STATUSES | {"KILLED"}


def build(rows: list[dict], since: datetime, until: datetime, contexts: dict[str, dict]) -> tuple[list, list]:
    """`rows`: transitions of the chosen invocations, each with invocation_id, task_id, timestamp,
    status, runner_id, worker_id. Returns (lanes, edges)."""
    by_inv: dict[str, list[dict]] = {}
    for r in rows:
        by_inv.setdefault(r["invocation_id"], []).append(r)
    # lane id -> invocation id -> element dict
    lanes: dict[str, dict[str, dict]] = {}
    parents: dict[str, str] = {}
    for inv_id, hist in by_inv.items():
        hist = adjust(hist)
        task = next((h["task_id"] for h in hist if h.get("task_id")), None)
        parent = next((h["parent_invocation_id"] for h in hist if h.get("parent_invocation_id")), None)
        if parent:
            parents[inv_id] = parent
        last = hist[-1]["status"]
        for i, h in enumerate(hist):
            ts = h["timestamp"]
            lane = h.get("worker_id") or h.get("runner_id") or "(unknown)"
            entry = lanes.setdefault(lane, {}).get(inv_id)
            if entry is None:
                entry = {"invocation_id": inv_id, "task_id": task, "segments": [], "points": [],
                         "_lo": None, "_hi": None}
                lanes[lane][inv_id] = entry
            status = h["status"]
            if status in SEGMENT_STATUSES:
                nxt = hist[i + 1] if i + 1 < len(hist) else None
                end = nxt["timestamp"] if nxt else until
                ongoing = nxt is None and last not in TERMINAL
                if nxt is None and not ongoing:
                    end = ts
                start = max(ts, since)
                end = min(end, until)
                if end < since:
                    continue
                entry["segments"].append({"status": status, "start": start, "end": end, "ongoing": ongoing,
                                          "next_status": nxt["status"] if nxt else None})
                lo, hi = start, end
            else:
                if ts < since or ts > until:
                    continue
                entry["points"].append({"status": status, "timestamp": ts})
                lo = hi = ts
            entry["_lo"] = lo if entry["_lo"] is None else min(entry["_lo"], lo)
            entry["_hi"] = hi if entry["_hi"] is None else max(entry["_hi"], hi)
    out_lanes = []
    for lane_id, entries in lanes.items():
        items = [e for e in entries.values() if e["_lo"] is not None]
        if not items:
            continue
        items.sort(key=lambda e: (e["_lo"], e["_hi"]))
        sublanes: list[list] = []
        ends: list = []
        for e in items:
            for k, end in enumerate(ends):
                if end <= e["_lo"]:  # touching at a boundary is not overlapping
                    sublanes[k].append(e)
                    ends[k] = e["_hi"]
                    break
            else:
                sublanes.append([e])
                ends.append(e["_hi"])
        ctx = contexts.get(lane_id, {})
        out_lanes.append({
            "runner_id": lane_id, "runner_class": ctx.get("runner_class"), "hostname": ctx.get("hostname"),
            "pid": ctx.get("pid"), "parent_runner_id": ctx.get("parent_runner_id"),
            "sublanes": [[_strip(e) for e in sl] for sl in sublanes],
        })
    # Workers right under their runner; runners in order of first activity.
    first = {ln["runner_id"]: min(e["_lo"] for e in lanes[ln["runner_id"]].values() if e["_lo"] is not None)
             for ln in out_lanes}
    group = {ln["runner_id"]: ln["parent_runner_id"] or ln["runner_id"] for ln in out_lanes}
    group_first: dict[str, datetime] = {}
    for rid, g in group.items():
        group_first[g] = min(group_first.get(g, first[rid]), first[rid])
    out_lanes.sort(key=lambda ln: (group_first[group[ln["runner_id"]]], group[ln["runner_id"]],
                                   ln["parent_runner_id"] is not None, first[ln["runner_id"]], ln["runner_id"]))
    edges = [{"parent": p, "child": c} for c, p in parents.items() if p in by_inv]
    return out_lanes, edges


def _strip(e: dict) -> dict:
    return {"invocation_id": e["invocation_id"], "task_id": e["task_id"],
            "segments": e["segments"], "points": e["points"]}


def window_sql(filters: list[str]) -> str:
    """Invocations active in [since, until): with a transition inside it, or open across its start."""
    extra = (" AND " + " AND ".join(filters)) if filters else ""
    return f"""
        WITH inside AS (
            SELECT invocation_id, min(ts) AS first_ts FROM transitions
            WHERE ts >= ? AND ts < ? {extra} GROUP BY invocation_id),
        straddle AS (
            SELECT invocation_id, min(ts) AS first_ts FROM transitions
            WHERE ts >= ? AND ts < ? {extra}
            GROUP BY invocation_id
            HAVING arg_max(status, ts) IN ('PENDING', 'RUNNING', 'PAUSED')),
        chosen AS (
            SELECT invocation_id, min(first_ts) AS first_ts FROM
              (SELECT * FROM inside UNION ALL SELECT * FROM straddle) GROUP BY invocation_id)
        SELECT invocation_id, count(*) OVER () AS total FROM chosen ORDER BY first_ts, invocation_id LIMIT ?"""


def iso_all(lanes: list, iso) -> None:
    """Format every datetime of the lanes in place (kept apart so `build` stays testable)."""
    for ln in lanes:
        for sl in ln["sublanes"]:
            for e in sl:
                for s in e["segments"]:
                    s["start"], s["end"] = iso(s["start"]), iso(s["end"])
                for p in e["points"]:
                    p["timestamp"] = iso(p["timestamp"])


def default_window(latest: Optional[datetime], now: datetime, span) -> tuple[datetime, datetime]:
    """The last `span` up to now; when nothing happened in it, the last `span` of data instead."""
    if latest is not None and latest < now - span:
        return latest - span + (span / 20), latest + span / 20
    return now - span, now
