"""Log explorer: parse pasted log lines and resolve what they mention to stored entities.

Formats: pynenc TEXT (colours stripped) and JSON (its `text` key), rustvello's unified lines
(`[R]`/`[P]` tag, then app), tasktrail's own download format, and plain JSON log objects.
Lines as log tooling prints them are read as if unprefixed, the prefix kept as the entry's `source`:
`docker compose logs` ("worker-1  | "), `docker logs -t` / `kubectl logs --timestamps` (an RFC 3339
time), `kubectl logs --prefix` ("[pod/name/container] "), journalctl's short formats and syslog
headers ("Nov 30 10:00:00 host unit[pid]: ", "<13>1 2026-... host app pid msgid - "), and their
combinations.
A traceback (a line starting with whitespace or "Traceback", the exception line closing it, chained
tracebacks) stays with the entry above it from the same source; any other line is an entry of its own.
A line in no known format is still searched: its `kind:value` references, and its bare tokens, which
the query service matches against stored invocation, runner and task ids (`tokens`).
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
UUID_RE = re.compile(UUID)
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
MAX_TOKENS = 50_000

# Prefixes that log tooling puts before a line; `strip_prefixes` takes them off one after another.
COMPOSE = re.compile(r"^(?P<source>[A-Za-z0-9][\w.@-]*)[ \t]*\| ?")       # docker compose logs: "worker-1  | "
KUBECTL = re.compile(r"^\[(?P<source>[\w.-]+/[^\]\s]+)\] ")                # kubectl logs --prefix
STAMP = re.compile(r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})) ")  # docker -t
JOURNAL = re.compile(  # journalctl -o short / short-iso, BSD syslog (optionally with <PRI>)
    r"^(?:<\d{1,3}>)?(?P<ts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|"
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?[+-]\d{2}:?\d{2}) "  # journald writes an offset, docker a Z
    r"(?P<host>[^\s\[\]]+) (?P<source>[^\s\[\]:]+)(?:\[\d+\])?: ")
SYSLOG5424 = re.compile(r"^<\d{1,3}>1 (?P<ts>\S+) (?P<host>\S+) (?P<source>\S+) \S+ \S+ (?:-|(?:\[[^\]]*\])+) ?")
TRACEBACK = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception, another exception occurred:",
           "The above exception was the direct cause of the following exception:")
TOKEN = re.compile(r"[^\s\"'`()\[\]{}<>,;=|]+")


def strip_prefixes(line: str) -> tuple[str, Optional[str], Optional[str]]:
    """(the line without the prefixes log tooling put before it, their source joined by " / " or None,
    the earliest timestamp a prefix carried or None). A line already in a known format is left alone."""
    sources: list[str] = []
    stamp = None
    for _ in range(6):
        if START.match(line) or line.startswith("{"):
            break
        m = COMPOSE.match(line) or KUBECTL.match(line)
        if m is None:
            m = SYSLOG5424.match(line) or JOURNAL.match(line) or STAMP.match(line)
            if m is None:
                break
            stamp = stamp or m.group("ts")
        if "source" in m.groupdict():
            sources.append(m.group("source"))
        line = line[m.end():]
    return line, (" / ".join(sources) or None), stamp


def parse(text: str) -> list[dict]:
    """Split pasted text into entries; each keeps its raw line(s) and what the line names."""
    entries: list[dict] = []
    last: dict = {}  # source -> its latest entry (compose interleaves containers)
    tb: dict = {}  # source -> where its open traceback is: "frames", "done" (after the exception line)
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        line = ANSI.sub("", raw).rstrip("\r")
        if not line.strip():
            continue
        line, source, stamp = strip_prefixes(line)
        if not line.strip():
            continue
        entry = _parse_json(line) if line.lstrip().startswith("{") else None
        if entry is None:
            m = START.match(line)
            if m is None:
                owner = last.get(source)
                state = tb.get(source)
                if owner is not None and _continues(line, state):
                    owner["continuation"].append(line)
                    tb[source] = ("frames" if line.startswith(TRACEBACK) else "chained" if line in CHAINED
                                  else "done" if state == "frames" and not line[:1].isspace() else state)
                    continue
                entry = _entry(no, line, stamp, None, "text", line)
                _refs(entry, line)
                entry["tokens"] = _tokens(line)
            else:
                entry = _parse_text(m, line)
        entry["line_no"] = no
        entry["raw"] = raw.rstrip("\r") if source or stamp else entry["raw"]
        entry["source"] = source
        entry["timestamp"] = entry["timestamp"] or stamp
        entries.append(entry)
        last[source] = entry
        tb[source] = None
    return entries


def _continues(line: str, traceback_state: Optional[str]) -> bool:
    """Whether an unparsed line belongs to the entry above it: indented, a traceback's start, its
    exception line, or the sentence chaining two tracebacks."""
    if line[:1].isspace() or line.startswith(TRACEBACK):
        return True
    if traceback_state == "frames":  # "ValueError: boom", "KeyboardInterrupt"
        return True
    return traceback_state == "done" and line in CHAINED


def _tokens(line: str) -> list[str]:
    """Bare words of an unparsed line that could be ids (hold a digit or one of - _ . : / @), without
    the trailing punctuation of a sentence."""
    out = []
    for tok in TOKEN.findall(line):
        tok = tok.rstrip(".:!?")
        if len(tok) >= 3 and any(c.isdigit() or c in "-_.:/@" for c in tok):
            out.append(tok)
    return out


def _entry(no, raw, ts, level, fmt, message) -> dict:
    return {"line_no": no, "raw": raw, "format": fmt, "timestamp": ts, "level": level, "logger": None,
            "runners": [], "invocation_id": None, "task_id": None, "atomic_service_run_id": None,
            "message": message, "refs": [], "continuation": [], "source": None, "tokens": []}


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
