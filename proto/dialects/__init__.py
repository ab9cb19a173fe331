"""Dialect registry: each dialect maps one runner's OTLP records to canonical rows.

A record picks its dialect by `telemetry.mapping.revision` (record, then resource),
else by instrumentation scope, else by a `tasktrail.*` event name. Records no
dialect claims are kept raw (spans, log_records, metric_points), never dropped.
"""
from __future__ import annotations

from .base import Dialect, LogIn, Out, ResourceInfo, SpanIn
from .celery_otel import CeleryOtel
from .rustvello_v1 import RustvelloV1
from .tasktrail_v1 import TasktrailV1

DIALECTS: tuple[Dialect, ...] = (TasktrailV1(), RustvelloV1(), CeleryOtel())
BY_REVISION: dict[str, Dialect] = {d.name: d for d in DIALECTS}
BY_SCOPE: dict[str, Dialect] = {s: d for d in DIALECTS for s in d.scopes}


def for_record(revision: str | None, scope_name: str | None, event_name: str | None) -> Dialect | None:
    """Pick the dialect of one record, or None when no dialect knows it (values come from attributes:
    anything that is not text names no dialect)."""
    if revision and isinstance(revision, str):
        d = BY_REVISION.get(revision)
        if d is not None:
            return d
    if scope_name:
        d = BY_SCOPE.get(scope_name)
        if d is not None:
            return d
    if event_name and isinstance(event_name, str) and event_name.startswith("tasktrail."):
        return DIALECTS[0]
    return None


__all__ = ["Dialect", "LogIn", "Out", "ResourceInfo", "SpanIn", "DIALECTS", "for_record"]
