"""The trace read model's corrections: each span once, and clocks that disagree adjusted as Jaeger's
clock-skew adjuster does (never written back; every adjusted span says so and by how much).

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

from collections import deque


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
