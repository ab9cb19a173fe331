"""Workflows: types, runs, one run's members and sub-workflows, and pynmon's occupancy histogram (the
side-by-side comparison of runs is query/workflow_compare.py's).

A workflow run is identified by its workflow id, which is the id of the invocation that defines it
(pynenc's and rustvello's rule); its members are the invocations carrying that workflow id. Runs,
members and durations come from the invocation_state cache; time spent per status and the
histogram from the members' transitions, read inside the run's own time range.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Optional, Sequence

from tasktrail.proto.history import settle
from tasktrail.proto.status import FINAL_SQL as FINAL_IN, FINAL_STATUSES

from .adjust import at
from .errors import BadRequest, NotFound
from .params import iso
from .reader import BY_ID
from .tasks import last_runs

MAX_COMPARE = 10
MAX_MEMBERS = 5000

# pynmon's occupancy categories (pynmon/util/histogram.py) and its default selection.
CATEGORIES = {
    "REGISTERED": ("REGISTERED", "REROUTED", "CONCURRENCY_CONTROLLED"),
    "PENDING": ("PENDING", "PENDING_RECOVERY", "RETRY"),
    "RUNNING": ("RUNNING", "RUNNING_RECOVERY"),
}
CATEGORY_OF = {s: c for c, ss in CATEGORIES.items() for s in ss}
DEFAULT_CATEGORIES = ("PENDING", "RUNNING")
# Bucket size by window length (seconds), then capped at 240 buckets and a 10 px bar over 1680 px.
BUCKET_RULES = ((5, 0.25), (30, 0.5), (60, 1), (900, 5), (3600, 15), (10800, 60), (43200, 300),
                (259200, 1800))
MAX_BUCKETS = min(240, 1680 // 10)
LEGEND_TASKS = 12

# Runs are found by their defining invocations (a root carries its own id as workflow id); their members
# are then counted inside the roots' time range (padded for clock skew between hosts), so zone maps on
# the cache's created_at order skip the rest of the store.
ROOT_COLUMNS = """app_id, invocation_id AS workflow_id, workflow_type, task_id AS root_task_id, status, created_at,
                  updated_at, coalesce(started_at, created_at) AS started_at"""
SKEW = timedelta(seconds=60)
MEMBERS = f"""
    SELECT app_id, workflow_id, any_value(workflow_type) FILTER (WHERE workflow_type IS NOT NULL) AS workflow_type,
           count(*) FILTER (WHERE invocation_id <> workflow_id) AS members,
           count(*) FILTER (WHERE invocation_id <> workflow_id AND status = 'FAILED') AS failed_members,
           count(*) FILTER (WHERE invocation_id <> workflow_id AND status NOT IN ({FINAL_IN})) AS running_members,
           min(created_at) AS first, max(updated_at) AS last
    FROM invocation_state WHERE {{where}} GROUP BY app_id, workflow_id"""


def bucket_size(window_s: float) -> float:
    """pynmon's rule: by window length, then at most MAX_BUCKETS buckets."""
    size = 3600.0
    for upto, s in BUCKET_RULES:
        if window_s <= upto:
            size = float(s)
            break
    if window_s / size > MAX_BUCKETS:
        size = window_s / MAX_BUCKETS
    return size


class Workflows:
    """Reads behind /workflows. `q(sql, params)` runs a read; `now` (naive UTC) ends a run still going."""

    def __init__(self, q, now: datetime) -> None:
        self.q, self.now = q, now

    # --- runs --------------------------------------------------------------------------
    def _run(self, d: dict) -> dict:
        final = d["status"] in FINAL_STATUSES
        end = d["updated_at"] if final else None
        return {"workflow_id": d["workflow_id"], "app_id": d["app_id"], "workflow_type": d["workflow_type"],
                "status": d["status"], "is_final": final, "created_at": iso(d["created_at"]),
                "finished_at": iso(end),
                "duration_s": (end - d["started_at"]).total_seconds() if end is not None else None,
                "members": int(d["members"]), "failed_members": int(d["failed_members"]),
                "running_members": int(d["running_members"])}

    def runs(self, *, app=None, workflow_type=None, status=None, since=None, until=None, limit=50) -> dict:
        """The newest runs, found by their defining invocations (whose workflow id is their own id), then
        their members counted for those runs only: the cost follows the page, not the store."""
        where, params = ["workflow_id = invocation_id"], {}
        for cond, key, value in (("app_id = $app", "app", app), ("workflow_type = $type", "type", workflow_type),
                                 ("updated_at >= $since", "since", since), ("created_at < $until", "until", until)):
            if value is not None:
                where.append(cond)
                params[key] = value
        if status:
            where.append("status IN (" + ", ".join(f"$s{i}" for i in range(len(status))) + ")")
            params.update({f"s{i}": s for i, s in enumerate(status)})
        roots = self.q(f"""SELECT {ROOT_COLUMNS} FROM invocation_state WHERE {' AND '.join(where)}
                            ORDER BY created_at DESC, invocation_id DESC LIMIT {int(limit) + 1}""", params).dicts()
        rows = self._with_members(roots[:limit])
        items = [self._run(d) for d in rows]
        self._parents(items, rows)
        return {"items": items, "truncated": len(roots) > limit}

    def _with_members(self, roots: list[dict]) -> list[dict]:
        """Root rows completed with their members' counts and time range."""
        if not roots:
            return []
        lo = min(r["created_at"] for r in roots) - SKEW
        hi = max(r["updated_at"] for r in roots) + SKEW
        open_ended = any(r["status"] not in FINAL_STATUSES for r in roots)
        cond = "created_at >= $lo" + ("" if open_ended else " AND created_at <= $hi") + \
               " AND workflow_id IN (SELECT unnest($ids::VARCHAR[]))"
        params = {"lo": lo, "ids": [r["workflow_id"] for r in roots]}
        if not open_ended:
            params["hi"] = hi
        found = {(m["app_id"], m["workflow_id"]): m for m in self.q(MEMBERS.format(where=cond), params).dicts()}
        out = []
        for r in roots:
            m = found.get((r["app_id"], r["workflow_id"]), {})
            out.append({**r, "members": m.get("members", 0), "failed_members": m.get("failed_members", 0),
                        "running_members": m.get("running_members", 0), "root_known": True,
                        "workflow_type": r["workflow_type"] or m.get("workflow_type"),
                        "created_at": min(r["created_at"], m.get("first") or r["created_at"]),
                        "updated_at": max(r["updated_at"], m.get("last") or r["updated_at"])})
        return out

    def _parents(self, items: list[dict], rows: list[dict]) -> None:
        """Each run's parent workflow (set on sub-workflows), from its root's transitions (`rows`: the
        runs' rows `items` were made of, whose times bound the read)."""
        if not items:
            return
        ids = [i["workflow_id"] for i in items]
        lo = min(d["created_at"] for d in rows)
        hi = max(d["updated_at"] if d["status"] in FINAL_STATUSES else d["created_at"] for d in rows)
        parent = dict(self.q("""SELECT invocation_id, any_value(workflow_parent_id) FROM transitions
                                WHERE ts BETWEEN $lo AND $hi AND invocation_id IN (SELECT unnest($ids::VARCHAR[]))
                                  AND workflow_parent_id IS NOT NULL GROUP BY 1""",
                             {"lo": lo, "hi": hi + timedelta(days=1), "ids": ids}).rows)
        for i in items:
            i["parent_workflow_id"] = parent.get(i["workflow_id"])

    def types(self, *, app=None, workflow_type=None, since=None, until=None) -> dict:
        """Runs per type whose defining invocation was active in the window (None: no bound)."""
        where, params = "", {}
        if since is not None:
            where += " AND updated_at >= $since"
            params["since"] = since
        if until is not None:
            where += " AND created_at < $until"
            params["until"] = until
        if app:
            where += " AND app_id = $app"
            params["app"] = app
        if workflow_type is not None:
            where += " AND workflow_type = $type"
            params["type"] = workflow_type
        rows = self.q(f"""
            SELECT app_id, workflow_type, count(*) FILTER (WHERE root) AS runs,
                   histogram(status) FILTER (WHERE root) AS by_status,
                   quantile_cont(d, [0.5, 0.95]) FILTER (WHERE root) AS q,
                   count(*) FILTER (WHERE NOT root) AS members, max(created_at) FILTER (WHERE root) AS last_run
            FROM (SELECT *, invocation_id = workflow_id AS root,
                         CASE WHEN status IN ({FINAL_IN})
                              THEN epoch(updated_at) - epoch(coalesce(started_at, created_at)) END AS d
                  FROM invocation_state WHERE workflow_id IS NOT NULL {where})
            GROUP BY app_id, workflow_type HAVING count(*) FILTER (WHERE root) > 0
            ORDER BY last_run DESC""", params).dicts()
        items = [{"app_id": d["app_id"], "workflow_type": d["workflow_type"], "runs": int(d["runs"]),
                  "counts_by_status": {k or "UNKNOWN": int(v) for k, v in dict(d["by_status"] or {}).items()},
                  "duration_s": {"p50": (d["q"] or [None])[0], "p95": (d["q"] or [None, None])[1]},
                  "members": int(d["members"] or 0), "last_run_at": iso(d["last_run"])} for d in rows]
        if workflow_type is None:
            items += self._idle_types(items, app)
        return {"items": items}

    def _idle_types(self, items: list[dict], app) -> list[dict]:
        """Every known workflow type without a run in the window: zero counts and its latest run ever
        (one grouped read of the cache's defining invocations)."""
        known = last_runs(self.q, "workflow_type", app, "workflow_id = invocation_id AND workflow_type IS NOT NULL")
        for i in items:  # the latest run ever, which a window's `until` may hide
            i["last_run_at"] = iso(known.get((i["app_id"], i["workflow_type"]))) or i["last_run_at"]
        seen = {(i["app_id"], i["workflow_type"]) for i in items}
        idle = sorted((k for k in known if k not in seen), key=lambda k: (known[k], k[1]), reverse=True)
        return [{"app_id": a, "workflow_type": t, "runs": 0, "counts_by_status": {},
                 "duration_s": {"p50": None, "p95": None}, "members": 0, "last_run_at": iso(known[(a, t)])}
                for a, t in idle]

    def run_row(self, workflow_id: str, app=None) -> dict:
        cond, params = BY_ID, [workflow_id, workflow_id]
        if app:
            cond += " AND app_id = ?"
            params.append(app)
        roots = self.q(f"SELECT {ROOT_COLUMNS} FROM invocation_state WHERE {cond}", params).dicts()
        if roots:
            return self._with_members(roots[:1])[0]
        # Members name the run but its defining invocation is not stored: count them over the whole cache.
        where, p = "workflow_id = $id", {"id": workflow_id}
        if app:
            where += " AND app_id = $app"
            p["app"] = app
        rows = self.q(MEMBERS.format(where=where), p).dicts()
        if not rows:
            raise NotFound(f"workflow run {workflow_id} is not in the log (no invocation carries that workflow id)")
        m = rows[0]
        return {**m, "root_task_id": None, "status": None, "created_at": m["first"], "updated_at": m["last"],
                "started_at": m["first"], "root_known": False}

    # --- one run ----------------------------------------------------------------------
    def _members(self, workflow_id: str, lo: datetime, hi: Optional[datetime], app=None) -> list[dict]:
        """The run's members, read inside its time range (to now while it runs)."""
        params = {"id": workflow_id, "lo": lo - SKEW}
        cond = "created_at >= $lo AND workflow_id = $id"
        if hi is not None:
            cond += " AND created_at <= $hi"
            params["hi"] = hi + SKEW
        if app:
            cond += " AND app_id = $app"
            params["app"] = app
        return self.q(f"""SELECT invocation_id, task_id, status, created_at, updated_at, started_at, attempts,
                                 parent_invocation_id, runner_id, worker_id
                          FROM invocation_state WHERE {cond} ORDER BY created_at, invocation_id
                          LIMIT {MAX_MEMBERS + 1}""", params).dicts()

    def _intervals(self, ids: list[str], lo: datetime, hi: datetime, end: datetime) -> dict:
        """{invocation: [(category or status, start, end)]}: each transition to the next; an open last
        one (not final) runs to `end`."""
        if not ids:
            return {}
        out: dict = {i: [] for i in ids}
        raw = self.q("""
            SELECT invocation_id, epoch_us(ts) AS ts, status, attempt, seq, record_id, runner_id, worker_id, source
            FROM transitions
            WHERE ts BETWEEN $lo AND $hi AND invocation_id IN (SELECT unnest($ids::VARCHAR[]))
            ORDER BY invocation_id, batch, rowid""", {"lo": lo, "hi": hi, "ids": ids}).dicts()
        rows = []  # each member's settled history (proto/history.py), as the invocation page shows it
        for _, group in groupby(raw, key=itemgetter("invocation_id")):
            rows.extend((h["invocation_id"], at(h["ts"]), h["status"]) for h in settle(list(group)))
        prev = None
        for inv, ts, status in rows:
            if prev is not None and prev[0] == inv:
                out[inv].append((prev[2], prev[1], ts))
            elif prev is not None and prev[2] not in FINAL_STATUSES:
                out[prev[0]].append((prev[2], prev[1], max(end, prev[1])))
            prev = (inv, ts, status)
        if prev is not None and prev[2] not in FINAL_STATUSES:
            out[prev[0]].append((prev[2], prev[1], max(end, prev[1])))
        return out

    @staticmethod
    def _time_in(intervals: list) -> dict:
        spent = {c: 0.0 for c in CATEGORIES}
        for status, a, b in intervals:
            c = CATEGORY_OF.get(status)
            if c:
                spent[c] += (b - a).total_seconds()
        return spent

    def _load(self, workflow_id: str, app=None) -> dict:
        """A run, its members and their status intervals."""
        root = self.run_row(workflow_id, app)
        lo, hi = root["created_at"], root["updated_at"]
        done = root["status"] in FINAL_STATUSES and not root["running_members"]  # (an unknown root has no status)
        members = self._members(workflow_id, lo, hi if done else None, app)
        truncated = len(members) > MAX_MEMBERS
        members = members[:MAX_MEMBERS]
        if not root["root_known"] and not members:
            raise NotFound(f"workflow run {workflow_id} is not in the log")
        end = hi if done else self.now
        ids = [m["invocation_id"] for m in members]
        if workflow_id not in ids:
            ids.append(workflow_id)
        return {"root": root, "members": members, "truncated": truncated, "lo": lo, "hi": hi, "end": end,
                "intervals": self._intervals(ids, lo - SKEW, hi + SKEW, end)}

    def run(self, workflow_id: str, *, app=None, categories: Sequence[str] = DEFAULT_CATEGORIES,
            full: bool = True) -> dict:
        """A run with its members, time per status, sub-workflows and occupancy histogram of `categories`
        (`full`; else only the run and its members, for a comparison)."""
        loaded = self._load(workflow_id, app)
        root, members, iv = loaded["root"], loaded["members"], loaded["intervals"]
        run = self._run(root)
        if full:
            self._parents([run], [root])
        items = []
        for m in members:
            if m["invocation_id"] == workflow_id:
                continue
            final = m["status"] in FINAL_STATUSES
            items.append({"invocation_id": m["invocation_id"], "task_id": m["task_id"], "status": m["status"],
                          "is_final": final, "created_at": iso(m["created_at"]),
                          "started_at": iso(m["started_at"]),
                          "finished_at": iso(m["updated_at"]) if final else None,
                          "duration_s": ((m["updated_at"] - (m["started_at"] or m["created_at"])).total_seconds()
                                         if final else None),
                          "attempts": int(m["attempts"] or 0), "parent_invocation_id": m["parent_invocation_id"],
                          "runner_id": m["worker_id"] or m["runner_id"],
                          "time_in": self._time_in(iv.get(m["invocation_id"], []))})
        run["members_list"] = items
        run["members_truncated"] = loaded["truncated"]
        run["time_in"] = self._sum_time(items)
        if not full:
            return run
        run["sub_workflows"] = self._subs(workflow_id, loaded["lo"], loaded["hi"], app)
        run["window"] = {"since": iso(loaded["lo"]), "until": iso(loaded["end"])}
        run["histogram"] = self.histogram(loaded, categories)
        return run

    def _subs(self, workflow_id: str, lo: datetime, hi: datetime, app=None) -> list[dict]:
        """Runs whose parent workflow is this one (said by their roots' transitions, inside this run)."""
        ids = [i for (i,) in self.q("""SELECT DISTINCT invocation_id FROM transitions
                                       WHERE ts BETWEEN $lo AND $hi AND workflow_parent_id = $id""",
                                    {"lo": lo, "hi": hi, "id": workflow_id}).rows]
        if not ids:
            return []
        cond, params = "workflow_id = invocation_id AND invocation_id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": ids}
        if app:
            cond += " AND app_id = $app"
            params["app"] = app
        roots = self.q(f"SELECT {ROOT_COLUMNS} FROM invocation_state WHERE {cond} ORDER BY created_at", params).dicts()
        items = [self._run(d) for d in self._with_members(roots)]
        for i in items:
            i["parent_workflow_id"] = workflow_id
        return items

    @staticmethod
    def _sum_time(items: list[dict]) -> dict:
        out = {c: 0.0 for c in CATEGORIES}
        for m in items:
            for c, v in m["time_in"].items():
                out[c] += v
        return out

    # --- occupancy histogram ----------------------------------------------------------
    def histogram(self, loaded: dict, categories: Sequence[str]) -> dict:
        """pynmon's occupancy histogram over the run's window: in each bucket, how many status
        intervals of the chosen categories overlap it, stacked by task (12 tasks, then Other)."""
        lo, end = loaded["lo"], loaded["end"]
        window = max((end - lo).total_seconds(), 0.001)
        size = bucket_size(window)
        n = max(1, int(-(-window // size)))
        task_of = {m["invocation_id"]: m["task_id"] or "?" for m in loaded["members"]}
        task_of.setdefault(loaded["root"]["workflow_id"], loaded["root"]["root_task_id"] or "?")
        counts: dict[str, list[int]] = {}
        for inv, intervals in loaded["intervals"].items():
            task = task_of.get(inv, "?")
            for status, a, b in intervals:
                if CATEGORY_OF.get(status) not in categories:
                    continue
                first = int((a - lo).total_seconds() // size)
                last = int((b - lo).total_seconds() // size) if b > a else first
                if b > a and (b - lo).total_seconds() % size == 0:
                    last -= 1  # touching a bucket's start is not overlapping it
                row = counts.setdefault(task, [0] * n)
                for k in range(max(first, 0), min(last, n - 1) + 1):
                    row[k] += 1
        ranked = sorted(counts, key=lambda t: (-sum(counts[t]), t))
        series = [{"task_id": t, "counts": counts[t]} for t in ranked[:LEGEND_TASKS]]
        if len(ranked) > LEGEND_TASKS:
            other = [0] * n
            for t in ranked[LEGEND_TASKS:]:
                other = [x + y for x, y in zip(other, counts[t])]
            series.append({"task_id": "Other", "counts": other})
        return {"categories": [c.lower() for c in categories], "bucket_s": size, "since": iso(lo),
                "until": iso(lo + timedelta(seconds=size * n)),
                "buckets": [iso(lo + timedelta(seconds=size * k)) for k in range(n)], "series": series}

    # --- a type's page ----------------------------------------------------------------
    def of_type(self, workflow_type: str, *, app=None, status=None, limit=50, histogram_runs: Sequence[str] = (),
                categories: Sequence[str] = DEFAULT_CATEGORIES, since=None, until=None) -> dict:
        """A type's newest runs, the occupancy histograms of `histogram_runs` (default its newest 3) and
        its summary over `since`–`until`."""
        runs = self.runs(app=app, workflow_type=workflow_type, status=status, limit=limit)
        if not runs["items"] and not status:
            raise NotFound(f"workflow type {workflow_type} is not in the log")
        chosen = list(histogram_runs)
        if len(chosen) > MAX_COMPARE:
            raise BadRequest(f"at most {MAX_COMPARE} runs get histograms, got {len(chosen)}")
        if not chosen:
            chosen = [r["workflow_id"] for r in runs["items"][:3]]
        histograms = []
        for wid in chosen:
            loaded = self._load(wid, app)
            histograms.append({"workflow_id": wid, "histogram": self.histogram(loaded, categories)})
        stats = next(iter(self.types(app=app, workflow_type=workflow_type, since=since, until=until)["items"]), None)
        return {"workflow_type": workflow_type, "summary": stats, "since": iso(since), "until": iso(until),
                **runs, "histograms": histograms}
