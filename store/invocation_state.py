"""The invocation_state cache (store/sql/0002, 0003, 0005): one row per invocation, its current state and
times as its settled history has them (proto/history.py), and the raw time range of its records, which
bounds every per-invocation read. This module holds the cache's shape, the one rule that makes a row
from an invocation's records (`state_of`), its writes, and the read-back of stored records the folds
need; store/invocation_fold.py folds batches into it.
"""
from __future__ import annotations

from typing import Iterable, Optional

import pyarrow as pa

from tasktrail.proto.history import settle
from tasktrail.proto.status import RANK_SCALE, STATUS_RANK, UNKNOWN_RANK

from . import invocation_keys, status_counts

# What the fold reads of an invocation's records, in arrival order (batch, then position in the batch).
HISTORY_COLUMNS = ("ts", "app_id", "invocation_id", "task_id", "status", "attempt", "seq", "record_id",
                   "runner_id", "worker_id", "source", "parent_invocation_id", "parent_event_id", "workflow_id",
                   "workflow_type")
HISTORY_SELECT = ", ".join("epoch_us(ts) AS ts" if c == "ts" else c for c in HISTORY_COLUMNS)
# Invocations whose records are this close in time are read back in one statement.
_GAP_US = 3600 * 1_000_000
# invocation_state's columns (id_hash aside: computed as the rows are written), in the order of the rows
# `state_of` returns; tests/test_layers.py holds them to the table the migrations make.
STATE_SCHEMA = pa.schema([
    ("app_id", pa.string()), ("invocation_id", pa.string()), ("task_id", pa.string()), ("status", pa.string()),
    ("status_key", pa.int64()), ("created_at", pa.timestamp("us")), ("updated_at", pa.timestamp("us")),
    ("started_at", pa.timestamp("us")), ("parent_invocation_id", pa.string()), ("parent_event_id", pa.string()),
    ("workflow_id", pa.string()), ("workflow_type", pa.string()), ("runner_id", pa.string()),
    ("worker_id", pa.string()), ("attempts", pa.int32()), ("first_ts", pa.timestamp("us")),
    ("last_ts", pa.timestamp("us"))])

_SETS = ", ".join(f"{f.name} = e.{f.name}" for f in STATE_SCHEMA if f.name not in ("app_id", "invocation_id"))
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
    """One invocation_state row (in STATE_SCHEMA's column order, times as micros) from all of an invocation's
    records in arrival order: the current status and times are those of its settled history
    (proto/history.py), first-known facts are the first sent, the raw time range bounds reads."""
    hist = settle(rows)
    if not hist:
        return None
    last = hist[-1]
    started = next((h["ts"] for h in hist if h["status"] == "RUNNING"), None)
    raw = [r["ts"] for r in rows]
    return (last["app_id"], last["invocation_id"], _first(rows, "task_id"), last["status"],
            last["ts"] * RANK_SCALE + STATUS_RANK.get(last["status"], UNKNOWN_RANK), hist[0]["ts"], last["ts"],
            started, _first(rows, "parent_invocation_id"), _first(rows, "parent_event_id"),
            _first(rows, "workflow_id"), _first(rows, "workflow_type"), last.get("runner_id"),
            last.get("worker_id"), sum(1 for h in hist if h["status"] == "RUNNING"), min(raw), max(raw))


def state_table(states: list[tuple]) -> pa.Table:
    """invocation_state rows (tuples in STATE_SCHEMA's column order, times as micros) as an Arrow table."""
    return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(zip(*states), STATE_SCHEMA)],
                                schema=STATE_SCHEMA)


def upsert(con, states: list[tuple], new: bool = False, gone: Iterable[tuple] = ()) -> None:
    """Write these invocation_state rows; `new`: none of them is there yet (a plain INSERT, cheaper than
    MERGE); `gone`: the (app_id, invocation_id, task_id, status) of those that were there, as they were
    (status_counts)."""
    if states:
        write_state(con, state_table(states), new, gone)


def write_state(con, tbl: pa.Table, new: bool, gone: Iterable[tuple] = ()) -> None:
    """INSERT (`new`: none is there yet) or MERGE these invocation_state rows (an Arrow table of STATE_SCHEMA),
    append their keys (store/invocation_keys.py) and count them (store/status_counts.py; `gone`: the
    (app_id, invocation_id, task_id, status) the rows that were there had before)."""
    con.register("tt_state_in", tbl)
    try:
        if new:
            con.execute("INSERT INTO invocation_state BY NAME SELECT *, hash(invocation_id) AS id_hash FROM tt_state_in")
        else:
            con.execute(_UPSERT.format(src="tt_state_in", sets=_SETS))
        invocation_keys.append(con, "tt_state_in")  # where reads find these rows (their created_at)
        status_counts.apply(con, tbl, gone)
    finally:
        con.unregister("tt_state_in")


def read_histories(con, keys: Iterable[tuple], table: str = "transitions",
                   widen: Optional[dict] = None, states: Optional[dict] = None) -> dict[tuple, list[dict]]:
    """Every stored record of these (app_id, invocation_id) that invocation_state knows, in arrival order,
    as {key: [row dict, ts in micros]}; `states` (when given) gets {key: (task_id, status)} of their state
    rows. Reads are bounded by each invocation's raw time range, widened to
    `widen[key]` = (lo, hi) micros where given (records appended since it was folded); invocations far
    apart in time are read in separate statements, so the scan skips what lies between."""
    keys = list(keys)
    if not keys:
        return {}
    wanted = set(keys)
    # Key lists go in as Arrow (a Python list bound as a parameter costs ~0.3 ms per id here).
    con.register("tt_keys", pa.table({"invocation_id": pa.array([k[1] for k in keys], pa.string())}))
    try:
        rows = [r for r in con.execute(
            "SELECT s.app_id, s.invocation_id, epoch_us(s.first_ts), epoch_us(s.last_ts), s.task_id, s.status "
            "FROM invocation_state s "
            "SEMI JOIN tt_keys k ON s.id_hash = hash(k.invocation_id) AND s.invocation_id = k.invocation_id"
        ).fetchall() if (r[0], r[1]) in wanted]
    finally:
        con.unregister("tt_keys")
    known = [r[:4] for r in rows]
    if states is not None:
        states.update({(r[0], r[1]): (r[4], r[5]) for r in rows})
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
        read_into(out, con, table, lo_us, hi_us, cids, wanted)
    return out


def read_into(out: dict, con, table: str, lo_us: int, hi_us: int, ids: list, wanted) -> None:
    """Append to out[key] the records of `ids` (those of `wanted` keys) in [lo_us, hi_us], arrival order."""
    con.register("tt_ids", pa.table({"invocation_id": pa.array(ids, pa.string())}))
    try:
        tbl = con.execute(
            f"SELECT {HISTORY_SELECT} FROM {table} t SEMI JOIN tt_ids k ON t.invocation_id = k.invocation_id "
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
