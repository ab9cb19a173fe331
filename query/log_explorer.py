"""Log explorer: parse pasted log lines and resolve what they mention to stored entities.

Formats: pynenc TEXT (colours stripped) and JSON (its `text` key), rustvello's unified lines
(`[R]`/`[P]` tag, then app), tasktrail's own download format, and plain JSON log objects.
A line that does not start a new entry (a traceback) stays with the entry above it.
Runner ids may be truncated (pynenc prints 8 characters): a prefix that matches exactly one
stored runner resolves; several matches are listed as candidates; none is unresolved.
Nothing is ever guessed.
"""
from __future__ import annotations

import json
import re
from typing import Optional

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
START = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
    r"(?P<level>TRACE|DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\s+(?P<rest>.*)$")
RUNNER_PART = re.compile(r"([A-Za-z]+)\(([^)]*)\)")
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
BRACKET = re.compile(rf"^(?P<runners>(?:[A-Za-z]+\([^)]*\)\.?)*)(?P<inv>{UUID})?(?::(?P<task>\S+))?$")
KINDS = {
    "invocation", "runner", "worker", "task", "parent-invocation", "child-invocation", "new-invocation",
    "current-owner-runner", "attempted-owner-runner", "workflow", "sub-workflow", "parent-workflow", "context",
    "event", "trigger", "trigger-run", "condition", "valid-condition", "source-invocation",
    "triggered-invocation", "atomic-service-run", "cron", "status", "code",
    "invocations", "events", "trigger-runs", "conditions", "source-invocations", "triggered-invocations",
    "runners", "workers", "workflows",
}
PLURAL = {"invocations": "invocation", "events": "event", "trigger-runs": "trigger-run", "conditions": "condition",
          "source-invocations": "source-invocation", "triggered-invocations": "triggered-invocation",
          "runners": "runner", "workers": "worker", "workflows": "workflow"}
REF = re.compile(r"(?<![\w./-])([a-z][a-z-]*):(\[[^\]]*\]|[^\s\]]+)")
INVOCATION_KINDS = {"invocation", "parent-invocation", "child-invocation", "new-invocation", "source-invocation",
                    "triggered-invocation", "workflow", "sub-workflow", "parent-workflow"}
RUNNER_KINDS = {"runner", "worker", "current-owner-runner", "attempted-owner-runner"}
MAX_LINES = 20_000


def parse(text: str) -> list[dict]:
    """Split pasted text into entries; each keeps its raw line(s) and what the line names."""
    entries: list[dict] = []
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        line = ANSI.sub("", raw).rstrip("\r")
        if not line.strip():
            continue
        entry = _parse_json(line) if line.lstrip().startswith("{") else None
        if entry is None:
            m = START.match(line)
            if m is None:
                if entries:
                    entries[-1]["continuation"].append(line)
                else:
                    entries.append(_entry(no, line, None, None, "text", line))
                continue
            entry = _parse_text(m, line)
        entry["line_no"] = no
        entries.append(entry)
    return entries


def _entry(no, raw, ts, level, fmt, message) -> dict:
    return {"line_no": no, "raw": raw, "format": fmt, "timestamp": ts, "level": level, "logger": None,
            "runners": [], "invocation_id": None, "task_id": None, "atomic_service_run_id": None,
            "message": message, "refs": [], "continuation": []}


def _parse_text(m: re.Match, line: str, fmt: str = "text") -> dict:
    ts, level, rest = m.group("ts"), m.group("level"), m.group("rest")
    entry = _entry(0, line, ts, "WARN" if level == "WARNING" else level, fmt, rest)
    tokens = rest
    tag = re.match(r"^\[(R|P)\]\s+(\S+)\s+(.*)$", tokens)  # rustvello: [R] app [ctx] target message
    if tag:
        entry["format"] = "rustvello"
        entry["logger"] = tag.group(2)
        tokens = tag.group(3)
    elif tokens.startswith("runner:") or " | " in tokens:
        entry["format"] = "tasktrail" if " | " in tokens else fmt
    else:
        first, _, after = tokens.partition(" ")
        if not first.startswith("["):
            entry["logger"] = first
            tokens = after
    if tokens.startswith("["):
        close = tokens.find("] ")
        close = close if close != -1 else (len(tokens) - 1 if tokens.endswith("]") else -1)
        if close != -1:
            _bracket(entry, tokens[1:close])
            tokens = tokens[close + 1:].lstrip()
    entry["message"] = tokens
    _refs(entry, tokens if entry["format"] != "tasktrail" else rest)
    if entry["format"] == "tasktrail":  # its context is written as refs: runner:, worker:, invocation:, task:
        entry["message"] = rest.split(" | ", 1)[1] if " | " in rest else rest
        for ref in entry["refs"]:
            if ref["kind"] in ("runner", "worker"):
                entry["runners"].append({"class": ref["kind"], "id": ref["value"]})
            elif ref["kind"] == "invocation" and not entry["invocation_id"]:
                entry["invocation_id"] = ref["value"]
            elif ref["kind"] == "task" and not entry["task_id"]:
                entry["task_id"] = ref["value"]
    return entry


def _bracket(entry: dict, inner: str) -> None:
    m = BRACKET.match(inner)
    if not m:
        return
    for cls, rid in RUNNER_PART.findall(m.group("runners") or ""):
        if cls == "AS":
            entry["atomic_service_run_id"] = rid
        else:
            entry["runners"].append({"class": cls, "id": rid})
    if m.group("inv"):
        entry["invocation_id"] = m.group("inv")
    if m.group("task"):
        entry["task_id"] = m.group("task")


def _refs(entry: dict, text: str) -> None:
    seen = set()
    for kind, value in REF.findall(text):
        if kind not in KINDS:
            continue
        values = [v.strip() for v in value[1:-1].split(",") if v.strip()] if value.startswith("[") else [value]
        kind = PLURAL.get(kind, kind)
        for v in values:
            if (kind, v) not in seen:
                seen.add((kind, v))
                entry["refs"].append({"kind": kind, "value": v})


def _parse_json(line: str) -> Optional[dict]:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    text = obj.get("text")
    if isinstance(text, str):  # pynenc JSON: the full TEXT line rides along
        m = START.match(ANSI.sub("", text))
        if m:
            entry = _parse_text(m, line, "json")
            entry["format"] = "pynenc-json"
            if obj.get("exception"):
                entry["continuation"] += str(obj["exception"]).splitlines()
            _json_fields(entry, obj)
            return entry
    entry = _entry(0, line, obj.get("timestamp") or obj.get("time"), (obj.get("severity") or obj.get("level") or "").upper() or None,
                   "json", obj.get("message") or obj.get("msg") or obj.get("body") or "")
    entry["logger"] = obj.get("logger") or obj.get("target")
    _json_fields(entry, obj)
    _refs(entry, entry["message"])
    return entry


def _json_fields(entry: dict, obj: dict) -> None:
    """Full ids from JSON fields win over the truncated ones of the text."""
    if obj.get("runner_id"):
        entry["runners"] = [r for r in entry["runners"] if not str(obj["runner_id"]).startswith(r["id"])]
        if obj.get("parent_runner_id"):
            entry["runners"] = [r for r in entry["runners"] if not str(obj["parent_runner_id"]).startswith(r["id"])]
            entry["runners"].append({"class": obj.get("parent_runner_class"), "id": str(obj["parent_runner_id"])})
        entry["runners"].append({"class": obj.get("runner_class"), "id": str(obj["runner_id"])})
    for key in ("worker_id",):
        if obj.get(key) and not any(r["id"] == obj[key] for r in entry["runners"]):
            entry["runners"].append({"class": "worker", "id": str(obj[key])})
    if obj.get("invocation_id"):
        entry["invocation_id"] = str(obj["invocation_id"])
    if obj.get("task_id"):
        entry["task_id"] = str(obj["task_id"])
