"""The one rule that turns an invocation's status records into its history and current status.

Records of one invocation arrive from several processes and hosts, more than once, with clocks that
disagree and timestamps that collide. `settle` decides, for every surface that shows an invocation
(its history and detail, the list and the invocation_state cache, /metrics, the timeline):

1. **Once.** Records with the same identity (`record_id`: the event id a runner sends, else the
   span's or the record's content identity) count once; the first arrival is kept.
2. **Causality first.** An order is a topological sort under the status machine of pynenc
   (reference §1): the first registration goes before everything else; within known attempts a
   start goes before its outcome and every record of attempt n goes before attempt n+1's; a final
   status (SUCCESS, CONCURRENCY_CONTROLLED_FINAL, a FAILED that no RETRY of its attempt follows) goes
   after every other record; one sender's records keep the sender's own `seq` (without one, records
   of one sender that share a timestamp keep the order they arrived in).
3. **Wall-clock time only inside that**: among the records free to go next, the earliest (on the
   sender's clock as adjusted so far), then the lifecycle rank, then arrival.
4. **Adjusted times.** Walking that order, a record that reads earlier than the one before it is
   moved forward to it, and so is every later record of the same sender (a clock behind by d is
   behind by d for all its records, as Jaeger's clock-skew adjuster assumes), so durations are never
   negative and one sender's own durations are kept. Each moved record says by how much.
5. **Readings of the runners' dialects** (read-time, never written back): rustvello's FAILED that its
   RETRY follows reads as that RETRY; a task sent again under the same id (Celery re-sends a task it
   retries) reads as PENDING after the outcome it follows; previous_status is filled in.

Times are integer microseconds since the epoch (UTC). Pure Python; of ours it imports only the status
model (proto/status.py: which statuses are final, and their rank). The store's fold and the query layer's
reads both call it.
"""
from __future__ import annotations

import heapq
from typing import Any, Optional

from .status import FINAL_STATUSES as FINAL, STATUS_RANK as RANK, UNKNOWN_RANK

_OUTCOMES = frozenset({"RETRY", "SUCCESS", "FAILED", "KILLED"})
# Past this many records an invocation is ordered by (time, rank, arrival) alone: the sort is O(n²).
MAX_CAUSAL = 400


def once(rows: list[dict]) -> list[dict]:
    """`rows` (in arrival order) without later copies of a record_id; rows without one are kept."""
    seen: set = set()
    out = []
    for r in rows:
        rid = r.get("record_id")
        if rid is not None:
            if rid in seen:
                continue
            seen.add(rid)
        out.append(r)
    return out


def sender(r: dict) -> Any:
    """Who sent a record, for its own order and clock: the acting context, else its runner, else the dialect."""
    return r.get("worker_id") or r.get("runner_id") or r.get("source")


def _terminal(rows: list[dict]) -> list[bool]:
    """Which rows are final outcomes that must come last: SUCCESS and CONCURRENCY_CONTROLLED_FINAL
    always, FAILED unless a RETRY of the same attempt exists (rustvello's retried attempts)."""
    retried = {r.get("attempt") for r in rows if r["status"] == "RETRY"}
    out = []
    for r in rows:
        s = r["status"]
        if s == "FAILED":
            a = r.get("attempt")
            out.append(not (a in retried or (a is None and retried) or (None in retried)))
        else:
            out.append(s in FINAL)
    return out


def causal_order(rows: list[dict]) -> list[tuple[int, int]]:
    """The order of `rows` (dicts with ts (micros), status, attempt, seq, runner_id, worker_id; given in
    arrival order) as [(index, adjusted ts micros)], oldest first. See the module's rules 2-4."""
    n = len(rows)
    if n == 0:
        return []
    if n == 1:
        return [(0, int(rows[0]["ts"]))]
    ts, rank, status, attempt, seq, senders = _columns(rows)
    order = sorted(range(n), key=lambda i: (ts[i], rank[i], i))
    if n > MAX_CAUSAL:
        return _adjust(order, ts, senders)
    terminal = _terminal(rows)
    if status.count("REGISTERED") <= 1 and _keeps_the_rules(order, ts, status, attempt, seq, senders, terminal, rank):
        return [(i, ts[i]) for i in order]  # what the full sort below would give, without its O(n²)
    preds = _predecessors(ts, rank, status, attempt, seq, senders, terminal)
    return _topological(preds, ts, rank, senders)


def _columns(rows: list[dict]) -> tuple[list, list, list, list, list, list]:
    """(ts, rank, status, attempt, seq, sender) of `rows`, as parallel lists."""
    ts, rank, status, attempt, seq, senders = [], [], [], [], [], []
    for r in rows:
        ts.append(int(r["ts"]))
        st = r["status"]
        status.append(st)
        rank.append(RANK.get(st, UNKNOWN_RANK))
        attempt.append(r.get("attempt"))
        seq.append(r.get("seq"))
        senders.append(sender(r))
    return ts, rank, status, attempt, seq, senders


def _predecessors(ts, rank, status, attempt, seq, senders, terminal) -> list[set]:
    """For each row, the rows that must come before it (the module's rule 2)."""
    n = len(ts)
    regs = [i for i in range(n) if status[i] == "REGISTERED"]
    first_reg = min(regs, key=lambda i: (ts[i], i)) if regs else None
    # A registration after the first is a re-send from inside a running attempt (Celery retries so): it
    # follows the start it was sent during, and the next attempt follows it.
    resent: dict[int, int] = {}
    for i in regs:
        if i != first_reg:
            runs = [j for j in range(n) if status[j] == "RUNNING" and ts[j] <= ts[i]]
            if runs:
                resent[i] = max(runs, key=lambda j: (ts[j], j))
    preds: list[set] = [set() for _ in range(n)]
    for i in range(n):
        p = preds[i]
        if first_reg is not None and i != first_reg:
            p.add(first_reg)
        ai, si = attempt[i], senders[i]
        for j in range(n):
            if j == i:
                continue
            if terminal[i] and not terminal[j]:
                p.add(j)
                continue
            if terminal[j]:
                continue
            aj = attempt[j]
            if ai is not None and aj is not None and status[j] != "REGISTERED" and \
                    (aj < ai or (aj == ai and rank[j] < rank[i])):
                p.add(j)
            elif senders[j] == si:
                if seq[i] is not None and seq[j] is not None:
                    if seq[j] < seq[i]:
                        p.add(j)
                elif ts[j] == ts[i] and j < i:  # one clock tick: the order it was sent in
                    p.add(j)
        if i in resent:
            p.add(resent[i])
        p.discard(i)
    for i, j in resent.items():
        if attempt[j] is not None:
            for k in range(n):
                if attempt[k] is not None and attempt[k] > attempt[j] and status[k] != "REGISTERED":
                    preds[k].add(i)
    return preds


def _topological(preds: list[set], ts, rank, senders) -> list[tuple[int, int]]:
    """Kahn's sort of the rows under `preds`; among the free rows the earliest on its sender's adjusted
    clock goes first (rules 3 and 4)."""
    n = len(ts)
    waiting = [len(p) for p in preds]
    succ: list[list] = [[] for _ in range(n)]
    for i, p in enumerate(preds):
        for j in p:
            succ[j].append(i)
    shift: dict = {}
    heap = [(ts[i], rank[i], i) for i in range(n) if waiting[i] == 0]
    heapq.heapify(heap)
    done = [False] * n
    out: list[tuple[int, int]] = []
    last = None
    while len(out) < n:
        i = None
        while heap:
            _, _, k = heapq.heappop(heap)
            if not done[k]:
                # Its key may be stale (its sender's clock was adjusted since): re-check.
                key = (ts[k] + shift.get(senders[k], 0), rank[k], k)
                if heap and key > heap[0] and heap[0][2] != k:
                    heapq.heappush(heap, key)
                    continue
                i = k
                break
        if i is None:  # contradictory constraints (a seq against an attempt): the earliest left goes
            i = min((k for k in range(n) if not done[k]),
                    key=lambda k: (ts[k] + shift.get(senders[k], 0), rank[k], k))
        done[i] = True
        last = _place(ts[i], senders[i], shift, last)
        out.append((i, last))
        for k in succ[i]:
            waiting[k] -= 1
            if waiting[k] == 0 and not done[k]:
                heapq.heappush(heap, (ts[k] + shift.get(senders[k], 0), rank[k], k))
    return out


def _keeps_the_rules(order, ts, status, attempt, seq, senders, terminal, rank) -> bool:
    """Whether plain (time, rank, arrival) order already meets every rule of `causal_order` (nearly every
    history: one clock, distinct or lifecycle-ordered times); then it is the causal order."""
    first_reg = None
    for i in order:
        if status[i] == "REGISTERED":
            first_reg = i
            break
    if first_reg is not None and order[0] != first_reg:
        return False
    seen_terminal = False
    last_attempt = None     # (attempt, rank) of the latest row with a known attempt
    last_seq: dict = {}
    last_tick: dict = {}    # sender -> (ts, arrival) of its latest row without seq
    for i in order:
        if terminal[i]:
            seen_terminal = True
        elif seen_terminal:
            return False
        a = attempt[i]
        if a is not None and status[i] != "REGISTERED":
            if last_attempt is not None and (a, rank[i]) < last_attempt and not terminal[i]:
                return False
            if last_attempt is None or (a, rank[i]) > last_attempt:
                last_attempt = (a, rank[i])
        sd = senders[i]
        if seq[i] is not None:
            if sd in last_seq and seq[i] < last_seq[sd]:
                return False
            last_seq[sd] = seq[i]
        else:
            prev = last_tick.get(sd)
            if prev is not None and prev[0] == ts[i] and prev[1] > i:
                return False
            last_tick[sd] = (ts[i], i)
    return True


def _place(ts_i: int, sender, shift: dict, last: Optional[int]) -> int:
    """The time a record is shown at: its own plus its sender's shift so far, moved forward to `last` when it
    reads earlier — and its sender's later records with it (the shift grows by as much)."""
    t = ts_i + shift.get(sender, 0)
    if last is not None and t < last:
        shift[sender] = shift.get(sender, 0) + (last - t)
        t = last
    return t


def _adjust(order: list[int], ts: list[int], senders: list) -> list[tuple[int, int]]:
    """`order` with its shown times (see _place): the long-history path, plain order."""
    shift: dict = {}
    out, last = [], None
    for i in order:
        last = _place(ts[i], senders[i], shift, last)
        out.append((i, last))
    return out


def retried_failures(statuses: list, attempts: list) -> set[int]:
    """Indexes of FAILED entries that a RETRY of the same attempt follows (rustvello sends task.failed
    then task.retry_scheduled for an attempt that will be retried: that FAILED is not final)."""
    drop = set()
    for i in range(len(statuses) - 1):
        if (statuses[i] == "FAILED" and statuses[i + 1] == "RETRY"
                and (attempts[i] is None or attempts[i + 1] in (None, attempts[i]))):
            drop.add(i)
    return drop


def _collapse_retried_failures(rows: list[dict]) -> list[dict]:
    drop = retried_failures([r["status"] for r in rows], [r.get("attempt") for r in rows])
    for i in drop:
        for k in ("error_type", "error_message"):
            if not rows[i + 1].get(k) and rows[i].get(k):
                rows[i + 1][k] = rows[i][k]
    return [r for i, r in enumerate(rows) if i not in drop]


def _requeued_registration(rows: list[dict]) -> list[dict]:
    """Every REGISTERED after the first reads as PENDING (pynenc's RETRY → PENDING); one sent from
    inside a running attempt (Celery's retry) is placed right after that attempt's outcome."""
    out: list[dict] = []
    registered = False
    held: list[dict] = []
    for r in rows:
        if r["status"] == "REGISTERED":
            if registered:
                r["status"] = "PENDING"
                if held or (out and out[-1]["status"] == "RUNNING"):
                    held.append(r)
                    continue
            registered = True
        out.append(r)
        if held and r["status"] in _OUTCOMES:
            for h in held:
                h["ts"] = max(h["ts"], r["ts"])
            out += held
            held = []
    return out + held


def settle(rows: list[dict]) -> list[dict]:
    """The history of one invocation from its raw records (dicts with at least ts (micros), status,
    attempt, seq, record_id, runner_id, worker_id, source; in arrival order). Returns new dicts, oldest
    first, each with `ts` adjusted, `sent_ts` (the time the record carried) and `previous_status`."""
    if any(r.get("record_id") is not None for r in rows):
        rows = once(rows)
    settled = []
    n_reg = 0
    failed = retry = False
    for i, t in causal_order(rows):
        d = dict(rows[i])
        d["sent_ts"] = d["ts"]
        d["ts"] = t
        s = d["status"]
        if s == "REGISTERED":
            n_reg += 1
        elif s == "FAILED":
            failed = True
        elif s == "RETRY":
            retry = True
        settled.append(d)
    if failed and retry:
        settled = _collapse_retried_failures(settled)
    if n_reg > 1:
        settled = _requeued_registration(settled)
    prev, last = None, None
    for d in settled:
        if last is not None and d["ts"] < last:
            d["ts"] = last
        last = d["ts"]
        if not d.get("previous_status"):
            d["previous_status"] = prev
        prev = d["status"]
    return settled


def plain_order(ts: list, status: list, attempt: list, seq: list, senders: list, record_ids: list):
    """The order `settle` would give, for the common history that needs no correction (distinct records, one
    registration, no retried FAILED, plain (time, rank, arrival) order already meeting every rule), from
    parallel lists in arrival order: indexes, oldest first, times unchanged. None when the history needs
    the full rule."""
    n = len(ts)
    if n <= 1:
        return list(range(n))
    rids = [r for r in record_ids if r is not None]
    if len(rids) != len(set(rids)):
        return None
    if status.count("REGISTERED") > 1 or ("FAILED" in status and "RETRY" in status) or n > MAX_CAUSAL:
        return None
    rank = [RANK.get(x, UNKNOWN_RANK) for x in status]
    order = sorted(range(n), key=lambda i: (ts[i], rank[i], i))
    terminal = [x in FINAL for x in status]
    if not _keeps_the_rules(order, ts, status, attempt, seq, senders, terminal, rank):
        return None
    return order


def quick_summary(ts: list, status: list, attempt: list, seq: list, senders: list, record_ids: list):
    """What `settle` would say of the current state when `plain_order` applies: (index of the first
    record, index of the last, first RUNNING's ts or None, number of RUNNING). None otherwise."""
    if not ts:
        return None
    order = plain_order(ts, status, attempt, seq, senders, record_ids)
    if order is None:
        return None
    started = next((ts[i] for i in order if status[i] == "RUNNING"), None)
    return order[0], order[-1], started, status.count("RUNNING")
