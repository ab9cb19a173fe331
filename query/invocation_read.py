"""One invocation's records in one SQL statement: its time range from the invocation_state cache and its
transitions inside that range; then, in a second small one, the runner context that made each (runner_state).

The range is a one-row CTE joined to the log, not a scalar subquery: DuckDB then pushes the range into the
scan of `transitions` as it does a constant, so zone maps on `ts` skip every row group outside it (a scalar
subquery in WHERE scans the whole log). One statement instead of three (range, transitions, contexts) made
the history, the detail and the invocation page point reads. The contexts are not joined in that statement,
nor the records ordered there: the LEFT JOIN and the ORDER BY made DuckDB plan and run the statement ~2.3 ms
of CPU longer (B9 10k store, one thread: 7.2 against 4.9 ms, medians of 9 rounds), where the lookup of the
few context ids costs ~0.6 ms and ordering a handful of records in Python nothing measurable.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from .contexts import CONTEXT_FIELDS
from .errors import NotFound
from .invocations import TimeRange
from .reader import ANY_TRIGGER_RUN, BY_ID
from . import values
from tasktrail.proto.status import FINAL_SQL

# What the history needs of each record (query/invocations.history, proto/history.py, the contexts): reading
# only these costs less than every column (B9 store: 1.7 against 2.4 ms), DuckDB decoding each column read.
HISTORY_COLUMNS = ("app_id", "status", "previous_status", "runner_id", "worker_id", "owner_runner_id", "attempt",
                   "source", "error_type", "error_message", "seq", "record_id", "attrs")
_OWN = ("tt_row", "tt_lo", "tt_hi", "tt_final")  # t's own columns (every column of t is read without `only`)
# The contexts of the ids the records name, in every app (each record takes its own app's: `_contexts`).
_CONTEXTS = ("SELECT app_id, runner_id, " + ", ".join(CONTEXT_FIELDS) +
             " FROM runner_state WHERE list_contains($ids::VARCHAR[], runner_id)")
# What the detail reads besides: the call its records named (the first, within its range: query/calls.py
# of_invocation), whether any command record names it (query/commands.py for_invocation's first look) and
# whether any trigger run may have created or read it (its kind-2 keys: query/events.py trigger_runs).
_DETAIL = f""", (SELECT ic.call_id FROM invocation_calls ic, r WHERE ic.invocation_id = $id
                   AND ic.ts BETWEEN r.lo AND r.hi{{app}} ORDER BY ic.ts LIMIT 1) AS tt_call,
            EXISTS (SELECT 1 FROM command_records WHERE target = $id OR new_invocation_id = $id
                    OR contains(parameters, $id)) AS tt_commands,
            {ANY_TRIGGER_RUN.replace('?', '$id')} AS tt_triggers"""


class Read(NamedTuple):
    """An invocation's read: `rng` its time range, `raw` its transition records in arrival order (values as
    previews), `contexts` {context id: {runner_class, hostname, pid, thread_id}} of the contexts that made
    them; read `with_detail`, `call_id` (or None), `commands` (whether any command record names it) and
    `triggers` (whether any trigger run read or created it: query/events.py trigger_runs), else all None."""
    rng: TimeRange
    raw: list
    contexts: dict
    call_id: Optional[str] = None
    commands: Optional[bool] = None
    triggers: Optional[bool] = None


def _sql(previews: values.PreviewLimits, in_app: bool, with_detail: bool, history_only: bool) -> str:
    app = " AND app_id = $app" if in_app else ""
    detail = _DETAIL.format(app=" AND ic.app_id = $app" if in_app else "") if with_detail else ""
    cols = values.transition_columns(previews, "t", HISTORY_COLUMNS + _OWN if history_only else None)
    return f"""
        WITH r AS (SELECT min(first_ts) AS lo, max(last_ts) AS hi, bool_and(status IN ({FINAL_SQL})) AS final
                   FROM invocation_state WHERE {BY_ID.replace('?', '$id')}{app}),
             t AS (SELECT transitions.*, transitions.rowid AS tt_row, r.lo AS tt_lo, r.hi AS tt_hi,
                          r.final AS tt_final
                   FROM transitions, r
                   WHERE invocation_id = $id AND ts BETWEEN r.lo AND r.hi{app})
        SELECT {cols}, t.batch AS tt_batch{detail} FROM t"""


def read(q, invocation_id: str, app: Optional[str], previews: values.PreviewLimits,
         with_detail: bool = False, history_only: bool = False) -> Read:
    """The invocation's Read in one statement (in `app` when given), and one more for the contexts when the
    records name any; `history_only`: its records with the HISTORY_COLUMNS only. Raises NotFound when it is
    not in the log (in that app)."""
    params = {"id": invocation_id, **({"app": app} if app else {})}
    rows = q(_sql(previews, bool(app), with_detail, history_only), params).dicts()
    if not rows:
        raise NotFound(f"invocation {invocation_id} is not in the log")
    rows.sort(key=lambda r: (r["tt_batch"], r["tt_row"]))   # arrival order
    call_id = has_commands = has_triggers = None
    for r in rows:
        first, last, final = r.pop("tt_lo"), r.pop("tt_hi"), r.pop("tt_final")
        r.pop("tt_row")
        r.pop("tt_batch")
        if with_detail:
            call_id, has_commands = r.pop("tt_call"), bool(r.pop("tt_commands"))
            has_triggers = bool(r.pop("tt_triggers"))
    return Read(TimeRange(first, last, bool(final)), values.as_previews(rows, previews), _contexts(q, rows), call_id,
                has_commands, has_triggers)


def _contexts(q, rows: list[dict]) -> dict:
    """{context id: {runner_class, hostname, pid, thread_id}} of the contexts that made `rows` (each
    record's worker, else its runner, in the record's own app; none read when no record names one). A
    context runner_state knows nothing of (every field null) is left out; where records of several apps
    name one id, the last record's app gives it (as the join did)."""
    ids = sorted({r["worker_id"] or r["runner_id"] for r in rows if r["worker_id"] or r["runner_id"]})
    if not ids:
        return {}
    known = {(a, rid): dict(zip(CONTEXT_FIELDS, v)) for a, rid, *v in q(_CONTEXTS, {"ids": ids}).rows}
    found: dict = {}
    for r in rows:
        rid = r["worker_id"] or r["runner_id"]
        ctx = known.get((r["app_id"], rid))
        if rid and ctx and any(v is not None for v in ctx.values()):
            found[rid] = ctx
    return found
