"""Families: the tree around an invocation, up to its root, then every descendant by the three edge kinds
(direct children, children of the events it emitted, invocations its trigger runs created), and parents
found by trace context for runners that do not say them (Celery).

The root is walked up by the parent invocation, else the emitting invocation of the parent event, else a
registration's trace context, else the first source invocation of a trigger run. Parent links come from
the invocation_state cache (one row per invocation) instead of every transition.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional, Sequence

from tasktrail.proto.status import FINAL_SQL, FINAL_STATUSES

from .errors import NotFound
from .invocations import PARENT_SAYING_SOURCES, PARENTS_SQL, TimeRange, time_range
from .params import iso
from .reader import BY_ID, POINT_LOOKUPS, TRIGGER_RUNS_OF, by_ids, children_keys, children_of, state_rows

_PARENT_SAYING_IN = ", ".join(f"'{x}'" for x in PARENT_SAYING_SOURCES)
_FAR = datetime.max.replace(year=9999)

TRACE_PARENTS = """
    SELECT DISTINCT t.invocation_id AS child,
           CASE WHEN s.invocation_id IS NOT NULL AND s.invocation_id <> t.invocation_id THEN s.invocation_id
                ELSE p.invocation_id END AS parent
    FROM transitions t
    JOIN spans s ON s.span_id = t.span_id AND s.trace_id = t.trace_id AND s.start_ts BETWEEN $lo AND $hi
    LEFT JOIN spans p ON p.span_id = s.parent_span_id AND p.trace_id = s.trace_id AND p.start_ts BETWEEN $lo AND $hi
    WHERE t.status = 'REGISTERED' AND t.parent_invocation_id IS NULL AND t.ts BETWEEN $t_lo AND $t_hi
      AND {where}"""

# Children, by the three edge kinds, of the frontier ({ph}); each part bounded below by the family's
# start (the root's first record less SLACK, params in order: {direct}'s, start, ids, start, start, ids, start), so
# zone maps skip what the store held before the family began: no edge of it is older.
# Direct children are found through the parents' keys (`_direct`: about one row group whatever the store holds)
# for a frontier of up to POINT_LOOKUPS, else by the frontier's ids from the start on.
_EDGES = """
    SELECT DISTINCT parent_invocation_id AS parent, invocation_id AS child, 'direct' AS kind
      FROM invocation_state WHERE {direct} AND last_ts >= ?
    UNION
    SELECT e.emitted_by_invocation_id, t.invocation_id, 'event'
      FROM event_records e JOIN invocation_state t ON t.parent_event_id = e.event_id
     WHERE e.emitted_by_invocation_id IN ({ph}) AND e.ts >= ? AND t.last_ts >= ?
    UNION
    SELECT src.sid, tr.triggered_invocation_id, 'trigger'
      FROM trigger_runs tr, unnest(tr.source_invocation_ids) AS src(sid)
     WHERE src.sid IN ({ph}) AND tr.ts >= ? AND tr.triggered_invocation_id IS NOT NULL"""
# How much earlier than the root's first record a family member's records may be stamped (clocks that
# disagree; trace_parents allows spans the same day).
SLACK = timedelta(days=1)


def ids_range(q, ids: Sequence[str]) -> tuple:
    """(first transition, last transition or None while any is not final) of these invocations."""
    ids = list(ids)
    row = q(f"SELECT min(first_ts), max(last_ts), bool_and(status IN ({FINAL_SQL})) "
            f"FROM invocation_state WHERE {by_ids(len(ids))}", ids + ids).rows[0]
    return (row[0], row[1] if row[2] else None) if row[0] is not None else (None, None)


def trace_parents(q, related_after_s: float, *, children: Sequence[str] = (), parents: Sequence[str] = (),
                  rng: Optional[TimeRange] = None) -> list[tuple]:
    """(child, parent) links from trace context: a task registered inside another invocation's span
    (or inside a span whose parent belongs to another invocation, as Celery's publish spans are).
    Runners that say the parent outright (rustvello, tasktrail.v1) never need this. Bounded in time
    by the invocations' own range (spans start up to a day before), so the join skips the rest; `rng`
    is that range when it is already known (one child)."""
    if rng is not None:
        lo, hi = rng.first, rng.last if rng.final else None
    else:
        lo, hi = ids_range(q, children or parents)
    if lo is None:
        return []
    span_lo = lo - timedelta(days=1)
    if children:
        cond, params = "t.invocation_id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": list(children)}
        t_lo, t_hi = lo, hi or _FAR
    else:
        traces = [r[0] for r in q("SELECT DISTINCT trace_id FROM spans WHERE invocation_id IN "
                                  "(SELECT unnest(?::VARCHAR[])) AND start_ts BETWEEN ? AND ?",
                                  [list(parents), span_lo, hi or _FAR]).rows]
        if not traces:  # no spans of these invocations: nothing can hang below them by trace context
            return []
        cond, params = "t.trace_id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": traces}
        # Children are registered while a parent runs; a little after its end for slow exporters.
        t_lo, t_hi = lo, (hi + timedelta(seconds=related_after_s)) if hi else _FAR
    params.update(lo=span_lo, hi=hi or _FAR, t_lo=t_lo, t_hi=t_hi)
    rows = q(TRACE_PARENTS.format(where=cond), params).rows
    return [(c, p) for c, p in rows if p and p != c and (not parents or p in parents)]


def trace_parent(q, invocation_id: str, related_after_s: float, rng: Optional[TimeRange] = None) -> Optional[str]:
    """The parent trace context gives an invocation, or None."""
    found = trace_parents(q, related_after_s, children=[invocation_id], rng=rng)
    return found[0][1] if found else None


def _not_saying(source: Optional[str]) -> bool:
    """A record from a runner that does not say parents (as SQL's `source NOT IN (...)`: never a null source)."""
    return source is not None and source not in PARENT_SAYING_SOURCES


class _Walk:
    """What the walk reads of each invocation it passes, each once: its range and parents (invocation_state,
    `time_range`) and two facts of its transitions (`flags`). The start's records, when the caller has
    them (`raw`, its transitions in every app), answer its flags without a read."""

    def __init__(self, q, start: str, rng: TimeRange, raw: Optional[list[dict]]) -> None:
        self.q = q
        self.ranges: dict[str, Optional[TimeRange]] = {start: rng}
        self._flags: dict[str, tuple[bool, bool]] = {}
        if raw is not None:
            traced = (r["status"] == "REGISTERED" and r["span_id"] is not None and _not_saying(r["source"])
                      for r in raw)
            self._flags[start] = (any(traced), any(_not_saying(r["source"]) for r in raw))

    def range(self, inv: str) -> Optional[TimeRange]:
        """Its range (with its parents, but the start's as given); None when invocation_state has no row of it."""
        if inv not in self.ranges:
            try:
                self.ranges[inv] = time_range(self.q, inv, parents=True)
            except NotFound:
                self.ranges[inv] = None
        return self.ranges[inv]

    def parents(self, inv: str) -> tuple[Optional[str], Optional[str]]:
        """(parent invocation, parent event) as invocation_state has them in any app: read with its range,
        else (a start's range read without them) on their own."""
        rng = self.range(inv)
        if rng is None:
            return None, None
        if rng.parents_read:
            return rng.parent, rng.parent_event
        return tuple(self.q(f"SELECT {PARENTS_SQL} FROM invocation_state WHERE {BY_ID}", [inv, inv]).rows[0])

    def flags(self, inv: str) -> tuple[bool, bool]:
        """(registered with trace context by a runner that does not say parents, any record from such a
        runner): one read of its transitions within its range."""
        if inv not in self._flags:
            rng = self.range(inv)
            row = self.q(f"""SELECT coalesce(bool_or(status = 'REGISTERED' AND span_id IS NOT NULL
                                                     AND source NOT IN ({_PARENT_SAYING_IN})), false),
                                    coalesce(bool_or(source NOT IN ({_PARENT_SAYING_IN})), false)
                             FROM transitions WHERE invocation_id = ? AND ts BETWEEN ? AND ?""",
                         [inv, rng.first, rng.last]).rows[0] if rng else (False, False)
            self._flags[inv] = (bool(row[0]), bool(row[1]))
        return self._flags[inv]


def _parent(walk: _Walk, inv: str, related_after_s: float) -> Optional[str]:
    """The one parent of `inv` (module doc: by invocation, event, trace context, then trigger run)."""
    q, rng = walk.q, walk.range(inv)
    parent, parent_event = walk.parents(inv)
    if not parent and parent_event:
        e = q("SELECT arg_max(emitted_by_invocation_id, ts) FROM event_records WHERE event_id = ?", [parent_event]).rows
        parent = e[0][0] if e else None
    # A registration with trace context from a runner that does not say parents: look by trace.
    if not parent and walk.flags(inv)[0]:
        parent = trace_parent(q, inv, related_after_s, rng)
    if not parent:
        # The first stored run that created it (arrival order), as a scan of every trigger run found it.
        t = q(f"""SELECT source_invocation_ids[1] FROM trigger_runs WHERE {TRIGGER_RUNS_OF}
                  AND triggered_invocation_id = ? AND len(source_invocation_ids) > 0
                  ORDER BY batch, ts LIMIT 1""", [inv] * 4).rows
        parent = t[0][0] if t else None
    return parent


def _direct(q, frontier: list[str]) -> tuple[str, list]:
    """(the condition on invocation_state of the frontier's direct children, its params). Up to POINT_LOOKUPS
    parents: through their keys (store/api.py children_of), once a look at the keys found any (none: no read
    at all; an empty semi-join still scanned the store from the family's start, 60 ms at 10M invocations);
    more: by their ids, from the family's start on."""
    if len(frontier) > POINT_LOOKUPS:
        return f"parent_invocation_id IN ({', '.join('?' * len(frontier))})", list(frontier)
    if not q(f"SELECT 1 FROM ({children_keys(len(frontier))}) LIMIT 1", frontier).rows:
        return "false", []
    return children_of(len(frontier)), [*frontier, *frontier]


def _descendants(q, root: str, start: datetime, by_trace: bool, max_nodes: int, max_depth: int,
                 related_after_s: float) -> tuple[dict, list, bool]:
    """({node: depth}, edges, truncated) from `root` down, breadth first; `start`: no edge is older."""
    nodes_depth = {root: 0}
    edges: list[dict] = []
    frontier, truncated, depth = [root], False, 0
    while frontier and depth < max_depth:
        depth += 1
        direct, by_keys = _direct(q, frontier)
        got = q(_EDGES.format(ph=", ".join("?" * len(frontier)), direct=direct),
                [*by_keys, start, *frontier, start, start, *frontier, start])
        r = got.rows
        truncated = truncated or got.truncated   # more edges than a read may return: the family is cut, and says so
        if by_trace:
            r = list(r) + [(p, c, "direct") for c, p in trace_parents(q, related_after_s, parents=frontier)]
        nxt = []
        for parent, child, kind in sorted(r, key=lambda x: (x[0], x[1], x[2])):
            edge = {"parent": parent, "child": child, "kind": kind}
            if child in nodes_depth:
                if edge not in edges and child != root:  # a second relation to a node already placed
                    edges.append(edge)
                continue
            if len(nodes_depth) >= max_nodes:
                truncated = True
                break
            nodes_depth[child] = depth
            edges.append(edge)
            nxt.append(child)
        frontier = nxt
    if frontier and depth >= max_depth:
        truncated = True
    return nodes_depth, edges, truncated


def _nodes(q, nodes_depth: dict, edges: list[dict]) -> list[dict]:
    """The nodes in tree order (each parent before its children, siblings by creation time), as the
    graph draws the tree; `updated_at` is the node's last change (so a view spans the whole family)."""
    ids = list(nodes_depth)
    rows, params = state_rows(ids, "invocation_id, task_id, status, status_key, created_at, updated_at, workflow_id")
    info = {d["invocation_id"]: d for d in q(f"""
        SELECT invocation_id, any_value(task_id) FILTER (WHERE task_id IS NOT NULL) AS task_id,
               arg_max(status, status_key) AS status, min(created_at) AS created_at,
               max(updated_at) AS updated_at, any_value(workflow_id) AS workflow_id
        FROM {rows} GROUP BY invocation_id""", params).dicts()}
    nodes = []
    for i in tree_order(ids[0], edges, lambda c: (info.get(c, {}).get("created_at") or _FAR, c)):
        d = info.get(i, {})
        final = d.get("status") in FINAL_STATUSES
        nodes.append({"invocation_id": i, "task_id": d.get("task_id"), "status": d.get("status"),
                      "created_at": iso(d.get("created_at")), "updated_at": iso(d.get("updated_at")),
                      "duration_s": (d["updated_at"] - d["created_at"]).total_seconds() if final else None,
                      "is_final": final, "workflow_id": d.get("workflow_id"), "depth": nodes_depth[i]})
    return nodes


def tree_order(root: str, edges: list[dict], key) -> list[str]:
    """Depth-first from `root` along the edges that placed each node (its first edge), children by `key`."""
    kids: dict = {}
    placed = {root}
    for e in edges:
        if e["child"] not in placed:
            placed.add(e["child"])
            kids.setdefault(e["parent"], []).append(e["child"])
    out, stack = [], [root]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(sorted(kids.get(n, ()), key=key, reverse=True))
    return out


def tree(q, invocation_id: str, rng: TimeRange, *, max_nodes: int, max_depth: int,
         related_after_s: float, raw: Optional[list[dict]] = None) -> dict:
    """The family of an invocation whose time range is `rng` (`time_range`): {root_id, nodes, edges,
    truncated}. `raw`: its transition records in every app, when the caller read them (spares a read)."""
    walk = _Walk(q, invocation_id, rng, raw)
    root, seen = invocation_id, {invocation_id}
    for _ in range(max_depth * 4):
        parent = _parent(walk, root, related_after_s)
        if not parent or parent in seen:
            break
        seen.add(parent)
        root = parent
    # Children found by trace context exist only where a runner does not say parents (Celery): a
    # family whose root comes from rustvello or tasktrail.v1 needs no span join.
    by_trace = walk.flags(root)[1]
    root_rng = walk.range(root)
    start = root_rng.first - SLACK if root_rng else datetime.min
    nodes_depth, edges, truncated = _descendants(q, root, start, by_trace, max_nodes, max_depth, related_after_s)
    return {"root_id": root, "nodes": _nodes(q, nodes_depth, edges), "edges": edges, "truncated": truncated}
