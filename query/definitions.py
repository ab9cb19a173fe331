"""Definitions: an app's configuration (component classes and settings), a runner's settings and a task's
options, as the runners last reported them (tasktrail.app.config, tasktrail.runner.config,
tasktrail.task.definition: docs/conventions.md). Read from the small `definitions` table only, which holds a
row per report (runners send at start and when a value changes): the latest row per (app, kind, subject)
holds, with the time it was reported.
"""
from __future__ import annotations

import json
from typing import Optional

from .params import iso
from .reader import conditions, where


def latest(q, kind: str, *, app: Optional[str] = None, subject: Optional[str] = None) -> dict:
    """{(app_id, subject_id): {"body": dict, "reported_at": RFC 3339, "reported_by": runner id or None}} of
    the latest report of each `kind` ("app", "runner" or "task") definition, optionally of one app and one
    subject (an app id, runner id or task id)."""
    clauses, params = conditions(("kind = ?", kind), ("app_id = ?", app), ("subject_id = ?", subject))
    rows = q(f"""SELECT app_id, subject_id, arg_max(body, (ts, batch)), max(ts), arg_max(runner_id, (ts, batch))
                 FROM definitions {where(clauses)} GROUP BY ALL ORDER BY app_id, subject_id""", params).rows
    return {(a, s): {"body": _body(b), "reported_at": iso(t), "reported_by": r} for a, s, b, t, r in rows}


def _body(text: Optional[str]) -> dict:
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def app_configs(q, app: Optional[str] = None) -> dict:
    """{app_id: {"components": {role: class}, "settings": {name: value}, "reported_at", "reported_by"}}: each
    app's latest reported configuration."""
    return {a: {"components": d["body"].get("components") or {}, "settings": d["body"].get("settings") or {},
                "reported_at": d["reported_at"], "reported_by": d["reported_by"]}
            for (a, _), d in latest(q, "app", app=app).items()}


def runner_settings(q, runner_id: str, app: Optional[str] = None) -> Optional[dict]:
    """{"runner_class", "settings": {name: value}, "reported_at", "app_id"} of the runner's latest reported
    settings, or None when it never reported any."""
    found = latest(q, "runner", app=app, subject=runner_id)
    if not found:
        return None
    (app_id, _), d = max(found.items(), key=lambda kv: kv[1]["reported_at"] or "")
    return {"runner_class": d["body"].get("runner_class"), "settings": d["body"].get("settings") or {},
            "reported_at": d["reported_at"], "app_id": app_id}


def task_definition(q, task_id: str, app: Optional[str] = None) -> Optional[dict]:
    """{"options": {name: value}, "reported_at", "reported_by", "app_id"} of the task's latest reported
    definition (of `app`, else of whichever app reported last), or None when none was reported."""
    found = latest(q, "task", app=app, subject=task_id)
    if not found:
        return None
    (app_id, _), d = max(found.items(), key=lambda kv: kv[1]["reported_at"] or "")
    return {"options": d["body"].get("options") or {}, "reported_at": d["reported_at"],
            "reported_by": d["reported_by"], "app_id": app_id}


def with_app_configs(q, overview: dict) -> dict:
    """`overview` with each of its apps' `config` (app_configs; None for an app that reported none). An app
    that only reported its configuration is listed too (no invocations, last seen when it reported)."""
    configs = app_configs(q)
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


def with_runner_settings(q, runner: dict, app: Optional[str] = None) -> dict:
    """`runner` (query/runners.detail) with `settings` (name -> value, None when never reported),
    `settings_reported_at` and its app's `app_config` (app_configs; None when not reported)."""
    found = runner_settings(q, runner["runner_id"], app or runner.get("app_id"))
    runner["settings"] = found["settings"] if found else None
    runner["settings_reported_at"] = found["reported_at"] if found else None
    runner["app_config"] = app_configs(q, runner.get("app_id")).get(runner.get("app_id"))
    return runner
