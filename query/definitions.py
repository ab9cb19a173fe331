"""Definitions: an app's configuration (component classes and settings), a runner's settings and a task's
options, as the runners last reported them (tasktrail.app.config, tasktrail.runner.config,
tasktrail.task.definition: docs/conventions.md). Read from the small `definitions` table only, which holds a
row per report (runners send at start and when a value changes): the latest row per (app, kind, subject)
holds, with the time it was reported.

What is read is masked again (proto/masking.py: rows a runner sent raw before tasktrail masked at ingest) and
shown as previews (query/values.py): each value whose JSON is over `preview_bytes` (--preview-bytes, 4096)
becomes a string, its first bytes cut on a character boundary, described in the definition's `values`
({"<section>.<name>": {bytes, preview_bytes, truncated: true, url: null}}; only cut values are listed). The
whole body stays readable with SQL: `SELECT body FROM definitions WHERE kind = 'task' AND subject_id = '…'`.
"""
from __future__ import annotations

import json
from typing import Optional

from ..proto.masking import mask_value
from .params import iso
from .reader import conditions, where
from .values import cut, describe

PREVIEW_BYTES = 4096


def latest(q, kind: str, *, app: Optional[str] = None, subject: Optional[str] = None) -> dict:
    """{(app_id, subject_id): {"body": dict, "reported_at": RFC 3339, "reported_by": runner id or None}} of
    the latest report of each `kind` ("app", "runner" or "task") definition, optionally of one app and one
    subject (an app id, runner id or task id)."""
    clauses, params = conditions(("kind = ?", kind), ("app_id = ?", app), ("subject_id = ?", subject))
    rows = q(f"""SELECT app_id, subject_id, arg_max(body, (ts, batch)), max(ts), arg_max(runner_id, (ts, batch))
                 FROM definitions {where(clauses)} GROUP BY ALL ORDER BY app_id, subject_id""", params).rows
    return {(a, s): {"body": _body(b), "reported_at": iso(t), "reported_by": r} for a, s, b, t, r in rows}


def shown(section: str, values, limit: int, described: dict) -> dict:
    """`values` (name -> value; anything else reads as {}) masked, each value whose JSON is over `limit`
    bytes as a preview string; the cut ones are described in `described` under "<section>.<name>"."""
    out = {}
    for name, v in (values if isinstance(values, dict) else {}).items():
        v = mask_value(str(name), v)
        text = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False, separators=(",", ":"))
        if len(text) * 4 > limit and len(size := text.encode("utf-8")) > limit:
            v = cut(text, limit)
            described[f"{section}.{name}"] = describe(v, len(size), None)
        out[str(name)] = v
    return out


def _body(text: Optional[str]) -> dict:
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def app_configs(q, app: Optional[str] = None, preview_bytes: int = PREVIEW_BYTES) -> dict:
    """{app_id: {"components": {role: class}, "settings": {name: value}, "values": {cut value: description},
    "reported_at", "reported_by"}}: each app's latest reported configuration, masked, values as previews."""
    out = {}
    for (a, _), d in latest(q, "app", app=app).items():
        cut_values: dict = {}
        out[a] = {"components": shown("components", d["body"].get("components"), preview_bytes, cut_values),
                  "settings": shown("settings", d["body"].get("settings"), preview_bytes, cut_values),
                  "values": cut_values, "reported_at": d["reported_at"], "reported_by": d["reported_by"]}
    return out


def _newest(q, kind: str, app: Optional[str], subject: str) -> Optional[tuple]:
    """(app id, row) of the latest report of `kind` on `subject` (of `app`, else of whichever app reported
    last), or None."""
    found = latest(q, kind, app=app, subject=subject)
    if not found:
        return None
    (app_id, _), d = max(found.items(), key=lambda kv: kv[1]["reported_at"] or "")
    return app_id, d


def _newest_shown(q, kind: str, app: Optional[str], subject: str, field: str, preview_bytes: int) -> Optional[tuple]:
    """(app_id, the newest report, its `field` masked with values as previews, {cut value: description}) of
    `subject`'s newest report of `kind`, or None when it never reported one."""
    newest = _newest(q, kind, app, subject)
    if newest is None:
        return None
    app_id, d = newest
    cut_values: dict = {}
    return app_id, d, shown(field, d["body"].get(field), preview_bytes, cut_values), cut_values


def runner_settings(q, runner_id: str, app: Optional[str] = None, preview_bytes: int = PREVIEW_BYTES) -> Optional[dict]:
    """{"runner_class", "settings": {name: value}, "values": {cut value: description}, "reported_at", "app_id"}
    of the runner's latest reported settings (masked, values as previews), or None when it never reported any."""
    newest = _newest_shown(q, "runner", app, runner_id, "settings", preview_bytes)
    if newest is None:
        return None
    app_id, d, settings, cut_values = newest
    return {"runner_class": d["body"].get("runner_class"), "settings": settings, "values": cut_values,
            "reported_at": d["reported_at"], "app_id": app_id}


def task_definition(q, task_id: str, app: Optional[str] = None, preview_bytes: int = PREVIEW_BYTES) -> Optional[dict]:
    """{"options": {name: value}, "values": {cut value: description}, "reported_at", "reported_by", "app_id"}
    of the task's latest reported definition (of `app`, else of whichever app reported last; masked, values as
    previews), or None when none was reported."""
    newest = _newest_shown(q, "task", app, task_id, "options", preview_bytes)
    if newest is None:
        return None
    app_id, d, options, cut_values = newest
    return {"options": options, "values": cut_values, "reported_at": d["reported_at"],
            "reported_by": d["reported_by"], "app_id": app_id}


def defined_only(task_id: str, app: Optional[str], since, until, definition: dict) -> dict:
    """The task detail (query/tasks.task_detail's shape, zero counts) of a task known only by its reported
    `definition` (none of its invocations is stored, or retention removed them)."""
    return {"task_id": task_id, "app_id": app or definition["app_id"], "invocations": 0, "counts_by_status": {},
            "finished": 0, "success_rate": None, "duration_s": None, "throughput_per_min": None, "series": None,
            "errors": [], "since": iso(since), "until": iso(until), "apps": [definition["app_id"]],
            "last_run": None, "recent": [], "calls": [], "definition": definition}


def with_app_configs(q, overview: dict, preview_bytes: int = PREVIEW_BYTES) -> dict:
    """`overview` with each of its apps' `config` (app_configs; None for an app that reported none). An app
    that only reported its configuration is listed too (no invocations, last seen when it reported)."""
    configs = app_configs(q, preview_bytes=preview_bytes)
    items = overview.setdefault("apps", [])
    for item in items:
        item["config"] = configs.get(item["app_id"])
    listed = {item["app_id"] for item in items}
    for app_id, cfg in configs.items():
        if app_id not in listed:
            items.append({"app_id": app_id, "first_seen": cfg["reported_at"], "last_seen": cfg["reported_at"],
                          "invocations": 0, "config": cfg})
    items.sort(key=lambda item: item["app_id"])
    return overview


def with_runner_settings(q, runner: dict, app: Optional[str] = None, preview_bytes: int = PREVIEW_BYTES) -> dict:
    """`runner` (query/runners.detail) with `settings` (name -> value, None when never reported; masked, values
    as previews), `settings_values` (its cut values' descriptions), `settings_reported_at` and its app's
    `app_config` (app_configs; None when not reported)."""
    found = runner_settings(q, runner["runner_id"], app or runner.get("app_id"), preview_bytes)
    runner["settings"] = found["settings"] if found else None
    runner["settings_values"] = found["values"] if found else {}
    runner["settings_reported_at"] = found["reported_at"] if found else None
    runner["app_config"] = app_configs(q, runner.get("app_id"), preview_bytes).get(runner.get("app_id"))
    return runner
