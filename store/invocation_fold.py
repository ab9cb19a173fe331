"""The writer's fold of each batch's transitions into invocation_state (store/invocation_state.py), in the
transaction that appends them, and a lake folder's refold of invocations from the records they hold.

New invocations in plain order (nearly all) are summed up for the whole batch at once
(proto/history_batch.py) and inserted as columns; the others get the full rule from all their records
(`state_of`). The writer's memory (store/fold_cache.py) spares the read of stored records: an id
`known` never saw is new, a history `recent` holds is the stored one.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasktrail.proto import history_batch
from tasktrail.proto.status import FINAL_STATUSES, RANK_SCALE, STATUS_RANK, UNKNOWN_RANK

from .invocation_state import HISTORY_COLUMNS, read_histories, read_into, state_of, upsert, write_state

_RANK_STATUSES = pa.array(list(STATUS_RANK), pa.string())
_FINAL = pa.array(sorted(FINAL_STATUSES), pa.string())
_RANK_VALUES = pa.array(list(STATUS_RANK.values()) + [UNKNOWN_RANK], pa.int64())   # the last: a status not known


def fold_transitions(con, new: pa.Table, known=None, recent=None) -> tuple[pa.Table, dict]:
    """Fold one batch's transitions into invocation_state, in the transaction that appends them. Returns
    the rows to append — those whose record_id this invocation already holds (an at-least-once
    re-delivery) or that repeat one earlier in the batch are left out; call it before appending — and the
    updates of `recent` to apply once the batch commits (see the module's docstring)."""
    sel = new.select(list(HISTORY_COLUMNS))
    sel = sel.set_column(0, "ts", sel.column("ts").cast(pa.int64()))  # timestamp[us] -> micros
    grp = history_batch.group(sel)
    firsts = sel.select(["app_id", "invocation_id"]).take(pa.array(grp.first_row)).to_pydict()
    keys = list(zip(firsts["app_id"], firsts["invocation_id"]))
    prior, states = _stored_histories(con, keys, firsts["invocation_id"], known, recent)
    quick = grp.plain.copy()
    for k, key in enumerate(keys):
        if key in prior:
            quick[k] = False
    updates: dict[tuple, Optional[list]] = {}
    if quick.any():
        _fold_new(con, sel, grp, quick, updates if recent is not None else None)
    keep = np.ones(new.num_rows, bool)
    if not quick.all():
        _fold_rest(con, sel, grp, quick, prior, states, keep, updates)
    if known is not None:
        fresh_ids = [key[1] for key in keys if key not in prior]
        if fresh_ids:
            known.add(fresh_ids, con)
    return (new if keep.all() else new.filter(pa.array(keep))), updates


def _stored_histories(con, keys: list[tuple], ids: list, known, recent) -> tuple[dict, dict]:
    """({key: its records} and {key: (task_id, status) of its state row}) of the invocations among `keys`
    that invocation_state already holds: from `recent` where it has them, else read back — except for ids
    `known` never saw (new: nothing stored)."""
    maybe = known.maybe(ids) if known is not None else None
    prior: dict[tuple, list[dict]] = {}
    states: dict[tuple, tuple] = {}
    ask = []
    for k, key in enumerate(keys):
        held = recent.get(key) if recent is not None else None
        if held is not None:
            prior[key], states[key] = held
        elif maybe is None or maybe[k]:
            ask.append(key)
    if ask:
        prior.update(read_histories(con, ask, states=states))
    return prior, states


def _fold_new(con, sel: pa.Table, grp, quick: np.ndarray, updates: Optional[dict]) -> None:
    """Insert the state of the new invocations plain order settles (`quick`), as columns; with `updates`
    (the writer keeps recent histories), note the records and state of those not finished."""
    which = np.nonzero(quick)[0]
    final, tbl = _insert_new(con, sel, grp, which)
    if updates is not None and not final.all():  # unfinished: their next records are on their way
        open_rows = np.nonzero(np.isin(grp.of_row, which[~final]))[0]
        hist: dict[tuple, list] = {}
        for d in sel.take(pa.array(open_rows)).to_pylist():
            hist.setdefault((d["app_id"], d["invocation_id"]), []).append(d)
        left = tbl.filter(pa.array(~final)).select(["app_id", "invocation_id", "task_id", "status"]).to_pydict()
        for a, i, t, st in zip(*left.values()):
            updates[(a, i)] = (hist[(a, i)], (t, st))


def _fold_rest(con, sel: pa.Table, grp, quick: np.ndarray, prior: dict, prior_states: dict, keep: np.ndarray,
               updates: dict) -> None:
    """The rest, one invocation at a time: its stored records and this batch's, under the full rule.
    A record whose record_id the invocation already holds is marked off in `keep`; `prior_states` holds the
    (task_id, status) of the stored ones' state rows (what status_counts uncounts)."""
    slow = np.nonzero(~quick[grp.of_row])[0]
    cols = sel.take(pa.array(slow)).to_pydict()
    rows_of: dict[tuple, list[tuple[int, dict]]] = {}
    for j, i in enumerate(slow.tolist()):
        d = {c: cols[c][j] for c in HISTORY_COLUMNS}
        rows_of.setdefault((d["app_id"], d["invocation_id"]), []).append((i, d))
    states, new_states, gone = [], [], []
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
                if old:
                    states.append(st)
                    was = prior_states.get(key) or state_of(old)[2:4]
                    gone.append((*key, *was))
                else:
                    new_states.append(st)
                updates[key] = None if st[3] in FINAL_STATUSES else (old + fresh, (st[2], st[3]))
    upsert(con, new_states, new=True)
    upsert(con, states, gone=gone)


def _insert_new(con, sel: pa.Table, grp, which) -> tuple[np.ndarray, pa.Table]:
    """INSERT the state of the invocations `which` (group numbers of `grp`, plain order, not yet in
    invocation_state) from their summaries, as columns: no Python value per record. Returns (per
    invocation of `which`, whether its status is final; the rows inserted)."""
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
        "status_key": pc.add(pc.multiply(last_ts, RANK_SCALE), pc.take(_RANK_VALUES, rank)),
        "created_at": sel.column("ts").take(head).cast(us), "updated_at": last_ts.cast(us),
        "started_at": pa.array(started, mask=started < 0).cast(us),
        "parent_invocation_id": known("parent_invocation_id"), "parent_event_id": known("parent_event_id"),
        "workflow_id": known("workflow_id"), "workflow_type": known("workflow_type"),
        "runner_id": sel.column("runner_id").take(tail), "worker_id": sel.column("worker_id").take(tail),
        "attempts": pa.array(grp.runs[which].astype("int32")),
        "first_ts": pa.array(grp.lo[which]).cast(us), "last_ts": pa.array(grp.hi[which]).cast(us)})
    write_state(con, tbl, new=True)
    return pc.is_in(status, value_set=_FINAL).to_numpy(zero_copy_only=False), tbl


def refold(con, ranges: dict[tuple, tuple]) -> int:
    """Recompute invocation_state for these (app_id, invocation_id) → (lo, hi) micros of their records
    appended since the last fold, from every record the log holds of them (a lake's folder: the records
    are already appended, maybe twice by two nodes). Returns how many."""
    keys = list(ranges)
    # New invocations are not in invocation_state yet: read them without its bounds.
    was: dict[tuple, tuple] = {}
    hist = read_histories(con, keys, widen=ranges, states=was)
    missing = [k for k in keys if k not in hist]
    if missing:
        lo, hi = min(ranges[k][0] for k in missing), max(ranges[k][1] for k in missing)
        read_into(hist, con, "transitions", lo, hi, [k[1] for k in missing], set(missing))
    states = [st for st in (state_of(rows) for rows in hist.values()) if st is not None]
    upsert(con, states, gone=[(st[0], st[1], *was[(st[0], st[1])]) for st in states if (st[0], st[1]) in was])
    return len(states)
