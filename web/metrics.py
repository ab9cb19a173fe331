"""/metrics in Prometheus text format.

Figures about the stored data come from the log itself (LogCollector, cached briefly), so they
survive restarts and match the API; process-only figures (rejections, ack latency, queue depth)
come from the ingest side's own collectors in the same registry.
"""
from __future__ import annotations

import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from starlette.requests import Request
from starlette.responses import Response


class LogCollector:
    """Prometheus collector over QueryService.metrics_snapshot(), cached for `ttl_s`."""

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
        inv = GaugeMetricFamily("tasktrail_invocations", "Invocations by current status.", labels=["app", "status"])
        for app, status, n in snap["invocations_by_status"]:
            inv.add_metric([app, status], n)
        yield inv
        tr = CounterMetricFamily("tasktrail_status_transitions", "Status transitions stored, by status.",
                                 labels=["app", "status"])
        for app, status, n in snap["transitions"]:
            tr.add_metric([app, status], n)
        yield tr
        hist = HistogramMetricFamily("tasktrail_task_duration_seconds",
                                     "From first RUNNING to the final status, per task.", labels=["app", "task"])
        buckets = snap["buckets"]
        for row in snap["durations"]:
            app, task = row[0], row[1] or ""
            counts, total, total_sum = row[2:2 + len(buckets)], row[2 + len(buckets)], row[3 + len(buckets)]
            hist.add_metric([app, task], [(str(b), c) for b, c in zip(buckets, counts)] + [("+Inf", total)],
                            sum_value=total_sum or 0.0)
        yield hist
        hb = GaugeMetricFamily("tasktrail_runner_last_heartbeat_timestamp_seconds",
                               "Unix time of each runner's last heartbeat.", labels=["app", "runner"])
        for app, runner, t in snap["heartbeats"]:
            hb.add_metric([app, runner], t)
        yield hb
        an = GaugeMetricFamily("tasktrail_anomalies", "Current anomalies (orphaned, pending_too_long, slow, "
                               "failure_spike, runner_silent, scheduler_silent), by app and kind.",
                               labels=["app", "kind"])
        for app, kind, n in snap["anomalies"]:
            an.add_metric([app, kind], n)
        yield an
        req = CounterMetricFamily("tasktrail_ingest_requests", "OTLP export requests stored, by signal and transport.",
                                  labels=["signal", "transport"])
        rec = CounterMetricFamily("tasktrail_ingest_records",
                                  "Records (spans, log records, data points) stored, by signal and transport.",
                                  labels=["signal", "transport"])
        for signal, transport, n, records in snap["ingest"]:
            req.add_metric([signal, transport], n)
            rec.add_metric([signal, transport], records or 0)
        yield req
        yield rec


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
