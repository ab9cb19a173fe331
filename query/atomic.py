"""Atomic services: their executions (windows), the scheduler's decisions, and the current schedule (the
latest decision of every runner: the cycle's slot assignment as the runners saw it)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from .errors import BadRequest
from .params import BAD_CURSOR, cursor_of, cursor_time, cursor_values, iso
from .reader import where


def _after(cursor: Optional[str]) -> Optional[tuple[datetime, str]]:
    """(time, tie-breaker) a page goes on after, from a cursor of next_cursor's; BadRequest for anything else."""
    values = cursor_values(cursor, 2)
    if values is None:
        return None
    key, tie = values
    if not isinstance(key, str) or not isinstance(tie, str):
        raise BadRequest(BAD_CURSOR)
    return cursor_time(key), tie


def next_cursor(rows: list[dict], limit: int, ts_key: str, tie_key: str) -> Optional[str]:
    """The cursor of the page after `rows` (newest first), or None when they are the last."""
    if len(rows) < limit or not rows or rows[-1][ts_key] is None:
        return None
    return cursor_of(rows[-1][ts_key].rstrip("Z"), rows[-1][tie_key])


def _window(q, table: str, ts_col: str, since: Optional[datetime], until: Optional[datetime], eq: dict,
            order: str, limit: int, page: Optional[tuple] = None, tie_col: str = "") -> list[dict]:
    """Rows of `table` with `ts_col` in [since, until) and the columns of `eq` equal to its given values;
    with `page` (time, tie), only the rows after it in the (ts_col, tie_col) DESC order."""
    clauses, params = [], []
    if page:
        clauses.append(f"({ts_col}, {tie_col}) < (?::TIMESTAMP, ?)")
        params += list(page)
    if since:
        clauses.append(f"{ts_col} >= ?")
        params.append(since)
    if until:
        clauses.append(f"{ts_col} < ?")
        params.append(until)
    for col, val in eq.items():
        if val is not None and val != "":
            clauses.append(f"{col} = ?")
            params.append(val)
    rows = q(f"SELECT * FROM {table} {where(clauses)} ORDER BY {order} LIMIT {limit}", params).dicts()
    for d in rows:
        d.pop("batch", None)
        for k, v in list(d.items()):
            if isinstance(v, datetime):
                d[k] = iso(v)
    return rows


def executions(q, *, app=None, since=None, until=None, runner=None, status=None, limit: int = 50,
               cursor: Optional[str] = None) -> list[dict]:
    """Executions, newest first (`status` upper case); after `cursor` (next_cursor of the page before)."""
    return _window(q, "atomic_service_executions", "start_ts", since, until,
                   {"app_id": app, "runner_id": runner, "status": status},
                   "start_ts DESC NULLS LAST, run_id DESC", limit, _after(cursor), "run_id")


def decisions(q, *, app=None, since=None, until=None, runner=None, reason=None, limit: int = 50,
              cursor: Optional[str] = None) -> list[dict]:
    """The scheduler's decisions, newest first (`reason` upper case); after `cursor`."""
    return _window(q, "atomic_decisions", "ts", since, until,
                   {"app_id": app, "runner_id": runner, "reason": reason},
                   "ts DESC, runner_id DESC", limit, _after(cursor), "runner_id")


def schedule(q, app: Optional[str] = None, live=None) -> dict:
    """The latest decision of every runner alive (`live`: query/liveness.Liveness, when given): the
    current cycle's slot assignment as the runners still in it saw it; `left` counts the runners whose
    latest decision is kept out because they are stopped or dead (one known only by its decisions is alive
    while it decided within --runner-dead-after)."""
    cond, params = ("WHERE app_id = ?", [app]) if app else ("", [])
    rows = q(f"""SELECT runner_id, arg_max(reason, ts) AS reason, max(ts) AS decided_at,
                        arg_max(cycle_start, ts) AS cycle_start, arg_max(slot_start, ts) AS slot_start,
                        arg_max(slot_end, ts) AS slot_end, arg_max(position, ts) AS position,
                        arg_max(runner_count, ts) AS runner_count,
                        arg_max(assigned_runner_id, ts) AS assigned_runner_id,
                        arg_max(message, ts) AS message
                 FROM atomic_decisions {cond} GROUP BY runner_id ORDER BY position NULLS LAST, runner_id""",
             params).dicts()
    left = 0
    if live is not None:  # a runner known only by its decisions is alive while it decides
        states = {rid: state for (a, rid), state in live.states().items() if not app or a == app}
        kept = [d for d in rows if states.get(d["runner_id"], "alive" if d["decided_at"] >= live.dead else "dead")
                == "alive"]
        rows, left = kept, len(rows) - len(kept)
    for d in rows:
        for k in ("decided_at", "cycle_start", "slot_start", "slot_end"):
            d[k] = iso(d[k])
    cycle = max((d["cycle_start"] for d in rows if d["cycle_start"]), default=None)
    return {"cycle_start": cycle, "slots": rows, "left": left}


def windows(q, since: datetime, until: datetime, app: Optional[str] = None) -> list[dict]:
    """Executions open during [since, until) as timeline windows (at most 2,000, oldest first)."""
    rows = q("""SELECT run_id, runner_id, start_ts, end_ts, status, reason
                FROM atomic_service_executions
                WHERE start_ts < ? AND coalesce(end_ts, ?) >= ?""" + (" AND app_id = ?" if app else "")
             + " ORDER BY start_ts LIMIT 2000", [until, until, since] + ([app] if app else [])).dicts()
    for w in rows:
        w["start"], w["end"] = iso(w.pop("start_ts")), iso(w.pop("end_ts"))
    return rows
