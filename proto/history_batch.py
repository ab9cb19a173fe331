"""The plain-order path of the history rule (proto/history.py), for every invocation of a batch at once.

Nearly every invocation's records, sorted by (time, lifecycle rank, arrival), already keep every rule of
`settle`: then that order is its history, and `quick_summary` says what the fold needs. Deciding that one
invocation at a time in Python cost the writer ~70 µs an invocation; here the same decision and summary
are a few numpy operations over the whole batch (~1 ms for 4,000 records). Invocations it cannot decide —
more than one REGISTERED, FAILED with RETRY, repeated record ids, more than MAX_CAUSAL records, or a rule
that plain order breaks — are left to the per-invocation path, which applies the full rule.
tests/test_history_batch.py holds this to `plain_order` / `quick_summary` on random batches.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .history import MAX_CAUSAL
from .status import FINAL_STATUSES, RANK_SCALE, STATUS_RANK, UNKNOWN_RANK

_STATUSES = pa.array(list(STATUS_RANK), pa.string())
_RANKS = np.array(list(STATUS_RANK.values()) + [UNKNOWN_RANK], dtype=np.int64)   # the last: a status not known
_CODE = {s: i for i, s in enumerate(STATUS_RANK)}
_FINAL = np.array([_CODE[s] for s in FINAL_STATUSES], dtype=np.int64)
# > (any int32 attempt + 2^31) * RANK_SCALE + rank: one group's values never reach the next's
_ATTEMPT_SPAN = 1 << 36


class Groups(NamedTuple):
    """A batch's transitions grouped by invocation; arrays are indexed by group (0 .. count - 1) or by row."""
    count: int
    of_row: np.ndarray        # row -> its group
    first_row: np.ndarray     # group -> a row of it (its first in arrival order): where its key is read
    plain: np.ndarray         # group -> bool: plain order keeps every rule (the summary below is its state)
    head: np.ndarray          # group -> row of its first record in plain order
    tail: np.ndarray          # group -> row of its last record in plain order (its current status)
    started: np.ndarray       # group -> ts (micros) of its first RUNNING in plain order, -1 when none
    runs: np.ndarray          # group -> number of RUNNING records
    lo: np.ndarray            # group -> smallest raw ts (micros)
    hi: np.ndarray            # group -> greatest raw ts (micros)
    order: np.ndarray         # every row, grouped (groups in order of first arrival), each group in plain order


def _codes(col) -> np.ndarray:
    """Integer codes of a string column (nulls get a code of their own)."""
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks != 1 else enc.chunk(0)
    return enc.indices.fill_null(len(enc.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)


def _blank_is_null(col):
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def _np(col, fill) -> np.ndarray:
    return pc.fill_null(col, fill).to_numpy(zero_copy_only=False)


def _first_per_group(values_sorted_groups: np.ndarray, positions: np.ndarray) -> tuple:
    """(groups, positions of their first entry) for entries in `positions` whose groups are given in order."""
    groups, first = np.unique(values_sorted_groups, return_index=True)
    return groups, positions[first]


def group(t: pa.Table) -> Groups:
    """Group `t` (transitions with ts as int64 micros, in arrival order) by (app_id, invocation_id) (by
    invocation_id alone when `t` has no app_id) and
    decide, per group, whether plain order is its settled order (see the module's docstring)."""
    n = t.num_rows
    key = t.column("invocation_id")
    if "app_id" in t.column_names:
        key = pc.binary_join_element_wise(t.column("app_id"), key, "\x00")
    g = _codes(key)
    count = int(g.max()) + 1 if n else 0
    ts = _np(t.column("ts"), 0).astype(np.int64)
    code = _np(pc.index_in(t.column("status"), value_set=_STATUSES), len(_STATUSES)).astype(np.int64)
    rank = _RANKS[code]
    bad = _undecided(t, g, code, count)
    o = np.lexsort((np.arange(n), rank, ts, g))
    gs, tss = g[o], ts[o]
    first = np.ones(n, bool)
    first[1:] = gs[1:] != gs[:-1]
    last = np.ones(n, bool)
    last[:-1] = gs[1:] != gs[:-1]
    bad[gs[_out_of_rule(t, o, gs, first, code, rank)]] = True
    _mark_sender_breaks(t, o, gs, tss, bad)

    head, tail = o[first], o[last]
    is_run = code == _CODE["RUNNING"]
    started = np.full(count, -1, np.int64)
    runpos = np.nonzero(is_run[o])[0]
    if len(runpos):
        grp, pos = _first_per_group(gs[runpos], runpos)
        started[grp] = tss[pos]
    first_row = np.zeros(count, np.int64)
    u, idx = np.unique(g, return_index=True)
    first_row[u] = idx
    return Groups(count, g, first_row, ~bad, head, tail, started,
                  np.bincount(g, weights=is_run, minlength=count).astype(np.int64), tss[first], tss[last], o)


def _undecided(t: pa.Table, g: np.ndarray, code: np.ndarray, count: int) -> np.ndarray:
    """group -> True where the plain path cannot decide at all: more than one REGISTERED, FAILED with
    RETRY, more than MAX_CAUSAL records, or the same record id twice."""
    n = t.num_rows
    bad = np.bincount(g, weights=code == _CODE["REGISTERED"], minlength=count) > 1
    bad |= (np.bincount(g, weights=code == _CODE["FAILED"], minlength=count) > 0) & \
           (np.bincount(g, weights=code == _CODE["RETRY"], minlength=count) > 0)
    bad |= np.bincount(g, minlength=count) > MAX_CAUSAL
    rid = t.column("record_id")
    if rid.null_count < n:  # the same record id twice in one invocation
        rcode = _codes(rid)
        has = _np(pc.is_valid(rid), False).astype(bool)
        pair = g[has] * (len(rcode) + 1) + rcode[has]
        uniq, seen = np.unique(pair, return_counts=True)
        if (seen > 1).any():
            bad[(uniq[seen > 1] // (len(rcode) + 1))] = True
    return bad


def _out_of_rule(t: pa.Table, o: np.ndarray, gs: np.ndarray, first: np.ndarray, code: np.ndarray,
                 rank: np.ndarray) -> np.ndarray:
    """Positions of plain order `o` (groups `gs`, each group's first position `first`) where a record
    breaks the status machine: a registration not first, a non-final record after a final one, an
    attempt's record before an earlier stage's."""
    n = len(o)
    is_reg = code == _CODE["REGISTERED"]
    viol = is_reg[o] & ~first                      # the registration is not first
    term = np.isin(code, _FINAL)[o]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    csum = np.cumsum(term) - term                  # terminal rows before each position (exclusive)
    viol |= ~term & ((csum - csum[start]) > 0)     # a non-final record after a final one
    attempt = t.column("attempt")
    elig = (_np(pc.is_valid(attempt), False).astype(bool) & ~is_reg)[o]
    v = (_np(attempt, 0).astype(np.int64)[o] + (1 << 31)) * RANK_SCALE + rank[o]
    keyed = gs * _ATTEMPT_SPAN + np.where(elig, v, -1)
    prev = np.empty(n, np.int64)
    if n:
        prev[0] = 0
        prev[1:] = np.maximum.accumulate(keyed)[:-1]
    prev = np.where(first, gs * _ATTEMPT_SPAN - 1, prev)
    viol |= elig & ~term & (keyed < prev)          # an attempt's record before an earlier stage's
    return viol


def _mark_sender_breaks(t: pa.Table, o: np.ndarray, gs: np.ndarray, tss: np.ndarray, bad: np.ndarray) -> None:
    """Mark in `bad` the groups where plain order `o` breaks one sender's own order: its seq where sent,
    else its arrival among equal times."""
    sender = _codes(pc.coalesce(_blank_is_null(t.column("worker_id")), _blank_is_null(t.column("runner_id")),
                                _blank_is_null(t.column("source"))))[o]
    seq_col = t.column("seq")
    has_seq = _np(pc.is_valid(seq_col), False).astype(bool)[o]
    seq = _np(seq_col, 0).astype(np.int64)[o]
    arr = o
    for subset in (has_seq, ~has_seq):
        p = np.nonzero(subset)[0]
        if len(p) < 2:
            continue
        q = p[np.lexsort((p, sender[p], gs[p]))]
        same = (gs[q][1:] == gs[q][:-1]) & (sender[q][1:] == sender[q][:-1])
        if subset is has_seq:
            broken = same & (seq[q][1:] < seq[q][:-1])
        else:
            broken = same & (tss[q][1:] == tss[q][:-1]) & (arr[q][1:] < arr[q][:-1])
        bad[gs[q][1:][broken]] = True


def first_known(col, g: np.ndarray, count: int) -> np.ndarray:
    """group -> row of the first non-null value of `col` in arrival order, -1 when it has none."""
    out = np.full(count, -1, np.int64)
    rows = np.nonzero(_np(pc.is_valid(col), False).astype(bool))[0]
    if len(rows):
        u, idx = np.unique(g[rows], return_index=True)
        out[u] = rows[idx]
    return out
