"""Invocations: the list (filters, sorts, cursor pages), one invocation's detail, history, attempts and
whole values, and the runs table.

Lists read the invocation_state cache (one row per invocation, folded by the writer). An invocation's own
reads first take its time range there (`time_range`) and filter the log on it: the log is stored in
arrival order, so DuckDB's zone maps on `ts` skip every row group outside the range and the cost follows
the invocation, not the size of the store. Its history comes from one rule (proto/history.py via
query/adjust.py), which the detail, the history, the attempts and the value downloads all settle with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Optional, Sequence

from tasktrail.proto import names
from tasktrail.proto.status import FINAL_SQL, FINAL_STATUSES, is_final

from tasktrail.store.api import INVOCATION_COLUMNS

from . import search, values
from .adjust import adjustment, settled
from .errors import BadRequest, NotFound
from .params import BAD_CURSOR, cursor_of, cursor_time, cursor_values, encode_cursor, iso
from .reader import BY_ID, conditions, state_rows, where

# sort name -> (column, descending, cast of the cursor value)
SORTS = {
    "-created_at": ("created_at", True, "::TIMESTAMP"), "created_at": ("created_at", False, "::TIMESTAMP"),
    "-updated_at": ("updated_at", True, "::TIMESTAMP"), "updated_at": ("updated_at", False, "::TIMESTAMP"),
    "task_id": ("task_id", False, ""), "-task_id": ("task_id", True, ""),
    "status": ("status", False, ""), "-status": ("status", True, ""),
}
# runs sort name -> its keys (column, descending), the invocation id last: a total order for cursor pages.
RUN_KEYS = {None: [("started_at", True), ("invocation_id", True)],
            "-started_at": [("started_at", True), ("invocation_id", True)],
            "started_at": [("started_at", False), ("invocation_id", False)],
            "-duration_s": [("duration_s", True), ("invocation_id", True)],
            "task_id": [("task_id", False), ("started_at", True), ("invocation_id", True)]}
RUN_SORTS = tuple(RUN_KEYS)
# Sources that say an invocation's parent outright: with them, no parent means none (no trace lookup).
PARENT_SAYING_SOURCES = (names.RUSTVELLO_V1, names.TASKTRAIL_V1)
# An invocation's parent invocation and parent event over its invocation_state rows (any app).
PARENTS_SQL = ("any_value(parent_invocation_id) FILTER (WHERE parent_invocation_id IS NOT NULL), "
               "any_value(parent_event_id) FILTER (WHERE parent_event_id IS NOT NULL)")


@dataclass(frozen=True)
class TimeRange:
    """The raw time range of an invocation's records (before any clock adjustment), whether it is final, and
    when read with them (`parents_read`) its parents as invocation_state has them in any app."""
    first: datetime
    last: datetime
    final: bool
    parents_read: bool = False
    parent: Optional[str] = None
    parent_event: Optional[str] = None


# --- the list ---------------------------------------------------------------------------------
def summary(d: dict) -> dict:
    """An invocation_state row as the list shows it."""
    final = d["status"] in FINAL_STATUSES
    created, updated = d["created_at"], d["updated_at"]
    return {
        "invocation_id": d["invocation_id"], "app_id": d["app_id"], "task_id": d["task_id"],
        "status": d["status"], "is_final": final, "parent_invocation_id": d["parent_invocation_id"],
        "workflow_id": d["workflow_id"], "workflow_type": d["workflow_type"],
        "runner_id": d["runner_id"], "worker_id": d["worker_id"], "attempts": int(d["attempts"] or 0),
        "created_at": iso(created), "updated_at": iso(updated),
        "duration_s": (updated - created).total_seconds() if final else None,
    }


STATUS_MODES = ("current", "history")


def status_clause(statuses: Sequence[str], mode: str, since: Optional[datetime]) -> tuple[list, list]:
    """The statuses filter: the status each invocation is in now ("current"), or one it ever had
    ("history", Pynmon's status_mode=history: e.g. ever RETRY), read from the transitions since `since`
    (the window's start), so its cost follows the window."""
    if not statuses:
        return [], []
    marks = ", ".join("?" * len(statuses))
    if mode != "history":
        return [f"status IN ({marks})"], list(statuses)
    return ([f"invocation_id IN (SELECT invocation_id FROM transitions WHERE status IN ({marks})"
             + (" AND ts >= ?)" if since else ")")], [*statuses, *([since] if since else [])])


def _filters(statuses, task, workflow, parent, since, until, text, mode: str = "current") -> tuple[list, list]:
    clauses, params = status_clause(statuses, mode, since)
    for col, val in (("task_id", task), ("workflow_id", workflow), ("parent_invocation_id", parent)):
        if val:
            clauses.append(f"{col} = ?")
            params.append(val)
    more, more_params = conditions(("created_at >= ?", since), ("created_at < ?", until))
    clauses += more
    params += more_params
    if text is not None:  # a search.Search (query/search.py)
        more, more_params = search.where_sql(text, mode, status_clause)
        clauses.append(more)
        params += more_params
    return clauses, params


def select(q, *, app: Optional[str] = None, statuses: Sequence[str] = (), task: Optional[str] = None,
           runner: Optional[str] = None, workflow: Optional[str] = None, parent: Optional[str] = None,
           since: Optional[datetime] = None, until: Optional[datetime] = None,
           text: Optional[search.Search] = None, limit: int = 50, after: Optional[tuple] = None, sort: str = "-created_at",
           status_mode: str = "current") -> list[dict]:
    """Up to `limit + 1` invocation_state rows in `sort` order, after the (key, id) `after`."""
    key, desc, cast = SORTS[sort]
    clauses, params = _filters(statuses, task, workflow, parent, since, until, text, status_mode)
    if after is not None:
        clauses.append(f"({key}, invocation_id) {'<' if desc else '>'} (?{cast}, ?)")
        params += list(after)
    inner, inner_params = [], []
    if app:
        inner.append("app_id = ?")
        inner_params.append(app)
    if runner:
        inner.append("invocation_id IN (SELECT invocation_id FROM transitions WHERE runner_id = ? OR worker_id = ?)")
        inner_params += [runner, runner]
    # The writer-maintained cache: one row per invocation (with `runner`: every invocation that ran
    # there, whoever holds it now, picked from the log); only the rows in flight when every status asked for
    # is one they are in now and none is final (store/open_invocations.py: its read follows the work in flight).
    source = f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM {_table(statuses, status_mode)} {where(inner)}"
    order = "DESC" if desc else "ASC"
    sql = f"""
        WITH inv AS ({source})
        SELECT * FROM inv {where(clauses)}
        ORDER BY {key} {order}, invocation_id {order}
        LIMIT {limit + 1}"""
    return q(sql, inner_params + params).dicts()


def _table(statuses: Sequence[str], mode: str) -> str:
    """The table that holds every invocation whose current status is among `statuses`."""
    if statuses and mode != "history" and not any(s in FINAL_STATUSES for s in statuses):
        return "open_invocations"
    return "invocation_state"


def listing(q, *, limit: int = 50, sort: str = "-created_at", **filters) -> dict:
    """A page of invocations ({items, next_cursor}); `filters` as `select` takes them."""
    rows = select(q, limit=limit, sort=sort, **filters)
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = cursor_of(last[SORTS[sort][0]], last["invocation_id"])
    return {"items": [summary(d) for d in rows[:limit]], "next_cursor": nxt}


def summaries(q, ids: Sequence[str]) -> list[dict]:
    """These invocations as the list shows them, oldest first."""
    if not ids:
        return []
    found, params = state_rows(ids, "* EXCLUDE (id_hash)")   # point lookups for a few (a call's, an event's)
    return [summary(d) for d in q(f"SELECT * FROM {found} ORDER BY created_at", params).dicts()]


# --- one invocation --------------------------------------------------------------------------------
def time_range(q, invocation_id: str, app: Optional[str] = None, parents: bool = False) -> TimeRange:
    """Its range (in `app` when given) from the invocation_state cache, one read; with `parents`, its parents
    too (in any app, for the family's walk up: two more columns cost a point read about 1 ms, so the detail,
    history and logs go without). NotFound when it is not in the log (in that app)."""
    in_app = " FILTER (WHERE app_id = ?)" if app and parents else ""
    sql = (f"SELECT min(first_ts){in_app}, max(last_ts){in_app}, bool_and(status IN ({FINAL_SQL})){in_app}, "
           f"{PARENTS_SQL if parents else 'NULL, NULL'} FROM invocation_state WHERE {BY_ID}"
           + (" AND app_id = ?" if app and not parents else ""))
    params = ([app] * 3 if in_app else []) + [invocation_id, invocation_id] + ([app] if app and not parents else [])
    first, last, final, parent, parent_event = q(sql, params).rows[0]
    if first is None:
        raise NotFound(f"invocation {invocation_id} is not in the log")
    return TimeRange(first, last, bool(final), parents, parent, parent_event)


def transitions(q, invocation_id: str, app: Optional[str], rng: TimeRange,
                previews: values.PreviewLimits) -> list[dict]:
    """Its transition records in arrival order, values as previews (query/values.py)."""
    sql = (f"SELECT {values.transition_columns(previews)} FROM transitions "
           "WHERE invocation_id = ? AND ts BETWEEN ? AND ?")
    params: list = [invocation_id, rng.first, rng.last]
    if app:
        sql += " AND app_id = ?"
        params.append(app)
    rows = q(sql + " ORDER BY batch, rowid", params).dicts()  # arrival order
    if not rows:
        raise NotFound(f"invocation {invocation_id} is not in the log")
    return values.as_previews(rows, previews)


def history(raw: list[dict]) -> list[dict]:
    """The invocation's history, oldest first, by the one rule (proto/history.py): each record once, in
    causal order; `timestamp` is the time shown (moved forward where a clock disagreed), `sent_timestamp`
    the time the record carried and `clock_adjustment_s` how far it was moved (null when not)."""
    return [{"timestamp": iso(r["timestamp"]), "status": r["status"], "previous_status": r["previous_status"],
             "runner_id": r["runner_id"], "worker_id": r["worker_id"], "owner_runner_id": r["owner_runner_id"],
             "attempt": r["attempt"], "source": r["source"], "error_type": r["error_type"],
             "error_message": None if r.get("error_message") is None else str(r["error_message"]),
             "seq": r.get("seq"), "record_id": r.get("record_id"),
             "sent_timestamp": iso(r["sent_timestamp"]), "clock_adjustment_s": r["clock_adjustment_s"]}
            for r in settled(raw)]


def last_of(rows: list[dict], raw: list[dict], col: str):
    """An invocation's latest `col`: from the last record of its settled history that has it, else (a
    column only a record the history drops carries) from the last raw record."""
    for r in reversed(rows):
        if r.get(col) is not None:
            return r[col]
    for r in reversed(raw):
        if r.get(col) is not None:
            return r[col]
    return None


def needs_trace_parent(raw: list[dict]) -> bool:
    """Whether its registration carries trace context from a runner that does not say parents."""
    return any(r["span_id"] and r["source"] not in PARENT_SAYING_SOURCES for r in raw if r["status"] == "REGISTERED")


def detail(invocation_id: str, app: Optional[str], raw: list[dict], *,
           parent_by_trace: Callable[[], Optional[str]], links: Callable[[Optional[str]], dict]) -> dict:
    """The detail of an invocation from its records (`transitions`): `parent_by_trace()` finds a parent
    its records do not name, `links(trace_id)` the links to its trace."""
    rows = settled(raw)

    def last(col):
        return last_of(rows, raw, col)

    status = rows[-1]["status"]
    final = is_final(status)
    tried = attempts(rows)
    created = rows[0]["timestamp"]
    finished = rows[-1]["timestamp"] if final else None
    trace_id = next((a["trace_id"] for a in reversed(tried) if a["trace_id"]), None) or last("trace_id")
    error = None   # the latest error, also of an earlier attempt when a later one succeeded (the page says so)
    if status in ("FAILED", "RETRY") or last("error_type"):
        error = {"type": last("error_type"), "message": last("error_message"), "traceback": last("error_traceback")}
    wf_id = last("workflow_id")
    parent_id = last("parent_invocation_id")
    if parent_id is None and needs_trace_parent(raw):
        parent_id = parent_by_trace()
    return {
        "invocation_id": invocation_id, "app_id": raw[-1]["app_id"], "task_id": last("task_id"),
        "status": status, "is_final": final, "parent_invocation_id": parent_id,
        "parent_event_id": last("parent_event_id"),
        "workflow": {"id": wf_id, "type": last("workflow_type"), "parent_id": last("workflow_parent_id"),
                     "role": ("none" if not wf_id else "root" if wf_id == invocation_id else "member")},
        "attempts": tried, "arguments": last("arguments"), "result": last("result"), "error": error,
        "values": values.described({name: last(name) for name in values.INVOCATION_VALUES}, invocation_id, app),
        "created_at": iso(created), "finished_at": iso(finished),
        "duration_s": (finished - created).total_seconds() if finished else None,
        "clock_adjusted": adjustment(rows),
        "links": links(trace_id),
    }


def attempts(rows: list[dict]) -> list[dict]:
    """One entry per RUNNING episode of a settled history, closed by the next outcome status."""
    out: list[dict] = []
    cur = None
    for r in rows:
        if r["status"] == "RUNNING":
            n = r["attempt"] if r["attempt"] is not None else len(out)
            cur = {"attempt": n, "runner_id": r["runner_id"], "worker_id": r["worker_id"],
                   "started_at": iso(r["timestamp"]), "ended_at": None, "status": "RUNNING",
                   "trace_id": r["trace_id"], "span_id": r["span_id"], "error_type": None, "error_message": None}
            out.append(cur)
        elif cur is not None and r["status"] not in ("PENDING", "PAUSED"):
            cur["ended_at"] = iso(r["timestamp"])
            cur["status"] = r["status"]
            cur["error_type"] = r["error_type"]
            cur["error_message"] = None if r.get("error_message") is None else str(r["error_message"])
            cur["trace_id"] = cur["trace_id"] or r["trace_id"]
            cur["span_id"] = cur["span_id"] or r["span_id"]
            cur = None
    return out


def whole_value(q, invocation_id: str, name: str, app: Optional[str], rng: TimeRange, raw: list[dict],
                previews: values.PreviewLimits) -> tuple[bytes, bool]:
    """The whole value `name` as UTF-8 bytes and whether it is JSON: the value the detail previews, read
    from the record that carries it. NotFound when no record of it carried the value."""
    preview = last_of(settled(raw), raw, name)
    if preview is None:
        raise NotFound(f"invocation {invocation_id} has no {name.replace('_', ' ')}")
    sql, params = values.whole_sql(name, preview, previews)
    params.update(id=invocation_id, lo=rng.first, hi=rng.last)
    if app:
        sql += " AND app_id = $app"
        params["app"] = app
    rows = q(sql + " LIMIT 1", params, max_rows=1).rows
    if not rows:  # removed by retention since the detail was read
        raise NotFound(f"invocation {invocation_id} has no {name.replace('_', ' ')}")
    return bytes(rows[0][0]), bool(rows[0][1])


# --- the runs table ------------------------------------------------------------------------------
def _started_by(d: dict) -> dict:
    """How a run was started: by cron, an event, a trigger, a parent, or submitted."""
    if d["trigger_run_id"]:
        cron = "CronContext" in (d["participants"] or "")
        return {"kind": "cron" if cron else ("event" if d["parent_event_id"] else "trigger"),
                "ref": d["parent_event_id"] if d["parent_event_id"] and not cron else d["trigger_run_id"],
                "trigger_run_id": d["trigger_run_id"], "trigger_id": d.get("trigger_id"),
                "condition_ids": list(d.get("condition_ids") or [])}
    if d["parent_event_id"]:
        return {"kind": "event", "ref": d["parent_event_id"]}
    if d["parent_invocation_id"]:
        return {"kind": "child", "ref": d["parent_invocation_id"]}
    return {"kind": "submitted", "ref": None}


def _run_after(keys: list[tuple[str, bool]], after: list) -> tuple[str, list]:
    """The keyset condition for rows after `after` (one value per key) in `keys` order (NULLS LAST)."""
    ors, params = [], []
    for i, (col, desc) in enumerate(keys):
        if after[i] is None:  # nothing sorts after a NULL but rows equal to it on this key
            continue
        ands = [f"{c} IS NOT DISTINCT FROM ?" for c, _ in keys[:i]]
        ors.append("(" + " AND ".join(ands + [f"({col} {'<' if desc else '>'} ? OR {col} IS NULL)"]) + ")")
        params += after[:i] + [after[i]]
    return "(" + (" OR ".join(ors) or "false") + ")", params


def _cursor_value_ok(v, text: bool) -> bool:
    """A runs cursor's key: text for the text columns, else a finite number a DOUBLE holds (never a bool)."""
    if text:
        return isinstance(v, str)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return abs(v) < 2 ** 63 if isinstance(v, int) else math.isfinite(v)


def run_cursor(cursor: Optional[str], sort: Optional[str]) -> Optional[list]:
    """The key values a runs page goes on after (`cursor` as `runs` wrote it for `sort`); None without one."""
    keys = RUN_KEYS[sort]
    values = cursor_values(cursor, len(keys))
    if values is None:
        return None
    out = []
    for (col, _), v in zip(keys, values):
        if v is not None and col == "started_at":
            v = cursor_time(v)
        elif v is not None and not _cursor_value_ok(v, col in ("task_id", "invocation_id")):
            raise BadRequest(BAD_CURSOR)
        out.append(v)
    if out[-1] is None:
        raise BadRequest(BAD_CURSOR)
    return out


def runs(q, *, app: Optional[str] = None, task: Optional[str] = None, statuses: Sequence[str] = (),
         since: Optional[datetime] = None, until: Optional[datetime] = None, sort: Optional[str] = None,
         limit: int = 50, after: Optional[list] = None, status_mode: str = "current",
         text: Optional[search.Search] = None) -> dict:
    """The runs table: one row per invocation, started descending, with how it was started; a page of
    `limit` after the keys `after` (`run_cursor`), and the cursor of the next one; `text` a search."""
    clauses, params = status_clause(statuses, status_mode, since)
    more, more_params = conditions(("started_at >= ?", since), ("started_at < ?", until), ("task_id = ?", task))
    clauses += more
    params += more_params
    if text is not None:
        more, more_params = search.where_sql(text, status_mode, status_clause)
        clauses.append(more)
        params += more_params
    keys = RUN_KEYS[sort]
    if after is not None:
        cond, after_params = _run_after(keys, after)
        clauses.append(cond)
        params += after_params
    inner = "WHERE app_id = ?" if app else ""
    order = ", ".join(f"{c} {'DESC' if d else 'ASC'} NULLS LAST" for c, d in keys)
    rows = q(f"""
        WITH i AS (
          SELECT app_id, invocation_id, task_id, status, created_at, updated_at,
                 coalesce(started_at, created_at) AS started_at, attempts, parent_invocation_id, parent_event_id
          FROM invocation_state {inner}),
        r AS (SELECT *, CASE WHEN status IN ({FINAL_SQL})
                             THEN epoch(updated_at) - epoch(started_at) END AS duration_s FROM i)
        SELECT r.*, tr.trigger_run_id, tr.trigger_id, tr.condition_ids, tr.participants
        FROM r LEFT JOIN (SELECT triggered_invocation_id, arg_max(trigger_run_id, ts) AS trigger_run_id,
                                 arg_max(trigger_id, ts) AS trigger_id, arg_max(condition_ids, ts) AS condition_ids,
                                 arg_max(participants, ts) AS participants
                          FROM trigger_runs GROUP BY 1) tr ON tr.triggered_invocation_id = r.invocation_id
        {where(clauses)}
        ORDER BY {order} LIMIT {limit + 1}""", ([app] if app else []) + params).dicts()
    items = [_run_row(d) for d in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor([iso(last[c]).rstrip("Z") if c == "started_at" else last[c] for c, _ in keys])
    return {"items": items, "running": any(not i["is_final"] for i in items), "next_cursor": nxt}


def _run_row(d: dict) -> dict:
    return {"invocation_id": d["invocation_id"], "app_id": d["app_id"], "task_id": d["task_id"],
            "status": d["status"], "is_final": d["status"] in FINAL_STATUSES,
            "started_at": iso(d["started_at"]), "updated_at": iso(d["updated_at"]),
            "duration_s": d["duration_s"], "attempts": int(d["attempts"]),
            "retried": int(d["attempts"]) > 1, "started_by": _started_by(d)}
