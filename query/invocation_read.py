"""One invocation's records in one SQL statement: its time range from the invocation_state cache, its
transitions inside that range, and the runner context that made each one (runner_state).

The range is a one-row CTE joined to the log, not a scalar subquery: DuckDB then pushes the range into the
scan of `transitions` as it does a constant, so zone maps on `ts` skip every row group outside it (a scalar
subquery in WHERE scans the whole log). One statement instead of three (range, transitions, contexts) is
what makes the history, the detail and the invocation page point reads.
"""
from __future__ import annotations

from typing import Optional

from .contexts import CONTEXT_FIELDS
from .errors import NotFound
from .invocations import TimeRange
from .reader import BY_ID
from . import values
from tasktrail.proto.status import FINAL_SQL

_CTX = ", ".join(f"c.{f} AS ctx_{f}" for f in CONTEXT_FIELDS)


def _sql(previews: values.PreviewLimits, in_app: bool) -> str:
    app = " AND app_id = $app" if in_app else ""
    return f"""
        WITH r AS (SELECT min(first_ts) AS lo, max(last_ts) AS hi, bool_and(status IN ({FINAL_SQL})) AS final
                   FROM invocation_state WHERE {BY_ID.replace('?', '$id')}{app}),
             t AS (SELECT transitions.*, transitions.rowid AS tt_row, r.lo AS tt_lo, r.hi AS tt_hi,
                          r.final AS tt_final
                   FROM transitions, r
                   WHERE invocation_id = $id AND ts BETWEEN r.lo AND r.hi{app})
        SELECT {values.transition_columns(previews, "t")}, {_CTX}
        FROM t LEFT JOIN runner_state c ON c.app_id = t.app_id AND c.runner_id = coalesce(t.worker_id, t.runner_id)
        ORDER BY t.batch, t.tt_row"""


def read(q, invocation_id: str, app: Optional[str],
         previews: values.PreviewLimits) -> tuple[TimeRange, list[dict], dict]:
    """(its time range, its transition records in arrival order with values as previews, {context id:
    {runner_class, hostname, pid, thread_id}} of the contexts that made them) in one read. Raises NotFound
    when it is not in the log (in `app` when given)."""
    params = {"id": invocation_id, **({"app": app} if app else {})}
    rows = q(_sql(previews, bool(app)), params).dicts()
    if not rows:
        raise NotFound(f"invocation {invocation_id} is not in the log")
    found: dict = {}
    for r in rows:
        ctx = {f: r.pop(f"ctx_{f}") for f in CONTEXT_FIELDS}
        first, last, final = r.pop("tt_lo"), r.pop("tt_hi"), r.pop("tt_final")
        r.pop("tt_row")
        rid = r["worker_id"] or r["runner_id"]
        if rid and any(v is not None for v in ctx.values()):
            found[rid] = ctx
    return TimeRange(first, last, bool(final)), values.as_previews(rows, previews), found
