"""QueryService: the one door the web layer reads through; it never sees SQL or the store.

A thin facade: each method parses its request parameters (query/params.py), reads the service's clock
once, and calls the read model that owns the answer (one module per read model, listed in
docs/architecture.md). Times come back as RFC 3339 UTC strings with microseconds; statuses as
canonical upper-case names.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Sequence

from tasktrail.proto.status import RUNNER_DEAD_AFTER_S
from tasktrail.store.api import EventLog, QueryTimeout

from . import (atomic, commands, dashboards, definitions, events, family, invocations as inv, metrics, params, search,
               sql, tasks, timeline, traces, values, workflow_compare)
from . import calls, contexts, invocation_read
from . import queues as queue_reads
from . import timeline_options
from .anomalies import AnomalySettings, listing as anomaly_listing
from .errors import BadRequest, NotFound
from .health import Health
from .log_reads import LogReads
from .liveness import Liveness
from .params import iso, parse_time
from .reader import Reader
from .runners import detail as runner_detail, labels as runner_labels, listing as runner_listing, \
    listing_all as runner_listing_all, labels_of_rows
from .sql_answer import SqlAnswer
from .workflows import CATEGORIES, DEFAULT_CATEGORIES, Workflows

SUMMARY_WINDOW = timedelta(hours=24)  # tasks and workflow types: the default window
QUEUES_WINDOW = timedelta(hours=1)    # queues: the default window of the depth series


@dataclass(frozen=True)
class QuerySettings:
    runner_dead_after_s: float = RUNNER_DEAD_AFTER_S
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
    # reads are bounded in time so they skip the rest of the log; see query/invocations.py).
    related_after_s: float = 3600
    anomalies: AnomalySettings = AnomalySettings()
    # Preview sizes of arguments, results, errors and log bodies (query/values.py).
    previews: values.PreviewLimits = values.PreviewLimits()


class QueryService(Health, LogReads, commands.CommandReads):
    LEVELS = params.LEVELS
    TIMELINE_DEFAULT_LIMIT = timeline.DEFAULT_LIMIT
    TIMELINE_MAX_LIMIT = timeline.MAX_LIMIT

    def __init__(self, log: EventLog, settings: QuerySettings = QuerySettings(), clock=None) -> None:
        """`clock()` is the current time as naive UTC (a benchmark sets it to the end of its data)."""
        self.log = log
        self.settings = settings
        self._clock = clock
        self._q = Reader(log, settings.query_timeout_s)

    def _now(self) -> datetime:
        """The service's one clock: every read model is given this time, none reads its own."""
        return self._clock() if self._clock else params.now_utc()

    def _window(self, since, until) -> tuple:
        return params.window(since, until, self._now())

    # --- invocations -----------------------------------------------------------------
    def invocations(self, *, app: Optional[str] = None, status: Sequence[str] | None = None,
                    task: Optional[str] = None, runner: Optional[str] = None, workflow: Optional[str] = None,
                    parent: Optional[str] = None, since: Optional[str] = None, until: Optional[str] = None,
                    q: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None,
                    sort: Optional[str] = None, status_mode: Optional[str] = None) -> dict:
        """A page of invocations; `status_mode` "history" matches a status an invocation ever had."""
        limit = params.limit(limit)
        sort = params.choice("sort", sort or "-created_at", inv.SORTS)
        mode = params.choice("status_mode", status_mode or "current", inv.STATUS_MODES)
        statuses = params.statuses(status)
        lo, hi = self._window(since, until)
        after = params.page_cursor(cursor, timed=bool(inv.SORTS[sort][2]))
        found = search.prepare(q, since, until, self._now())
        return search.with_window(found, inv.listing(
            self._q, app=app, statuses=statuses, task=task, runner=runner, workflow=workflow, parent=parent,
            since=lo, until=hi, text=found, limit=limit, after=after, sort=sort, status_mode=mode))

    def _raw(self, invocation_id: str, app: Optional[str], with_detail: bool = False) -> invocation_read.Read:
        """The invocation's records, range and contexts (query/invocation_read.py): one read."""
        return invocation_read.read(self._q, invocation_id, app, self.settings.previews, with_detail)

    def _detail(self, invocation_id: str, app: Optional[str], got: invocation_read.Read) -> dict:
        """Its detail and the commands aimed at it, from `got` (read `with_detail`)."""
        related = self.settings.related_after_s
        out = inv.detail(invocation_id, app, got.raw,
                         parent_by_trace=lambda: family.trace_parent(self._q, invocation_id, related, got.rng),
                         links=self.trace_links)
        out["call_id"] = got.call_id
        return {**out, **commands.for_invocation(self._q, invocation_id, app, any_aimed=got.commands)}

    def history(self, invocation_id: str, app: Optional[str] = None) -> list[dict]:
        """Its history, oldest first, by the one rule (query/invocations.history), each record with the
        runner context that made it (query/contexts.py)."""
        got = invocation_read.read(self._q, invocation_id, app, self.settings.previews, history_only=True)
        return contexts.filled(inv.history(got.raw), got.raw, got.contexts)

    def invocation(self, invocation_id: str, app: Optional[str] = None) -> dict:
        """Its detail, with the commands aimed at it and its re-run links (`commands`, `rerun_of`, `reruns`)."""
        return self._detail(invocation_id, app, self._raw(invocation_id, app, with_detail=True))

    def invocation_page(self, invocation_id: str, app: Optional[str] = None, parts: bool = True) -> dict:
        """What the invocation page shows: the detail, its history (from one read of its time range and
        of its transitions), family, log lines and trigger runs. Without `parts`, no `family` and `logs`
        (the HTML page loads them after it shows, from /family and /logs; its JSON twin has them)."""
        got = self._raw(invocation_id, app, with_detail=True)
        rng, raw = got.rng, got.raw
        detail = self._detail(invocation_id, app, got)
        detail["history"] = contexts.filled(inv.history(raw), raw, got.contexts)
        if parts:
            detail["family"] = self._family(invocation_id, rng, raw if app is None else None)  # raw: every app's
            detail["logs"] = self._invocation_logs(invocation_id, rng, 1000)
        # Most invocations took part in no trigger run: the read said so (got.triggers), no read of them then.
        detail["trigger_runs"] = (events.trigger_runs(self._q, invocation=invocation_id, limit=100)
                                  if got.triggers else [])
        return detail

    def invocation_value(self, invocation_id: str, name: str, app: Optional[str] = None) -> tuple[bytes, bool]:
        """The whole value `name` (arguments, result, error_message, error_traceback) as UTF-8 bytes, and
        whether it is JSON. Raises NotFound for an unknown invocation or name, or when no record of it
        carried the value."""
        values.check(name)
        rng, raw = self._raw(invocation_id, app)[:2]
        return inv.whole_value(self._q, invocation_id, name, app, rng, raw, self.settings.previews)

    def runs(self, *, app=None, task=None, status: Sequence[str] | None = None, since=None, until=None,
             sort: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None,
             status_mode: Optional[str] = None, q: Optional[str] = None) -> dict:
        """The runs table: one row per invocation, started descending, with how it was started; cursor pages.
        `status_mode` "history" matches a status an invocation ever had; `q` a search (query/search.py)."""
        limit = params.limit(limit)
        params.choice("sort", sort, inv.RUN_SORTS, [k for k in inv.RUN_SORTS if k])
        mode = params.choice("status_mode", status_mode or "current", inv.STATUS_MODES)
        statuses = params.statuses(status)
        lo, hi = self._window(since, until)
        found = search.prepare(q, since, until, self._now())
        out = inv.runs(self._q, app=app, task=task, statuses=statuses, since=lo, until=hi, sort=sort, limit=limit,
                       after=inv.run_cursor(cursor, sort), status_mode=mode, text=found)
        commands.with_rerun_origins(self._q, out["items"], "invocation_id")
        return search.with_window(found, out)

    # --- family, traces ------------------------------------------------------------------
    def trace_links(self, trace_id: Optional[str]) -> dict:
        return traces.links(trace_id, self.settings.jaeger_url, self.settings.tempo_url)

    def trace_parents(self, *, children: Sequence[str] = (), parents: Sequence[str] = ()) -> list[tuple]:
        """(child, parent) links from trace context (query/family.py)."""
        return family.trace_parents(self._q, self.settings.related_after_s, children=children, parents=parents)

    def family(self, invocation_id: str, app: Optional[str] = None) -> dict:
        """The tree around an invocation (query/family.py); NotFound when it is not in the log."""
        return self._family(invocation_id, inv.time_range(self._q, invocation_id, app, parents=True))

    def _family(self, invocation_id: str, rng, raw: Optional[list] = None) -> dict:
        s = self.settings
        return family.tree(self._q, invocation_id, rng, max_nodes=s.family_max_nodes, max_depth=s.family_max_depth,
                           related_after_s=s.related_after_s, raw=raw)

    def trace(self, trace_id: str) -> dict:
        """The trace's spans as OTLP/JSON (query/traces.py). Raises BadRequest for an id that is not 32 hex
        characters, NotFound when no span of it is stored."""
        return traces.otlp_json(self._q, params.trace_id(trace_id))

    # --- runners, atomic services ------------------------------------------------------------
    def _dead(self) -> datetime:
        return self._now() - timedelta(seconds=self.settings.runner_dead_after_s)

    def runners(self, app: Optional[str] = None, runner_id: Optional[str] = None) -> list[dict]:
        if runner_id is None:
            return self.runners_live(app)[0]
        return runner_listing(self._q, Liveness(self._q, self._dead()), app, runner_id)

    def runners_live(self, app: Optional[str] = None) -> tuple[list[dict], Liveness]:
        """(`runners(app)`, the Liveness that judged them, over every runner context) from one read."""
        return runner_listing_all(self._q, self._dead(), app)

    def runner(self, runner_id: str, app: Optional[str] = None, cursor: Optional[str] = None,
               limit: Optional[int] = None) -> dict:
        """One runner, its workers, a page of its activity (`cursor`: the previous page's `next_cursor`)."""
        return definitions.with_runner_settings(
            self._q, runner_detail(self._q, runner_id, app, self._dead(), cursor, params.limit(limit)), app,
            self.settings.previews.value_bytes)

    def runner_labels(self, ids, live: Optional[Liveness] = None) -> dict:
        """{id: {runner_class, hostname, pid, short, label}} of the runner ids a page shows, read by those ids
        (query/runners.labels), or from the rows of `live` when the page read them (no read): the short id
        tells each from the others of `ids`."""
        if live is not None:
            return labels_of_rows(ids, live.runners.values())
        return runner_labels(self._q, ids)

    def atomic_executions(self, *, app=None, since=None, until=None, runner=None, status=None, limit=None,
                          cursor=None):
        lo, hi = self._window(since, until)
        return atomic.executions(self._q, app=app, since=lo, until=hi, runner=runner,
                                 status=status.upper() if status else None, limit=params.limit(limit), cursor=cursor)

    def atomic_decisions(self, *, app=None, since=None, until=None, runner=None, reason=None, limit=None,
                         cursor=None):
        lo, hi = self._window(since, until)
        return atomic.decisions(self._q, app=app, since=lo, until=hi, runner=runner,
                                reason=reason.upper() if reason else None, limit=params.limit(limit), cursor=cursor)

    @staticmethod
    def atomic_next_cursor(rows: list[dict], limit: Optional[int], kind: str) -> Optional[str]:
        """The cursor of the page after `rows` of atomic_executions (`kind` "executions") or atomic_decisions."""
        ts_key, tie = ("start_ts", "run_id") if kind == "executions" else ("ts", "runner_id")
        return atomic.next_cursor(rows, params.limit(limit), ts_key, tie)

    def atomic_schedule(self, app: Optional[str] = None) -> dict:
        """The latest decision of every runner: the current cycle's slot assignment as the runners saw it."""
        return atomic.schedule(self._q, app, Liveness(self._q, self._dead()))

    # --- queues ------------------------------------------------------------------------
    def queues(self, *, app=None, since=None, until=None, queue=None, one: bool = False) -> dict:
        """Pending messages per queue over the window (default the last hour), live consumers, "nobody
        consumes it" flagged (query/queues.py: shapes, errors); `one`: only the queue `queue`."""
        now = self._now()
        lo, hi = params.summary_window(since, until, now, QUEUES_WINDOW)
        out = queue_reads.listing(self._q, Liveness(self._q, self._dead()), lo=lo, hi=hi, now=now, app=app, queue=queue)
        return queue_reads.one(out, queue) if one else out

    # --- events, trigger runs ------------------------------------------------------------------
    def events(self, *, app=None, code=None, since=None, until=None, matched=None, triggered=None,
               limit=None) -> list[dict]:
        """Event records (latest state of each), newest first, with what they triggered."""
        lo, hi = self._window(since, until)
        return events.listing(self._q, app=app, code=code, since=lo, until=hi, matched=params.flag("matched", matched),
                              triggered=params.flag("triggered", triggered), limit=params.limit(limit))

    def event(self, event_id: str) -> dict:
        return events.detail(self._q, event_id)

    def trigger_runs(self, *, app=None, since=None, until=None, task=None, event=None, invocation=None,
                     limit=None) -> list[dict]:
        """Trigger runs, newest first; `event` / `invocation` keep those it took part in or created."""
        lo, hi = self._window(since, until)
        return events.trigger_runs(self._q, app=app, since=lo, until=hi, task=task, event=event,
                                   invocation=invocation, limit=params.limit(limit))

    def trigger_run(self, trigger_run_id: str) -> dict:
        return events.trigger_run(self._q, trigger_run_id)

    def event_markers(self, *, app=None, since=None, until=None, code=None, state=None, limit=None) -> dict:
        """Trigger events in a window as timeline markers: {markers, total, truncated}."""
        limit = params.limit(limit, default=1000)
        lo, hi = self._window(since, until)
        params.choice("state", state, events.MARKER_STATES, [k for k in events.MARKER_STATES if k])
        return events.markers(self._q, app=app, since=lo, until=hi, code=code, state=state, limit=limit)

    # --- timeline --------------------------------------------------------------------
    def timeline(self, *, app=None, since=None, until=None, task=None, workflow=None, runner=None,
                 invocations: Optional[str | Sequence[str]] = None, limit: Optional[int] = None,
                 **options) -> dict:
        """Lanes, sub-lanes, segments and points of every invocation active in the window (query/timeline.py).
        `invocations`: a comma list of ids, or ids one per value (repeated `invocations=`, for ids that
        hold commas). `options`: resolution, show_system, show_atomic_service, histogram_status, fit
        (query/timeline_options.py)."""
        limit = params.limit(limit, default=timeline.DEFAULT_LIMIT, maximum=timeline.MAX_LIMIT)
        opts = timeline_options.options(**options)
        now = self._now()
        lo, hi = params.window(since, until, now)
        return timeline.read(self._q, since=lo, until=hi, now=now, lookback_s=self.settings.timeline_lookback_s,
                             limit=limit, app=app, task=task, workflow=workflow, runner=runner,
                             invocations=params.id_list(invocations) if invocations else None, opts=opts)

    # --- dashboards --------------------------------------------------------------------
    def apps(self) -> list[dict]:
        return dashboards.apps(self._q)

    def overview(self, app: Optional[str] = None, runners: Optional[list[dict]] = None,
                 live: Optional[Liveness] = None) -> dict:
        """The overview (query/dashboards.py); `runners` and `live`: `runners_live(app)` when the caller
        already read it (the anomalies judge the same runner rows)."""
        if runners is None:
            runners, live = self.runners_live(app)
        anomalies = self.anomalies(app, runner_rows=list(live.runners.values()) if live is not None else None)
        return definitions.with_app_configs(self._q, dashboards.overview(self._q, app, runners, anomalies,
                                                                          self._now()),
                                            self.settings.previews.value_bytes)

    def ops(self, app: Optional[str] = None, writer=None) -> dict:
        """What operators check first (query/dashboards.py)."""
        return dashboards.ops(self._q, self._now(), app, writer, Liveness(self._q, self._dead()))

    def metrics_snapshot(self) -> dict:
        """The log-derived figures behind /metrics (query/metrics.py): they come from the stored log, so
        they survive restarts and agree with the API."""
        return metrics.snapshot(self._q, self.settings.anomalies, self._now())

    def anomalies(self, app: Optional[str] = None, settings=None, runner_rows: Optional[list] = None) -> dict:
        """Stuck, orphaned and slow work, failure spikes, silent runners (query/anomalies.py); `runner_rows`:
        the runner_state rows of a Liveness the caller read (else read here)."""
        return anomaly_listing(self._q, settings or self.settings.anomalies, self._now(), app, runner_rows)

    # --- tasks and workflows ----------------------------------------------------------
    def _summary_window(self, since, until, now: datetime) -> tuple:
        return params.summary_window(since, until, now, SUMMARY_WINDOW)

    def tasks(self, *, app=None, since=None, until=None) -> dict:
        """Per task: counts by status, success rate, duration p50/p95/p99, throughput (query/tasks.py)."""
        now = self._now()
        lo, hi = self._summary_window(since, until, now)
        return tasks.task_list(self._q, now, app=app, since=lo, until=hi)

    def task(self, task_id: str, *, app=None, since=None, until=None, recent: int = 20) -> dict:
        """One task: figures, a series over time, error types with their latest example, recent runs and
        its recent calls (query/calls.py), its reported definition. A task known only by its definition
        answers zero counts with it (definitions.defined_only); NotFound when neither is stored."""
        now = self._now()
        lo, hi = self._summary_window(since, until, now)
        definition = definitions.task_definition(self._q, task_id, app, self.settings.previews.value_bytes)
        try:
            out = tasks.task_detail(self._q, now, task_id, app=app, since=lo, until=hi,
                                    message_bytes=self.settings.previews.value_bytes)
        except NotFound:
            if definition is None:
                raise
            return definitions.defined_only(task_id, app, lo, hi, definition)  # known by its definition only
        out["recent"] = inv.listing(self._q, app=app, task=task_id, since=lo, until=hi, limit=params.limit(recent),
                                    sort="-created_at")["items"]
        out["calls"] = calls.of_task(self._q, task_id, app, lo, hi, limit=recent)
        out["definition"] = definition
        return out

    def call(self, call_id: str, *, app: Optional[str] = None, limit: Optional[int] = None) -> dict:
        """One call and its invocations, newest first (query/calls.py). NotFound when no record named it."""
        return calls.detail(self._q, call_id, app, params.limit(limit, default=100))

    def workflow_types(self, *, app=None, since=None, until=None) -> dict:
        now = self._now()
        lo, hi = self._summary_window(since, until, now)
        return {**Workflows(self._q, now).types(app=app, since=lo, until=hi), "since": iso(lo), "until": iso(hi)}

    def workflow_runs(self, *, app=None, workflow_type=None, status=None, since=None, until=None,
                      limit=None) -> dict:
        now = self._now()
        statuses = params.statuses(status)
        lo, hi = params.window(since, until, now)
        out = Workflows(self._q, now).runs(app=app, workflow_type=workflow_type, status=statuses, since=lo,
                                          until=hi, limit=params.limit(limit))
        commands.with_rerun_origins(self._q, out["items"], "workflow_id")
        return out

    def workflow_type(self, workflow_type: str, *, app=None, status=None, limit=None, histogram_runs=None,
                      histogram_status=None, since=None, until=None) -> dict:
        """A type's newest runs and histograms; its summary covers `since`–`until` (default the last 24 h)."""
        now = self._now()
        lo, hi = self._summary_window(since, until, now)
        return Workflows(self._q, now).of_type(
            workflow_type, app=app, status=params.statuses(status), limit=params.limit(limit),
            histogram_runs=params.comma_list(histogram_runs, strip=False), categories=self._categories(histogram_status),
            since=lo, until=hi)

    @staticmethod
    def _categories(histogram_status) -> tuple:
        return params.choices("histogram_status", histogram_status, tuple(CATEGORIES), DEFAULT_CATEGORIES)

    def workflow_run(self, workflow_id: str, *, app=None, histogram_status=None) -> dict:
        return Workflows(self._q, self._now()).run(workflow_id, app=app, categories=self._categories(histogram_status))

    def workflow_compare(self, runs, *, app=None) -> dict:
        """Up to 10 runs side by side (query/workflow_compare.py)."""
        ids = list(dict.fromkeys(params.comma_list(runs)))
        return workflow_compare.compare(Workflows(self._q, self._now()), ids, app=app)

    # --- ad-hoc SQL ------------------------------------------------------------------
    def sql(self, statement: str) -> SqlAnswer:
        """One ad-hoc SELECT under its limits (time, rows, bytes, how many at once): the SqlAnswer.
        Raises BadRequest (refused or failing SQL), QueryTimeout, ReadersBusy (every SQL cursor busy)."""
        s = self.settings
        return sql.answer(self._q, statement, max_rows=s.sql_max_rows, max_bytes=s.sql_max_bytes,
                          timeout_s=s.sql_timeout_s, wait_s=s.sql_wait_s)


__all__ = ["QueryService", "QuerySettings", "NotFound", "BadRequest", "QueryTimeout", "iso", "parse_time"]
