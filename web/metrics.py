"""/metrics in Prometheus text format.

Figures about the stored data come from the log itself (LogCollector, cached briefly), so they
survive restarts and match the API; process-only figures (rejections, ack latency, queue depth)
come from the ingest side's own collectors in the same registry.
"""
from __future__ import annotations

import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                   InfoMetricFamily)
from starlette.requests import Request
from starlette.responses import Response

from tasktrail.query.metrics import MAX_SUBJECTS


class LogCollector:
    """Prometheus collector over QueryService.metrics_snapshot(), cached for `ttl_s` seconds. Counters
    include what retention removed (store/carry.py), so they never go down."""

    def __init__(self, query, ttl_s: float = 5.0) -> None:
        self.query = query
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached = None
        self._at = 0.0

    def _snapshot(self) -> dict:
        with self._lock:
            if self._cached is None or time.monotonic() - self._at > self.ttl_s:
                self._cached = self.query.metrics_snapshot()
                self._at = time.monotonic()
            return self._cached

    def collect(self):
        snap = self._snapshot()
        yield from _families(snap, _STORED)
        yield _durations(snap)
        yield from _families(snap, _LIVE)
        yield from _ingest(snap)


# The families whose samples are snapshot rows (labels..., value): (snapshot key, family, name, help, labels).
_STORED = (
    ("invocations_by_status", GaugeMetricFamily, "tasktrail_invocations",
     "Invocations stored, by app and the status each is in now (finished ones included until retention removes "
     "them); every status of every app, 0 included.", ["app", "status"]),
    ("transitions", CounterMetricFamily, "tasktrail_status_transitions",
     "Status transitions stored (every status change of every invocation), by app and the status entered.",
     ["app", "status"]),
    ("finished", CounterMetricFamily, "tasktrail_invocations_finished",
     "Invocations that reached a final status (SUCCESS, FAILED, CONCURRENCY_CONTROLLED_FINAL), by app, task and "
     "that status.", ["app", "task", "status"]),
)
_LIVE = (
    ("heartbeats", GaugeMetricFamily, "tasktrail_runner_last_heartbeat_timestamp_seconds",
     "Unix time of each runner's last heartbeat, for runners that sent one within the last day.", ["app", "runner"]),
    ("runners", GaugeMetricFamily, "tasktrail_runners",
     "Runner contexts stored, by app and state: alive (heard from within --runner-dead-after), stopped (it or "
     "its runner said so), dead (neither: gone silent), client (only submits work).", ["app", "state"]),
    ("app_last_record", GaugeMetricFamily, "tasktrail_app_last_record_timestamp_seconds",
     "Unix time, by the sender's clock, of the newest record stored from each app (a status transition, runner "
     "event, log line, span or metric point).", ["app"]),
    ("anomalies", GaugeMetricFamily, "tasktrail_anomalies",
     "Current anomalies (orphaned, pending_too_long, slow, failure_spike, runner_silent, scheduler_silent), by app "
     "and kind; every kind of every app, 0 included.", ["app", "kind"]),
    ("anomaly_subjects", GaugeMetricFamily, "tasktrail_anomalies_by_subject",
     "Current anomalies by app, kind and what they are about: the task (orphaned, pending_too_long, slow, "
     "failure_spike) and the runner (orphaned: the one that held the work; runner_silent; scheduler_silent: the "
     "one that ran it), empty where none applies. Only subjects with an anomaly, at most "
     f"{MAX_SUBJECTS} per app and kind (the most recent).", ["app", "kind", "task", "runner"]),
    ("queue_depths", GaugeMetricFamily, "tasktrail_queue_depth",
     "Messages waiting in each queue, as its broker last counted them (tasktrail.queue.depth records; queues "
     "reported within the last day), by app and queue.", ["app", "queue"]),
)


def _families(snap: dict, specs: tuple):
    for key, family, name, doc, labels in specs:
        fam = family(name, doc, labels=labels)
        for *values, n in snap[key]:
            fam.add_metric(values, n)
        yield fam


def _durations(snap: dict) -> HistogramMetricFamily:
    hist = HistogramMetricFamily("tasktrail_task_duration_seconds", "Durations of finished invocations, from "
                                 "their first RUNNING (else their registration) to their final status, by app "
                                 "and task.", labels=["app", "task"])
    buckets = snap["buckets"]
    for app, task, counts, total, total_sum in snap["durations"]:
        hist.add_metric([app, task], [(str(b), c) for b, c in zip(buckets, counts)] + [("+Inf", total)],
                        sum_value=total_sum or 0.0)
    return hist


def _ingest(snap: dict):
    req = CounterMetricFamily("tasktrail_ingest_requests", "OTLP export requests stored (duplicates not "
                              "counted), by signal and transport.", labels=["signal", "transport"])
    rec = CounterMetricFamily("tasktrail_ingest_records", "Records stored (spans, log records, data points), "
                              "by signal and transport.", labels=["signal", "transport"])
    for signal, transport, n, records in snap["ingest"]:
        req.add_metric([signal, transport], n)
        rec.add_metric([signal, transport], records or 0)
    yield req
    yield rec


class InfoCollector:
    """tasktrail_info: this server's version and the base URL its pages are reached at (--public-url),
    which alert rules and dashboards join to link to the page that explains what they show."""

    def __init__(self, version: str, public_url: str) -> None:
        self.labels = {"version": version, "public_url": public_url}

    def collect(self):
        yield InfoMetricFamily("tasktrail", "This tasktrail server: its version and the base URL of its pages "
                               "(--public-url).", value=self.labels)


class TailCollector:
    """The live tails of this process (web/tail_hub.py): how many are open and how often the shared poller
    read new lines (one read per interval, whatever the number of tails)."""

    def __init__(self, hub) -> None:
        self.hub = hub

    def collect(self):
        open_tails = GaugeMetricFamily("tasktrail_live_tails", "Live log tails open (/api/v1/logs/tail).")
        open_tails.add_metric([], len(self.hub.tails))
        yield open_tails
        polls = CounterMetricFamily("tasktrail_live_tail_polls", "Reads of new log lines by the shared tail poller.")
        polls.add_metric([], self.hub.polls)
        yield polls


def metrics_endpoint(request: Request) -> Response:
    registry = request.app.state.registry
    if registry is None:
        return Response("", media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
