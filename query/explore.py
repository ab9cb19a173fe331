"""The log explorer's read: pasted log lines, parsed by query/log_explorer.py, with every runner,
invocation, task and `kind:value` reference they mention resolved to what is stored. A runner or
invocation prefix that matches one stored id resolves; several are candidates; none is unresolved.
Nothing is ever guessed."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from tasktrail.proto.urlpath import segment

from . import log_explorer
from .params import iso
from .runners import best_of

# Reference kinds looked up by exact id: kind -> (table, column, page prefix)
LOOKUPS = {"event": ("event_records", "event_id", "/events/"),
           "trigger-run": ("trigger_runs", "trigger_run_id", "/trigger-runs/"),
           "atomic-service-run": ("atomic_executions", "run_id", None)}


def explore(q, text: str) -> dict:
    """{lines, counts, timeline}: each pasted line parsed and its references resolved; the timeline
    window around the invocations it names (and their parents), when it names any."""
    entries = log_explorer.parse(text)
    known_tokens(q, entries)
    found = _Found(q, entries)
    lines = [_line(e, found) for e in entries]
    invocations = found.invocations
    resolved = sorted({m["invocation_id"] for m in invocations.values() if m["invocation_id"]})
    scope = set(resolved) | {m["parent_invocation_id"] for m in invocations.values()
                             if m["invocation_id"] and m["parent_invocation_id"]}
    return {"lines": lines, "counts": {
                "lines": len(lines),
                "runners": {"resolved": sum(1 for m in found.runners.values() if m["runner_id"]),
                            "total": len(found.runners)},
                "invocations": {"resolved": len(resolved), "total": len(invocations)}},
            "timeline": _window(q, scope) if scope else None}


def _window(q, scope: set) -> dict:
    """The times of these invocations' transitions, padded 10 % (at least 250 ms) each side."""
    r = q("SELECT min(ts), max(ts) FROM transitions WHERE invocation_id IN (SELECT unnest(?::VARCHAR[]))",
          [sorted(scope)]).rows[0]
    pad = max((r[1] - r[0]) * 0.1, timedelta(milliseconds=250))
    return {"since": iso(r[0] - pad), "until": iso(r[1] + pad), "invocations": sorted(scope)}


class _Found:
    """What the entries' references resolve to, each kind read once."""

    def __init__(self, q, entries: list[dict]) -> None:
        refs = [ref for e in entries for ref in e["refs"]]
        runner_ids = {r["id"] for e in entries for r in e["runners"]}
        runner_ids |= {ref["value"] for ref in refs if ref["kind"] in log_explorer.RUNNER_KINDS}
        self.runners = {rid: match_runner(q, rid) for rid in runner_ids}
        inv_ids = {e["invocation_id"] for e in entries if e["invocation_id"]}
        inv_ids |= {ref["value"] for ref in refs if ref["kind"] in log_explorer.INVOCATION_KINDS}
        self.invocations = {i: match_invocation(q, i) for i in inv_ids}
        tasks = {e["task_id"] for e in entries if e["task_id"]} | {ref["value"] for ref in refs if ref["kind"] == "task"}
        self.tasks = {r[0] for r in q("SELECT DISTINCT task_id FROM transitions WHERE task_id IN "
                                      "(SELECT unnest(?::VARCHAR[]))", [sorted(tasks)]).rows} if tasks else set()
        self.other: dict[tuple, bool] = {}
        for kind, (table, col, _) in LOOKUPS.items():
            vals = sorted({ref["value"] for ref in refs if ref["kind"] == kind}
                          | ({e["atomic_service_run_id"] for e in entries if e["atomic_service_run_id"]}
                             if kind == "atomic-service-run" else set()))
            if vals:
                stored = {r[0] for r in q(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IN "
                                          "(SELECT unnest(?::VARCHAR[]))", [vals]).rows}
                self.other.update({(kind, v): v in stored for v in vals})

    def view(self, kind: str, value: str) -> dict:
        """{resolved, id, link, candidates, reason} of one reference (resolved None: not an entity kind);
        `reason` says why an unresolved one is (not stored here, or a prefix of several stored ids)."""
        out = self._view(kind, value)
        out["reason"] = None if out["resolved"] is not False else (
            f"ambiguous: {len(out['candidates'])}{'+' if len(out['candidates']) >= 6 else ''} stored ids start with it"
            if out["candidates"] else "not in this store")
        return out

    def _view(self, kind: str, value: str) -> dict:
        if kind in log_explorer.INVOCATION_KINDS:
            return _entity(self.invocations.get(value), "invocation_id", "/invocations/")
        if kind in log_explorer.RUNNER_KINDS:
            return _entity(self.runners.get(value), "runner_id", "/runners/")
        if kind == "task":
            ok = value in self.tasks
            return {"resolved": ok, "id": value if ok else None,
                    "link": f"/invocations?task={quote(value, safe='')}" if ok else None, "candidates": []}
        if (kind, value) in self.other:
            ok = self.other[(kind, value)]
            prefix = LOOKUPS[kind][2]
            return {"resolved": ok, "id": value if ok else None,
                    "link": (prefix + segment(value)) if ok and prefix else None, "candidates": []}
        if kind == "id":  # an id-like word of an unparsed line that names nothing stored
            return {"resolved": False, "id": None, "link": None, "candidates": []}
        return {"resolved": None, "id": None, "link": None, "candidates": []}  # not an entity kind


def _entity(m: dict | None, key: str, prefix: str) -> dict:
    return {"resolved": bool(m and m[key]), "id": m and m[key],
            "link": f"{prefix}{segment(m[key])}" if m and m[key] else None,
            "candidates": m["candidates"] if m else []}


def _line(e: dict, found: _Found) -> dict:
    inv = e["invocation_id"]
    invocation = None
    if inv:
        m = found.invocations.get(inv, {})
        invocation = {"value": inv, **found.view("invocation", inv),
                      **({"status": m["status"], "task_id": m["task_id"]} if m.get("invocation_id") else {})}
    return {
        "line_no": e["line_no"], "raw": e["raw"], "format": e["format"], "source": e["source"],
        "timestamp": e["timestamp"], "level": e["level"], "logger": e["logger"], "message": e["message"],
        "continuation": e["continuation"],
        "runners": [{"class": r["class"], "value": r["id"], **found.view("runner", r["id"])} for r in e["runners"]],
        "invocation": invocation,
        "task": {"value": e["task_id"], **found.view("task", e["task_id"])} if e["task_id"] else None,
        "refs": [{"kind": r["kind"], "value": r["value"], **found.view(r["kind"], r["value"])} for r in e["refs"]],
    }


def known_tokens(q, entries: list[dict]) -> None:
    """Refs for the bare words of unparsed lines that are stored ids: an invocation, a runner or a
    task id, matched exactly (one query each); a UUID that is none of them is an unresolved `id`."""
    tokens = sorted({t for e in entries for t in e.get("tokens", ())})[:log_explorer.MAX_TOKENS]
    if not tokens:
        return
    found: dict[str, str] = {}
    for kind, sql in (("task", "SELECT DISTINCT task_id FROM invocation_state WHERE task_id IN "),
                      ("runner", "SELECT DISTINCT runner_id FROM runner_state WHERE runner_id IN "),
                      ("invocation", "SELECT invocation_id FROM invocation_state WHERE invocation_id IN ")):
        for (value,) in q(sql + "(SELECT unnest(?::VARCHAR[]))", [tokens]).rows:
            found[value] = kind
    for e in entries:
        have = {(r["kind"], r["value"]) for r in e["refs"]}
        for tok in e.get("tokens", ()):
            kind = found.get(tok) or ("id" if log_explorer.UUID_RE.fullmatch(tok) else None)
            if kind and (kind, tok) not in have:
                have.add((kind, tok))
                e["refs"].append({"kind": kind, "value": tok})


def match_runner(q, rid: str) -> dict:
    """The stored runner `rid` names (exactly, or as the prefix of one runner only), else candidates."""
    rows = q(f"""SELECT runner_id, {best_of('runner_class')} FROM runner_state
                 WHERE starts_with(runner_id, ?) AND first_seen IS NOT NULL GROUP BY runner_id
                 ORDER BY runner_id LIMIT 6""", [rid]).rows
    exact = [r for r in rows if r[0] == rid]
    if exact or len(rows) == 1:
        hit = (exact or rows)[0]
        return {"runner_id": hit[0], "runner_class": hit[1], "candidates": []}
    return {"runner_id": None, "runner_class": None, "candidates": [r[0] for r in rows]}


def match_invocation(q, inv: str) -> dict:
    """The stored invocation `inv` names (exactly, or as the prefix of one only), else candidates."""
    if len(inv) >= 36:
        cond, param = "invocation_id = ?", inv
    else:
        cond, param = "starts_with(invocation_id, ?)", inv
    rows = q(f"""SELECT invocation_id, any_value(task_id), arg_max(status, status_key),
                        any_value(parent_invocation_id)
                 FROM invocation_state WHERE {cond} GROUP BY invocation_id ORDER BY 1 LIMIT 6""", [param]).rows
    exact = [r for r in rows if r[0] == inv]
    if exact or len(rows) == 1:
        i, task, status, parent = (exact or rows)[0]
        return {"invocation_id": i, "task_id": task, "status": status, "parent_invocation_id": parent,
                "candidates": []}
    return {"invocation_id": None, "task_id": None, "status": None, "parent_invocation_id": None,
            "candidates": [r[0] for r in rows]}
