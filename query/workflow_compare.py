"""Workflow runs side by side (up to 10): each member task's count, durations and statuses per run, time
spent per status, and where the slowest run lost its time against the others' median. The runs are read
as query/workflows.py reads one run."""
from __future__ import annotations

from statistics import median
from typing import Optional, Sequence

from .errors import BadRequest
from .workflows import CATEGORIES, MAX_COMPARE, Workflows


def compare(wf: Workflows, ids: Sequence[str], *, app=None) -> dict:
    """The runs `ids` (each once, in order) compared."""
    if not ids:
        raise BadRequest("runs is required: 1 to 10 workflow ids, comma-separated or repeated")
    if len(ids) > MAX_COMPARE:
        raise BadRequest(f"at most {MAX_COMPARE} runs can be compared, got {len(ids)}")
    runs, tasks = [], {}
    for wid in ids:
        r = wf.run(wid, app=app, full=False)
        runs.append(r)
        for m in r["members_list"]:
            _add(tasks.setdefault(m["task_id"] or "?", {}), wid, m)
    types = {r["workflow_type"] for r in runs}
    out_runs = [{k: r[k] for k in ("workflow_id", "app_id", "workflow_type", "status", "is_final", "created_at",
                                   "finished_at", "duration_s", "members", "failed_members", "time_in")}
                for r in runs]
    table = [{"task_id": t, "runs": {wid: cells.get(wid) for wid in ids}} for t, cells in sorted(tasks.items())]
    return {"runs": out_runs, "tasks": table, "same_type": len(types) == 1, "slowest": _slowest(out_runs, tasks)}


def _add(cells: dict, wid: str, m: dict) -> None:
    """Count member `m` of run `wid` in its task's cell."""
    cell = cells.setdefault(wid, {"count": 0, "total_s": 0.0, "max_s": None, "statuses": {},
                                  "wall_s": 0.0, "time_in": {c: 0.0 for c in CATEGORIES}})
    cell["count"] += 1
    cell["statuses"][m["status"]] = cell["statuses"].get(m["status"], 0) + 1
    if m["duration_s"] is not None:
        cell["total_s"] += m["duration_s"]
        cell["max_s"] = max(cell["max_s"] or 0.0, m["duration_s"])
    for c, v in m["time_in"].items():
        cell["time_in"][c] += v
        cell["wall_s"] += v


def _slowest(runs: list[dict], tasks: dict) -> Optional[dict]:
    done = [r for r in runs if r["duration_s"] is not None]
    if len(done) < 2:
        return None
    slow = max(done, key=lambda r: r["duration_s"])
    others = [r for r in done if r is not slow]
    by_task = []  # wall time of the task's members (registered + pending + running), not only run time
    for t, cells in tasks.items():
        mine = cells.get(slow["workflow_id"])
        theirs = [cells[o["workflow_id"]]["wall_s"] if cells.get(o["workflow_id"]) else 0.0 for o in others]
        total = mine["wall_s"] if mine else 0.0
        by_task.append({"task_id": t, "wall_s": total, "median_others_s": median(theirs),
                        "excess_s": total - median(theirs),
                        "time_in": mine["time_in"] if mine else {c: 0.0 for c in CATEGORIES}})
    by_task.sort(key=lambda x: -x["excess_s"])
    by_status = {c: {"total_s": slow["time_in"][c], "median_others_s": median([o["time_in"][c] for o in others])}
                 for c in CATEGORIES}
    for v in by_status.values():
        v["excess_s"] = v["total_s"] - v["median_others_s"]
    worst = max(by_status, key=lambda c: by_status[c]["excess_s"])
    usual = median(o["duration_s"] for o in others)
    return {"workflow_id": slow["workflow_id"], "duration_s": slow["duration_s"],
            "mostly": {"task_id": by_task[0]["task_id"] if by_task else None, "status": worst},
            "median_others_s": usual, "excess_s": slow["duration_s"] - usual,
            "by_task": by_task, "by_status": by_status}
