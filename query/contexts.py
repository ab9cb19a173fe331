"""The runner context behind each record of an invocation's history: its class, host, pid and thread, as
pynmon's history shows them.

One read of runner_state (the writer's cache, one row per context: store/runner_state.py) by the ids of the
contexts the history names: the context that made each transition is its worker, else its runner. A record
that carried its own thread (rustvello's `thread.id`, kept in the transition's attrs) shows that thread.
"""
from __future__ import annotations

import json
from typing import Optional

from tasktrail.proto import names

CONTEXT_FIELDS = ("runner_class", "hostname", "pid", "thread_id")


def _record_threads(raw: list[dict]) -> dict:
    """{record_id: thread id} of the records whose attrs carry `thread.id`."""
    out = {}
    for r in raw:
        attrs = r.get("attrs")
        if r.get("record_id") and attrs and names.THREAD_ID in attrs:
            try:
                value = json.loads(attrs).get(names.THREAD_ID)
            except (ValueError, AttributeError):
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                out[r["record_id"]] = value
    return out


def with_contexts(q, history: list[dict], raw: list[dict], app: Optional[str] = None) -> list[dict]:
    """`history` (query/invocations.history rows) with `runner_class`, `hostname`, `pid` and `thread_id` of the
    context that made each transition (null where tasktrail knows none); `raw` its transition records.
    One read however long the history."""
    app = app or (raw[-1]["app_id"] if raw else None)
    ids = sorted({h["worker_id"] or h["runner_id"] for h in history if h["worker_id"] or h["runner_id"]})
    found: dict = {}
    if ids and app is not None:
        for rid, *values in q("""
                SELECT runner_id, runner_class, hostname, pid, thread_id FROM runner_state
                WHERE app_id = $app AND runner_id IN (SELECT unnest($ids::VARCHAR[]))""",
                              {"app": app, "ids": ids}).rows:
            found[rid] = dict(zip(CONTEXT_FIELDS, values))
    return filled(history, raw, found)


def filled(history: list[dict], raw: list[dict], found: dict) -> list[dict]:
    """`history` with the context fields of `found` ({context id: {field: value}}, as with_contexts reads
    them or query/invocation_read.py joins them), and each record's own thread where it carried one."""
    threads = _record_threads(raw)
    for h in history:
        ctx = found.get(h["worker_id"] or h["runner_id"]) or {}
        h.update({k: ctx.get(k) for k in CONTEXT_FIELDS})
        if h.get("record_id") in threads:
            h["thread_id"] = threads[h["record_id"]]
    return history
