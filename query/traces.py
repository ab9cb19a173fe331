"""Traces: a trace's stored spans as OTLP/JSON `{resourceSpans}` (`otlp_json`), the links to a trace in
tasktrail, Jaeger and Tempo (`links`), and the read model's corrections: each span once, and clocks
that disagree adjusted as Jaeger's clock-skew adjuster does (never written back; every adjusted span
says so and by how much).

- **Once.** A span is identified by (trace id, span id), as Jaeger and Tempo do: the first stored copy
  is shown, later deliveries of it are not.
- **A span that ends before it starts** (a host's clock stepped back during it) is shown with zero
  duration and a warning naming how far back the clock went.
- **A child on another host that does not fit inside its parent** (the two hosts' clocks disagree) is
  shifted, with everything below it on its host, so that it sits in the middle of its parent's slack:
  delta = parent start + (parent duration - child duration) / 2 - child start. A child longer than its
  parent cannot fit and is left as sent, with a warning. Children on the parent's own host share its
  clock and take its shift.
"""
from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timedelta
from typing import Optional

from tasktrail.proto import names
from tasktrail.proto.urlpath import segment

from .errors import NotFound


def dedupe(spans: list[dict]) -> list[dict]:
    """`spans` (in arrival order) without later copies of a span id."""
    seen: set = set()
    out = []
    for s in spans:
        if s["span_id"] in seen:
            continue
        seen.add(s["span_id"])
        out.append(s)
    return out


def adjust(spans: list[dict]) -> dict[str, dict]:
    """Clock corrections for the spans of one trace (dicts with span_id, parent_span_id, start_ns, end_ns,
    host). Returns {span_id: {"clockAdjustmentNs": int, "warnings": [str]}} for the spans it changed;
    the caller adds clockAdjustmentNs to both times (and sets end = start where it warns of a step back)."""
    by_id = {s["span_id"]: s for s in spans}
    children: dict = {}
    roots = []
    for s in spans:
        p = s.get("parent_span_id")
        if p and p in by_id and p != s["span_id"]:
            children.setdefault(p, []).append(s)
        else:
            roots.append(s)
    out: dict[str, dict] = {}
    delta = {s["span_id"]: 0 for s in spans}
    queue = deque(roots)
    visited: set = set()
    while queue:
        s = queue.popleft()
        if s["span_id"] in visited:
            continue
        visited.add(s["span_id"])
        start, end = s["start_ns"], s["end_ns"]
        if end < start:
            out.setdefault(s["span_id"], {"clockAdjustmentNs": 0, "warnings": []})["warnings"].append(
                f"ends {(start - end) / 1e9:.3f} s before it starts: a clock stepped back during it; "
                "shown with zero duration")
        p_start = start + delta[s["span_id"]]
        p_dur = max(end - start, 0)
        for c in children.get(s["span_id"], ()):
            d = delta[s["span_id"]] if c.get("host") == s.get("host") else 0
            if c.get("host") != s.get("host"):
                c_start = c["start_ns"]
                c_dur = max(c["end_ns"] - c_start, 0)
                if c_start < p_start or c_start + c_dur > p_start + p_dur:
                    if c_dur <= p_dur:
                        d = p_start + (p_dur - c_dur) // 2 - c_start
                    else:
                        out.setdefault(c["span_id"], {"clockAdjustmentNs": 0, "warnings": []})["warnings"].append(
                            "does not fit inside its parent on another host and is longer than it: "
                            "left as sent")
            delta[c["span_id"]] = d
            if d:
                entry = out.setdefault(c["span_id"], {"clockAdjustmentNs": 0, "warnings": []})
                entry["clockAdjustmentNs"] = d
                entry["warnings"].append(
                    f"moved {d / 1e9:+.3f} s with its parent (same host)" if c.get("host") == s.get("host") else
                    f"moved {d / 1e9:+.3f} s: the clocks of {c.get('host') or '?'} and "
                    f"{s.get('host') or '?'} disagree (a child must run inside its parent)")
            queue.append(c)
    return out


def links(trace_id: Optional[str], jaeger_url: Optional[str], tempo_url: Optional[str]) -> dict:
    """Where a trace is shown: tasktrail's own page, Jaeger ({jaeger}/trace/{id}, or a template holding
    {trace_id}) and Tempo (a template holding {trace_id}), when configured."""
    if not trace_id:
        return {"trace": None, "jaeger": None, "tempo": None}
    jaeger = None
    if jaeger_url:
        jaeger = (jaeger_url.format(trace_id=trace_id) if "{trace_id}" in jaeger_url
                  else f"{jaeger_url.rstrip('/')}/trace/{trace_id}")
    tempo = tempo_url.format(trace_id=trace_id) if tempo_url else None
    return {"trace": f"/traces/{segment(trace_id)}", "jaeger": jaeger, "tempo": tempo}


def otlp_json(q, trace_id: str) -> dict:
    """The trace's spans (`trace_id`: 32 lower-case hex characters) as OTLP/JSON `{resourceSpans}`: each
    span once, clocks adjusted (an adjusted span carries a `tasktrail` object with the shift in nanos,
    the sent times and why). NotFound when no span of it is stored."""
    rows = q("""SELECT s.*, r.attributes AS resource_attributes FROM spans s
                LEFT JOIN (SELECT resource_id, any_value(attributes) AS attributes FROM resources
                           GROUP BY resource_id) r USING (resource_id)
                WHERE trace_id = ? ORDER BY s.batch, s.rowid""", [trace_id]).dicts()
    if not rows:
        raise NotFound(f"trace {trace_id} is not in the log")
    rows = dedupe(rows)  # each span once, as first stored
    resources: dict = {}
    for d in rows:
        if d["resource_id"] not in resources:
            resources[d["resource_id"]] = json.loads(d["resource_attributes"] or "{}")
        attrs = resources[d["resource_id"]]
        d["host"] = attrs.get("host.name") or attrs.get(names.TT_RUNNER_HOSTNAME) or d["resource_id"]
        d["start_ns"], d["end_ns"] = _nanos(d["start_ts"]), _nanos(d["end_ts"])
    fixes = adjust(rows)
    rows.sort(key=lambda d: (d["start_ns"] + fixes.get(d["span_id"], {}).get("clockAdjustmentNs", 0), d["span_id"]))
    by_res: dict = {}
    for d in rows:
        res = by_res.setdefault(d["resource_id"], {"resource": {"attributes": _kv(resources[d["resource_id"]])},
                                                   "scopes": {}})
        res["scopes"].setdefault(d["scope_name"] or "", []).append(_span(d, fixes.get(d["span_id"])))
    return {"resourceSpans": [
        {"resource": v["resource"],
         "scopeSpans": [{"scope": {"name": name}, "spans": spans} for name, spans in v["scopes"].items()]}
        for v in by_res.values()]}


def _span(d: dict, fix: Optional[dict]) -> dict:
    """One stored span as OTLP/JSON, moved by its clock fix (`adjust`) when it has one."""
    start, end = d["start_ns"], d["end_ns"]
    if fix:
        start, end = start + fix["clockAdjustmentNs"], max(end, d["start_ns"]) + fix["clockAdjustmentNs"]
    span = {"traceId": d["trace_id"], "spanId": d["span_id"], "name": d["name"], "kind": d["kind"],
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
            "attributes": _kv(json.loads(d["attributes"] or "{}")),
            "status": {"code": d["status_code"], **({"message": d["status_message"]} if d["status_message"] else {})}}
    if d["parent_span_id"]:
        span["parentSpanId"] = d["parent_span_id"]
    if d["events"]:
        span["events"] = [{"timeUnixNano": str(e["t"]), "name": e["name"], "attributes": _kv(e["attributes"])}
                          for e in json.loads(d["events"])]
    if d["links"]:
        span["links"] = [{"traceId": lk["trace_id"], "spanId": lk["span_id"], "attributes": _kv(lk["attributes"])}
                         for lk in json.loads(d["links"])]
    if fix:  # not OTLP: what tasktrail changed, as Jaeger's UI warns of its clock-skew adjustments
        span["tasktrail"] = {"clockAdjustmentNs": str(fix["clockAdjustmentNs"]), "warnings": fix["warnings"],
                             "sentStartTimeUnixNano": str(d["start_ns"]), "sentEndTimeUnixNano": str(d["end_ns"])}
    return span


def _nanos(value: Optional[datetime]) -> int:
    if value is None:
        return 0
    return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000


def _any(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_any(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": _kv(v)}}
    if v is None:
        return {}
    return {"stringValue": str(v)}


def _kv(d: dict) -> list:
    return [{"key": k, "value": _any(v)} for k, v in d.items()]
