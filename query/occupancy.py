"""The timeline's occupancy: pynmon's histogram stacked by task (reference §6.2, pynmon/util/histogram.py)
and the true peak concurrency behind its "max N in flight" label.

Input: status intervals, one per history entry whose status is in a selected category (REGISTERED =
{REGISTERED, REROUTED, CONCURRENCY_CONTROLLED}, PENDING = {PENDING, PENDING_RECOVERY, RETRY}, RUNNING =
{RUNNING, RUNNING_RECOVERY}, as query/workflows.py), from that entry to the next one (or to the window's end
when it is the last), clipped to the window; empty ones are dropped. An invocation's intervals follow one
another, so at any instant it is in at most one of them.

- The buckets (pynmon's rule): in each bucket of the range drawn, how many invocations of a task were in a
  selected category during some part of it (half-open: touching a bucket's start is not overlapping it),
  each invocation once per bucket; and the same per task and category.
- The peak: the largest number of intervals open at one instant over the whole window, by a sweep over
  their starts and ends (ends first at a tie), for the selected categories together (`in_flight`: that many
  invocations were in flight at once) and for each. A bucket's bar counts every interval that touched the
  bucket, so it can be far above the peak (772 runs of 16 threads touch one 5 s bucket; 16 were in flight).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional, Sequence

import numpy as np

from .params import iso
from .workflows import LEGEND_TASKS, bucket_size

MAX_BUCKETS = 240  # a fixed resolution's buckets are widened to stay within this many (pynmon's MAX_BUCKETS)
EPOCH = datetime(1970, 1, 1)


def us(t: datetime) -> int:
    """A naive UTC datetime as epoch microseconds."""
    return (t - EPOCH) // timedelta(microseconds=1)


def at(u: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(u))


class Intervals:
    """Status intervals gathered while the timeline walks its histories (`add` per invocation). Per
    interval only its category and bounds are kept; its invocation and task come from `runs` (per
    invocation with intervals: its task's index and how many it has), repeated in `arrays`."""

    def __init__(self, categories: Sequence[str], statuses: dict[str, Sequence[str]], until_us: int) -> None:
        self.categories = list(categories)
        self.of = {s: k for k, c in enumerate(self.categories) for s in statuses[c]}
        self.until_us = until_us
        self.names: dict[str, int] = {}
        self.runs: list[tuple[int, int]] = []
        self.cat: list[int] = []
        self.a: list[int] = []
        self.b: list[int] = []

    def add(self, task: Optional[str], hist: list, status_at: int, us_at: int) -> None:
        """One invocation's settled history (tuples holding the status at `status_at`, epoch micros at
        `us_at`): an interval per entry of a selected category, to the next entry (or the window's end)."""
        of = self.of
        if not of:
            return
        n, before = len(hist), len(self.cat)
        cat, a, b = self.cat.append, self.a.append, self.b.append
        for k in range(n):
            c = of.get(hist[k][status_at])
            if c is not None:
                cat(c)
                a(hist[k][us_at])
                b(hist[k + 1][us_at] if k + 1 < n else self.until_us)
        if len(self.cat) > before:
            self.runs.append((self.names.setdefault(task or "?", len(self.names)), len(self.cat) - before))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(invocation index, task index, category, start, end) per interval, as int64 arrays."""
        runs = np.asarray(self.runs, np.int64).reshape(-1, 2)
        inv = np.repeat(np.arange(len(runs), dtype=np.int64), runs[:, 1])
        return (inv, np.repeat(runs[:, 0], runs[:, 1]), np.asarray(self.cat, np.int64),
                np.asarray(self.a, np.int64), np.asarray(self.b, np.int64))


def peak(a: np.ndarray, b: np.ndarray) -> tuple[int, Optional[int]]:
    """(the most half-open intervals [a, b) open at one instant, the first instant it happens) for
    non-empty intervals; (0, None) for none. Open at t = starts ≤ t minus ends ≤ t; the maximum is at a start."""
    if not len(a):
        return 0, None
    s, e = np.sort(a), np.sort(b)
    open_ = np.arange(1, len(s) + 1) - np.searchsorted(e, s, side="right")
    k = int(np.argmax(open_))
    return int(open_[k]), int(s[k])


def _bucket_counts(key: np.ndarray, row: np.ndarray, first: np.ndarray, last: np.ndarray, rows: int,
                   n: int) -> np.ndarray:
    """[rows × n] counts: each interval adds 1 to row `row` over buckets first..last, once per `key` (an
    invocation, or an invocation and category) and bucket. Intervals of one key never overlap, so after
    sorting by key and start a bucket shared with the previous interval of the same key is skipped."""
    order = np.lexsort((first, key))
    key, row, first, last = key[order], row[order], first[order].copy(), last[order]
    same = np.zeros(len(key), bool)
    same[1:] = key[1:] == key[:-1]
    prev_last = np.empty_like(last)
    prev_last[1:] = last[:-1]
    first[same] = np.maximum(first[same], prev_last[same] + 1)
    keep = first <= last
    row, first, last = row[keep], first[keep], last[keep]
    width = n + 1
    diff = np.bincount(row * width + first, minlength=rows * width) - np.bincount(
        row * width + last + 1, minlength=rows * width)
    return np.cumsum(diff.reshape(rows, width), axis=1)[:, :n]


def occupancy(iv: Intervals, window: tuple[datetime, datetime], view: tuple[datetime, datetime],
              resolution_s: Optional[float]) -> dict:
    """The occupancy of `iv` over `view` (buckets) and `window` (peak). Bucket size: `resolution_s` when
    given (widened to at most MAX_BUCKETS buckets), else pynmon's rule for the view's length
    (query/workflows.bucket_size). Returns {categories, since, until, bucket_s, buckets (start times),
    series [{task_id, counts}] (invocations per bucket, stacked by task: the 12 busiest, then "Other"),
    by_status [{task_id, status, counts}], max (the tallest stack), peak {in_flight, at, by_status}}."""
    w0, w1 = us(window[0]), us(window[1])
    v0, v1 = us(view[0]), us(view[1])
    span = max((v1 - v0) / 1e6, 0.001)
    size = bucket_size(span) if resolution_s is None else max(float(resolution_s), span / MAX_BUCKETS)
    n = max(1, int(np.ceil(span / size - 1e-9)))
    cats = [c.lower() for c in iv.categories]
    inv, task, cat, a, b = iv.arrays()
    a, b = np.maximum(a, w0), np.minimum(b, w1)
    ok = b > a
    inv, task, cat, a, b = inv[ok], task[ok], cat[ok], a[ok], b[ok]
    names = list(iv.names)
    in_flight, when = peak(a, b)
    out = {"categories": cats, "since": iso(view[0]), "until": iso(view[1]), "bucket_s": size,
           "buckets": [iso(at(v0 + round(k * size * 1e6))) for k in range(n)], "series": [], "by_status": [],
           "max": 0, "peak": {"in_flight": in_flight, "at": iso(at(when)) if when is not None else None,
                              "by_status": {c: peak(a[cat == k], b[cat == k])[0] for k, c in enumerate(cats)}}}
    seen = (b > v0) & (a < v1)
    if not seen.any():
        return out
    a, b, cat, inv, task = a[seen], b[seen], cat[seen], inv[seen], task[seen]
    size_us = size * 1e6
    first = np.clip(np.floor((a - v0) / size_us).astype(np.int64), 0, n - 1)
    last = np.clip(np.ceil((b - v0) / size_us).astype(np.int64) - 1, 0, n - 1)
    per_task = _bucket_counts(inv, task, first, last, len(names), n)
    ranked = sorted(range(len(names)), key=lambda t: (-int(per_task[t].sum()), names[t]))
    top, rest = ranked[:LEGEND_TASKS], ranked[LEGEND_TASKS:]
    k = len(cats)
    per_status = _bucket_counts(inv * k + cat, task * k + cat, first, last, len(names) * k, n)
    series = [(names[t], per_task[t], [per_status[t * k + c] for c in range(k)]) for t in top]
    if rest:
        series.append(("Other", per_task[rest].sum(axis=0),
                       [per_status[[t * k + c for t in rest]].sum(axis=0) for c in range(k)]))
    out["series"] = [{"task_id": t, "counts": counts.tolist()} for t, counts, _ in series]
    out["by_status"] = [{"task_id": t, "status": cats[c], "counts": by[c].tolist()}
                        for t, _, by in series for c in range(k)]
    out["max"] = int(per_task.sum(axis=0).max())
    return out
