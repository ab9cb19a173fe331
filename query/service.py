"""QueryService: every read model the web serves, rebuilt from the log at read time.

The web layer calls only this; it never sees SQL or the store. Times come back as
RFC 3339 UTC strings with microseconds; statuses as canonical upper-case names.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Sequence

from tasktrail.proto.status import ACTIVE_STATUSES, FINAL_STATUSES, STATUSES, is_final
from tasktrail.store.api import EventLog, QueryError, QueryTimeout

from . import sql_guard
from .adjust import adjust
from .errors import BadRequest, NotFound

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class QuerySettings:
    runner_dead_after_s: float = 600.0
    jaeger_url: Optional[str] = None      # e.g. http://jaeger:16686  → {jaeger}/trace/{trace_id}
    tempo_url: Optional[str] = None       # a template holding {trace_id}
    query_timeout_s: float = 10.0
    sql_timeout_s: float = 10.0
    sql_max_rows: int = 10_000
    family_max_nodes: int = 200
    family_max_depth: int = 16


def iso(value: Any) -> Optional[str]:
    """A naive-UTC datetime from DuckDB as RFC 3339 with microseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def parse_time(value: Optional[str], name: str) -> Optional[datetime]:
    """An RFC 3339 / ISO 8601 filter value as naive UTC; relative forms like `-1h` too."""
    if value is None or value == "":
        return None
    v = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if v[:1] == "-" and v[-1:] in units and v[1:-1].replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=float(v[1:-1]) * units[v[-1]])
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} is not an RFC 3339 time or a relative time like -1h: {value!r}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _limit(limit: Optional[int]) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list:
    try:
        pad = "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if not isinstance(values, list):
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise BadRequest("cursor is not one this server issued") from None


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


class QueryService:
    def __init__(self, log: EventLog, settings: QuerySettings = QuerySettings()) -> None:
        self.log = log
        self.settings = settings

    def _q(self, sql: str, params: Sequence[Any] = (), max_rows: int = 100_000):
        return self.log.query(sql, params, timeout_s=self.settings.query_timeout_s, max_rows=max_rows)

    # --- apps ------------------------------------------------------------------------
    def apps(self) -> list[dict]:
        r = self._q("""
            WITH a AS (SELECT app_id, min(ts) AS first_seen, max(ts) AS last_seen,
                              count(DISTINCT invocation_id) AS invocations FROM transitions GROUP BY app_id),
                 b AS (SELECT app_id, min(ts) AS first_seen, max(ts) AS last_seen FROM runner_events GROUP BY app_id),
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
                    q: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None) -> dict:
        limit = _limit(limit)
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
        t0, t1 = parse_time(since, "since"), parse_time(until, "until")
        if t0:
            where.append("created_at >= ?")
            params.append(t0)
        if t1:
            where.append("created_at < ?")
            params.append(t1)
        if q:
            where.append("(invocation_id ILIKE ? OR task_id ILIKE ?)")
            params += [f"%{q}%", f"%{q}%"]
        if cursor:
            c_created, c_id = _decode_cursor(cursor)
            where.append("(created_at, invocation_id) < (?::TIMESTAMP, ?)")
            params += [c_created, c_id]
        sql = f"""
            WITH t AS (SELECT * FROM transitions {('WHERE ' + ' AND '.join(inner_where)) if inner_where else ''}),
            inv AS (
              SELECT app_id, invocation_id,
                     any_value(task_id) FILTER (WHERE task_id IS NOT NULL) AS task_id,
                     arg_max(status, ts) AS status,
                     any_value(parent_invocation_id) FILTER (WHERE parent_invocation_id IS NOT NULL) AS parent_invocation_id,
                     any_value(workflow_id) FILTER (WHERE workflow_id IS NOT NULL) AS workflow_id,
                     any_value(workflow_type) FILTER (WHERE workflow_type IS NOT NULL) AS workflow_type,
                     arg_max(runner_id, ts) AS runner_id, arg_max(worker_id, ts) AS worker_id,
                     min(ts) AS created_at, max(ts) AS updated_at,
                     count(*) FILTER (WHERE status = 'RUNNING') AS attempts
              FROM t GROUP BY app_id, invocation_id)
            SELECT * FROM inv {('WHERE ' + ' AND '.join(where)) if where else ''}
            ORDER BY created_at DESC, invocation_id DESC LIMIT {limit + 1}"""
        r = self._q(sql, inner_params + params)
        items = []
        for d in r.dicts()[:limit]:
            items.append(self._summary(d))
        next_cursor = None
        if len(r.rows) > limit:
            last = r.dicts()[limit - 1]
            next_cursor = _encode_cursor([iso(last["created_at"]).rstrip("Z"), last["invocation_id"]])
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

    def _transitions(self, invocation_id: str, app: Optional[str]) -> list[dict]:
        sql = "SELECT * EXCLUDE (batch) FROM transitions WHERE invocation_id = ?"
        params: list = [invocation_id]
        if app:
            sql += " AND app_id = ?"
            params.append(app)
        rows = self._q(sql + " ORDER BY ts", params).dicts()
        if not rows:
            raise NotFound(f"invocation {invocation_id} is not in the log")
        for r in rows:
            r["timestamp"] = r.pop("ts")
        return rows

    def history(self, invocation_id: str, app: Optional[str] = None) -> list[dict]:
        rows = adjust(self._transitions(invocation_id, app))
        return [{"timestamp": iso(r["timestamp"]), "status": r["status"], "previous_status": r["previous_status"],
                 "runner_id": r["runner_id"], "worker_id": r["worker_id"], "owner_runner_id": r["owner_runner_id"],
                 "attempt": r["attempt"], "source": r["source"], "error_type": r["error_type"]}
                for r in rows]

    def invocation(self, invocation_id: str, app: Optional[str] = None) -> dict:
        raw = self._transitions(invocation_id, app)
        rows = adjust([dict(r) for r in raw])

        def last(col):
            for r in reversed(raw):
                if r.get(col) is not None:
                    return r[col]
            return None

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
        return {
            "invocation_id": invocation_id, "app_id": raw[-1]["app_id"], "task_id": last("task_id"),
            "status": status, "is_final": final, "parent_invocation_id": last("parent_invocation_id"),
            "parent_event_id": last("parent_event_id"),
            "workflow": {"id": wf_id, "type": last("workflow_type"), "parent_id": last("workflow_parent_id"),
                         "role": ("none" if not wf_id else "root" if wf_id == invocation_id else "member")},
            "attempts": attempts, "arguments": last("arguments"), "result": last("result"), "error": error,
            "created_at": iso(created), "finished_at": iso(finished),
            "duration_s": (finished - created).total_seconds() if finished else None,
            "links": self.trace_links(trace_id),
        }

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
        return {"trace": f"/traces/{trace_id}", "jaeger": jaeger, "tempo": tempo}

    # --- family ----------------------------------------------------------------------
    def family(self, invocation_id: str, app: Optional[str] = None) -> dict:
        self._transitions(invocation_id, app)  # 404 when unknown
        s = self.settings
        root, seen = invocation_id, {invocation_id}
        for _ in range(s.family_max_depth * 4):
            r = self._q("""SELECT any_value(parent_invocation_id) FILTER (WHERE parent_invocation_id IS NOT NULL),
                                  any_value(parent_event_id) FILTER (WHERE parent_event_id IS NOT NULL)
                           FROM transitions WHERE invocation_id = ?""", [root]).rows
            parent, parent_event = r[0] if r else (None, None)
            if not parent and parent_event:
                e = self._q("SELECT arg_max(emitted_by_invocation_id, ts) FROM event_records WHERE event_id = ?",
                            [parent_event]).rows
                parent = e[0][0] if e else None
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
        edges: list[dict] = []
        frontier, truncated = [root], False
        depth = 0
        while frontier and depth < s.family_max_depth:
            depth += 1
            ph = ", ".join("?" * len(frontier))
            r = self._q(f"""
                SELECT DISTINCT parent_invocation_id AS parent, invocation_id AS child, 'direct' AS kind
                  FROM transitions WHERE parent_invocation_id IN ({ph})
                UNION
                SELECT e.emitted_by_invocation_id, t.invocation_id, 'event'
                  FROM event_records e JOIN transitions t ON t.parent_event_id = e.event_id
                 WHERE e.emitted_by_invocation_id IN ({ph})
                UNION
                SELECT src.sid, tr.triggered_invocation_id, 'trigger'
                  FROM trigger_runs tr, unnest(tr.source_invocation_ids) AS src(sid)
                 WHERE src.sid IN ({ph}) AND tr.triggered_invocation_id IS NOT NULL""",
                        frontier * 3).rows
            nxt = []
            for parent, child, kind in sorted(r, key=lambda x: (x[0], x[1])):
                if child in nodes_depth:
                    continue
                if len(nodes_depth) >= s.family_max_nodes:
                    truncated = True
                    break
                nodes_depth[child] = depth
                edges.append({"parent": parent, "child": child, "kind": kind})
                nxt.append(child)
            frontier = nxt
        if frontier and depth >= s.family_max_depth:
            truncated = True
        ids = list(nodes_depth)
        ph = ", ".join("?" * len(ids))
        info = {d["invocation_id"]: d for d in self._q(f"""
            SELECT invocation_id, any_value(task_id) FILTER (WHERE task_id IS NOT NULL) AS task_id,
                   arg_max(status, ts) AS status, min(ts) AS created_at, max(ts) AS updated_at
            FROM transitions WHERE invocation_id IN ({ph}) GROUP BY invocation_id""", ids).dicts()}
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
              FROM (SELECT invocation_id, arg_max(status, ts) AS status, arg_max(runner_id, ts) AS runner_id,
                           arg_max(worker_id, ts) AS worker_id FROM transitions GROUP BY invocation_id)
              WHERE status = 'RUNNING' GROUP BY ALL)
            SELECT r.*, (SELECT flatten(list(ids)) FROM running WHERE running.rid = r.runner_id
                                                               OR running.top = r.runner_id) AS running_ids
            FROM runners r {('WHERE ' + ' AND '.join(where)) if where else ''}
            ORDER BY r.first_seen, r.runner_id""", params)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        dead_after = timedelta(seconds=self.settings.runner_dead_after_s)
        out = []
        for d in r.dicts():
            last = d["last_activity"]
            stopped = d["stopped_at"]
            alive = bool(last and last >= now - dead_after and (stopped is None or last > stopped))
            out.append({
                "runner_id": d["runner_id"], "app_id": d["app_id"], "runner_class": d["runner_class"],
                "parent_runner_id": d["parent_runner_id"], "hostname": d["hostname"], "pid": d["pid"],
                "first_seen": iso(d["first_seen"]), "last_heartbeat": iso(d["last_heartbeat"]),
                "last_activity": iso(last), "stopped_at": iso(stopped), "alive": alive,
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

    def events(self, *, app=None, code=None, since=None, until=None, limit=None):
        return self._window("event_records", "ts", since, until, {"app_id": app, "event_code": code},
                            "ts DESC", limit)

    def trigger_runs(self, *, app=None, since=None, until=None, task=None, limit=None):
        return self._window("trigger_runs", "ts", since, until, {"app_id": app, "task_id": task}, "ts DESC", limit)

    # --- traces ----------------------------------------------------------------------
    def trace(self, trace_id: str) -> dict:
        tid = trace_id.lower()
        if len(tid) != 32 or any(c not in "0123456789abcdef" for c in tid):
            raise BadRequest(f"trace id must be 32 hex characters, got {trace_id!r}")
        rows = self._q("""SELECT s.*, r.attributes AS resource_attributes FROM spans s
                          LEFT JOIN (SELECT resource_id, any_value(attributes) AS attributes FROM resources
                                     GROUP BY resource_id) r USING (resource_id)
                          WHERE trace_id = ? ORDER BY start_ts""", [tid]).dicts()
        if not rows:
            raise NotFound(f"trace {tid} is not in the log")
        by_res: dict = {}
        for d in rows:
            res = by_res.setdefault(d["resource_id"], {"resource": {"attributes": _kv(json.loads(d["resource_attributes"] or "{}"))},
                                                       "scopes": {}})
            scope = res["scopes"].setdefault(d["scope_name"] or "", [])
            span = {"traceId": d["trace_id"], "spanId": d["span_id"], "name": d["name"], "kind": d["kind"],
                    "startTimeUnixNano": str(_nanos(d["start_ts"])), "endTimeUnixNano": str(_nanos(d["end_ts"])),
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
            scope.append(span)
        return {"resourceSpans": [
            {"resource": v["resource"],
             "scopeSpans": [{"scope": {"name": name}, "spans": spans} for name, spans in v["scopes"].items()]}
            for v in by_res.values()]}

    # --- overview --------------------------------------------------------------------
    def overview(self, app: Optional[str] = None) -> dict:
        params = [app] if app else []
        cond = "WHERE app_id = ?" if app else ""
        counts = dict(self._q(f"""SELECT status, count(*) FROM (SELECT arg_max(status, ts) AS status FROM transitions
                                  {cond} GROUP BY app_id, invocation_id) GROUP BY status""", params).rows)
        runners = self.runners(app)
        last = self._q("SELECT max(received_at) FROM ingest_ledger").rows
        return {
            "counts_by_status": {s: int(counts.get(s, 0)) for s in STATUSES},
            "in_flight": sum(int(counts.get(s, 0)) for s in ACTIVE_STATUSES),
            "runners": {"alive": sum(1 for r in runners if r["alive"]),
                        "dead": sum(1 for r in runners if not r["alive"])},
            "last_ingest_at": iso(last[0][0]) if last else None,
            "apps": self.apps(),
        }

    # --- ad-hoc SQL ------------------------------------------------------------------
    def sql(self, statement: str) -> dict:
        sql_guard.check(statement)
        try:
            r = self.log.query(statement, (), timeout_s=self.settings.sql_timeout_s,
                               max_rows=self.settings.sql_max_rows)
        except QueryError as exc:
            raise BadRequest(f"SQL error: {exc}") from None
        return {"columns": r.columns, "rows": [[_jsonable(v) for v in row] for row in r.rows],
                "truncated": r.truncated}


def _nanos(value: Optional[datetime]) -> int:
    if value is None:
        return 0
    return int((value - datetime(1970, 1, 1)).total_seconds() * 1_000_000) * 1000


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


def _jsonable(v):
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


__all__ = ["QueryService", "QuerySettings", "NotFound", "BadRequest", "QueryTimeout", "iso", "parse_time"]
