"""Walk decoded OTLP requests once and turn every record into canonical rows.

Per resource: its attributes are read once (cached by content hash) into a
`ResourceInfo`. Per record: attributes (its scope's as defaults) become a dict, the record's dialect maps it
(proto.dialects), and whatever no dialect consumes is kept raw: spans always,
log records that are not lifecycle events, every metric data point.
"""
from __future__ import annotations

import base64
import hashlib
from hashlib import blake2b as _blake2b
import json
import time
from collections import OrderedDict
from datetime import datetime, timezone

from tasktrail.proto import names as n
from tasktrail.proto.dialects import DIALECTS, LogIn, Out, ResourceInfo, SpanIn, for_record
from tasktrail.proto.model import LogRecord, MetricPoint, Resource, RunnerEvent, Span

from .decode import MAX_NOTES, DecodeError

_TASKTRAIL = DIALECTS[0]
_JSON = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode
_MAX_CACHED_RESOURCES = 4096
# Limits on what one record may carry: past them the request is refused with a message naming the
# record, never half-stored. OTel SDKs cap attributes at 128 by default.
MAX_ATTRIBUTES = 1000
# A record's time must be plausible, else that record alone is refused (partial success): not before
# 2000-01-01 (earlier times are a unit mistake, e.g. milliseconds in a *_unix_nano field, which would
# be stored in 1970), and not more than a day ahead of this server's clock.
MIN_TIME_US = 946_684_800 * 1_000_000
MAX_AHEAD_US = 86_400 * 1_000_000
_UNITS = (("seconds", "s", 10**9), ("milliseconds", "ms", 10**6), ("microseconds", "µs", 10**3))


class MapOut(Out):
    """Out plus the records refused one by one (OTLP partial success): they yield no rows."""

    __slots__ = ("refused", "notes")

    def __init__(self) -> None:
        super().__init__()
        self.refused: dict[str, int] = {}    # reason -> records refused
        self.notes: list[str] = []           # the first MAX_NOTES refusals, each naming its record

    def refuse(self, reason: str, message: str) -> None:
        """Refuse the record being mapped: counted under `reason`, and no longer in `records`."""
        self.records -= 1
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)


def _check_ids(what: str, trace_id: bytes, span_id: bytes, required: bool) -> None:
    if (required or trace_id) and len(trace_id) != 16:
        raise DecodeError(f"{what}: trace_id must be 16 bytes, got {len(trace_id)}")
    if (required or span_id) and len(span_id) != 8:
        raise DecodeError(f"{what}: span_id must be 8 bytes, got {len(span_id)}")


def _check_time(field: str, ns: int, now_us: int) -> str | None:
    """Why `ns` (a *_unix_nano field as sent) cannot be the time of a record, naming the unit it was
    likely written in; None when it is plausible."""
    us = ns // 1000
    if us > now_us + MAX_AHEAD_US:
        days = (us - now_us) / 86_400e6
        return f"{field} {ns} is {_iso(us)}, {days:,.0f} days ahead of the server's clock"
    if us >= MIN_TIME_US:
        return None
    why = f"{field} {ns} is {_iso(us)}, before 2000-01-01"
    for unit, short, scale in _UNITS:
        as_us = ns * scale // 1000
        if MIN_TIME_US <= as_us <= now_us + MAX_AHEAD_US:
            return f"{why}; looks like {unit}: {_sci(ns)} would be {_iso(as_us)} in {short}"
    return why


def _span_time(sp, now_us: int) -> str | None:
    """Why a span's start, end (when set) or an event's time is implausible; None when none is."""
    why = _check_time("start_time_unix_nano", sp.start_time_unix_nano, now_us)
    if not why and sp.end_time_unix_nano:
        why = _check_time("end_time_unix_nano", sp.end_time_unix_nano, now_us)
    for j, e in enumerate(sp.events):
        if why:
            break
        if e.time_unix_nano:
            w = _check_time("time_unix_nano", e.time_unix_nano, now_us)
            why = w and f"events[{j}].{w}"
    return why


def _sci(v: int) -> str:
    return f"{v:.3g}".replace("e+", "e")


def _iso(us: int) -> str:
    try:
        return datetime.fromtimestamp(us / 1e6, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return "past the year 9999"


def _who(kind: str, name, attrs: dict) -> str:
    """How a refused record is named besides its path: its name and the invocation it carries."""
    parts = [f"{kind} {name!r}"] if name else []
    inv = _first(attrs, n.INVOCATION_KEYS)
    if inv is not None:
        parts.append(f"invocation {str(inv)!r}")
    return f" ({', '.join(parts)})" if parts else ""


def content_id(out, resource_id: str, raw: bytes) -> str:
    """A record's content identity: the same record delivered again (re-batched by a collector, sent by two
    processors, retried in a new request) has the same one. 24 hex characters: blake2b of the resource's
    identity and the record's protobuf bytes (JSON input is decoded to the same message first). Identical
    records inside one request are told apart by their rank among them (".1", ".2"): several statuses
    sent in one clock tick are several records."""
    h = _blake2b(resource_id.encode() + raw, digest_size=12).hexdigest()
    seen = out.content_ids
    if h in seen:
        k = seen[h]
        seen[h] = k + 1
        return f"{h}.{k}"
    seen[h] = 1
    return h


def any_value(v):
    """An OTLP AnyValue as a plain Python value (bytes as base64 text)."""
    k = v.WhichOneof("value")
    if k is None:
        return None
    if k == "string_value":
        return v.string_value
    if k == "int_value":
        return v.int_value
    if k == "double_value":
        return v.double_value
    if k == "bool_value":
        return v.bool_value
    if k == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if k == "kvlist_value":
        return {x.key: any_value(x.value) for x in v.kvlist_value.values}
    return base64.b64encode(v.bytes_value).decode("ascii")


def attributes(kvs) -> dict:
    """OTLP KeyValues as a dict; strings and ints (nearly all attributes) take the short path."""
    if len(kvs) > MAX_ATTRIBUTES:
        raise DecodeError(f"a record or resource has {len(kvs)} attributes; the limit is {MAX_ATTRIBUTES}")
    out = {}
    for kv in kvs:
        v = kv.value
        k = v.WhichOneof("value")
        if k == "string_value":
            out[kv.key] = v.string_value
        elif k == "int_value":
            out[kv.key] = v.int_value
        else:
            out[kv.key] = any_value(v)
    return out


def _first(attrs: dict, keys) -> object:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


class Mapper:
    """Stateless but for a bounded cache of resources already seen by this process."""

    def __init__(self) -> None:
        self._resources: OrderedDict[bytes, ResourceInfo] = OrderedDict()

    def map(self, signal: str, msg) -> MapOut:
        """Rows of one decoded request. Records with an implausible time are refused one by one
        (`MapOut.refused`, `MapOut.notes`); anything else wrong raises DecodeError for the request."""
        out = MapOut()
        now = time.time_ns() // 1000
        if signal == "traces":
            for ri, rs in enumerate(msg.resource_spans):
                res = self._resource(rs.resource, out, now)
                first = min((self._spans(res, ss, out, now, f"resource_spans[{ri}].scope_spans[{si}]")
                             for si, ss in enumerate(rs.scope_spans)), default=now)
                self._context(res, out, first)
        elif signal == "logs":
            for ri, rl in enumerate(msg.resource_logs):
                res = self._resource(rl.resource, out, now)
                first = min((self._logs(res, sl, out, now, f"resource_logs[{ri}].scope_logs[{si}]")
                             for si, sl in enumerate(rl.scope_logs)), default=now)
                self._context(res, out, first)
        else:
            for ri, rm in enumerate(msg.resource_metrics):
                res = self._resource(rm.resource, out, now)
                first = min((self._metrics(res, sm, out, now, f"resource_metrics[{ri}].scope_metrics[{si}]")
                             for si, sm in enumerate(rm.scope_metrics)), default=now)
                self._context(res, out, first)
        return out

    @staticmethod
    def _context(res: ResourceInfo, out: Out, ts: int) -> None:
        """The runner context a resource names, seen at its earliest record of this request."""
        if res.runner_id:
            source = res.revision or (n.RUSTVELLO_V1 if n.RV_WORKER_ID in res.attrs else n.TASKTRAIL_V1)
            out.rows["runner_events"].append(RunnerEvent(
                ts, res.app_id, res.runner_id, "context", res.runner_class, res.parent_runner_id,
                res.hostname, res.pid, None, None, None, source, None))

    # --- resources -------------------------------------------------------------------
    def _resource(self, resource, out: Out, now: int) -> ResourceInfo:
        """Parse (or recall) one resource and emit its row.

        The rows go out with every request (the writer drops resources it already
        holds), so a rejected request never leaves a resource unstored.
        """
        raw = resource.SerializeToString(deterministic=True)
        key = hashlib.blake2b(raw, digest_size=8).digest()
        info = self._resources.get(key)
        if info is None:
            info = self._parse_resource(key, resource)
            self._resources[key] = info
            if len(self._resources) > _MAX_CACHED_RESOURCES:
                self._resources.popitem(last=False)
        else:
            self._resources.move_to_end(key)
        out.rows["resources"].append(Resource(info.resource_id, now, info.app_id, info.service_name,
                                              _JSON(info.attrs)))
        return info

    @staticmethod
    def _parse_resource(key: bytes, resource) -> ResourceInfo:
        a = attributes(resource.attributes)
        app = _first(a, (n.SERVICE_NAMESPACE, n.TT_APP_ID, n.RV_APP_ID, n.SERVICE_NAME)) or "default"
        runner = _first(a, (n.TT_RUNNER_ID, n.RV_WORKER_ID))
        pid = a.get(n.TT_RUNNER_PID, a.get(n.PROCESS_PID))
        return ResourceInfo(
            resource_id=key.hex(), app_id=str(app), service_name=a.get(n.SERVICE_NAME), attrs=a,
            runner_id=str(runner) if runner is not None else None,
            runner_class=_first(a, (n.TT_RUNNER_CLASS, n.RV_WORKER_CLASS)),
            parent_runner_id=_first(a, (n.TT_RUNNER_PARENT_ID, n.RV_WORKER_PARENT_ID)),
            hostname=_first(a, (n.TT_RUNNER_HOSTNAME, n.HOST_NAME)),
            pid=pid if isinstance(pid, int) else None,
            revision=a.get(n.REVISION),
        )

    # --- signals ---------------------------------------------------------------------
    def _spans(self, res: ResourceInfo, ss, out: MapOut, now: int, where: str = "") -> int:
        scope = ss.scope.name or None
        spans = out.rows["spans"]
        first = now
        for i, sp in enumerate(ss.spans):
            out.records += 1
            a = attributes(sp.attributes)
            _check_ids(f"span {sp.name!r}", sp.trace_id, sp.span_id, True)
            if sp.parent_span_id and len(sp.parent_span_id) != 8:
                raise DecodeError(f"span {sp.name!r}: parent_span_id must be 8 bytes, got {len(sp.parent_span_id)}")
            trace_id, span_id = sp.trace_id.hex(), sp.span_id.hex()
            start, end = sp.start_time_unix_nano // 1000, sp.end_time_unix_nano // 1000
            if not start:
                raise DecodeError(f"span {sp.name!r}: start_time_unix_nano is 0 (a span must say when it started)")
            why = _span_time(sp, now)
            if why:
                out.refuse("timestamp", f"{where}.spans[{i}]{_who('span', sp.name, a)}: {why}")
                continue
            if start < first:
                first = start
            dialect = for_record(a.get(n.REVISION) or res.revision, scope, None)
            s_in = SpanIn(start, end, sp.name, a, trace_id, span_id, sp.parent_span_id.hex() or None,
                          sp.status.code, sp.status.message or None, scope)
            inv = None
            if dialect is not None:
                inv = dialect.span_invocation(s_in)
                dialect.map_span(res, s_in, out)
            if inv is None:
                inv = _first(a, n.INVOCATION_KEYS)
            events = None
            if sp.events:
                evs = []
                for e in sp.events:
                    ea = attributes(e.attributes)
                    evs.append({"t": e.time_unix_nano, "name": e.name, "attributes": ea})
                    if e.name.startswith("tasktrail."):
                        # tasktrail.v1 entities may ride on span events.
                        rid = ea.get(n.TT_RECORD_ID)
                        rid = str(rid) if rid else content_id(out, res.resource_id, sp.trace_id + sp.span_id
                                                              + e.SerializeToString())
                        _TASKTRAIL.map_log(res, LogIn(e.time_unix_nano // 1000 or start, None, e.name, None,
                                                      ea, trace_id, span_id, 9, None, scope, rid), out)
                events = _JSON(evs)
            links = None
            if sp.links:
                links = _JSON([{"trace_id": lk.trace_id.hex(), "span_id": lk.span_id.hex(),
                                "attributes": attributes(lk.attributes)} for lk in sp.links])
            spans.append(Span(start, end, res.app_id, res.resource_id, trace_id, span_id, s_in.parent_span_id,
                              sp.name, sp.kind, sp.status.code, s_in.status_message, scope,
                              str(inv) if inv is not None else None, _JSON(a) if a else None, events, links))
        return first

    def _logs(self, res: ResourceInfo, sl, out: MapOut, now: int, where: str = "") -> int:
        scope = sl.scope.name or None
        logs = out.rows["log_records"]
        first = now
        # The scope's attributes apply to each of its records, a record's own attribute winning (docs/tasktrail-v1.md).
        defaults = attributes(sl.scope.attributes) if sl.scope.attributes else None
        ident = res.resource_id + sl.scope.SerializeToString(deterministic=True).hex() if defaults else res.resource_id
        for i, lr in enumerate(sl.log_records):
            out.records += 1
            a = attributes(lr.attributes)
            if defaults:
                a.update({k: v for k, v in defaults.items() if k not in a})
            # 0 means unknown (OTLP): the observed time, else the time it arrived.
            ts = (lr.time_unix_nano or lr.observed_time_unix_nano) // 1000 or now
            why = (_check_time("time_unix_nano", lr.time_unix_nano, now) if lr.time_unix_nano else
                   _check_time("observed_time_unix_nano", lr.observed_time_unix_nano, now)
                   if lr.observed_time_unix_nano else None)
            if why:
                out.refuse("timestamp", f"{where}.log_records[{i}]{_who('event', lr.event_name, a)}: {why}")
                continue
            if lr.trace_id or lr.span_id:
                _check_ids("log record", lr.trace_id, lr.span_id, False)
            if ts < first:
                first = ts
            event_name = lr.event_name or None
            body = any_value(lr.body) if lr.HasField("body") else None
            trace_id = lr.trace_id.hex() or None
            span_id = lr.span_id.hex() or None
            dialect = for_record(a.get(n.REVISION) or res.revision, scope, event_name)
            rid = a.get(n.TT_RECORD_ID)
            rid = str(rid) if rid else content_id(out, ident, lr.SerializeToString())
            rec = LogIn(ts, lr.observed_time_unix_nano // 1000 or None, event_name, body, a, trace_id, span_id,
                        lr.severity_number, lr.severity_text or None, scope, rid)
            if dialect is not None and dialect.map_log(res, rec, out):
                continue
            runner = _first(a, n.RUNNER_KEYS)
            worker = None
            if runner is not None and a.get(n.TT_RUNNER_PARENT_ID):  # a worker's line: its runner is the parent
                runner, worker = a[n.TT_RUNNER_PARENT_ID], runner
            elif runner is None:
                runner = res.parent_runner_id or res.runner_id
                worker = res.runner_id if res.parent_runner_id else None
            inv = _first(a, n.INVOCATION_KEYS)
            task = _first(a, n.TASK_KEYS)
            logs.append(LogRecord(
                ts, rec.observed_ts, res.app_id, res.resource_id, lr.severity_number, rec.severity_text,
                body if isinstance(body, str) or body is None else _JSON(body), event_name, trace_id, span_id,
                scope, runner, worker, str(inv) if inv is not None else None,
                str(task) if task is not None else None, _JSON(a) if a else None, rid))
        return first

    def _metrics(self, res: ResourceInfo, sm, out: MapOut, now: int, where: str = "") -> int:
        scope = sm.scope.name or None
        points = out.rows["metric_points"]
        first = now
        for mi, m in enumerate(sm.metrics):
            kind = m.WhichOneof("data")
            if kind is None:
                continue
            data = getattr(m, kind)
            for pi, p in enumerate(data.data_points):
                out.records += 1
                why = p.time_unix_nano and _check_time("time_unix_nano", p.time_unix_nano, now)
                if why:
                    out.refuse("timestamp", f"{where}.metrics[{mi}].{kind}.data_points[{pi}] (metric {m.name!r}): "
                                            f"{why}")
                    continue
                a = _JSON(attributes(p.attributes)) if p.attributes else None
                ts = p.time_unix_nano // 1000 or now
                if ts < first:
                    first = ts
                start = p.start_time_unix_nano // 1000 or None
                value = count = extra = None
                if kind in ("gauge", "sum"):
                    value = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
                elif kind == "histogram":
                    value, count = p.sum, p.count
                    extra = _JSON({"bounds": list(p.explicit_bounds), "counts": list(p.bucket_counts),
                                   "min": p.min if p.HasField("min") else None,
                                   "max": p.max if p.HasField("max") else None})
                elif kind == "exponential_histogram":
                    value, count = p.sum, p.count
                    extra = _JSON({"scale": p.scale, "zero_count": p.zero_count,
                                   "positive": {"offset": p.positive.offset, "counts": list(p.positive.bucket_counts)},
                                   "negative": {"offset": p.negative.offset, "counts": list(p.negative.bucket_counts)}})
                elif kind == "summary":
                    value, count = p.sum, p.count
                    extra = _JSON({"quantiles": [[q.quantile, q.value] for q in p.quantile_values]})
                points.append(MetricPoint(ts, start, res.app_id, res.resource_id, m.name, kind, m.unit or None,
                                          value, count, a, extra, scope))
        return first
