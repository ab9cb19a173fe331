"""Calls: the call an invocation is of (a task and its arguments) and every invocation of one call, as
pynmon's /calls pages show them.

Read from `invocation_calls` (store/sql/0009): one row per status record that named its call
(`tasktrail.call.id`, which the pynenc exporter sends on REGISTERED), a small table, never the transitions.
The invocations' statuses come from the invocation_state cache by their ids. Runners that name no call
(rustvello 0.9, Celery) have none: tasktrail derives no call id from an arguments preview (docs/conventions.md).
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from .errors import NotFound
from .invocations import TimeRange, summaries
from .params import iso
from .reader import conditions, where

# Most characters of the arguments a task's list of calls shows per call (the call's page shows more).
TASK_CALL_ARGUMENTS = 300


def detail(q, call_id: str, app: Optional[str] = None, limit: int = 100) -> dict:
    """One call: {call_id, app_id, apps, task_id, arguments, source, invocation_count, counts_by_status,
    invocations: [invocation summary + registered_at], truncated}; its invocations newest first, at most
    `limit` (`truncated` says there are more; `invocation_count` counts them all, `counts_by_status` those
    listed). `app_id` is null when the
    call id is stored in several apps (then every app's invocations are listed). Raises NotFound when no
    record named the call."""
    clauses, params = conditions(("call_id = ?", call_id), ("app_id = ?", app))
    rows = q(f"""
        SELECT app_id, invocation_id, min(ts) AS registered_at, any_value(task_id) AS task_id,
               arg_max(arguments, ts) FILTER (WHERE arguments IS NOT NULL) AS arguments, any_value(source) AS source
        FROM invocation_calls {where(clauses)}
        GROUP BY app_id, invocation_id ORDER BY registered_at DESC, invocation_id""", params).dicts()
    if not rows:
        raise NotFound(f"call {call_id} is not in the log")
    shown = rows[:limit]
    found = {(s["app_id"], s["invocation_id"]): s for s in summaries(q, [r["invocation_id"] for r in shown])}
    invocations = []
    for r in shown:
        s = found.get((r["app_id"], r["invocation_id"]))
        if s is None:  # its transitions were removed by retention since
            continue
        invocations.append({**s, "registered_at": iso(r["registered_at"])})
    counts: dict[str, int] = {}
    for s in invocations:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    apps = sorted({r["app_id"] for r in rows})
    return {
        "call_id": call_id, "app_id": apps[0] if len(apps) == 1 else None, "apps": apps,
        "task_id": next((r["task_id"] for r in rows if r["task_id"]), None),
        "arguments": next((r["arguments"] for r in rows if r["arguments"] is not None), None),
        "source": rows[0]["source"], "invocation_count": len(rows), "counts_by_status": counts,
        "invocations": invocations, "truncated": len(rows) > limit,
    }


def of_task(q, task_id: str, app: Optional[str], since: Optional[datetime], until: Optional[datetime],
            limit: int = 20) -> list[dict]:
    """The task's calls registered in [since, until), latest first: [{call_id, invocations, last_at,
    arguments}] (`arguments` a preview of at most TASK_CALL_ARGUMENTS characters)."""
    clauses, params = conditions(("task_id = ?", task_id), ("app_id = ?", app), ("ts >= ?", since),
                                 ("ts < ?", until))
    # Grouped by (call, invocation) first, then by call: DuckDB's count(DISTINCT) keeps a set per group and cost
    # ~1 ms more on B9's 8,300 calls of one task; the preview is cut from the 20 rows shown, not from every row,
    # and is the call's latest record that has arguments (args_at: a later record without them does not count).
    rows = q(f"""
        SELECT call_id, count(*) AS n, max(last) AS last_at,
               left(arg_max(args, args_at), {TASK_CALL_ARGUMENTS}) AS arguments
        FROM (SELECT call_id, max(ts) AS last, arg_max(arguments, ts) AS args,
                     max(ts) FILTER (WHERE arguments IS NOT NULL) AS args_at
              FROM invocation_calls {where(clauses)} GROUP BY call_id, invocation_id)
        GROUP BY call_id ORDER BY last_at DESC, call_id LIMIT {int(limit)}""", params).dicts()
    return [{"call_id": r["call_id"], "invocations": int(r["n"]), "last_at": iso(r["last_at"]),
             "arguments": r["arguments"]} for r in rows]
