"""Events and trigger runs: event records (the latest state of each, with what it triggered), one event
with its trigger runs and invocations, trigger runs (newest first) and one with its events and
invocations, and events as timeline markers."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Optional

from .errors import NotFound
from .invocations import summaries
from .params import MAX_LIMIT, iso
from .reader import TRIGGER_RUNS_OF, conditions, where

# Each event's latest state (its records are folded by event id, the latest value of each field winning).
_EVENT_COLUMNS = """event_id, any_value(app_id) AS app_id, arg_max(event_code, ts) AS event_code, min(ts) AS ts,
                    arg_max(payload, ts) AS payload, arg_max(matched_condition_ids, ts) AS matched_condition_ids,
                    arg_max(valid_condition_ids, ts) AS valid_condition_ids,
                    arg_max(emitted_by_invocation_id, ts) AS emitted_by_invocation_id,
                    arg_max(emitted_by_task_id, ts) AS emitted_by_task_id,
                    arg_max(emitted_by_runner_id, ts) AS emitted_by_runner_id"""
# Timeline marker states -> the condition they keep.
MARKER_STATES = {None: None, "all": None, "matched": "matched", "unmatched": "NOT matched",
                 "triggered": "triggered", "untriggered": "NOT triggered"}


def _window(since: Optional[datetime], until: Optional[datetime], app: Optional[str], *more) -> tuple[list, list]:
    return conditions(("ts >= ?", since), ("ts < ?", until), ("app_id = ?", app), *more)


def listing(q, *, app=None, code=None, since=None, until=None, matched: Optional[bool] = None,
            triggered: Optional[bool] = None, limit: int = 50) -> list[dict]:
    """Event records (latest state of each), newest first, with what they triggered."""
    clauses, params = _window(since, until, app, ("event_code = ?", code))
    having = []
    for flag, expr in ((matched, "len(matched_condition_ids) > 0"),
                       (triggered, "len(triggered_invocation_ids) > 0")):
        if flag is not None:
            having.append(expr if flag else f"NOT ({expr})")
    rows = q(f"""
        WITH e AS (SELECT {_EVENT_COLUMNS} FROM event_records {where(clauses)} GROUP BY event_id),
        t AS (SELECT ev AS event_id, list(DISTINCT triggered_invocation_id) AS ids
              FROM trigger_runs, unnest(event_ids) AS u(ev)
              WHERE triggered_invocation_id IS NOT NULL GROUP BY ev)
        SELECT e.*, coalesce(t.ids, []) AS triggered_invocation_ids FROM e LEFT JOIN t USING (event_id)
        {where(having)}
        ORDER BY ts DESC LIMIT {limit}""", params).dicts()
    for d in rows:
        d["timestamp"] = iso(d.pop("ts"))
        d["matched"] = bool(d["matched_condition_ids"])
        d["triggered"] = bool(d["triggered_invocation_ids"])
    return rows


def _known(q, event_id: str) -> bool:
    return bool(q("SELECT 1 FROM event_records WHERE event_id = ? LIMIT 1", [event_id]).rows)


def detail(q, event_id: str) -> dict:
    """One event, the trigger runs it took part in and the invocations it triggered."""
    if not _known(q, event_id):
        raise NotFound(f"event {event_id} is not in the log")
    ev = row(q, event_id)
    ev["trigger_runs"] = trigger_runs(q, event=event_id, limit=MAX_LIMIT)
    ev["invocations"] = summaries(q, ev["triggered_invocation_ids"])
    return ev


def row(q, event_id: str) -> dict:
    """One event's latest state and the invocations it triggered."""
    r = q(f"SELECT {_EVENT_COLUMNS} FROM event_records WHERE event_id = ? GROUP BY event_id", [event_id]).dicts()[0]
    r["timestamp"] = iso(r.pop("ts"))
    trig = q("""SELECT DISTINCT triggered_invocation_id FROM trigger_runs
                WHERE list_contains(event_ids, ?) AND triggered_invocation_id IS NOT NULL
                ORDER BY 1""", [event_id]).rows
    r["triggered_invocation_ids"] = [t[0] for t in trig]
    r["matched"] = bool(r["matched_condition_ids"])
    r["triggered"] = bool(r["triggered_invocation_ids"])
    return r


def _trigger_run_row(d: dict) -> dict:
    """A trigger_runs row as the API shows it: RFC 3339 times, `timestamp`, participants parsed
    (kept as sent when they are not JSON)."""
    for k in ("ts", "claimed_at", "executed_at"):
        d[k] = iso(d[k])
    d["timestamp"] = d.pop("ts")
    try:
        d["participants"] = json.loads(d["participants"]) if d["participants"] else []
    except ValueError:
        pass
    return d


def trigger_runs(q, *, app=None, since=None, until=None, task=None, event=None, invocation=None,
                 limit: int = 50) -> list[dict]:
    """Trigger runs, newest first (equal times by id); `event` / `invocation` keep those it took part in or
    created (an invocation's through its keys: in a lake, once the folder folded them, as its state)."""
    clauses, params = _window(since, until, app, ("task_id = ?", task), ("list_contains(event_ids, ?)", event))
    if invocation:
        clauses.append(TRIGGER_RUNS_OF)   # through its keys: the runs' row groups, not every trigger run
        params += [invocation] * 3
    rows = q(f"""SELECT * EXCLUDE (batch) FROM trigger_runs {where(clauses)}
                 ORDER BY ts DESC, trigger_run_id LIMIT {limit}""", params).dicts()   # equal times: by id
    return [_trigger_run_row(d) for d in rows]


def trigger_run(q, trigger_run_id: str) -> dict:
    """One trigger run with the invocations it read and created and the events it took part in."""
    rows = q("SELECT * EXCLUDE (batch) FROM trigger_runs WHERE trigger_run_id = ? ORDER BY ts DESC LIMIT 1",
             [trigger_run_id]).dicts()
    if not rows:
        raise NotFound(f"trigger run {trigger_run_id} is not in the log")
    d = _trigger_run_row(rows[0])
    ids = list(d["source_invocation_ids"] or []) + ([d["triggered_invocation_id"]] if d["triggered_invocation_id"] else [])
    d["invocations"] = summaries(q, ids)
    d["events"] = [row(q, e) for e in (d["event_ids"] or []) if _known(q, e)]
    return d


def markers(q, *, app=None, since=None, until=None, code=None, state=None, limit: int = 1000) -> dict:
    """Trigger events in a window as timeline markers: {markers, total, truncated}. `state` is one of
    MARKER_STATES."""
    clauses, params = _window(since, until, app, ("event_code = ?", code))
    cond = MARKER_STATES[state]
    r = q(f"""
        WITH e AS (
          SELECT event_id, arg_max(event_code, ts) AS event_code, min(ts) AS ts,
                 len(arg_max(matched_condition_ids, ts)) > 0 AS matched,
                 arg_max(emitted_by_invocation_id, ts) AS emitted_by_invocation_id,
                 arg_max(emitted_by_runner_id, ts) AS emitted_by_runner_context_id
          FROM event_records {where(clauses)} GROUP BY event_id),
        t AS (SELECT DISTINCT unnest(event_ids) AS event_id FROM trigger_runs
              WHERE triggered_invocation_id IS NOT NULL)
        SELECT e.*, (t.event_id IS NOT NULL) AS triggered, count(*) OVER () AS total
        FROM e LEFT JOIN t USING (event_id)
        {('WHERE ' + cond) if cond else ''} ORDER BY ts LIMIT {int(limit)}""", params).dicts()
    total = int(r[0]["total"]) if r else 0
    items = [{"event_id": d["event_id"], "event_code": d["event_code"], "timestamp": iso(d["ts"]),
              "matched": bool(d["matched"]), "triggered": bool(d["triggered"]),
              "emitted_by_invocation_id": d["emitted_by_invocation_id"],
              "emitted_by_runner_context_id": d["emitted_by_runner_context_id"]} for d in r]
    return {"markers": items, "total": total, "truncated": total > len(items)}
