"""ProcessPulse: a periodic OTLP metric export that names this process to tasktrail (its sign of life).

Importable as `tasktrail.proto.emitter.ProcessPulse` too. Needs `tasktrail[emitter]`.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Mapping, Optional

from . import names as n
from .bearer import bearer


# The OTel SDK's OTLP metric exporters, for ProcessPulse: transport -> (module under
# opentelemetry.exporter.otlp.proto, class).
_METRIC_EXPORTERS = {"grpc": ("grpc.metric_exporter", "OTLPMetricExporter"),
                     "http": ("http.metric_exporter", "OTLPMetricExporter")}


def _otlp_metric_exporter(endpoint: str, protocol: str, headers: Optional[Mapping[str, str]]):
    """The OTel SDK's own OTLP metric exporter over gRPC or HTTP/protobuf; ValueError on another protocol."""
    import importlib
    transport = {"grpc": "grpc", "http": "http", "http/protobuf": "http"}.get(protocol)
    if transport is None:
        raise ValueError(f"protocol must be grpc or http/protobuf, got {protocol!r}")
    module, name = _METRIC_EXPORTERS[transport]
    cls = getattr(importlib.import_module(f"opentelemetry.exporter.otlp.proto.{module}"), name)
    if transport == "grpc":
        return cls(endpoint=endpoint.split("://", 1)[-1], insecure=not endpoint.startswith("https://"),
                   headers=headers or None)
    return cls(endpoint=endpoint.rstrip("/") + "/v1/metrics", headers=headers or None)


class ProcessPulse:
    """A periodic OTLP metric export naming this process (app, host.name, process.pid): tasktrail counts
    any record from a runner's process as that runner's sign of life (query/anomalies.py). For runners
    that send nothing while a task runs (rustvello 0.9), start one in each worker process:

        pulse = ProcessPulse("http://127.0.0.1:4318", app_id="shop", token="...")  # … pulse.shutdown()

    It is the OTel SDK's own PeriodicExportingMetricReader with one observable gauge, `process.uptime`.
    """

    def __init__(self, endpoint: str, app_id: str, *, token: Optional[str] = None, interval_s: float = 30.0,
                 protocol: str = "http/protobuf", service_name: str = "tasktrail-pulse") -> None:
        from opentelemetry.metrics import Observation
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        hdrs = {"authorization": bearer(token)} if token else None
        exporter = _otlp_metric_exporter(endpoint, protocol, hdrs)
        started = time.monotonic()
        res = Resource.create({n.SERVICE_NAME: service_name, n.SERVICE_NAMESPACE: app_id,
                               n.HOST_NAME: socket.gethostname(), n.PROCESS_PID: os.getpid()})
        self._reader = PeriodicExportingMetricReader(exporter, export_interval_millis=int(interval_s * 1000))
        self._provider = MeterProvider(resource=res, metric_readers=[self._reader])
        self._provider.get_meter(n.TT_SCOPE).create_observable_gauge(
            "process.uptime", callbacks=[lambda _options: [Observation(time.monotonic() - started)]], unit="s")

    def shutdown(self) -> None:
        self._provider.shutdown()
