"""The caches of the log: invocation_state (store/sql/0002, 0003) and runner_state (0004, 0005). The writer
folds each batch into them in the batch's own transaction; `rebuild` recomputes them from the log.
Only this module writes them."""
from __future__ import annotations

from typing import Iterable, Optional

import pyarrow as pa

import numpy as np
import pyarrow.compute as pc

from tasktrail.proto.history import RANK, settle
from tasktrail.proto.status import FINAL_STATUSES

from tasktrail.proto import history_batch

_RANK_STATUSES = pa.array(list(RANK), pa.string())
_FINAL = pa.array(sorted(FINAL_STATUSES), pa.string())
_RANK_VALUES = pa.array(list(RANK.values()) + [3], pa.int64())   # an unknown status ranks 3
# What the fold reads of an invocation's records, in arrival order (batch, then position in the batch).
HISTORY_COLUMNS = ("ts", "app_id", "invocation_id", "task_id", "status", "attempt", "seq", "record_id",
                   "runner_id", "worker_id", "source", "parent_invocation_id", "parent_event_id", "workflow_id",
                   "workflow_type")
_SELECT = ", ".join("epoch_us(ts) AS ts" if c == "ts" else c for c in HISTORY_COLUMNS)
# Invocations whose records are this close in time are read back in one statement.
_GAP_US = 3600 * 1_000_000
_STATE = pa.schema([
    ("app_id", pa.string()), ("invocation_id", pa.string()), ("task_id", pa.string()), ("status", pa.string()),
    ("status_key", pa.int64()), ("created_at", pa.timestamp("us")), ("updated_at", pa.timestamp("us")),
    ("started_at", pa.timestamp("us")), ("parent_invocation_id", pa.string()), ("parent_event_id", pa.string()),
    ("workflow_id", pa.string()), ("workflow_type", pa.string()), ("runner_id", pa.string()),
    ("worker_id", pa.string()), ("attempts", pa.int32()), ("first_ts", pa.timestamp("us")),
    ("last_ts", pa.timestamp("us"))])

_SETS = ", ".join(f"{f.name} = e.{f.name}" for f in _STATE if f.name not in ("app_id", "invocation_id"))
_UPSERT = """
    MERGE INTO invocation_state AS s USING (SELECT *, hash(invocation_id) AS id_hash FROM {src}) AS e
    ON s.id_hash = e.id_hash AND s.app_id = e.app_id AND s.invocation_id = e.invocation_id
    WHEN MATCHED THEN UPDATE SET {sets}
    WHEN NOT MATCHED THEN INSERT BY NAME"""


def _first(rows: list[dict], col: str):
    for r in rows:
        v = r.get(col)
        if v is not None:
            return v
    return None


def state_of(rows: list[dict]) -> Optional[tuple]:
    """One invocation_state row (in _STATE's column order, times as micros) from all of an invocation's
    records in arrival order: the current status and times are those of its settled history
    (proto/history.py), first-known facts are the first sent, the raw time range bounds reads."""
    hist = settle(rows)
    if not hist:
        return None
    last = hist[-1]
    started = next((h["ts"] for h in hist if h["status"] == "RUNNING"), None)
    raw = [r["ts"] for r in rows]
    return (last["app_id"], last["invocation_id"], _first(rows, "task_id"), last["status"],
            last["ts"] * 8 + RANK.get(last["status"], 3), hist[0]["ts"], last["ts"], started,
            _first(rows, "parent_invocation_id"), _first(rows, "parent_event_id"), _first(rows, "workflow_id"),
            _first(rows, "workflow_type"), last.get("runner_id"), last.get("worker_id"),
            sum(1 for h in hist if h["status"] == "RUNNING"), min(raw), max(raw))


def _state_table(states: list[tuple]) -> pa.Table:
    """invocation_state rows (tuples in _STATE's column order, times as micros) as an Arrow table."""
    return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(zip(*states), _STATE)], schema=_STATE)


def _upsert(con, states: list[tuple], new: bool = False) -> None:
    """Write these invocation_state rows; `new`: none of them is there yet (a plain INSERT, cheaper than
    MERGE)."""
    if states:
        _write_state(con, _state_table(states), new)


def _write_state(con, tbl: pa.Table, new: bool) -> None:
    """INSERT (`new`: none is there yet) or MERGE these invocation_state rows (an Arrow table of _STATE)."""
    con.register("tt_state_in", tbl)
    try:
        if new:
            con.execute("INSERT INTO invocation_state BY NAME SELECT *, hash(invocation_id) AS id_hash FROM tt_state_in")
        else:
            con.execute(_UPSERT.format(src="tt_state_in", sets=_SETS))
    finally:
        con.unregister("tt_state_in")


def read_histories(con, keys: Iterable[tuple], table: str = "transitions",
                   widen: Optional[dict] = None) -> dict[tuple, list[dict]]:
    """Every stored record of these (app_id, invocation_id) that invocation_state knows, in arrival order,
    as {key: [row dict, ts in micros]}. Reads are bounded by each invocation's raw time range, widened to
    `widen[key]` = (lo, hi) micros where given (records appended since it was folded); invocations far
    apart in time are read in separate statements, so the scan skips what lies between."""
    keys = list(keys)
    if not keys:
        return {}
    wanted = set(keys)
    # Key lists go in as Arrow (a Python list bound as a parameter costs ~0.3 ms per id here).
    con.register("tt_keys", pa.table({"invocation_id": pa.array([k[1] for k in keys], pa.string())}))
    try:
        known = [(a, i, lo, hi) for a, i, lo, hi in con.execute(
            "SELECT s.app_id, s.invocation_id, epoch_us(s.first_ts), epoch_us(s.last_ts) FROM invocation_state s "
            "SEMI JOIN tt_keys k ON s.id_hash = hash(k.invocation_id) AND s.invocation_id = k.invocation_id"
        ).fetchall() if (a, i) in wanted]
    finally:
        con.unregister("tt_keys")
    out: dict[tuple, list[dict]] = {}
    if not known:
        return out
    if widen:
        known = [(a, i, min(lo, widen[(a, i)][0]), max(hi, widen[(a, i)][1])) if (a, i) in widen else (a, i, lo, hi)
                 for a, i, lo, hi in known]
    known.sort(key=lambda k: k[2] if k[2] is not None else 0)
    clusters: list[list] = []
    for k in known:
        lo, hi = (k[2] or 0), (k[3] or 0)
        if clusters and lo - clusters[-1][1] <= _GAP_US:
            c = clusters[-1]
            c[1] = max(c[1], hi)
            c[2].append(k[1])
        else:
            clusters.append([lo, hi, [k[1]]])
    for lo_us, hi_us, cids in clusters:
        _read_into(out, con, table, lo_us, hi_us, cids, wanted)
    return out


def _read_into(out: dict, con, table: str, lo_us: int, hi_us: int, ids: list, wanted) -> None:
    """Append to out[key] the records of `ids` (those of `wanted` keys) in [lo_us, hi_us], arrival order."""
    con.register("tt_ids", pa.table({"invocation_id": pa.array(ids, pa.string())}))
    try:
        tbl = con.execute(
            f"SELECT {_SELECT} FROM {table} t SEMI JOIN tt_ids k ON t.invocation_id = k.invocation_id "
            f"WHERE t.ts BETWEEN make_timestamp(?) AND make_timestamp(?) ORDER BY t.batch, t.rowid",
            [lo_us, hi_us]).to_arrow_table()
    finally:
        con.unregister("tt_ids")
    cols = tbl.to_pydict()
    names = list(cols)
    for j in range(tbl.num_rows):
        d = {c: cols[c][j] for c in names}
        key = (d["app_id"], d["invocation_id"])
        if key in wanted:
            out.setdefault(key, []).append(d)


def fold_transitions(con, new: pa.Table, known=None, recent=None) -> tuple[pa.Table, dict]:
    """Fold one batch's transitions into invocation_state, in the transaction that appends them. Returns
    the rows to append — those whose record_id this invocation already holds (an at-least-once
    re-delivery) or that repeat one earlier in the batch are left out; call it before appending — and the
    updates of `recent` to apply once the batch commits.

    New invocations in plain order (nearly all) are summed up for the whole batch at once
    (proto/history_batch.py); the others get the full rule from all their records (`state_of`).
    `known` and `recent` (store/fold_cache.py, the writer's) spare the read of stored records: an id
    `known` never saw is new, a history `recent` holds is the stored one."""
    sel = new.select(list(HISTORY_COLUMNS))
    sel = sel.set_column(0, "ts", sel.column("ts").cast(pa.int64()))  # timestamp[us] -> micros
    grp = history_batch.group(sel)
    firsts = sel.select(["app_id", "invocation_id"]).take(pa.array(grp.first_row)).to_pydict()
    keys = list(zip(firsts["app_id"], firsts["invocation_id"]))
    maybe = known.maybe(firsts["invocation_id"]) if known is not None else None
    prior: dict[tuple, list[dict]] = {}
    ask = []
    for k, key in enumerate(keys):
        held = recent.get(key) if recent is not None else None
        if held is not None:
            prior[key] = held
        elif maybe is None or maybe[k]:
            ask.append(key)
    if ask:
        prior.update(read_histories(con, ask))
    quick = grp.plain.copy()
    for k, key in enumerate(keys):
        if key in prior:
            quick[k] = False
    updates: dict[tuple, Optional[list]] = {}
    if quick.any():
        which = np.nonzero(quick)[0]
        final = _insert_new(con, sel, grp, which)
        if recent is not None and not final.all():  # unfinished: their next records are on their way
            open_rows = np.nonzero(np.isin(grp.of_row, which[~final]))[0]
            for d in sel.take(pa.array(open_rows)).to_pylist():
                updates.setdefault((d["app_id"], d["invocation_id"]), []).append(d)
    keep = np.ones(new.num_rows, bool)
    if not quick.all():
        # The rest, one invocation at a time: its stored records and this batch's, under the full rule.
        slow = np.nonzero(~quick[grp.of_row])[0]
        cols = sel.take(pa.array(slow)).to_pydict()
        rows_of: dict[tuple, list[tuple[int, dict]]] = {}
        for j, i in enumerate(slow.tolist()):
            d = {c: cols[c][j] for c in HISTORY_COLUMNS}
            rows_of.setdefault((d["app_id"], d["invocation_id"]), []).append((i, d))
        states, new_states = [], []
        for key, rows in rows_of.items():
            old = prior.get(key, [])
            seen = {r["record_id"] for r in old if r["record_id"] is not None}
            fresh = []
            for i, d in rows:
                rid = d["record_id"]
                if rid is not None:
                    if rid in seen:
                        keep[i] = False
                        continue
                    seen.add(rid)
                fresh.append(d)
            if fresh:
                st = state_of(old + fresh)
                if st is not None:
                    (states if old else new_states).append(st)
                    updates[key] = None if st[3] in FINAL_STATUSES else old + fresh
        _upsert(con, new_states, new=True)
        _upsert(con, states)
    if known is not None:
        fresh_ids = [key[1] for key in keys if key not in prior]
        if fresh_ids:
            known.add(fresh_ids, con)
    return (new if keep.all() else new.filter(pa.array(keep))), updates


def _insert_new(con, sel: pa.Table, grp, which) -> np.ndarray:
    """INSERT the state of the invocations `which` (group numbers of `grp`, plain order, not yet in
    invocation_state) from their summaries, as columns: no Python value per record. Returns, per
    invocation of `which`, whether its status is final."""
    def rows(idx):
        return pa.array(idx[which])

    def known(col):
        idx = history_batch.first_known(sel.column(col), grp.of_row, grp.count)[which]
        return sel.column(col).take(pa.array(idx, mask=idx < 0))

    tail, head = rows(grp.tail), rows(grp.head)
    last_ts = sel.column("ts").take(tail)
    status = sel.column("status").take(tail)
    rank = pc.fill_null(pc.index_in(status, value_set=_RANK_STATUSES), len(_RANK_VALUES) - 1)
    started = grp.started[which]
    us = pa.timestamp("us")
    tbl = pa.table({
        "app_id": sel.column("app_id").take(tail), "invocation_id": sel.column("invocation_id").take(tail),
        "task_id": known("task_id"), "status": status,
        "status_key": pc.add(pc.multiply(last_ts, 8), pc.take(_RANK_VALUES, rank)),
        "created_at": sel.column("ts").take(head).cast(us), "updated_at": last_ts.cast(us),
        "started_at": pa.array(started, mask=started < 0).cast(us),
        "parent_invocation_id": known("parent_invocation_id"), "parent_event_id": known("parent_event_id"),
        "workflow_id": known("workflow_id"), "workflow_type": known("workflow_type"),
        "runner_id": sel.column("runner_id").take(tail), "worker_id": sel.column("worker_id").take(tail),
        "attempts": pa.array(grp.runs[which].astype("int32")),
        "first_ts": pa.array(grp.lo[which]).cast(us), "last_ts": pa.array(grp.hi[which]).cast(us)})
    _write_state(con, tbl, new=True)
    return pc.is_in(status, value_set=_FINAL).to_numpy(zero_copy_only=False)


def refold(con, ranges: dict[tuple, tuple]) -> int:
    """Recompute invocation_state for these (app_id, invocation_id) → (lo, hi) micros of their records
    appended since the last fold, from every record the log holds of them (a lake's folder: the records
    are already appended, maybe twice by two nodes). Returns how many."""
    keys = list(ranges)
    # New invocations are not in invocation_state yet: read them without its bounds.
    hist = read_histories(con, keys, widen=ranges)
    missing = [k for k in keys if k not in hist]
    if missing:
        lo, hi = min(ranges[k][0] for k in missing), max(ranges[k][1] for k in missing)
        _read_into(hist, con, "transitions", lo, hi, [k[1] for k in missing], set(missing))
    states = [st for st in (state_of(rows) for rows in hist.values()) if st is not None]
    _upsert(con, states)
    return len(states)


# One row per runner context from runner events and the transitions it (or its worker) stamped.
# Each descriptive field (class, parent, host, pid) keeps its most specific report, whatever the order
# reports arrive in: a NULL says nothing; a placeholder (what a process sends for a context it does not
# hold: pynenc's `Runner`, an empty host, pid 0) loses against any real value; between reports of the same
# kind the latest (by ts) wins, and the larger value breaks a tie of the same ts. The order is one BIGINT
# key per report (`_key`), kept beside the value (`<field>_key`), so a fold compares two integers and a
# rebuild takes the max of {key, value}: the two agree.
_PLACEHOLDERS = ("", "unknown", "none", "null", "?")
_PLACEHOLDER_CLASSES = ("runner", "baserunner")
_FIELDS = (("runner_class", "class_key"), ("parent_runner_id", "parent_key"), ("hostname", "hostname_key"),
           ("pid", "pid_key"))
# Transitions that say their context does the work (picked it up, ran it, or reported its outcome), not
# only submitted or cancelled it: `last_work` tells a runner from a client (query/anomalies.py).
_WORK = "('PENDING', 'PENDING_RECOVERY', 'RUNNING', 'RUNNING_RECOVERY', 'PAUSED', 'RETRY', 'SUCCESS', 'FAILED')"


def _key(col: str) -> str:
    """SQL: the order of one report of `col` at `ts`, a BIGINT: 2^62 for a real value (0 for a
    placeholder) plus its time in micros since 1970 (clamped to 0 .. 2^62 - 1: the log's times fit)."""
    if col == "pid":
        real = f"({col} > 0)"
    else:
        generic = _PLACEHOLDERS + (_PLACEHOLDER_CLASSES if col == "runner_class" else ())
        # list_contains, not `… IN (…)`: DuckDB plans the IN form inside an expression some ten times
        # slower (~10 ms a field), which the writer would pay on every batch.
        real = f"NOT list_contains([{', '.join(repr(p) for p in generic)}], lower(trim({col})))"
    return f"(({real})::BIGINT * 4611686018427387904 + least(greatest(epoch_us(ts), 0), 4611686018427387903))"


def _literal(sql: str) -> str:
    """`sql` inside a template that is str.format-ed later (its STRUCT braces doubled)."""
    return sql.replace("{", "{{").replace("}", "}}")


_RUNNERS = """
    SELECT app_id, runner_id, """ + ", ".join(f"{c}_best.v AS {c}, {c}_best.k AS {k}" for c, k in _FIELDS) + """,
           first_seen, last_lifecycle, last_heartbeat, stopped_at, started_at, last_event, last_transition,
           first_heartbeat, heartbeats, last_work
    FROM (
    SELECT app_id, runner_id, """ + _literal(", ".join(
        f"max({{'k': {_key(c)}, 'v': {c}}}) FILTER (WHERE {c} IS NOT NULL) AS {c}_best" for c, _ in _FIELDS)) + """,
           min(ts) FILTER (WHERE kind IS NOT NULL) AS first_seen,
           max(ts) FILTER (WHERE kind IS NOT NULL AND kind <> 'context') AS last_lifecycle,
           max(ts) FILTER (WHERE kind = 'heartbeat') AS last_heartbeat,
           max(ts) FILTER (WHERE kind = 'stopped') AS stopped_at,
           max(ts) FILTER (WHERE kind = 'started') AS started_at,
           max(ts) FILTER (WHERE kind IS NOT NULL) AS last_event,
           max(ts) FILTER (WHERE kind IS NULL) AS last_transition,
           min(ts) FILTER (WHERE kind = 'heartbeat') AS first_heartbeat,
           count(*) FILTER (WHERE kind = 'heartbeat') AS heartbeats,
           max(ts) FILTER (WHERE kind IS NULL AND status IN """ + _WORK + """) AS last_work
    FROM (SELECT app_id, runner_id, runner_class, parent_runner_id, hostname, pid, ts, kind, NULL AS status
          FROM {runner_events} WHERE {where}
          UNION ALL
          SELECT app_id, coalesce(worker_id, runner_id), NULL, NULL, NULL, NULL, ts, NULL, status
          FROM {transitions} WHERE {where} AND runner_id IS NOT NULL)
    GROUP BY app_id, runner_id)"""


def best_of(col: str) -> str:
    """SQL aggregate over runner_state rows (e.g. one runner id across apps): the most specific kept value
    of field `col` (runner_class, parent_runner_id, hostname or pid), by the fold's own order."""
    key = dict(_FIELDS)[col]
    return f"struct_extract(max({{'k': {key}, 'v': {col}}}) FILTER (WHERE {col} IS NOT NULL), 'v')"


# A batch's report replaces the kept one when its key is greater (or equal, with a greater value: the
# order of max({key, value}) in _RUNNERS).
_MERGE_RUNNERS = """
    MERGE INTO runner_state AS s USING ({aggregate}) AS e
    ON s.app_id = e.app_id AND s.runner_id = e.runner_id
    WHEN MATCHED THEN UPDATE SET
        """ + ",\n        ".join(
    f"{c} = CASE WHEN e.{k} > s.{k} OR s.{k} IS NULL OR (e.{k} = s.{k} AND e.{c} > s.{c}) THEN e.{c} "
    f"ELSE s.{c} END, {k} = greatest(e.{k}, s.{k})" for c, k in _FIELDS) + """,
        first_seen = least(s.first_seen, e.first_seen), last_lifecycle = greatest(s.last_lifecycle, e.last_lifecycle),
        last_heartbeat = greatest(s.last_heartbeat, e.last_heartbeat),
        stopped_at = greatest(s.stopped_at, e.stopped_at), started_at = greatest(s.started_at, e.started_at),
        last_event = greatest(s.last_event, e.last_event),
        last_transition = greatest(s.last_transition, e.last_transition),
        first_heartbeat = least(s.first_heartbeat, e.first_heartbeat),
        heartbeats = coalesce(s.heartbeats, 0) + e.heartbeats,
        last_work = greatest(s.last_work, e.last_work)
    WHEN NOT MATCHED THEN INSERT BY NAME"""


def fold_changes(con, catalog: str, start: int, end: int) -> None:
    """Fold the rows DuckLake snapshots start..end inserted into the caches (store/ducklake.py: the
    lake's writers only append; one folder keeps the caches)."""
    def changes(table):
        return (f"(SELECT * EXCLUDE (snapshot_id, rowid, change_type) FROM ducklake_table_changes("
                f"'{catalog}', 'main', '{table}', {int(start)}, {int(end)}) WHERE change_type = 'insert')")
    ranges = con.execute(f"SELECT app_id, invocation_id, epoch_us(min(ts)), epoch_us(max(ts)) "
                         f"FROM {changes('transitions')} GROUP BY ALL").fetchall()
    refold(con, {(a, i): (lo, hi) for a, i, lo, hi in ranges})
    con.execute(_MERGE_RUNNERS.format(aggregate=_RUNNERS.format(
        transitions=changes("transitions"), runner_events=changes("runner_events"), where="true")))


# Migrations that create or reshape the cache: the store rebuilds it once they are applied.
REBUILT_BY = ("0002_invocation_state", "0003_state_id_hash", "0004_runner_state", "0005_record_identity",
              "0006_runner_fields")

# A point lookup by id: `hash(?)` folds to a constant, compared with id_hash before the string.
BY_ID = "id_hash = hash(?::VARCHAR) AND invocation_id = ?"


def hash_is_current(con) -> bool:
    """False when stored id hashes disagree with this DuckDB's hash() (a new hash function)."""
    row = con.execute("SELECT bool_and(id_hash = hash(invocation_id)) FROM "
                      "(SELECT id_hash, invocation_id FROM invocation_state LIMIT 100)").fetchone()
    return row[0] is not False


def _rebuild_invocations(con, part_rows: int = 500_000) -> None:
    """Every invocation's state from its records (the same fold as the writer's), read in parts by id hash
    so memory stays bounded, inserted in creation order as the writer's folds leave it: zone maps on
    created_at then let the newest page of a list skip every older row group."""
    total = con.execute("SELECT count(*) FROM transitions").fetchone()[0]
    parts = max(1, -(-total // part_rows))
    con.execute("CREATE OR REPLACE TEMP TABLE tt_rebuild AS SELECT * EXCLUDE (id_hash) FROM invocation_state LIMIT 0")
    names = list(HISTORY_COLUMNS)
    for part in range(parts):
        cols = con.execute(f"SELECT {_SELECT} FROM transitions WHERE hash(invocation_id) % {parts} = {part} "
                           "ORDER BY app_id, invocation_id, batch, rowid").to_arrow_table().to_pydict()
        states: list[tuple] = []
        key, rows = None, []
        for i in range(len(cols["ts"])):
            d = {c: cols[c][i] for c in names}
            k = (d["app_id"], d["invocation_id"])
            if k != key:
                if rows:
                    states.append(state_of(rows))
                key, rows = k, []
            rows.append(d)
        if rows:
            states.append(state_of(rows))
        states = [st for st in states if st is not None]
        if states:
            con.register("tt_state_in", _state_table(states))
            con.execute("INSERT INTO tt_rebuild BY NAME SELECT * FROM tt_state_in")
            con.unregister("tt_state_in")
    con.execute("INSERT INTO invocation_state BY NAME SELECT *, hash(invocation_id) AS id_hash FROM tt_rebuild "
                "ORDER BY created_at")
    con.execute("DROP TABLE tt_rebuild")


def rebuild(con, *, also=None, checkpoint: bool = True) -> int:
    """Drop and recompute the caches from the log; returns the invocations it holds. `also(con)` runs in
    the same transaction (a lake records the snapshot the caches reflect)."""
    con.begin()
    try:
        con.execute("DELETE FROM invocation_state")
        _rebuild_invocations(con)
        con.execute("DELETE FROM runner_state")
        con.execute("INSERT INTO runner_state BY NAME " + _RUNNERS.format(transitions="transitions",
                                                                        runner_events="runner_events", where="true"))
        n = con.execute("SELECT count(*) FROM invocation_state").fetchone()[0]
        if also is not None:
            also(con)
        con.commit()
    except Exception:
        con.rollback()
        raise
    if checkpoint:
        con.execute("CHECKPOINT")  # the deleted rows' space goes back to the file now, not at some later checkpoint
    return n
