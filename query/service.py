"""QueryService: every read model the web serves, rebuilt from the log at read time.

The web layer calls only this; it never sees SQL or the store. Times come back as
RFC 3339 UTC strings with microseconds; statuses as canonical upper-case names.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Sequence
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from tasktrail.proto import names
from tasktrail.proto.urlpath import segment
from tasktrail.proto.status import ACTIVE_STATUSES, FINAL_SQL as _FINAL_IN, FINAL_STATUSES, STATUSES, is_final
from tasktrail.store import state
from tasktrail.store.api import EventLog, QueryError, QueryTimeout

from . import log_explorer, sql_guard, timeline as tl, traces, values
from .times import cursor_time, parse_time
from .adjust import adjustment, settled
from .sql_answer import AnswerBuilder, SqlAnswer
from .anomalies import AnomalySettings
from .errors import BadRequest, NotFound
from .health import Health

MAX_LIMIT = 1000
SUMMARY_WINDOW = timedelta(hours=24)  # tasks and workflow types: the default window
DEFAULT_LIMIT = 50
# sort name -> (column, descending, cast of the cursor value)
SORTS = {
    "-created_at": ("created_at", True, "::TIMESTAMP"), "created_at": ("created_at", False, "::TIMESTAMP"),
    "-updated_at": ("updated_at", True, "::TIMESTAMP"), "updated_at": ("updated_at", False, "::TIMESTAMP"),
    "task_id": ("task_id", False, ""), "-task_id": ("task_id", True, ""),
    "status": ("status", False, ""), "-status": ("status", True, ""),
}


@dataclass(frozen=True)
class QuerySettings:
    runner_dead_after_s: float = 600.0
    jaeger_url: Optional[str] = None      # e.g. http://jaeger:16686  → {jaeger}/trace/{trace_id}
    tempo_url: Optional[str] = None       # a template holding {trace_id}
    query_timeout_s: float = 10.0
    sql_timeout_s: float = 10.0
    sql_max_rows: int = 10_000
    sql_max_bytes: int = 32 << 20         # JSON bytes of one ad-hoc SQL answer (query/sql_answer.py)
    sql_wait_s: float = 2.0               # how long a query waits for a free SQL cursor before 429
    family_max_nodes: int = 200
    family_max_depth: int = 16
    # How far before a timeline window to look for work still open at its start: one window length,
    # at least this long (a bar opened earlier than that and silent since is not drawn).
    timeline_lookback_s: float = 3600
    # How long after an invocation's last transition its log lines are still looked for (per-invocation
    # reads are bounded in time so they skip the rest of the log; see QueryService._bracket).
    related_after_s: float = 3600
    anomalies: AnomalySettings = AnomalySettings()
    # Preview sizes of arguments, results, errors and log bodies (query/values.py).
    previews: values.PreviewLimits = values.PreviewLimits()


# Sources that say an invocation's parent outright: with them, no parent means none (no trace lookup).
PARENT_SAYING_SOURCES = (names.RUSTVELLO_V1, names.TASKTRAIL_V1)
_PARENT_SAYING_IN = ", ".join(f"'{x}'" for x in PARENT_SAYING_SOURCES)

def _where(*conditions: tuple) -> tuple[list, list]:
    """(clauses, params) for the (clause, value) pairs whose value is given (not None, not "")."""
    clauses, params = [], []
    for clause, value in conditions:
        if value is not None and value != "":
            clauses.append(clause)
            params.append(value)
    return clauses, params


def _by_ids(n: int) -> str:
    """Lookup of n invocation ids (params: the ids twice) through the state cache's id_hash."""
    ph = ", ".join(["?"] * n)
    hashes = ", ".join(["hash(?::VARCHAR)"] * n)
    return f"id_hash IN ({hashes}) AND invocation_id IN ({ph})"


def iso(value: Any) -> Optional[str]:
    """A naive-UTC datetime from DuckDB as RFC 3339 with microseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def _limit(limit: Optional[int]) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, n: int = 2) -> list:
    """The `n` values a cursor of this server holds; BadRequest for anything else."""
    try:
        pad = "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if not isinstance(values, list) or len(values) != n:
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise BadRequest("cursor is not one this server issued") from None


def _id_list(value: str | Sequence[str]) -> list[str]:
    """Ids from a query parameter: repeated, each value is one id as written; a single value is a comma
    list (its whole text is also tried, so one id holding commas is still found)."""
    values = [value] if isinstance(value, str) else [v for v in value if v]
    if len(values) != 1:
        return values
    parts = [i.strip() for i in values[0].split(",") if i.strip()]
    return parts + ([values[0]] if values[0] not in parts else [])


def _statuses(status: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for s in status or ():
        for part in s.split(","):
            p = part.strip().upper()
            if not p:
                continue
            if p not in STATUSES:
                raise BadRequest(f"unknown status {part!r}; expected one of {', '.join(STATUSES)}")
            out.append(p)
    return out


class QueryService(Health):
    def __init__(self, log: EventLog, settings: QuerySettings = QuerySettings(), clock=None) -> None:
        """`clock()` is the current time as naive UTC (a benchmark sets it to the end of its data)."""
        self.log = log
        self.settings = settings
        self._clock = clock
        # Per-thread memo of invocation brackets for the duration of one page (invocation_page).
        self._page = threading.local()

    def _q(self, sql: str, params: Sequence[Any] = (), max_rows: int = 100_000):
        return self.log.query(sql, params, timeout_s=self.settings.query_timeout_s, max_rows=max_rows)

    # --- apps ------------------------------------------------------------------------
    def apps(self) -> list[dict]:
        r = self._q("""
            WITH a AS (SELECT app_id, min(created_at) AS first_seen, max(updated_at) AS last_seen,
                              count(*) AS invocations FROM invocation_state GROUP BY app_id),
                 b AS (SELECT app_id, min(first_seen) AS first_seen, max(last_event) AS last_seen
                       FROM runner_state GROUP BY app_id),
                 c AS (SELECT app_id, min(ts) AS first_seen, max(ts) AS last_seen FROM log_records GROUP BY app_id)
            SELECT app_id, min(first_seen), max(last_seen), coalesce(max(invocations), 0)
            FROM (SELECT app_id, first_seen, last_seen, invocations FROM a
                  UNION ALL SELECT app_id, first_seen, last_seen, NULL FROM b
                  UNION ALL SELECT app_id, first_seen, last_seen, NULL FROM c)
            GROUP BY app_id ORDER BY app_id""")
        return [{"app_id": a, "first_seen": iso(f), "last_seen": iso(l), "invocations": int(n)}
                for a, f, l, n in r.rows]

    # --- invocations -----------------------------------------------------------------
    def invocations(self, *, app: Optional[str] = None, status: Sequence[str] | None = None,
                    task: Optional[str] = None, runner: Optional[str] = None, workflow: Optional[str] = None,
                    parent: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
                    q: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None,
                    sort: Optional[str] = None) -> dict:
        limit = _limit(limit)
        sort = sort or "-created_at"
        if sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        key, desc, cast = SORTS[sort]
        where, params = [], []
        inner_where, inner_params = [], []
        if app:
            inner_where.append("app_id = ?")
            inner_params.append(app)
        if runner:
            inner_where.append("invocation_id IN (SELECT invocation_id FROM transitions "
                               "WHERE runner_id = ? OR worker_id = ?)")
            inner_params += [runner, runner]
        statuses = _statuses(status)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        for col, val in (("task_id", task), ("workflow_id", workflow), ("parent_invocation_id", parent)):
            if val:
                where.append(f"{col} = ?")
                params.append(val)
        more, more_params = _where(("created_at >= ?", parse_time(since, "since")),
                                   ("created_at < ?", parse_time(until, "until")))
        where += more
        params += more_params
        if q:
            where.append("(invocation_id ILIKE ? OR task_id ILIKE ?)")
            params += [f"%{q}%", f"%{q}%"]
        if cursor:
            c_key, c_id = _decode_cursor(cursor)
            c_key = cursor_time(c_key) if cast else c_key
            if not isinstance(c_key, (str, datetime, type(None))) or not isinstance(c_id, str):
                raise BadRequest("cursor is not one this server issued")
            where.append(f"({key}, invocation_id) {'<' if desc else '>'} (?{cast}, ?)")
            params += [c_key, c_id]
        inner = ('WHERE ' + ' AND '.join(inner_where)) if inner_where else ''
        # The writer-maintained cache: one row per invocation (with `runner`: every invocation that ran
        # there, whoever holds it now, picked from the log).
        source = f"""SELECT app_id, invocation_id, task_id, status, parent_invocation_id, workflow_id,
                            workflow_type, runner_id, worker_id, created_at, updated_at, attempts
                     FROM invocation_state {inner}"""
        sql = f"""
            WITH inv AS ({source})
            SELECT * FROM inv {('WHERE ' + ' AND '.join(where)) if where else ''}
            ORDER BY {key} {'DESC' if desc else 'ASC'}, invocation_id {'DESC' if desc else 'ASC'}
            LIMIT {limit + 1}"""
        r = self._q(sql, inner_params + params)
        items = []
        for d in r.dicts()[:limit]:
            items.append(self._summary(d))
        next_cursor = None
        if len(r.rows) > limit:
            last = r.dicts()[limit - 1]
            value = last[key]
            next_cursor = _encode_cursor([iso(value).rstrip("Z") if isinstance(value, datetime) else value,
                                          last["invocation_id"]])
        return {"items": items, "next_cursor": next_cursor}

    @staticmethod
    def _summary(d: dict) -> dict:
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

    def _bracket(self, invocation_id: str, app: Optional[str] = None):
        """(first, last) time its records carry (raw, before any clock adjustment) and whether it is final,
        from the invocation_state cache; NotFound
        when it is not in the log. Per-invocation reads filter on this range: the log is stored in
        arrival order, so DuckDB's zone maps on `ts` skip every row group outside it and the cost
        follows the invocation, not the size of the store."""
        memo = getattr(self._page, "brackets", None)
        if memo is not None and (invocation_id, app) in memo:
            return memo[(invocation_id, app)]
        sql = f"SELECT min(first_ts), max(last_ts), bool_and(status IN ({_FINAL_IN})) FROM invocation_state " \
              f"WHERE {state.BY_ID}"
        params: list = [invocation_id, invocation_id]
        if app:
            sql += " AND app_id = ?"
            params.append(app)
        first, last, final = self._q(sql, params).rows[0]
        if first is None:
            raise NotFound(f"invocation {invocation_id} is not in the log")
        if memo is not None:
            memo[(invocation_id, app)] = (first, last, bool(final))
        return first, last, bool(final)

    def _transitions(self, invocation_id: str, app: Optional[str]) -> list[dict]:
        first, last, _ = self._bracket(invocation_id, app)
        sql = (f"SELECT {values.transition_columns(self.settings.previews)} FROM transitions "
               "WHERE invocation_id = ? AND ts BETWEEN ? AND ?")
        params: list = [invocation_id, first, last]
        if app:
            sql += " AND app_id = ?"
            params.append(app)
        rows = self._q(sql + " ORDER BY batch, rowid", params).dicts()  # arrival order
        if not rows:
            raise NotFound(f"invocation {invocation_id} is not in the log")
        return values.as_previews(rows, self.settings.previews)

    def history(self, invocation_id: str, app: Optional[str] = None, *, raw: Optional[list] = None) -> list[dict]:
        """The invocation's history, oldest first, by the one rule (proto/history.py): each record once, in
        causal order; `timestamp` is the time shown (moved forward where a clock disagreed), `sent_timestamp`
        the time the record carried and `clock_adjustment_s` how far it was moved (null when not)."""
        rows = settled(raw if raw is not None else self._transitions(invocation_id, app))
        return [{"timestamp": iso(r["timestamp"]), "status": r["status"], "previous_status": r["previous_status"],
                 "runner_id": r["runner_id"], "worker_id": r["worker_id"], "owner_runner_id": r["owner_runner_id"],
                 "attempt": r["attempt"], "source": r["source"], "error_type": r["error_type"],
                 "seq": r.get("seq"), "record_id": r.get("record_id"),
                 "sent_timestamp": iso(r["sent_timestamp"]), "clock_adjustment_s": r["clock_adjustment_s"]}
                for r in rows]

    def invocation_page(self, invocation_id: str, app: Optional[str] = None) -> dict:
        """What the invocation page shows: the detail, its history (from one read of its transitions),
        family, log lines and trigger runs."""
        self._page.brackets = {}  # one bracket read per invocation for the whole page
        try:
            raw = self._transitions(invocation_id, app)
            detail = self.invocation(invocation_id, app, raw=raw)
            detail["history"] = self.history(invocation_id, raw=raw)
            detail["family"] = self.family(invocation_id, app)
            detail["logs"] = self.invocation_logs(invocation_id)
            detail["trigger_runs"] = self.trigger_runs(invocation=invocation_id, limit=100)
        finally:
            self._page.brackets = None
        return detail

    def invocation(self, invocation_id: str, app: Optional[str] = None, *, raw: Optional[list] = None) -> dict:
        raw = raw if raw is not None else self._transitions(invocation_id, app)
        rows = settled(raw)

        def last(col):
            return _last(rows, raw, col)

        status = rows[-1]["status"]
        final = is_final(status)
        attempts = self._attempts(rows)
        created = rows[0]["timestamp"]
        finished = rows[-1]["timestamp"] if final else None
        trace_id = next((a["trace_id"] for a in reversed(attempts) if a["trace_id"]), None) or last("trace_id")
        error = None
        if status in ("FAILED", "RETRY") or last("error_type"):
            error = {"type": last("error_type"), "message": last("error_message"),
                     "traceback": last("error_traceback")}
        wf_id = last("workflow_id")
        parent_id = last("parent_invocation_id")
        if parent_id is None and any(r["span_id"] and r["source"] not in PARENT_SAYING_SOURCES
                                     for r in raw if r["status"] == "REGISTERED"):
            found = self.trace_parents(children=[invocation_id])
            parent_id = found[0][1] if found else None
        return {
            "invocation_id": invocation_id, "app_id": raw[-1]["app_id"], "task_id": last("task_id"),
            "status": status, "is_final": final, "parent_invocation_id": parent_id,
            "parent_event_id": last("parent_event_id"),
            "workflow": {"id": wf_id, "type": last("workflow_type"), "parent_id": last("workflow_parent_id"),
                         "role": ("none" if not wf_id else "root" if wf_id == invocation_id else "member")},
            "attempts": attempts, "arguments": last("arguments"), "result": last("result"), "error": error,
            "values": values.described({name: last(name) for name in values.INVOCATION_VALUES}, invocation_id, app),
            "created_at": iso(created), "finished_at": iso(finished),
            "duration_s": (finished - created).total_seconds() if finished else None,
            "clock_adjusted": adjustment(rows),
            "links": self.trace_links(trace_id),
        }

    # --- huge values: previews in the detail, whole values by download (query/values.py) ---------
    def invocation_value(self, invocation_id: str, name: str, app: Optional[str] = None) -> tuple[bytes, bool]:
        """The whole value `name` (arguments, result, error_message, error_traceback) as UTF-8 bytes, and
        whether it is JSON (arguments and results runners sent as JSON): the value the detail previews,
        read from the record that carries it. Raises NotFound for an unknown invocation or name, or when
        no record of it carried the value."""
        values.check(name)
        raw = self._transitions(invocation_id, app)
        preview = _last(settled(raw), raw, name)
        if preview is None:
            raise NotFound(f"invocation {invocation_id} has no {name.replace('_', ' ')}")
        first, last, _ = self._bracket(invocation_id, app)
        sql, params = values.whole_sql(name, preview, self.settings.previews)
        params.update(id=invocation_id, lo=first, hi=last)
        if app:
            sql += " AND app_id = $app"
            params["app"] = app
        rows = self._q(sql + " LIMIT 1", params, max_rows=1).rows
        if not rows:  # removed by retention since the detail was read
            raise NotFound(f"invocation {invocation_id} has no {name.replace('_', ' ')}")
        return bytes(rows[0][0]), bool(rows[0][1])

    def log_body(self, key: str) -> bytes:
        """The whole body of the log line a preview's url names (`values.log_key`), as UTF-8 bytes.
        Raises BadRequest for a malformed key, NotFound when no line matches it."""
        batch, ts_us, md5 = values.parse_log_key(key)
        rows = self._q(values.LOG_BODY_SQL, {"batch": batch, "ts_us": ts_us, "md5": md5}, max_rows=1).rows
        if not rows:
            raise NotFound(f"no log line {key}")
        return bytes(rows[0][0])

    @staticmethod
    def _attempts(rows: list[dict]) -> list[dict]:
        """One entry per RUNNING episode, closed by the next outcome status."""
        attempts: list[dict] = []
        cur = None
        for r in rows:
            if r["status"] == "RUNNING":
                n = r["attempt"] if r["attempt"] is not None else len(attempts)
                cur = {"attempt": n, "runner_id": r["runner_id"], "worker_id": r["worker_id"],
                       "started_at": iso(r["timestamp"]), "ended_at": None, "status": "RUNNING",
                       "trace_id": r["trace_id"], "span_id": r["span_id"], "error_type": None}
                attempts.append(cur)
            elif cur is not None and r["status"] not in ("PENDING", "PAUSED"):
                cur["ended_at"] = iso(r["timestamp"])
                cur["status"] = r["status"]
                cur["error_type"] = r["error_type"]
                cur["trace_id"] = cur["trace_id"] or r["trace_id"]
                cur["span_id"] = cur["span_id"] or r["span_id"]
                cur = None
        return attempts

    def trace_links(self, trace_id: Optional[str]) -> dict:
        if not trace_id:
            return {"trace": None, "jaeger": None, "tempo": None}
        s = self.settings
        jaeger = None
        if s.jaeger_url:
            jaeger = (s.jaeger_url.format(trace_id=trace_id) if "{trace_id}" in s.jaeger_url
                      else f"{s.jaeger_url.rstrip('/')}/trace/{trace_id}")
        tempo = s.tempo_url.format(trace_id=trace_id) if s.tempo_url else None
        return {"trace": f"/traces/{segment(trace_id)}", "jaeger": jaeger, "tempo": tempo}

    # --- parent by trace context ---------------------------------------------------------
    TRACE_PARENTS = """
        SELECT DISTINCT t.invocation_id AS child,
               CASE WHEN s.invocation_id IS NOT NULL AND s.invocation_id <> t.invocation_id THEN s.invocation_id
                    ELSE p.invocation_id END AS parent
        FROM transitions t
        JOIN spans s ON s.span_id = t.span_id AND s.trace_id = t.trace_id AND s.start_ts BETWEEN $lo AND $hi
        LEFT JOIN spans p ON p.span_id = s.parent_span_id AND p.trace_id = s.trace_id AND p.start_ts BETWEEN $lo AND $hi
        WHERE t.status = 'REGISTERED' AND t.parent_invocation_id IS NULL AND t.ts BETWEEN $t_lo AND $t_hi
          AND {where}"""

    def _range(self, ids: Sequence[str]):
        """(first transition, last transition or None while any is not final) of these invocations."""
        ids = list(ids)
        row = self._q(f"SELECT min(first_ts), max(last_ts), bool_and(status IN ({_FINAL_IN})) "
                      f"FROM invocation_state WHERE {_by_ids(len(ids))}", ids + ids).rows[0]
        return (row[0], row[1] if row[2] else None) if row[0] is not None else (None, None)

    def trace_parents(self, *, children: Sequence[str] = (), parents: Sequence[str] = ()) -> list[tuple]:
        """(child, parent) links from trace context: a task registered inside another invocation's span
        (or inside a span whose parent belongs to another invocation, as Celery's publish spans are).
        Runners that say the parent outright (rustvello, tasktrail.v1) never need this. Bounded in time
        by the invocations' own range (spans start up to a day before), so the join skips the rest."""
        lo, hi = self._range(children or parents)
        if lo is None:
            return []
        far = datetime.max.replace(year=9999)
        span_lo = lo - timedelta(days=1)
        if children:
            where, params = "t.invocation_id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": list(children)}
            t_lo, t_hi = lo, hi or far
        else:
            traces = [r[0] for r in self._q("SELECT DISTINCT trace_id FROM spans WHERE invocation_id IN "
                                            "(SELECT unnest(?::VARCHAR[])) AND start_ts BETWEEN ? AND ?",
                                            [list(parents), span_lo, hi or far]).rows]
            if not traces:  # no spans of these invocations: nothing can hang below them by trace context
                return []
            where, params = "t.trace_id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": traces}
            # Children are registered while a parent runs; a little after its end for slow exporters.
            t_lo, t_hi = lo, (hi + timedelta(seconds=self.settings.related_after_s)) if hi else far
        params.update(lo=span_lo, hi=hi or far, t_lo=t_lo, t_hi=t_hi)
        rows = self._q(self.TRACE_PARENTS.format(where=where), params).rows
        return [(c, p) for c, p in rows if p and p != c and (not parents or p in parents)]

    def _has_transition(self, invocation_id: str, condition: str) -> bool:
        """Whether any of its transitions meets `condition` (SQL), read within its own time range."""
        try:
            first, last, _ = self._bracket(invocation_id)
        except NotFound:
            return False
        return bool(self._q(f"SELECT 1 FROM transitions WHERE invocation_id = ? AND ts BETWEEN ? AND ? "
                            f"AND {condition} LIMIT 1", [invocation_id, first, last]).rows)

    # --- family ----------------------------------------------------------------------
    def family(self, invocation_id: str, app: Optional[str] = None) -> dict:
        """The tree around an invocation: up to its root, then every descendant (direct children,
        children of the events it emitted and of the triggers it fired). Parent links come from the
        invocation_state cache, one row per invocation, instead of every transition."""
        self._bracket(invocation_id, app)  # 404 when unknown
        s = self.settings
        root, seen = invocation_id, {invocation_id}
        for _ in range(s.family_max_depth * 4):
            r = self._q(f"""SELECT any_value(parent_invocation_id) FILTER (WHERE parent_invocation_id IS NOT NULL),
                                  any_value(parent_event_id) FILTER (WHERE parent_event_id IS NOT NULL)
                           FROM invocation_state WHERE {state.BY_ID}""", [root, root]).rows
            parent, parent_event = r[0] if r else (None, None)
            if not parent and parent_event:
                e = self._q("SELECT arg_max(emitted_by_invocation_id, ts) FROM event_records WHERE event_id = ?",
                            [parent_event]).rows
                parent = e[0][0] if e else None
            # A registration with trace context from a runner that does not say parents: look by trace.
            if not parent and self._has_transition(root, "status = 'REGISTERED' AND span_id IS NOT NULL AND "
                                                         f"source NOT IN ({_PARENT_SAYING_IN})"):
                found = self.trace_parents(children=[root])
                parent = found[0][1] if found else None
            if not parent:
                t = self._q("""SELECT source_invocation_ids[1] FROM trigger_runs
                               WHERE triggered_invocation_id = ? AND len(source_invocation_ids) > 0 LIMIT 1""",
                            [root]).rows
                parent = t[0][0] if t else None
            if not parent or parent in seen:
                break
            seen.add(parent)
            root = parent
        nodes_depth = {root: 0}
        # Children found by trace context exist only where a runner does not say parents (Celery): a
        # family whose root comes from rustvello or tasktrail.v1 needs no span join.
        by_trace = self._has_transition(root, f"source NOT IN ({_PARENT_SAYING_IN})")
        edges: list[dict] = []
        frontier, truncated = [root], False
        depth = 0
        while frontier and depth < s.family_max_depth:
            depth += 1
            ph = ", ".join("?" * len(frontier))
            r = self._q(f"""
                SELECT DISTINCT parent_invocation_id AS parent, invocation_id AS child, 'direct' AS kind
                  FROM invocation_state WHERE parent_invocation_id IN ({ph})
                UNION
                SELECT e.emitted_by_invocation_id, t.invocation_id, 'event'
                  FROM event_records e JOIN invocation_state t ON t.parent_event_id = e.event_id
                 WHERE e.emitted_by_invocation_id IN ({ph})
                UNION
                SELECT src.sid, tr.triggered_invocation_id, 'trigger'
                  FROM trigger_runs tr, unnest(tr.source_invocation_ids) AS src(sid)
                 WHERE src.sid IN ({ph}) AND tr.triggered_invocation_id IS NOT NULL""",
                        frontier * 3).rows
            if by_trace:
                r = list(r) + [(p, c, "direct") for c, p in self.trace_parents(parents=frontier)]
            nxt = []
            for parent, child, kind in sorted(r, key=lambda x: (x[0], x[1], x[2])):
                edge = {"parent": parent, "child": child, "kind": kind}
                if child in nodes_depth:
                    if edge not in edges and child != root:  # a second relation to a node already placed
                        edges.append(edge)
                    continue
                if len(nodes_depth) >= s.family_max_nodes:
                    truncated = True
                    break
                nodes_depth[child] = depth
                edges.append(edge)
                nxt.append(child)
            frontier = nxt
        if frontier and depth >= s.family_max_depth:
            truncated = True
        ids = list(nodes_depth)
        ph = ", ".join("?" * len(ids))
        info = {d["invocation_id"]: d for d in self._q(f"""
            SELECT invocation_id, any_value(task_id) FILTER (WHERE task_id IS NOT NULL) AS task_id,
                   arg_max(status, status_key) AS status, min(created_at) AS created_at,
                   max(updated_at) AS updated_at
            FROM invocation_state WHERE {_by_ids(len(ids))} GROUP BY invocation_id""", ids + ids).dicts()}
        nodes = []
        for i in ids:
            d = info.get(i, {})
            final = d.get("status") in FINAL_STATUSES
            nodes.append({"invocation_id": i, "task_id": d.get("task_id"), "status": d.get("status"),
                          "created_at": iso(d.get("created_at")),
                          "duration_s": (d["updated_at"] - d["created_at"]).total_seconds() if final else None,
                          "depth": nodes_depth[i]})
        return {"root_id": root, "nodes": nodes, "edges": edges, "truncated": truncated}

    # --- runners ---------------------------------------------------------------------
    def runners(self, app: Optional[str] = None, runner_id: Optional[str] = None) -> list[dict]:
        where, params = [], []
        if app:
            where.append("r.app_id = ?")
            params.append(app)
        if runner_id:
            where.append("r.runner_id = ?")
            params.append(runner_id)
        r = self._q(f"""
            WITH running AS (
              SELECT coalesce(worker_id, runner_id) AS rid, runner_id AS top, list(invocation_id) AS ids
              FROM invocation_state WHERE status = 'RUNNING' GROUP BY ALL)
            SELECT r.*, (SELECT flatten(list(ids)) FROM running WHERE running.rid = r.runner_id
                                                               OR running.top = r.runner_id) AS running_ids
            FROM runners r {('WHERE ' + ' AND '.join(where)) if where else ''}
            ORDER BY r.first_seen, r.runner_id""", params)
        from .anomalies import Liveness
        live = Liveness(self._q, self._now() - timedelta(seconds=self.settings.runner_dead_after_s))
        out = []
        for d in r.dicts():
            last = d["last_activity"]
            stopped = d["stopped_at"]
            alive = live.alive(d)
            out.append({
                "runner_id": d["runner_id"], "app_id": d["app_id"], "runner_class": d["runner_class"],
                "parent_runner_id": d["parent_runner_id"], "hostname": d["hostname"], "pid": d["pid"],
                "first_seen": iso(d["first_seen"]), "last_heartbeat": iso(d["last_heartbeat"]),
                "last_activity": iso(last), "stopped_at": iso(stopped), "alive": alive, "role": live.role(d),
                "running_invocations": sorted(set(d["running_ids"] or [])),
            })
        return out

    def runner(self, runner_id: str, app: Optional[str] = None) -> dict:
        found = self.runners(app, runner_id)
        if not found:
            raise NotFound(f"runner {runner_id} is not in the log")
        runner = found[0]
        runner["workers"] = [w for w in self.runners(app) if w["parent_runner_id"] == runner_id]
        recent = self._q("""SELECT ts, invocation_id, task_id, status FROM transitions
                            WHERE runner_id = ? OR worker_id = ? ORDER BY ts DESC LIMIT 50""",
                         [runner_id, runner_id]).rows
        runner["recent_activity"] = [{"timestamp": iso(t), "invocation_id": i, "task_id": k, "status": s}
                                     for t, i, k, s in recent]
        hb = self._q("""SELECT ts, atomic_eligible, consumed_queues FROM runner_events
                        WHERE runner_id = ? AND kind = 'heartbeat' ORDER BY ts DESC LIMIT 20""", [runner_id]).rows
        runner["heartbeats"] = [{"timestamp": iso(t), "atomic_eligible": e, "consumed_queues": q}
                                for t, e, q in hb]
        return runner

    # --- atomic services, events, trigger runs ---------------------------------------
    def _window(self, table: str, ts_col: str, since, until, eq: dict, order: str, limit: Optional[int]) -> list[dict]:
        where, params = [], []
        t0, t1 = parse_time(since, "since"), parse_time(until, "until")
        if t0:
            where.append(f"{ts_col} >= ?")
            params.append(t0)
        if t1:
            where.append(f"{ts_col} < ?")
            params.append(t1)
        for col, val in eq.items():
            if val is not None and val != "":
                where.append(f"{col} = ?")
                params.append(val)
        sql = (f"SELECT * FROM {table} {('WHERE ' + ' AND '.join(where)) if where else ''} "
               f"ORDER BY {order} LIMIT {_limit(limit)}")
        rows = self._q(sql, params).dicts()
        for d in rows:
            d.pop("batch", None)
            for k, v in list(d.items()):
                if isinstance(v, datetime):
                    d[k] = iso(v)
        return rows

    def atomic_executions(self, *, app=None, since=None, until=None, runner=None, status=None, limit=None):
        return self._window("atomic_service_executions", "start_ts", since, until,
                            {"app_id": app, "runner_id": runner, "status": status.upper() if status else None},
                            "start_ts DESC NULLS LAST", limit)

    def atomic_decisions(self, *, app=None, since=None, until=None, runner=None, reason=None, limit=None):
        return self._window("atomic_decisions", "ts", since, until,
                            {"app_id": app, "runner_id": runner, "reason": reason.upper() if reason else None},
                            "ts DESC", limit)

    def events(self, *, app=None, code=None, since=None, until=None, matched=None, triggered=None,
               limit=None) -> list[dict]:
        """Event records (latest state of each), newest first, with what they triggered."""
        where, params = _where(("ts >= ?", parse_time(since, "since")), ("ts < ?", parse_time(until, "until")),
                               ("app_id = ?", app), ("event_code = ?", code))
        having = []
        for name, val, expr in (("matched", matched, "len(matched_condition_ids) > 0"),
                                ("triggered", triggered, "len(triggered_invocation_ids) > 0")):
            if val is None or val == "":
                continue
            flag = _bool(name, val)
            having.append(expr if flag else f"NOT ({expr})")
        rows = self._q(f"""
            WITH e AS (
              SELECT event_id, any_value(app_id) AS app_id, arg_max(event_code, ts) AS event_code, min(ts) AS ts,
                     arg_max(payload, ts) AS payload, arg_max(matched_condition_ids, ts) AS matched_condition_ids,
                     arg_max(valid_condition_ids, ts) AS valid_condition_ids,
                     arg_max(emitted_by_invocation_id, ts) AS emitted_by_invocation_id,
                     arg_max(emitted_by_task_id, ts) AS emitted_by_task_id,
                     arg_max(emitted_by_runner_id, ts) AS emitted_by_runner_id
              FROM event_records {('WHERE ' + ' AND '.join(where)) if where else ''} GROUP BY event_id),
            t AS (SELECT ev AS event_id, list(DISTINCT triggered_invocation_id) AS ids
                  FROM trigger_runs, unnest(event_ids) AS u(ev)
                  WHERE triggered_invocation_id IS NOT NULL GROUP BY ev)
            SELECT e.*, coalesce(t.ids, []) AS triggered_invocation_ids FROM e LEFT JOIN t USING (event_id)
            {('WHERE ' + ' AND '.join(having)) if having else ''}
            ORDER BY ts DESC LIMIT {_limit(limit)}""", params).dicts()
        for d in rows:
            d["timestamp"] = iso(d.pop("ts"))
            d["matched"] = bool(d["matched_condition_ids"])
            d["triggered"] = bool(d["triggered_invocation_ids"])
        return rows

    def event(self, event_id: str) -> dict:
        if not self._q("SELECT 1 FROM event_records WHERE event_id = ? LIMIT 1", [event_id]).rows:
            raise NotFound(f"event {event_id} is not in the log")
        ev = self._event_row(event_id)
        ev["trigger_runs"] = self.trigger_runs(event=event_id, limit=MAX_LIMIT)
        ev["invocations"] = self._summaries(ev["triggered_invocation_ids"])
        return ev

    def _event_row(self, event_id: str) -> dict:
        r = self._q("""SELECT event_id, any_value(app_id) AS app_id, arg_max(event_code, ts) AS event_code,
                              min(ts) AS ts, arg_max(payload, ts) AS payload,
                              arg_max(matched_condition_ids, ts) AS matched_condition_ids,
                              arg_max(valid_condition_ids, ts) AS valid_condition_ids,
                              arg_max(emitted_by_invocation_id, ts) AS emitted_by_invocation_id,
                              arg_max(emitted_by_task_id, ts) AS emitted_by_task_id,
                              arg_max(emitted_by_runner_id, ts) AS emitted_by_runner_id
                       FROM event_records WHERE event_id = ? GROUP BY event_id""", [event_id]).dicts()[0]
        r["timestamp"] = iso(r.pop("ts"))
        trig = self._q("""SELECT DISTINCT triggered_invocation_id FROM trigger_runs
                          WHERE list_contains(event_ids, ?) AND triggered_invocation_id IS NOT NULL
                          ORDER BY 1""", [event_id]).rows
        r["triggered_invocation_ids"] = [t[0] for t in trig]
        r["matched"] = bool(r["matched_condition_ids"])
        r["triggered"] = bool(r["triggered_invocation_ids"])
        return r

    def _summaries(self, ids: list[str]) -> list[dict]:
        if not ids:
            return []
        ids = list(ids)
        r = self._q(f"SELECT * EXCLUDE (id_hash) FROM invocation_state WHERE {_by_ids(len(ids))} ORDER BY created_at",
                    ids + ids).dicts()
        return [self._summary(d) for d in r]

    def trigger_runs(self, *, app=None, since=None, until=None, task=None, event=None, invocation=None,
                     limit=None) -> list[dict]:
        """Trigger runs, newest first; `event` / `invocation` keep those it took part in or created."""
        where, params = _where(("ts >= ?", parse_time(since, "since")), ("ts < ?", parse_time(until, "until")),
                               ("app_id = ?", app), ("task_id = ?", task), ("list_contains(event_ids, ?)", event))
        if invocation:
            where.append("(triggered_invocation_id = ? OR list_contains(source_invocation_ids, ?))")
            params += [invocation, invocation]
        rows = self._q(f"""SELECT * EXCLUDE (batch) FROM trigger_runs
                           {('WHERE ' + ' AND '.join(where)) if where else ''}
                           ORDER BY ts DESC LIMIT {_limit(limit)}""", params).dicts()
        return [_trigger_run_row(d) for d in rows]

    def trigger_run(self, trigger_run_id: str) -> dict:
        rows = self._q("SELECT * EXCLUDE (batch) FROM trigger_runs WHERE trigger_run_id = ? ORDER BY ts DESC LIMIT 1",
                       [trigger_run_id]).dicts()
        if not rows:
            raise NotFound(f"trigger run {trigger_run_id} is not in the log")
        d = _trigger_run_row(rows[0])
        ids = list(d["source_invocation_ids"] or []) + ([d["triggered_invocation_id"]] if d["triggered_invocation_id"] else [])
        d["invocations"] = self._summaries(ids)
        d["events"] = [self._event_row(e) for e in (d["event_ids"] or [])
                       if self._q("SELECT 1 FROM event_records WHERE event_id = ? LIMIT 1", [e]).rows]
        return d

    # --- logs of one invocation -------------------------------------------------------
    def invocation_logs(self, invocation_id: str, limit: int = 1000) -> list[dict]:
        """Its log lines, oldest first: by attribute, or through the trace context of its spans.
        Looked for from a minute before its first transition to `related_after_s` after its last
        (unbounded while it is not final), so the read skips the rest of the log."""
        first, last, final = self._bracket(invocation_id)
        since = iso(first - timedelta(seconds=60))
        until = iso(last + timedelta(seconds=self.settings.related_after_s)) if final else None
        return list(reversed(self.logs(invocation=invocation_id, since=since, until=until,
                                       limit=min(limit, MAX_LIMIT))["items"]))

    # --- atomic-service schedule --------------------------------------------------------
    def atomic_schedule(self, app: Optional[str] = None) -> dict:
        """The latest decision of every runner: the current cycle's slot assignment as the runners saw it."""
        cond, params = ("WHERE app_id = ?", [app]) if app else ("", [])
        rows = self._q(f"""SELECT runner_id, arg_max(reason, ts) AS reason, max(ts) AS decided_at,
                                  arg_max(cycle_start, ts) AS cycle_start, arg_max(slot_start, ts) AS slot_start,
                                  arg_max(slot_end, ts) AS slot_end, arg_max(position, ts) AS position,
                                  arg_max(runner_count, ts) AS runner_count,
                                  arg_max(assigned_runner_id, ts) AS assigned_runner_id,
                                  arg_max(message, ts) AS message
                           FROM atomic_decisions {cond} GROUP BY runner_id ORDER BY position NULLS LAST, runner_id""",
                       params).dicts()
        for d in rows:
            for k in ("decided_at", "cycle_start", "slot_start", "slot_end"):
                d[k] = iso(d[k])
        cycle = max((d["cycle_start"] for d in rows if d["cycle_start"]), default=None)
        return {"cycle_start": cycle, "slots": rows}

    # --- traces ----------------------------------------------------------------------
    def trace(self, trace_id: str) -> dict:
        """The trace's spans as OTLP/JSON `{resourceSpans}` from the stored spans: each span once, clocks
        adjusted as query/traces.py says (an adjusted span carries a `tasktrail` object with the shift in
        nanos, the sent times and why). Raises BadRequest for an id that is not 32 hex characters, NotFound
        when no span of it is stored."""
        tid = trace_id.lower()
        if len(tid) != 32 or any(c not in "0123456789abcdef" for c in tid):
            raise BadRequest(f"trace id must be 32 hex characters, got {trace_id!r}")
        rows = self._q("""SELECT s.*, r.attributes AS resource_attributes FROM spans s
                          LEFT JOIN (SELECT resource_id, any_value(attributes) AS attributes FROM resources
                                     GROUP BY resource_id) r USING (resource_id)
                          WHERE trace_id = ? ORDER BY s.batch, s.rowid""", [tid]).dicts()
        if not rows:
            raise NotFound(f"trace {tid} is not in the log")
        rows = traces.dedupe(rows)  # each span once, as first stored
        resources: dict = {}
        for d in rows:
            if d["resource_id"] not in resources:
                resources[d["resource_id"]] = json.loads(d["resource_attributes"] or "{}")
            attrs = resources[d["resource_id"]]
            d["host"] = attrs.get("host.name") or attrs.get(names.TT_RUNNER_HOSTNAME) or d["resource_id"]
            d["start_ns"], d["end_ns"] = _nanos(d["start_ts"]), _nanos(d["end_ts"])
        fixes = traces.adjust(rows)
        rows.sort(key=lambda d: (d["start_ns"] + fixes.get(d["span_id"], {}).get("clockAdjustmentNs", 0), d["span_id"]))
        by_res: dict = {}
        for d in rows:
            res = by_res.setdefault(d["resource_id"], {"resource": {"attributes": _kv(resources[d["resource_id"]])},
                                                       "scopes": {}})
            scope = res["scopes"].setdefault(d["scope_name"] or "", [])
            fix = fixes.get(d["span_id"])
            start, end = d["start_ns"], d["end_ns"]
            if fix:
                start, end = start + fix["clockAdjustmentNs"], max(end, d["start_ns"]) + fix["clockAdjustmentNs"]
            span = {"traceId": d["trace_id"], "spanId": d["span_id"], "name": d["name"], "kind": d["kind"],
                    "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
                    "attributes": _kv(json.loads(d["attributes"] or "{}")),
                    "status": {"code": d["status_code"], **({"message": d["status_message"]} if d["status_message"] else {})}}
            if d["parent_span_id"]:
                span["parentSpanId"] = d["parent_span_id"]
            if d["events"]:
                span["events"] = [{"timeUnixNano": str(e["t"]), "name": e["name"], "attributes": _kv(e["attributes"])}
                                  for e in json.loads(d["events"])]
            if d["links"]:
                span["links"] = [{"traceId": lk["trace_id"], "spanId": lk["span_id"], "attributes": _kv(lk["attributes"])}
                                 for lk in json.loads(d["links"])]
            if fix:  # not OTLP: what tasktrail changed, as Jaeger's UI warns of its clock-skew adjustments
                span["tasktrail"] = {"clockAdjustmentNs": str(fix["clockAdjustmentNs"]), "warnings": fix["warnings"],
                                     "sentStartTimeUnixNano": str(d["start_ns"]),
                                     "sentEndTimeUnixNano": str(d["end_ns"])}
            scope.append(span)
        return {"resourceSpans": [
            {"resource": v["resource"],
             "scopeSpans": [{"scope": {"name": name}, "spans": spans} for name, spans in v["scopes"].items()]}
            for v in by_res.values()]}

    # --- timeline --------------------------------------------------------------------
    TIMELINE_DEFAULT_LIMIT = 2000
    TIMELINE_MAX_LIMIT = 20_000

    def timeline(self, *, app=None, since=None, until=None, task=None, workflow=None, runner=None,
                 invocations: Optional[str | Sequence[str]] = None, limit: Optional[int] = None) -> dict:
        """Lanes, sub-lanes, segments and points of every invocation active in the window.
        `invocations`: a comma list of ids, or ids one per value (repeated `invocations=`, for ids that
        hold commas)."""
        if limit is None:
            limit = self.TIMELINE_DEFAULT_LIMIT
        if not 1 <= limit <= self.TIMELINE_MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {self.TIMELINE_MAX_LIMIT}, got {limit}")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        t0, t1 = parse_time(since, "since"), parse_time(until, "until")
        span = timedelta(hours=1)
        if t0 is None and t1 is None:
            latest = self._q("SELECT max(ts) FROM transitions" + (" WHERE app_id = ?" if app else ""),
                             [app] if app else []).rows[0][0]
            t0, t1 = tl.default_window(latest, now, span)
        elif t0 is None:
            t0 = t1 - span
        elif t1 is None:
            t1 = now
        if t1 <= t0:
            raise BadRequest("until must be after since")
        filters, fparams = [], []
        if app:
            filters.append("app_id = ?")
            fparams.append(app)
        for col, val in (("task_id", task), ("workflow_id", workflow)):
            if val:
                filters.append(f"invocation_id IN (SELECT invocation_id FROM transitions WHERE {col} = ?)")
                fparams.append(val)
        if runner:
            filters.append("invocation_id IN (SELECT invocation_id FROM transitions "
                           "WHERE runner_id = ? OR worker_id = ?)")
            fparams += [runner, runner]
        if invocations:
            wanted = _id_list(invocations)
            filters.append("invocation_id IN (SELECT unnest(?::VARCHAR[]))")
            fparams.append(wanted)
        lookback = t0 - max(t1 - t0, timedelta(seconds=self.settings.timeline_lookback_s))
        rows = self.log.query_arrow(tl.window_sql(filters), [t0, t1, *fparams, lookback, t0, *fparams, limit,
                                                             lookback, t1], timeout_s=self.settings.query_timeout_s)
        total = int(rows.column("total")[0].as_py()) if rows.num_rows else 0
        shown = pc.count_distinct(rows.column("invocation_id")).as_py()
        worker = rows.column("worker_id")  # a lane is the worker, else the runner ('' is no worker: `or`)
        lanes_of = pc.coalesce(pc.if_else(pc.equal(worker, ""), pa.scalar(None, pa.string()), worker),
                               rows.column("runner_id"))
        lane_ids = sorted(x for x in pc.unique(lanes_of).to_pylist() if x)
        contexts = {}
        if lane_ids:
            contexts = {d["runner_id"]: d for d in self._q(f"""
                SELECT runner_id, {state.best_of('runner_class')} AS runner_class,
                       {state.best_of('hostname')} AS hostname, {state.best_of('pid')} AS pid,
                       {state.best_of('parent_runner_id')} AS parent_runner_id
                FROM runner_state WHERE runner_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY runner_id""",
                [lane_ids]).dicts()}
        lanes, edges = tl.build(rows, iso(t0), iso(t1), contexts)
        markers = self.event_markers(app=app, since=iso(t0), until=iso(t1), limit=1000)
        windows = self._q("""SELECT run_id, runner_id, start_ts, end_ts, status, reason
                             FROM atomic_service_executions
                             WHERE start_ts < ? AND coalesce(end_ts, ?) >= ?""" + (" AND app_id = ?" if app else "")
                          + " ORDER BY start_ts LIMIT 2000", [t1, t1, t0] + ([app] if app else [])).dicts()
        for w in windows:
            w["start"], w["end"] = iso(w.pop("start_ts")), iso(w.pop("end_ts"))
        return {"since": iso(t0), "until": iso(t1), "lanes": lanes, "edges": edges, "markers": markers,
                "atomic_windows": windows, "total": total, "shown": shown, "truncated": total > shown}

    def event_markers(self, *, app=None, since=None, until=None, code=None, state=None, limit=None) -> dict:
        """Trigger events in a window as timeline markers: {markers, total, truncated}."""
        limit = 1000 if limit is None else _limit(limit)
        where, params = _where(("ts >= ?", parse_time(since, "since")), ("ts < ?", parse_time(until, "until")),
                               ("app_id = ?", app), ("event_code = ?", code))
        states = {None: None, "all": None, "matched": "matched", "unmatched": "NOT matched",
                  "triggered": "triggered", "untriggered": "NOT triggered"}
        if state not in states:
            raise BadRequest(f"state must be one of all, matched, unmatched, triggered, untriggered; got {state!r}")
        cond = states[state]
        r = self._q(f"""
            WITH e AS (
              SELECT event_id, arg_max(event_code, ts) AS event_code, min(ts) AS ts,
                     len(arg_max(matched_condition_ids, ts)) > 0 AS matched,
                     arg_max(emitted_by_invocation_id, ts) AS emitted_by_invocation_id,
                     arg_max(emitted_by_runner_id, ts) AS emitted_by_runner_context_id
              FROM event_records {('WHERE ' + ' AND '.join(where)) if where else ''} GROUP BY event_id),
            t AS (SELECT DISTINCT unnest(event_ids) AS event_id FROM trigger_runs
                  WHERE triggered_invocation_id IS NOT NULL)
            SELECT e.*, (t.event_id IS NOT NULL) AS triggered, count(*) OVER () AS total
            FROM e LEFT JOIN t USING (event_id)
            {('WHERE ' + cond) if cond else ''} ORDER BY ts LIMIT {int(limit)}""", params).dicts()
        total = int(r[0]["total"]) if r else 0
        markers = [{"event_id": d["event_id"], "event_code": d["event_code"], "timestamp": iso(d["ts"]),
                    "matched": bool(d["matched"]), "triggered": bool(d["triggered"]),
                    "emitted_by_invocation_id": d["emitted_by_invocation_id"],
                    "emitted_by_runner_context_id": d["emitted_by_runner_context_id"]} for d in r]
        return {"markers": markers, "total": total, "truncated": total > len(markers)}

    # --- logs ------------------------------------------------------------------------
    LEVELS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "CRITICAL": 21, "FATAL": 21}

    def _log_filters(self, *, app=None, q=None, level=None, runner=None, worker=None, invocation=None, task=None,
                     since=None, until=None) -> tuple[list, list]:
        since_t, until_t = parse_time(since, "since"), parse_time(until, "until")
        where, params = _where(("ts >= ?", since_t), ("ts < ?", until_t), ("app_id = ?", app),
                               ("worker_id = ?", worker), ("task_id = ?", task))
        if invocation:
            # Its own lines, by attribute or through the trace context of one of its spans (spans of the
            # same time range: the bound lets the span lookup skip most of the spans table too).
            span_where, span_params = _where(("start_ts >= ?", since_t - timedelta(hours=1) if since_t else None),
                                             ("start_ts < ?", until_t))
            where.append("(invocation_id = ? OR (invocation_id IS NULL AND span_id IS NOT NULL AND span_id IN "
                         "(SELECT span_id FROM spans WHERE invocation_id = ?"
                         + "".join(" AND " + w for w in span_where) + ")))")
            params += [invocation, invocation, *span_params]
        if runner:
            where.append("(runner_id = ? OR worker_id = ?)")
            params += [runner, runner]
        if q:
            where.append("contains(lower(body), lower(?))")  # literal text, any case
            params.append(q)
        if level:
            floor = self.LEVELS.get(level.upper())
            if floor is None:
                raise BadRequest(f"level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL; got {level!r}")
            where.append(f"({_SEVERITY_SQL}) >= ?")
            params.append(floor)
        return where, params

    def logs(self, *, limit: Optional[int] = None, cursor: Optional[str] = None, **filters) -> dict:
        """Log lines, newest first, with cursor pagination."""
        limit = _limit(limit)
        where, params = self._log_filters(**filters)
        if cursor:
            c_ts, c_batch = _decode_cursor(cursor)
            c_ts = cursor_time(c_ts)
            if not isinstance(c_batch, int) or isinstance(c_batch, bool) or abs(c_batch) >= 2**63:
                raise BadRequest("cursor is not one this server issued")
            where.append("(ts, batch) < (?::TIMESTAMP, ?)")
            params += [c_ts, c_batch]
        preview = self.settings.previews.value_bytes
        rows = self._q(values.log_lines_sql(LOG_COLUMNS, ('WHERE ' + ' AND '.join(where)) if where else '',
                                            "ts DESC, batch DESC", limit + 1, preview), params).dicts()
        self._link_by_trace(rows)
        items = [_log_line(d, preview) for d in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = _encode_cursor([iso(last["ts"]).rstrip("Z"), last["batch"]])
        return {"items": items, "next_cursor": nxt}

    def logs_after(self, after_batch: int, *, limit: int = 1000, upto_batch: Optional[int] = None,
                   **filters) -> tuple[list[dict], int]:
        """Log lines committed in batches after `after_batch` (and up to `upto_batch` when given), oldest
        first, and the newest batch seen: what a live tail sends next."""
        where, params = self._log_filters(**filters)
        where.append("batch > ?")
        params.append(after_batch)
        if upto_batch is not None:
            where.append("batch <= ?")
            params.append(upto_batch)
        preview = self.settings.previews.value_bytes
        rows = self._q(values.log_lines_sql(LOG_COLUMNS, 'WHERE ' + ' AND '.join(where), "batch, ts", limit, preview),
                       params).dicts()
        last = max((d["batch"] for d in rows), default=after_batch)
        self._link_by_trace(rows)
        return [_log_line(d, preview) for d in rows], last

    def cut_lines_containing(self, after_batch: int, upto_batch: int, texts: Sequence[str]) -> set[tuple[str, str]]:
        """(line key, text) for every log line committed in batches (after_batch, upto_batch] whose body is
        longer than its preview and holds `text` (literal, any case): what a live tail's `q` cannot decide
        from the preview alone. The key is the one in the line's `values.message.url` (values.log_key)."""
        if not texts:
            return set()
        rows = self._q("SELECT DISTINCT r.batch, epoch_us(r.ts), md5(r.body), w.q FROM log_records r, "
                       "(SELECT unnest(?::VARCHAR[]) AS q) w WHERE r.batch > ? AND r.batch <= ? "
                       "AND strlen(r.body) > ? AND contains(lower(r.body), lower(w.q))",
                       [sorted(set(texts)), after_batch, upto_batch, self.settings.previews.value_bytes]).rows
        return {(values.log_key(b, ts_us, md5), text) for b, ts_us, md5, text in rows}

    def _link_by_trace(self, rows: list[dict]) -> None:
        """Lines without an invocation attribute belong to the invocation of the span they were
        logged in (trace context); looked up at read time, as the span may come after the line."""
        spans = sorted({d["span_id"] for d in rows if not d["invocation_id"] and d["span_id"]})
        if not spans:
            return
        # A line is logged while its span is open: the span started before it (a day of slack for long
        # tasks), which bounds the lookup in time.
        ts = [d["ts"] for d in rows if d["span_id"] in spans and d["ts"] is not None]
        lo, hi = (min(ts) - timedelta(days=1), max(ts)) if ts else (datetime.min, datetime.max)
        owner = dict(self._q("SELECT span_id, any_value(invocation_id) FROM spans WHERE span_id IN "
                             "(SELECT unnest(?::VARCHAR[])) AND invocation_id IS NOT NULL "
                             "AND start_ts BETWEEN ? AND ? GROUP BY span_id", [spans, lo, hi]).rows)
        for d in rows:
            if not d["invocation_id"] and d["span_id"] in owner:
                d["invocation_id"] = owner[d["span_id"]]

    def last_batch(self) -> int:
        return int(self._q("SELECT coalesce(max(batch), 0) FROM ingest_ledger").rows[0][0])

    # --- log explorer --------------------------------------------------------------------
    def explore(self, text: str) -> dict:
        """Parse pasted log lines and resolve every runner, invocation, task and `kind:value`
        reference to what is stored; unresolvable ids are marked so, never guessed."""
        entries = log_explorer.parse(text)
        self._known_tokens(entries)
        runner_ids = {r["id"] for e in entries for r in e["runners"]}
        runner_ids |= {ref["value"] for e in entries for ref in e["refs"] if ref["kind"] in log_explorer.RUNNER_KINDS}
        runners = {rid: self._match_runner(rid) for rid in runner_ids}
        inv_ids = {e["invocation_id"] for e in entries if e["invocation_id"]}
        inv_ids |= {ref["value"] for e in entries for ref in e["refs"] if ref["kind"] in log_explorer.INVOCATION_KINDS}
        invocations = {i: self._match_invocation(i) for i in inv_ids}
        tasks = {e["task_id"] for e in entries if e["task_id"]} | {
            ref["value"] for e in entries for ref in e["refs"] if ref["kind"] == "task"}
        known_tasks = {r[0] for r in self._q("SELECT DISTINCT task_id FROM transitions WHERE task_id IN "
                                             "(SELECT unnest(?::VARCHAR[]))", [sorted(tasks)]).rows} if tasks else set()
        lookups = {"event": ("event_records", "event_id", "/events/"),
                   "trigger-run": ("trigger_runs", "trigger_run_id", "/trigger-runs/"),
                   "atomic-service-run": ("atomic_executions", "run_id", None)}
        other: dict[tuple, bool] = {}
        for kind, (table, col, _) in lookups.items():
            vals = sorted({ref["value"] for e in entries for ref in e["refs"] if ref["kind"] == kind}
                          | ({e["atomic_service_run_id"] for e in entries if e["atomic_service_run_id"]}
                             if kind == "atomic-service-run" else set()))
            if vals:
                found = {r[0] for r in self._q(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IN "
                                               "(SELECT unnest(?::VARCHAR[]))", [vals]).rows}
                other.update({(kind, v): v in found for v in vals})

        def ref_view(kind, value):
            if kind in log_explorer.INVOCATION_KINDS:
                m = invocations.get(value)
                return {"resolved": bool(m and m["invocation_id"]), "id": m and m["invocation_id"],
                        "link": f"/invocations/{segment(m['invocation_id'])}" if m and m["invocation_id"] else None,
                        "candidates": m["candidates"] if m else []}
            if kind in log_explorer.RUNNER_KINDS:
                m = runners.get(value)
                return {"resolved": bool(m and m["runner_id"]), "id": m and m["runner_id"],
                        "link": f"/runners/{segment(m['runner_id'])}" if m and m["runner_id"] else None,
                        "candidates": m["candidates"] if m else []}
            if kind == "task":
                ok = value in known_tasks
                return {"resolved": ok, "id": value if ok else None,
                        "link": f"/invocations?task={quote(value, safe='')}" if ok else None, "candidates": []}
            if (kind, value) in other:
                ok = other[(kind, value)]
                prefix = lookups[kind][2]
                return {"resolved": ok, "id": value if ok else None,
                        "link": (prefix + segment(value)) if ok and prefix else None, "candidates": []}
            if kind == "id":  # an id-like word of an unparsed line that names nothing stored
                return {"resolved": False, "id": None, "link": None, "candidates": []}
            return {"resolved": None, "id": None, "link": None, "candidates": []}  # not an entity kind

        lines = []
        for e in entries:
            lines.append({
                "line_no": e["line_no"], "raw": e["raw"], "format": e["format"], "source": e["source"],
                "timestamp": e["timestamp"],
                "level": e["level"], "logger": e["logger"], "message": e["message"],
                "continuation": e["continuation"],
                "runners": [{"class": r["class"], "value": r["id"], **ref_view("runner", r["id"])}
                            for r in e["runners"]],
                "invocation": ({"value": e["invocation_id"], **ref_view("invocation", e["invocation_id"]),
                                **({"status": invocations[e["invocation_id"]]["status"],
                                    "task_id": invocations[e["invocation_id"]]["task_id"]}
                                   if invocations.get(e["invocation_id"], {}).get("invocation_id") else {})}
                               if e["invocation_id"] else None),
                "task": {"value": e["task_id"], **ref_view("task", e["task_id"])} if e["task_id"] else None,
                "refs": [{"kind": r["kind"], "value": r["value"], **ref_view(r["kind"], r["value"])} for r in e["refs"]],
            })
        resolved_invs = sorted({m["invocation_id"] for m in invocations.values() if m["invocation_id"]})
        scope = set(resolved_invs) | {m["parent_invocation_id"] for m in invocations.values()
                                      if m["invocation_id"] and m["parent_invocation_id"]}
        window = None
        if scope:
            r = self._q("SELECT min(ts), max(ts) FROM transitions WHERE invocation_id IN (SELECT unnest(?::VARCHAR[]))",
                        [sorted(scope)]).rows[0]
            pad = max((r[1] - r[0]) * 0.1, timedelta(milliseconds=250))
            window = {"since": iso(r[0] - pad), "until": iso(r[1] + pad), "invocations": sorted(scope)}
        return {"lines": lines, "counts": {
                    "lines": len(lines),
                    "runners": {"resolved": sum(1 for m in runners.values() if m["runner_id"]), "total": len(runners)},
                    "invocations": {"resolved": len(resolved_invs), "total": len(invocations)}},
                "timeline": window}

    def _known_tokens(self, entries: list[dict]) -> None:
        """Refs for the bare words of unparsed lines that are stored ids: an invocation, a runner or a
        task id, matched exactly (one query each); a UUID that is none of them is an unresolved `id`."""
        tokens = sorted({t for e in entries for t in e.get("tokens", ())})[:log_explorer.MAX_TOKENS]
        if not tokens:
            return
        found: dict[str, str] = {}
        for kind, sql in (("task", "SELECT DISTINCT task_id FROM invocation_state WHERE task_id IN "),
                          ("runner", "SELECT DISTINCT runner_id FROM runner_state WHERE runner_id IN "),
                          ("invocation", "SELECT invocation_id FROM invocation_state WHERE invocation_id IN ")):
            for (value,) in self._q(sql + "(SELECT unnest(?::VARCHAR[]))", [tokens]).rows:
                found[value] = kind
        for e in entries:
            have = {(r["kind"], r["value"]) for r in e["refs"]}
            for tok in e.get("tokens", ()):
                kind = found.get(tok) or ("id" if log_explorer.UUID_RE.fullmatch(tok) else None)
                if kind and (kind, tok) not in have:
                    have.add((kind, tok))
                    e["refs"].append({"kind": kind, "value": tok})

    def _match_runner(self, rid: str) -> dict:
        rows = self._q(f"""SELECT runner_id, {state.best_of('runner_class')} FROM runner_state
                           WHERE starts_with(runner_id, ?) AND first_seen IS NOT NULL GROUP BY runner_id
                           ORDER BY runner_id LIMIT 6""", [rid]).rows
        exact = [r for r in rows if r[0] == rid]
        if exact or len(rows) == 1:
            hit = (exact or rows)[0]
            return {"runner_id": hit[0], "runner_class": hit[1], "candidates": []}
        return {"runner_id": None, "runner_class": None, "candidates": [r[0] for r in rows]}

    def _match_invocation(self, inv: str) -> dict:
        if len(inv) >= 36:
            cond, param = "invocation_id = ?", inv
        else:
            cond, param = "starts_with(invocation_id, ?)", inv
        rows = self._q(f"""SELECT invocation_id, any_value(task_id), arg_max(status, status_key),
                                  any_value(parent_invocation_id)
                           FROM invocation_state WHERE {cond} GROUP BY invocation_id ORDER BY 1 LIMIT 6""",
                       [param]).rows
        exact = [r for r in rows if r[0] == inv]
        if exact or len(rows) == 1:
            i, task, status, parent = (exact or rows)[0]
            return {"invocation_id": i, "task_id": task, "status": status, "parent_invocation_id": parent,
                    "candidates": []}
        return {"invocation_id": None, "task_id": None, "status": None, "parent_invocation_id": None,
                "candidates": [r[0] for r in rows]}

    # --- runs --------------------------------------------------------------------------
    def runs(self, *, app=None, task=None, status: Sequence[str] | None = None, since=None, until=None,
             sort: Optional[str] = None, limit: Optional[int] = None) -> dict:
        """The runs table: one row per invocation, started descending, with how it was started."""
        limit = _limit(limit)
        sorts = {None: "started_at DESC", "-started_at": "started_at DESC", "started_at": "started_at ASC",
                 "-duration_s": "duration_s DESC NULLS LAST", "task_id": "task_id, started_at DESC"}
        if sort not in sorts:
            raise BadRequest(f"sort must be one of {', '.join(k for k in sorts if k)}, got {sort!r}")
        where, params = [], []
        statuses = _statuses(status)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        more, more_params = _where(("started_at >= ?", parse_time(since, "since")),
                                   ("started_at < ?", parse_time(until, "until")), ("task_id = ?", task))
        where += more
        params += more_params
        inner = "WHERE app_id = ?" if app else ""
        rows = self._q(f"""
            WITH i AS (
              SELECT app_id, invocation_id, task_id, status, created_at, updated_at,
                     coalesce(started_at, created_at) AS started_at, attempts, parent_invocation_id, parent_event_id
              FROM invocation_state {inner}),
            r AS (SELECT *, CASE WHEN status IN ({_FINAL_IN})
                                 THEN epoch(updated_at) - epoch(started_at) END AS duration_s FROM i)
            SELECT r.*, tr.trigger_run_id, tr.participants
            FROM r LEFT JOIN (SELECT triggered_invocation_id, arg_max(trigger_run_id, ts) AS trigger_run_id,
                                     arg_max(participants, ts) AS participants
                              FROM trigger_runs GROUP BY 1) tr ON tr.triggered_invocation_id = r.invocation_id
            {('WHERE ' + ' AND '.join(where)) if where else ''}
            ORDER BY {sorts[sort]} LIMIT {limit}""", ([app] if app else []) + params).dicts()
        items = []
        for d in rows:
            if d["trigger_run_id"]:
                cron = "CronContext" in (d["participants"] or "")
                how = {"kind": "cron" if cron else ("event" if d["parent_event_id"] else "trigger"),
                       "ref": d["parent_event_id"] if d["parent_event_id"] and not cron else d["trigger_run_id"]}
            elif d["parent_event_id"]:
                how = {"kind": "event", "ref": d["parent_event_id"]}
            elif d["parent_invocation_id"]:
                how = {"kind": "child", "ref": d["parent_invocation_id"]}
            else:
                how = {"kind": "submitted", "ref": None}
            items.append({"invocation_id": d["invocation_id"], "app_id": d["app_id"], "task_id": d["task_id"],
                          "status": d["status"], "is_final": d["status"] in FINAL_STATUSES,
                          "started_at": iso(d["started_at"]), "updated_at": iso(d["updated_at"]),
                          "duration_s": d["duration_s"], "attempts": int(d["attempts"]),
                          "retried": int(d["attempts"]) > 1, "started_by": how})
        return {"items": items, "running": any(not i["is_final"] for i in items)}

    # --- technical dashboard -----------------------------------------------------------------
    def ops(self, app: Optional[str] = None, writer=None) -> dict:
        """What operators check first: in flight, last failures, heartbeats, the atomic-service
        scheduler, ingest health."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        in_flight = self.invocations(app=app, status=sorted(ACTIVE_STATUSES), limit=100, sort="created_at")["items"]
        for i in in_flight:
            i["elapsed_s"] = (now - parse_time(i["created_at"], "created_at")).total_seconds()
        failures = self.invocations(app=app, status=["FAILED"], limit=20, sort="-updated_at")["items"]
        cond, params = ("AND app_id = ?", [app]) if app else ("", [])
        hb = self._q(f"""SELECT runner_id, max(last_heartbeat) AS last, sum(heartbeats) AS n,
                                (epoch(max(last_heartbeat)) - epoch(min(first_heartbeat)))
                                    / nullif(sum(heartbeats) - 1, 0) AS every_s
                         FROM runner_state WHERE heartbeats > 0 {cond} GROUP BY runner_id ORDER BY last DESC""",
                     params).dicts()
        heartbeats = [{"runner_id": d["runner_id"], "last": iso(d["last"]), "every_s": d["every_s"],
                       "next_expected": iso(d["last"] + timedelta(seconds=d["every_s"])) if d["every_s"] else None,
                       "late": bool(d["every_s"] and now > d["last"] + timedelta(seconds=2 * d["every_s"]))}
                      for d in hb]
        sched = self._q(f"""SELECT max(ts) AS last, count(*) AS n, (epoch(max(ts)) - epoch(min(ts))) / nullif(count(*) - 1, 0) AS every_s
                            FROM (SELECT ts FROM atomic_decisions WHERE true {cond}
                                  UNION ALL SELECT ts FROM atomic_executions WHERE true {cond})""",
                        params * 2).dicts()[0]
        scheduler = {"last_fire": iso(sched["last"]), "every_s": sched["every_s"],
                     "next_expected": iso(sched["last"] + timedelta(seconds=sched["every_s"])) if sched["every_s"] else None,
                     "late": bool(sched["every_s"] and now > sched["last"] + timedelta(seconds=2 * sched["every_s"]))}
        led = self._q("""SELECT count(*) FILTER (WHERE received_at >= ?) AS req_1m,
                                coalesce(sum(records) FILTER (WHERE received_at >= ?), 0)::BIGINT AS rec_1m,
                                max(received_at) AS last, max(batch) AS last_batch FROM ingest_ledger""",
                      [now - timedelta(minutes=1)] * 2).dicts()[0]
        ingest = {"records_per_s_1m": led["rec_1m"] / 60.0, "requests_1m": led["req_1m"],
                  "last_request_at": iso(led["last"]), "last_batch": led["last_batch"]}
        if writer is not None:
            st = writer.stats()
            ingest.update({"queue_records": st.queue_records, "queue_capacity": st.queue_capacity,
                           "rejected_full": st.rejected_full, "failed_batches": st.failed_batches,
                           "last_commit_seconds": st.last_commit_seconds})
        return {"now": iso(now), "in_flight": in_flight, "recent_failures": failures, "heartbeats": heartbeats,
                "scheduler": scheduler, "ingest": ingest}

    # --- metrics -----------------------------------------------------------------------
    def metrics_snapshot(self) -> dict:
        """The log-derived figures behind /metrics (query/metrics.py): they come from the stored log, so
        they survive restarts and agree with the API."""
        from .metrics import snapshot
        return snapshot(self._q, self.settings.anomalies, self._now())

    # --- overview --------------------------------------------------------------------
    def overview(self, app: Optional[str] = None) -> dict:
        params = [app] if app else []
        cond = "WHERE app_id = ?" if app else ""
        counts = dict(self._q(f"SELECT status, count(*) FROM invocation_state {cond} GROUP BY status", params).rows)
        runners = self.runners(app)
        last = self._q("SELECT max(received_at) FROM ingest_ledger").rows
        from .anomalies import KINDS
        anomalies = self.anomalies(app)
        return {
            "anomalies": {k: anomalies["counts"].get(k, 0) for k in KINDS},
            "anomaly_items": anomalies["items"][:20],
            "counts_by_status": {s: int(counts.get(s, 0)) for s in STATUSES},
            "in_flight": sum(int(counts.get(s, 0)) for s in ACTIVE_STATUSES),
            "runners": {"alive": sum(1 for r in runners if r["alive"] and r["role"] != "client"),
                        "dead": sum(1 for r in runners if not r["alive"] and r["role"] != "client"),
                        "clients": sum(1 for r in runners if r["role"] == "client")},
            "last_ingest_at": iso(last[0][0]) if last else None,
            "apps": self.apps(),
        }

    # --- tasks and workflows ----------------------------------------------------------
    def _now(self) -> datetime:
        return self._clock() if self._clock else datetime.now(timezone.utc).replace(tzinfo=None)

    def _summary_window(self, since, until) -> tuple:
        """The window of a summary page: `since` (default the last 24 h, `all` for no bound) and `until`,
        so its cost follows the window and not the size of the store."""
        if since == "all":
            return None, parse_time(until, "until")
        hi = parse_time(until, "until")
        lo = parse_time(since, "since") if since else (hi or self._now()) - SUMMARY_WINDOW
        return lo, hi

    def tasks(self, *, app=None, since=None, until=None) -> dict:
        """Per task: counts by status, success rate, duration p50/p95/p99, throughput (query/tasks.py)."""
        from .tasks import task_list
        lo, hi = self._summary_window(since, until)
        return task_list(self._q, iso, self._now(), app=app, since=lo, until=hi)

    def task(self, task_id: str, *, app=None, since=None, until=None, recent: int = 20) -> dict:
        """One task: figures, a series over time, error types with their latest example, recent runs."""
        from .tasks import task_detail
        lo, hi = self._summary_window(since, until)
        out = task_detail(self._q, iso, self._now(), task_id, app=app, since=lo, until=hi,
                          message_bytes=self.settings.previews.value_bytes)
        out["recent"] = self.invocations(app=app, task=task_id, since=iso(lo), until=iso(hi), limit=recent,
                                         sort="-created_at")["items"]
        return out

    def _workflows(self):
        from .workflows import Workflows
        return Workflows(self._q, iso, self._now)

    def workflow_types(self, *, app=None, since=None, until=None) -> dict:
        lo, hi = self._summary_window(since, until)
        return {**self._workflows().types(app=app, since=lo, until=hi), "since": iso(lo), "until": iso(hi)}

    def workflow_runs(self, *, app=None, workflow_type=None, status=None, since=None, until=None,
                      limit=None) -> dict:
        return self._workflows().runs(app=app, workflow_type=workflow_type, status=_statuses(status),
                                      since=parse_time(since, "since"), until=parse_time(until, "until"),
                                      limit=_limit(limit))

    def workflow_type(self, workflow_type: str, *, app=None, status=None, limit=None, histogram_runs=None,
                      histogram_status=None, since=None, until=None) -> dict:
        """A type's newest runs and histograms; its summary covers `since`–`until` (default the last 24 h)."""
        lo, hi = self._summary_window(since, until)
        return self._workflows().of_type(workflow_type, app=app, status=_statuses(status), limit=_limit(limit),
                                         histogram_runs=histogram_runs, histogram_status=histogram_status,
                                         since=lo, until=hi)

    def workflow_run(self, workflow_id: str, *, app=None, histogram_status=None) -> dict:
        return self._workflows().run(workflow_id, app=app, histogram_status=histogram_status)

    def workflow_compare(self, runs, *, app=None) -> dict:
        return self._workflows().compare(runs, app=app)

    # --- anomalies --------------------------------------------------------------------
    def anomalies(self, app: Optional[str] = None, settings=None) -> dict:
        """Stuck, orphaned and slow work, failure spikes, silent runners (query/anomalies.py)."""
        from .anomalies import KINDS, find
        s = settings or self.settings.anomalies
        now = self._now()
        items = [a for a in find(self._q, s, now) if not app or a["app_id"] == app]
        for a in items:
            a["since"] = iso(a["since"])
            a["link"] = ("/atomic-services" if a["kind"] == "scheduler_silent"
                         else f"/invocations/{segment(a['invocation_id'])}" if a.get("invocation_id")
                         else f"/runners/{segment(a['runner_id'])}" if a.get("runner_id")
                         else f"/tasks/{segment(a['task_id'])}" if a.get("task_id") else "/atomic-services")
        counts = {k: 0 for k in KINDS}
        for a in items:
            counts[a["kind"]] += 1
        return {"items": items, "counts": {k: v for k, v in counts.items() if v}, "now": iso(now),
                "thresholds": {"runner_dead_after_s": s.runner_dead_after_s, "max_pending_s": s.max_pending_s,
                               "slow_factor": s.slow_factor, "slow_min_samples": s.min_samples,
                               "spike_window_s": s.spike_window_s, "spike_factor": s.spike_factor}}

    # --- ad-hoc SQL ------------------------------------------------------------------
    def sql(self, statement: str) -> SqlAnswer:
        """One ad-hoc SELECT under its limits (time, rows, bytes, how many at once): the SqlAnswer.
        Raises BadRequest (refused or failing SQL), QueryTimeout, ReadersBusy (every SQL cursor busy)."""
        sql_guard.check(statement)
        s = self.settings
        try:
            return self.log.stream(statement, AnswerBuilder(max_rows=s.sql_max_rows, max_bytes=s.sql_max_bytes,
                                                            timeout_s=s.sql_timeout_s),
                                   timeout_s=s.sql_timeout_s, wait_s=s.sql_wait_s)
        except QueryError as exc:
            raise BadRequest(f"SQL error: {exc}") from None


_SEVERITY_SQL = ("coalesce(nullif(severity_number, 0), CASE upper(severity_text) WHEN 'TRACE' THEN 1 "
                 "WHEN 'DEBUG' THEN 5 WHEN 'INFO' THEN 9 WHEN 'WARN' THEN 13 WHEN 'WARNING' THEN 13 "
                 "WHEN 'ERROR' THEN 17 WHEN 'CRITICAL' THEN 21 WHEN 'FATAL' THEN 21 ELSE 0 END)")


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


def _last(rows: list[dict], raw: list[dict], col: str):
    """An invocation's latest `col`: from the last record of its settled history that has it, else (a
    column only a record the history drops carries) from the last raw record."""
    for r in reversed(rows):
        if r.get(col) is not None:
            return r[col]
    for r in reversed(raw):
        if r.get(col) is not None:
            return r[col]
    return None


# The columns of a log line besides its body (read as a preview: values.log_lines_sql).
LOG_COLUMNS = ("batch, ts, app_id, severity_text, severity_number, runner_id, worker_id, invocation_id, task_id, "
               "trace_id, span_id, event_name, scope_name")


def _log_line(d: dict, preview_bytes: int) -> dict:
    """A log line as the API shows it: `message` is the body's preview, `values.message` its size and,
    when cut, where the whole body downloads."""
    message, described = values.log_message(d, preview_bytes)
    return {"timestamp": iso(d["ts"]), "level": d["severity_text"] or _level(d["severity_number"]),
            "severity_number": d["severity_number"], "message": message, "app_id": d["app_id"],
            "runner_id": d["runner_id"], "worker_id": d["worker_id"], "invocation_id": d["invocation_id"],
            "task_id": d["task_id"], "trace_id": d["trace_id"], "span_id": d["span_id"],
            "event_name": d["event_name"], "logger": d["scope_name"], "batch": d["batch"], "values": described}


def _bool(name: str, value) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}")


_LEVELS = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))


def _level(number: Optional[int]) -> Optional[str]:
    for floor, name in _LEVELS:
        if number and number >= floor:
            return name
    return None


def _nanos(value: Optional[datetime]) -> int:
    if value is None:
        return 0
    return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000


def _any(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_any(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": _kv(v)}}
    if v is None:
        return {}
    return {"stringValue": str(v)}


def _kv(d: dict) -> list:
    return [{"key": k, "value": _any(v)} for k, v in d.items()]


__all__ = ["QueryService", "QuerySettings", "NotFound", "BadRequest", "QueryTimeout", "iso", "parse_time"]
