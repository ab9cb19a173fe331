"""What a dialect sees and produces.

The ingest mapper decodes OTLP once and hands each dialect plain Python values:
a `ResourceInfo` per resource and a `LogIn` / `SpanIn` per record. A dialect
appends canonical rows (proto.model) to an `Out`.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, NamedTuple, Optional

from .. import model


class ResourceInfo(NamedTuple):
    resource_id: str
    app_id: str
    service_name: Optional[str]
    attrs: dict
    runner_id: Optional[str]
    runner_class: Optional[str]
    parent_runner_id: Optional[str]
    hostname: Optional[str]
    pid: Optional[int]
    revision: Optional[str]


class LogIn(NamedTuple):
    ts: int                 # micros
    observed_ts: Optional[int]
    event_name: Optional[str]
    body: Any
    attrs: dict
    trace_id: Optional[str]  # hex or None
    span_id: Optional[str]
    severity_number: int
    severity_text: Optional[str]
    scope_name: Optional[str]
    record_id: Optional[str] = None  # the record's identity: its event id, else its content (ingest/map.py)


class SpanIn(NamedTuple):
    start_ts: int
    end_ts: int
    name: str
    attrs: dict
    trace_id: str
    span_id: str
    parent_span_id: Optional[str]
    status_code: int
    status_message: Optional[str]
    scope_name: Optional[str]

    @property
    def record_id(self) -> str:
        """A span's identity, as Jaeger and Tempo have it: trace id and span id (hex)."""
        return self.trace_id + self.span_id


class Out:
    """Rows produced from one request, by table, plus counts for the ingest ledger."""

    __slots__ = ("rows", "records", "contexts", "content_ids")

    def __init__(self) -> None:
        self.rows: dict[str, list] = {name: [] for name in model.TABLES}
        self.records = 0
        # Runner contexts already emitted for this request: one topology row each is enough.
        self.contexts: set = set()
        # Content identities given in this request, with how often: the k-th of several identical records
        # in one request is another record (one clock tick), not a copy (ingest/map.py `content_id`).
        self.content_ids: dict[str, int] = {}


class Dialect:
    """Base dialect: subclasses override `map_log` and, if they know spans, `span_invocation`."""

    name: str = ""
    scopes: tuple[str, ...] = ()

    def map_log(self, res: ResourceInfo, rec: LogIn, out: Out) -> bool:
        """Append canonical rows for `rec`; return True when it was a lifecycle record
        fully represented by them (it is then not kept as a log line)."""
        return False

    def span_invocation(self, span: SpanIn) -> Optional[str]:
        return None

    def map_span(self, res: ResourceInfo, span: SpanIn, out: Out) -> None:
        """Append canonical rows a span stands for (most dialects: none; the span is kept raw anyway)."""


# --- helpers shared by dialects ---------------------------------------------------------

def to_micros(value: Any) -> Optional[int]:
    """An attribute timestamp to micros: ints are Unix nanoseconds, strings RFC 3339 / ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) // 1000
    if isinstance(value, str):
        s = value.strip()
        if s.isdigit():
            return int(s) // 1000
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1_000_000)
    return None


def as_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def as_int(value: Any) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_ids(value: Any) -> tuple:
    """A string[] attribute (or a JSON list in a string, or a comma list) as a tuple of strings."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                return tuple(str(v) for v in json.loads(s))
            except ValueError:
                pass
        return tuple(p.strip() for p in s.split(",") if p.strip())
    return (str(value),)


def leftover_json(attrs: dict, known: frozenset) -> Optional[str]:
    """JSON of the attributes no column holds, so nothing a runner sent is lost."""
    rest = {k: v for k, v in attrs.items() if k not in known}
    if not rest:
        return None
    return json.dumps(rest, default=str, separators=(",", ":"))
