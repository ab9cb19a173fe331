"""Live log tails (/api/v1/logs/tail): one shared poller for every open tail, and caps on how many.

However many tails are open, one task reads the lines committed since its last look (one query per
interval, all lines, whole commits) and keeps them, encoded once, in a ring shared by every tail; each
tail walks the ring at its reader's pace and sends the lines its filters match (matched here as the SQL
of /api/v1/logs matches them). The cost of a poll does not grow with the number of tails, and neither
does memory: the ring holds RING_BYTES of events at most (and always the newest poll). A tail whose
reader falls off the ring's end is ended with a comment saying so; EventSource reconnects with
Last-Event-ID and catches up. Only two reads are a tail's own: its backfill and, when it resumes from
before the hub's position, catching up to it.

Caps: at most `max_total` tails at once and `max_per_client` per client address; past either, the
tail is refused with 429 and Retry-After.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Optional

import orjson
from starlette.concurrency import run_in_threadpool

from tasktrail.query.service import QueryService, iso
from tasktrail.query.times import parse_time

log = logging.getLogger("tasktrail.web")
POLL_LINES = 1000        # lines one poll reads; a full poll is followed at once by the next
WHOLE_BATCH_LINES = 100_000  # one commit holding more lines than a poll is read whole (the writer's batch cap)
RETRY_AFTER_S = 5
RING_BYTES = 16 << 20    # encoded lines kept for tails that are behind; past it the oldest poll is dropped
TAKE_BYTES = 64 << 10    # events a tail takes from the ring at a time (whole commits): what a stalled one holds


def read_after(query: QueryService, after: int, **filters) -> tuple[list[dict], int, bool]:
    """(lines, last batch, more may follow) of the lines committed after batch `after`, oldest first,
    ending on a whole commit: a commit is never split between two reads (`id:` is its batch, and a
    resume starts after it), so a commit of more lines than a page is read whole."""
    lines, last = query.logs_after(after, limit=POLL_LINES, **filters)
    if len(lines) < POLL_LINES:
        return lines, last, False
    whole = [line for line in lines if line["batch"] < last]
    if whole:
        return whole, whole[-1]["batch"], True
    lines, last = query.logs_after(after, limit=WHOLE_BATCH_LINES, upto_batch=last, **filters)  # that commit
    return lines, last, True


def _label_runners(query: QueryService, lines: list[dict]) -> None:
    """Give each line the label of the runner context that wrote it (`runner_label`: class, host/pid, short
    id, as every page shows runners), read once per poll for the contexts of these lines."""
    ids = sorted({line.get("worker_id") or line.get("runner_id") for line in lines} - {None, ""})
    labels = query.runner_labels(ids) if ids else {}
    for line in lines:
        got = labels.get(line.get("worker_id") or line.get("runner_id"))
        line["runner_label"] = got["label"] if got else None


class TooManyTails(Exception):
    """A cap on open tails is reached; retry after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class TailFilter:
    """The filters of /api/v1/logs (but `until`), for matching lines as the API shows them."""
    app: Optional[str] = None
    q: Optional[str] = None
    level: Optional[int] = None          # at least this severity number
    runner: Optional[str] = None
    worker: Optional[str] = None
    invocation: Optional[str] = None
    task: Optional[str] = None
    since: Optional[str] = None          # RFC 3339 as the API writes times: compares as text

    @classmethod
    def of(cls, filters: dict) -> "TailFilter":
        """From the request's filters (validated by QueryService._log_filters first)."""
        level = filters.get("level")
        since = parse_time(filters.get("since"), "since")
        return cls(app=filters.get("app"), q=(filters.get("q") or None) and filters["q"].lower(),
                   level=QueryService.LEVELS[level.upper()] if level else None, runner=filters.get("runner"),
                   worker=filters.get("worker"), invocation=filters.get("invocation"), task=filters.get("task"),
                   since=iso(since) if since else None)

    def matches(self, line: dict) -> Optional[bool]:
        """True or False; None when only `q` is undecided because the line's message is a cut preview."""
        if self.app and line["app_id"] != self.app:
            return False
        if self.worker and line["worker_id"] != self.worker:
            return False
        if self.task and line["task_id"] != self.task:
            return False
        if self.runner and self.runner not in (line["runner_id"], line["worker_id"]):
            return False
        if self.invocation and line["invocation_id"] != self.invocation:
            return False
        if self.since and (line["timestamp"] or "") < self.since:
            return False
        if self.level is not None:
            number = line["severity_number"] or QueryService.LEVELS.get((line["level"] or "").upper(), 0)
            if number < self.level:
                return False
        if self.q:
            if self.q in (line["message"] or "").lower():
                return True
            return None if _cut_key(line) else False
        return True


def _verdict(flt: TailFilter, line: dict, found: set) -> bool:
    v = flt.matches(line)
    return (_cut_key(line), flt.q) in found if v is None else v


def _cut_key(line: dict) -> Optional[str]:
    """The key of a line whose message is a cut preview (from its body's download url), else None."""
    desc = (line.get("values") or {}).get("message") or {}
    url = desc.get("url") if desc.get("truncated") else None
    return url.rsplit("/", 2)[-2] if url else None


class Tail:
    """One open tail: what it wants and where its reader stands in the hub's ring."""

    def __init__(self, client: str, flt: TailFilter, after: int, pos: int) -> None:
        self.client = client
        self.filter = flt
        self.after = after                  # the last batch sent or skipped
        self.pos = pos                      # the seq of the ring entry it is sending
        self.idx = 0                        # ... and the index of the next line in it
        self.wake = asyncio.Event()         # set when the ring grows (or the poller fails)
        self.lagging = False


@dataclass
class Entry:
    """One poll's lines, kept for the tails: encoded once; `found` answers `q` for cut previews."""
    seq: int
    start: int                          # the lines are those of batches (start, last]
    last: int
    lines: list
    data: list
    found: set
    qs: frozenset                       # the `q` texts `found` was asked for
    size: int


def events(lines: list[dict], data: Optional[list[bytes]] = None) -> list[bytes]:
    """SSE `log` events of lines in commit order. Only a commit's last line carries `id:` (its batch), so a
    stream cut inside a commit resumes (Last-Event-ID) before that commit, never after part of it.
    `data`: the lines already encoded as JSON."""
    out = []
    for k, line in enumerate(lines):
        body = data[k] if data is not None else orjson.dumps(line)
        last_of_batch = k + 1 == len(lines) or lines[k + 1]["batch"] != line["batch"]
        out.append((b"id: %d\n" % line["batch"] if last_of_batch else b"") + b"event: log\ndata: " + body + b"\n\n")
    return out


class TailHub:
    """The shared poller, its ring and the caps; lives on the web app's event loop."""

    def __init__(self, query: QueryService, *, interval_s: float = 0.25, max_total: int = 256,
                 max_per_client: int = 16, ring_bytes: int = RING_BYTES) -> None:
        self.query = query
        self.interval_s = interval_s
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.ring_bytes = ring_bytes
        self.tails: set[Tail] = set()
        self.per_client: Counter = Counter()
        self.ring: deque[Entry] = deque()
        self.next_seq = 0
        self.after: Optional[int] = None     # the newest batch the poller has read
        self.polls = 0                       # reads of new lines, for /metrics and tests
        self._task: Optional[asyncio.Task] = None

    async def open(self, client: str, flt: TailFilter, resume: Optional[int]) -> tuple[Tail, int]:
        """A new tail and the batch the poller stands at (lines after it come through the ring).
        Raises TooManyTails when a cap is reached."""
        if len(self.tails) >= self.max_total:
            raise TooManyTails(f"{len(self.tails)} live tails are open, the most this server serves at once "
                               f"(--max-tails {self.max_total}); retry later")
        if self.per_client[client] >= self.max_per_client:
            raise TooManyTails(f"this client holds {self.per_client[client]} live tails, the most one client may "
                               f"(--max-tails-per-client {self.max_per_client}); close one or retry later")
        tail = Tail(client, flt, 0, self.next_seq)
        self.tails.add(tail)
        self.per_client[client] += 1
        try:
            if self.after is None:
                self.after = await run_in_threadpool(self.query.last_batch)
        except BaseException:
            self.close(tail)
            raise
        at = self.after
        tail.pos = self.next_seq
        tail.after = at if resume is None else min(resume, at)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="tasktrail-tail-poller")
        return tail, at

    def close(self, tail: Tail) -> None:
        if tail in self.tails:
            self.tails.discard(tail)
            self.per_client[tail.client] -= 1
            if self.per_client[tail.client] <= 0:
                del self.per_client[tail.client]

    async def take(self, tail: Tail, timeout_s: float) -> bytes:
        """The next events for the tail from the ring (whole commits, about TAKE_BYTES at most), waiting up
        to `timeout_s` for new lines; b"" when none came. Sets `tail.lagging` when the ring has moved past it."""
        if tail.pos >= self.next_seq and not tail.lagging:
            tail.wake.clear()
            try:
                await asyncio.wait_for(tail.wake.wait(), timeout=timeout_s)
            except asyncio.TimeoutError:
                return b""
        out, size = [], 0
        while size < TAKE_BYTES and tail.pos < self.next_seq and not tail.lagging:
            if not self.ring or tail.pos < self.ring[0].seq:
                tail.lagging = True
                break
            entry = self.ring[tail.pos - self.ring[0].seq]
            found = entry.found
            if tail.filter.q and tail.filter.q not in entry.qs:  # it opened while this poll was read
                found = found | await run_in_threadpool(self.query.cut_lines_containing, entry.start, entry.last,
                                                        [tail.filter.q])
                entry = Entry(**{**entry.__dict__, "found": found, "qs": entry.qs | {tail.filter.q}})
            lines = entry.lines
            while tail.idx < len(lines) and size < TAKE_BYTES:
                end = tail.idx
                while end < len(lines) and lines[end]["batch"] == lines[tail.idx]["batch"]:
                    end += 1                                    # one commit: [idx, end)
                picked = [k for k in range(tail.idx, end) if lines[k]["batch"] > tail.after
                          and _verdict(tail.filter, lines[k], found)]
                for item in events([lines[k] for k in picked], [entry.data[k] for k in picked]):
                    out.append(item)
                    size += len(item)
                tail.idx = end
            if tail.idx >= len(lines):
                tail.pos, tail.idx = tail.pos + 1, 0
        return b"".join(out)

    async def _run(self) -> None:
        """Poll while any tail is open; then forget the position and the ring."""
        try:
            while self.tails:
                more = await self._poll()
                if not more:
                    await asyncio.sleep(self.interval_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed read ends the tails (they reconnect and resume), never silently
            log.exception("the live-tail poller failed")
            for tail in list(self.tails):
                tail.lagging = True
                tail.wake.set()
        finally:
            if not self.tails:
                self.after = None
                self.ring.clear()

    async def _poll(self) -> bool:
        """One read of new lines, kept in the ring for every tail; True when more may be waiting."""
        start = self.after
        lines, last, more = await run_in_threadpool(read_after, self.query, start)
        self.polls += 1
        if lines:
            await run_in_threadpool(_label_runners, self.query, lines)
            qs = frozenset(t.filter.q for t in self.tails if t.filter.q)
            undecided = {q for q in qs for line in lines if _cut_key(line) and q not in (line["message"] or "").lower()}
            found = set()
            if undecided:
                found = await run_in_threadpool(self.query.cut_lines_containing, start, last, sorted(undecided))
            data = [orjson.dumps(line) for line in lines]   # encoded once, whatever the number of tails
            entry = Entry(self.next_seq, start, last, lines, data, found, qs, sum(map(len, data)))
            self.ring.append(entry)
            self.next_seq += 1
            total = sum(e.size for e in self.ring)
            while len(self.ring) > 1 and total > self.ring_bytes:
                total -= self.ring.popleft().size
            for tail in self.tails:
                tail.wake.set()
        self.after = last
        return more
