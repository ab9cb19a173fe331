"""Log lines: filtered and searched pages (newest first, cursor pagination), what a live tail reads next,
one invocation's lines, and a cut line's whole body.

A line without an invocation attribute belongs to the invocation of the span it was logged in (trace
context), looked up at read time, as the span may come after the line. Bodies are read as previews
(query/values.py): the page's lines are chosen first, then only their bodies are cut and measured.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional, Sequence

from . import values
from .invocations import TimeRange
from .errors import NotFound
from .params import iso, cursor_of
from .reader import conditions, where

SEVERITY_SQL = ("coalesce(nullif(severity_number, 0), CASE upper(severity_text) WHEN 'TRACE' THEN 1 "
                "WHEN 'DEBUG' THEN 5 WHEN 'INFO' THEN 9 WHEN 'WARN' THEN 13 WHEN 'WARNING' THEN 13 "
                "WHEN 'ERROR' THEN 17 WHEN 'CRITICAL' THEN 21 WHEN 'FATAL' THEN 21 ELSE 0 END)")
# The columns of a log line besides its body (read as a preview: values.log_lines_sql).
LOG_COLUMNS = ("batch, ts, app_id, severity_text, severity_number, runner_id, worker_id, invocation_id, task_id, "
               "trace_id, span_id, event_name, scope_name")
_LEVELS = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))


def filters(*, app=None, text=None, level: Optional[int] = None, runner=None, worker=None, invocation=None,
            task=None, since: Optional[datetime] = None, until: Optional[datetime] = None) -> tuple[list, list]:
    """(clauses, params) keeping the lines that match: `text` literally in the body (any case), at least
    severity `level`, of `invocation` by attribute or through the trace context of one of its spans."""
    clauses, params = conditions(("ts >= ?", since), ("ts < ?", until), ("app_id = ?", app),
                                 ("worker_id = ?", worker), ("task_id = ?", task))
    if invocation:
        # Its own lines, by attribute or through the trace context of one of its spans (spans of the
        # same time range: the bound lets the span lookup skip most of the spans table too).
        span_where, span_params = conditions(("start_ts >= ?", since - timedelta(hours=1) if since else None),
                                             ("start_ts < ?", until))
        clauses.append("(invocation_id = ? OR (invocation_id IS NULL AND span_id IS NOT NULL AND span_id IN "
                       "(SELECT span_id FROM spans WHERE invocation_id = ?"
                       + "".join(" AND " + w for w in span_where) + ")))")
        params += [invocation, invocation, *span_params]
    if runner:
        clauses.append("(runner_id = ? OR worker_id = ?)")
        params += [runner, runner]
    if text:
        clauses.append("contains(lower(body), lower(?))")  # literal text, any case
        params.append(text)
    if level is not None:
        clauses.append(f"({SEVERITY_SQL}) >= ?")
        params.append(level)
    return clauses, params


def _level(number: Optional[int]) -> Optional[str]:
    for floor, name in _LEVELS:
        if number and number >= floor:
            return name
    return None


def line(d: dict, preview_bytes: int) -> dict:
    """A log line as the API shows it: `message` is the body's preview, `values.message` its size and,
    when cut, where the whole body downloads."""
    message, described = values.log_message(d, preview_bytes)
    return {"timestamp": iso(d["ts"]), "level": d["severity_text"] or _level(d["severity_number"]),
            "severity_number": d["severity_number"], "message": message, "app_id": d["app_id"],
            "runner_id": d["runner_id"], "worker_id": d["worker_id"], "invocation_id": d["invocation_id"],
            "task_id": d["task_id"], "trace_id": d["trace_id"], "span_id": d["span_id"],
            "event_name": d["event_name"], "logger": d["scope_name"], "batch": d["batch"], "values": described}


def page(q, clauses: list, params: list, *, limit: int, after: Optional[tuple], preview_bytes: int) -> dict:
    """Lines meeting `clauses`, newest first, after the (time, batch) `after`: {items, next_cursor}."""
    clauses, params = list(clauses), list(params)
    if after is not None:
        clauses.append("(ts, batch) < (?::TIMESTAMP, ?)")
        params += list(after)
    rows = q(values.log_lines_sql(LOG_COLUMNS, where(clauses), "ts DESC, batch DESC", limit + 1, preview_bytes),
             params).dicts()
    link_by_trace(q, rows)
    items = [line(d, preview_bytes) for d in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = cursor_of(last["ts"], last["batch"])
    return {"items": items, "next_cursor": nxt}


def after_batch(q, clauses: list, params: list, after: int, *, limit: int, upto: Optional[int],
                preview_bytes: int) -> tuple[list[dict], int]:
    """Lines meeting `clauses` committed in batches after `after` (and up to `upto` when given), oldest
    first, and the newest batch seen: what a live tail sends next."""
    clauses, params = [*clauses, "batch > ?"], [*params, after]
    if upto is not None:
        clauses.append("batch <= ?")
        params.append(upto)
    rows = q(values.log_lines_sql(LOG_COLUMNS, where(clauses), "batch, ts", limit, preview_bytes), params).dicts()
    last = max((d["batch"] for d in rows), default=after)
    link_by_trace(q, rows)
    return [line(d, preview_bytes) for d in rows], last


def cut_lines_containing(q, after: int, upto: int, texts: Sequence[str], preview_bytes: int) -> set[tuple[str, str]]:
    """(line key, text) for every log line committed in batches (after, upto] whose body is longer than its
    preview and holds `text` (literal, any case): what a live tail's `q` cannot decide from the preview
    alone. The key is the one in the line's `values.message.url` (values.log_key)."""
    if not texts:
        return set()
    rows = q("SELECT DISTINCT r.batch, epoch_us(r.ts), md5(r.body), w.q FROM log_records r, "
             "(SELECT unnest(?::VARCHAR[]) AS q) w WHERE r.batch > ? AND r.batch <= ? "
             "AND strlen(r.body) > ? AND contains(lower(r.body), lower(w.q))",
             [sorted(set(texts)), after, upto, preview_bytes]).rows
    return {(values.log_key(b, ts_us, md5), text) for b, ts_us, md5, text in rows}


def link_by_trace(q, rows: list[dict]) -> None:
    """Lines without an invocation attribute belong to the invocation of the span they were
    logged in (trace context); looked up at read time, as the span may come after the line."""
    spans = sorted({d["span_id"] for d in rows if not d["invocation_id"] and d["span_id"]})
    if not spans:
        return
    # A line is logged while its span is open: the span started before it (a day of slack for long
    # tasks), which bounds the lookup in time.
    ts = [d["ts"] for d in rows if d["span_id"] in spans and d["ts"] is not None]
    lo, hi = (min(ts) - timedelta(days=1), max(ts)) if ts else (datetime.min, datetime.max)
    owner = dict(q("SELECT span_id, any_value(invocation_id) FROM spans WHERE span_id IN "
                   "(SELECT unnest(?::VARCHAR[])) AND invocation_id IS NOT NULL "
                   "AND start_ts BETWEEN ? AND ? GROUP BY span_id", [spans, lo, hi]).rows)
    for d in rows:
        if not d["invocation_id"] and d["span_id"] in owner:
            d["invocation_id"] = owner[d["span_id"]]


def last_batch(q) -> int:
    return int(q("SELECT coalesce(max(batch), 0) FROM ingest_ledger").rows[0][0])


def of_invocation(q, invocation_id: str, rng: TimeRange, *, limit: int, related_after_s: float,
                  preview_bytes: int) -> list[dict]:
    """Its log lines, oldest first: by attribute, or through the trace context of its spans. Looked for
    from a minute before its first transition to `related_after_s` after its last (unbounded while it is
    not final), so the read skips the rest of the log."""
    since = rng.first - timedelta(seconds=60)
    until = rng.last + timedelta(seconds=related_after_s) if rng.final else None
    clauses, params = filters(invocation=invocation_id, since=since, until=until)
    return list(reversed(page(q, clauses, params, limit=limit, after=None, preview_bytes=preview_bytes)["items"]))


def body(q, batch: int, ts_us: int, md5: str, key: str) -> bytes:
    """The whole body of the log line committed in `batch` at `ts_us` whose body's md5 is `md5` (what a
    preview's url names: `key`, values.log_key), as UTF-8 bytes. NotFound when no line matches it."""
    rows = q(values.LOG_BODY_SQL, {"batch": batch, "ts_us": ts_us, "md5": md5}, max_rows=1).rows
    if not rows:
        raise NotFound(f"no log line {key}")
    return bytes(rows[0][0])
