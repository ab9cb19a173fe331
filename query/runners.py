"""Runners: every runner context with its liveness and role (the one rule, query/liveness.Liveness) and
the invocations running on it; one runner's workers, recent activity and heartbeats. Read from the
runner_state cache (one row per context, folded by the writer) through the `runners` view.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from tasktrail.store import api

from .liveness import Liveness
from .errors import BadRequest, NotFound
from .params import BAD_CURSOR, cursor_of, iso, page_cursor
from .reader import newest_first, where

# A runner's most specific kept field over runner_state rows, as the writer's fold orders them: the store's
# contract spells it (store/api.py best_of).
best_of = api.best_of


_RUNNING = """
        WITH running AS (
          SELECT coalesce(worker_id, runner_id) AS rid, runner_id AS top, list(invocation_id) AS ids
          FROM open_invocations WHERE status = 'RUNNING' GROUP BY ALL)"""
_RUNNING_IDS = """(SELECT flatten(list(ids)) FROM running WHERE running.rid = r.runner_id
                                                    OR running.top = r.runner_id) AS running_ids"""


def listing(q, live: Liveness, app: Optional[str] = None, runner_id: Optional[str] = None) -> list[dict]:
    """Runner contexts in order of first sight, judged by `live`."""
    clauses, params = [], []
    if app:
        clauses.append("r.app_id = ?")
        params.append(app)
    if runner_id:
        clauses.append("r.runner_id = ?")
        params.append(runner_id)
    rows = q(f"""{_RUNNING}
        SELECT r.*, {_RUNNING_IDS}
        FROM runners r {where(clauses)}
        ORDER BY r.first_seen, r.runner_id""", params).dicts()
    return _listed(rows, live)


def listing_all(q, dead: datetime, app: Optional[str] = None) -> tuple[list[dict], Liveness]:
    """(`listing` of `app`'s runners, the Liveness of every runner context) from one read: every runner_state
    row (the liveness rule needs every context, the list those of the `runners` view), then the RUNNING
    invocations with their context and runner. Sorted and gathered here: on a few rows DuckDB's ORDER BY
    and a correlated list cost more than the rows (2 against 0.8 ms). When the row cap cuts that read (more
    runner contexts and RUNNING invocations than a read may return), the list and the liveness are read apart,
    as `listing` does."""
    got = q(f"""
        SELECT {Liveness.COLUMNS}, r.last_lifecycle, r.last_heartbeat,
               r.first_seen IS NOT NULL{" AND r.app_id = $app" if app else ""} AS listed
        FROM runner_state r
        UNION ALL BY NAME
        SELECT coalesce(worker_id, runner_id) AS runner_id, runner_id AS running_top, invocation_id AS running_id
        FROM open_invocations WHERE status = 'RUNNING'""", {"app": app} if app else {})
    if got.truncated:
        live = Liveness(q, dead)
        return listing(q, live, app), live
    rows = got.dicts()
    contexts = [d for d in rows if d["running_id"] is None]
    by_runner: dict = {}
    for d in rows:
        if d["running_id"] is not None:  # by its context and by its runner, in any app (as _RUNNING_IDS)
            for rid in {d["runner_id"], d["running_top"]}:
                by_runner.setdefault(rid, []).append(d["running_id"])
    for d in contexts:
        del d["running_id"], d["running_top"]
        d["running_ids"] = by_runner.get(d["runner_id"])
    live = Liveness(q, dead, contexts)
    listed = sorted((d for d in contexts if d["listed"]), key=lambda d: (d["first_seen"], d["runner_id"]))
    return _listed(listed, live), live


def _listed(rows: list[dict], live: Liveness) -> list[dict]:
    """The listing's items of `rows` (runners view rows with running_ids)."""
    named = label_rows(sorted({d["runner_id"] for d in rows}),
                       {d["runner_id"]: (d["runner_class"], d["hostname"], d["pid"]) for d in rows})
    return [{"runner_id": d["runner_id"], "app_id": d["app_id"], "runner_class": d["runner_class"],
             "parent_runner_id": d["parent_runner_id"], "hostname": d["hostname"], "pid": d["pid"],
             "first_seen": iso(d["first_seen"]), "last_heartbeat": iso(d["last_heartbeat"]),
             "last_activity": iso(d["last_activity"]), "stopped_at": iso(d["stopped_at"]),
             "alive": live.alive(d), "role": live.role(d), "state": live.state(d),
             "running_invocations": sorted(set(d["running_ids"] or [])),
             "runner_label": named[d["runner_id"]]["label"]}
            for d in rows]


def detail(q, runner_id: str, app: Optional[str], dead: datetime, cursor: Optional[str] = None,
           limit: int = 50) -> dict:
    """One runner (alive when heard from since `dead`), its workers, a page of its transitions (newest
    first, `cursor` from the previous page's `next_cursor`) and its last heartbeats."""
    live = Liveness(q, dead)
    found = listing(q, live, app, runner_id)
    if not found:
        raise NotFound(f"runner {runner_id} is not in the log")
    runner = found[0]
    runner["workers"] = [w for w in listing(q, live, app) if w["parent_runner_id"] == runner_id]
    last = _last_seen(q, runner_id)
    runner["recent_activity"], runner["next_cursor"] = activity(q, runner_id, app, cursor, limit, last.get("t"))
    hb = newest_first(q, """SELECT ts, atomic_eligible, consumed_queues FROM runner_events
                            WHERE runner_id = ? AND kind = 'heartbeat' {since} ORDER BY ts DESC LIMIT 20""",
                      [runner_id], last.get("h"), 20)
    runner["heartbeats"] = [{"timestamp": iso(t), "atomic_eligible": e, "consumed_queues": c} for t, e, c in hb]
    return runner


def _last_seen(q, runner_id: str) -> dict:
    """{"t": the last transition of the runner or its workers, "h": its last heartbeat} from runner_state (None
    where unknown): where the reads of its newest rows start (`newest_first`)."""
    row = q("""SELECT max(last_transition), max(last_heartbeat) FILTER (WHERE runner_id = $r) FROM runner_state
               WHERE runner_id = $r OR parent_runner_id = $r""", {"r": runner_id}).rows
    return {"t": row[0][0], "h": row[0][1]} if row else {}


def activity(q, runner_id: str, app: Optional[str], cursor: Optional[str], limit: int,
             last: Optional[datetime] = None) -> tuple[list, Optional[str]]:
    """A page of the transitions `runner_id` made (as runner or worker), newest first, and the cursor of
    the next page (None on the last). The cursor holds the last row's time and (invocation, status).
    `last`: when the runner was last active (a hint: the page is read over a window before it, widened
    until it holds the page: `newest_first`)."""
    clauses, params = ["(runner_id = ? OR worker_id = ?)"], [runner_id, runner_id]
    if app:
        clauses.append("app_id = ?")
        params.append(app)
    after = page_cursor(cursor, timed=True)
    if after is not None:
        ts, tie = after
        inv, sep, status = tie.rpartition("\n")
        if not sep or ts is None:
            raise BadRequest(BAD_CURSOR)
        clauses.append("(ts < ? OR (ts = ? AND (invocation_id < ? OR (invocation_id = ? AND status < ?))))")
        params += [ts, ts, inv, inv, status]
        last = min(last, ts) if last is not None else None
    rows = newest_first(q, f"""SELECT ts, invocation_id, task_id, status FROM transitions {where(clauses)} {{since}}
                               ORDER BY ts DESC, invocation_id DESC, status DESC LIMIT {int(limit) + 1}""",
                        params, last, limit + 1)
    nxt = cursor_of(rows[limit - 1][0], f"{rows[limit - 1][1]}\n{rows[limit - 1][3]}") if len(rows) > limit else None
    return [{"timestamp": iso(t), "invocation_id": i, "task_id": k, "status": s}
            for t, i, k, s in rows[:limit]], nxt


def labels(q, ids) -> dict:
    """{runner id: {runner_class, hostname, pid, short, label}} of `ids` (read from runner_state by those
    ids only): `short` is the shortest prefix (6 characters at least) of the id's own part (the id less a
    leading "<class>@" or "<class>-") that tells it from every other of `ids`, empty when the id is just
    the class, host and pid (pynenc's "ExternalRunner@host-pid"); `label` is "class host/pid short"."""
    ids = sorted({i for i in ids if i})
    if not ids:
        return {}
    # Picked in Python (labels_of_rows) from the few rows of those ids: a GROUP BY with arg_max cost
    # more than the rows (0.6 against 1.1 ms on a small runner_state).
    return labels_of_rows(ids, q("""SELECT runner_id, runner_class, hostname, pid FROM runner_state
                                    WHERE runner_id IN (SELECT unnest($ids::VARCHAR[]))""", {"ids": ids}).dicts())


def labels_of_rows(ids, rows) -> dict:
    """`labels(q, ids)` from runner_state rows already read (every row of those ids: a Liveness's), no read:
    per id the class that is not the placeholder `Runner`, a hostname, the highest pid, as `labels` picks."""
    ids = sorted({i for i in ids if i})
    want, picked = set(ids), {}
    for d in rows:
        rid = d["runner_id"]
        if rid not in want:
            continue
        cls, host, pid = picked.get(rid, (None, None, None))
        first = rid not in picked
        if first or (not _real(cls, "Runner") and _real(d["runner_class"], "Runner")):
            cls = d["runner_class"]
        if first or (not _real(host, "") and _real(d["hostname"], "")):
            host = d["hostname"]
        if d["pid"]:
            pid = d["pid"] if pid is None else max(pid, d["pid"])
        picked[rid] = (cls, host, pid)
    return label_rows(ids, picked)


def _real(value, placeholder) -> bool:
    return value is not None and value != placeholder


def label_rows(ids: list, found: dict) -> dict:
    """The labels of `ids` given {id: (class, host, pid)} of those runner_state knows (`labels`)."""
    tails = {rid: _own_part(rid, *found.get(rid, (None, None, None))) for rid in ids}
    out = {}
    for rid in ids:
        cls, host, pid = found.get(rid, (None, None, None))
        short = _shortest_unique(tails[rid], [t for r, t in tails.items() if r != rid]) if rid in found else rid
        out[rid] = {"runner_class": cls, "hostname": host, "pid": pid, "short": short,
                    "label": _label(cls, host, pid, short) or rid}
    # Ids that differ only in what the label already says ("Foo@abc", "Foo-abc") would read the same: those
    # show their whole id.
    seen: dict[str, list] = {}
    for rid, d in out.items():
        seen.setdefault(d["label"], []).append(rid)
    for rids in seen.values():
        if len(rids) > 1:
            for rid in rids:
                d = out[rid]
                d["short"], d["label"] = rid, _label(d["runner_class"], d["hostname"], d["pid"], rid)
    return out


def _label(cls: Optional[str], host: Optional[str], pid: Optional[int], short: str) -> str:
    """"Class host/pid short", leaving out what is not known."""
    place = f"{host or '?'}/{pid}" if pid else (host or "")
    return " ".join(p for p in (cls or "", place, short) if p)


def _own_part(rid: str, cls: Optional[str], host: Optional[str], pid: Optional[int]) -> str:
    """The id less what the label already says: a leading class name, then host and pid, each with its
    separator (pynenc's "ExternalRunner@host-pid" leaves nothing)."""
    rest = rid
    for said in filter(None, (cls, f"{host}-{pid}" if host and pid else None, f"{host}:{pid}" if host and pid else None)):
        if rest == said:
            return ""
        for sep in "@-:_.":
            if rest.startswith(said + sep) and len(rest) > len(said) + 1:
                rest = rest[len(said) + 1:]
                break
    return rest


def _shortest_unique(tail: str, others: list[str], least: int = 6) -> str:
    """The shortest prefix of `tail`, `least` characters at least, that no other of `others` starts with."""
    if not tail:
        return ""
    n = min(least, len(tail))
    while n < len(tail) and any(o.startswith(tail[:n]) for o in others):
        n += 1
    return tail[:n]
