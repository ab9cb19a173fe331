"""Load what pynenc's real log fixtures (shared/fixtures/pynenc-logs) say happened into a tasktrail,
with regexes of this module's own (not the explorer's parser), so explorer tests can check its
resolution against stored data: runner contexts with their full ids, and every status line."""
from __future__ import annotations

import json
import re
from datetime import datetime

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import SHARED

LOGS = SHARED / "fixtures" / "pynenc-logs"
TEXT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d) (\w+)\s+(\S+) \[([^\]]*)\] (.*)$")
STATUS = re.compile(r"invocation:([0-9a-f-]{36}) status:(\w+)")
NEW = re.compile(r"NEW task:(\S+) invocation:([0-9a-f-]{36}) REGISTERED")
FULL = re.compile(r"(?:runner|worker):([0-9a-f-]{36})")
PART = re.compile(r"([A-Za-z]+)\(([^)]*)\)")
ABBR = {"TR": "ThreadRunner", "PPR": "PersistentProcessRunner", "PPRW": "PPRWorker", "ER": "ExternalRunner",
        "MTR": "MultiThreadRunner", "PR": "ProcessRunner", "PRW": "ProcessRunnerWorker"}


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


def facts(name: str) -> tuple[dict, list]:
    """({runner_id: (class, parent_id)}, [(ts, invocation, status, task, runner_id)]) of one fixture file."""
    runners: dict[str, tuple] = {}
    events: list[tuple] = []
    lines = (LOGS / name).read_text().splitlines()
    if name.endswith("json.log"):
        tasks = {}
        for line in lines:
            o = json.loads(line)
            rid, parent = o.get("runner_id"), o.get("parent_runner_id")
            if parent:
                runners.setdefault(parent, (o.get("parent_runner_class"), None))
            if rid:
                runners[rid] = (o.get("runner_class"), parent)
            msg, ts = o["message"], _ts(o["timestamp"])
            if m := NEW.search(msg):
                tasks[m.group(2)] = m.group(1)
                events.append((ts, m.group(2), "REGISTERED", m.group(1), rid))
            elif m := STATUS.search(msg):
                events.append((ts, m.group(1), m.group(2).upper(), o.get("task_id") or tasks.get(m.group(1)), rid))
        return runners, events
    full_ids = {m for line in lines for m in FULL.findall(line)}
    tasks = {}
    for line in lines:
        m = TEXT.match(line)
        if not m:
            continue
        ts, bracket, msg = _ts(m.group(1)), m.group(4), m.group(5)
        parts = PART.findall(bracket)
        ids = []
        for cls, short in parts:
            full = short if "@" in short else next((f for f in full_ids if f.startswith(short)), None)
            if full:
                ids.append(full)
                runners.setdefault(full, (ABBR.get(cls, cls), ids[-2] if len(ids) > 1 else None))
        actor = ids[-1] if ids else None
        task = bracket.rsplit(":", 1)[1] if re.search(r"[0-9a-f-]{36}:\S+$", bracket) else None
        if n := NEW.search(msg):
            tasks[n.group(2)] = n.group(1)
            events.append((ts, n.group(2), "REGISTERED", n.group(1), actor))
        elif s := STATUS.search(msg):
            events.append((ts, s.group(1), s.group(2).upper(), task or tasks.get(s.group(1)), actor))
    return runners, events


def load(server, names) -> dict:
    """Emit every fixture's facts; returns {invocation_id: final status} and the runners."""
    em = Emitter(f"http://{server.otlp_grpc}", "pynenc-demo", token="tok123")
    finals, all_runners = {}, {}
    for name in names:
        runners, events = facts(name)
        all_runners.update(runners)
        for rid, (cls, parent) in runners.items():
            em.runner_started(Runner(rid, cls or "Runner", parent_id=parent, hostname="vm", pid=1),
                              timestamp=min(e[0] for e in events))
        for ts, inv, status, task, rid in sorted(events, key=lambda e: e[0]):
            cls, parent = all_runners.get(rid, ("Runner", None))
            em.status(inv, status, task_id=task, timestamp=ts,
                      runner=Runner(rid, cls or "Runner", parent_id=parent, hostname="vm", pid=1) if rid else None)
            finals[inv] = status
    assert em.flush()
    em.shutdown()
    return {"finals": finals, "runners": all_runners}
