"""Live log tails (/api/v1/logs/tail): one shared poller for every open tail, and caps on how many.

However many tails are open, one task reads the lines committed since its last look (one query per
interval, all lines) and hands each tail the ones its filters match, matched here in Python as the
SQL of /api/v1/logs matches them. The cost of a poll does not grow with the number of tails; a tail
costs a queue and a filter check per new line. Only two reads are a tail's own: its backfill and, when
it resumes (Last-Event-ID) from before the hub's position, catching up to it.

Caps: at most `max_total` tails at once and `max_per_client` per client address; past either, the
tail is refused with 429 and Retry-After. A tail whose reader falls `queue_lines` lines behind is
ended with a comment saying so; EventSource reconnects with Last-Event-ID and catches up.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import orjson
from starlette.concurrency import run_in_threadpool

from tasktrail.query.service import QueryService
from tasktrail.query.times import parse_time

log = logging.getLogger("tasktrail.web")
POLL_LINES = 1000        # lines one poll reads; a full poll is followed at once by the next
WHOLE_BATCH_LINES = 100_000  # one commit holding more lines than a poll is read whole (the writer's batch cap)
RETRY_AFTER_S = 5
QUEUE_LINES = 5000       # lines a tail may fall behind before it is ended (it resumes with Last-Event-ID)


def read_after(query: QueryService, after: int, **filters) -> tuple[list[dict], int, bool]:
    """(lines, last batch, more may follow) of the lines committed after batch `after`, oldest first,
    ending on a whole commit: a commit is never split between two reads (`id:` is its batch, and a
    resume starts after it), so a commit of more lines than a page is read whole."""
    lines, last = query.logs_after(after, limit=POLL_LINES, **filters)
    if len(lines) < POLL_LINES:
        return lines, last, False
    whole = [line for line in lines if line["batch"] < last]
    if not whole:
        lines, last = query.logs_after(after, limit=WHOLE_BATCH_LINES, **filters)
        if len(lines) < WHOLE_BATCH_LINES:
            return lines, last, True
        whole = [line for line in lines if line["batch"] < last] or lines
    return whole, whole[-1]["batch"], True


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
        from tasktrail.query.service import iso
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


def _cut_key(line: dict) -> Optional[str]:
    """The key of a line whose message is a cut preview (from its body's download url), else None."""
    desc = (line.get("values") or {}).get("message") or {}
    url = desc.get("url") if desc.get("truncated") else None
    return url.rsplit("/", 2)[-2] if url else None


class Tail:
    """One open tail: what it wants, and the lines (batch, SSE event bytes) waiting to be sent."""

    def __init__(self, client: str, flt: TailFilter, after: int, queue_lines: int) -> None:
        self.client = client
        self.filter = flt
        self.after = after                  # the last batch sent or skipped
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_lines)
        self.lagging = False


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
    """The shared poller and the caps; lives on the web app's event loop."""

    def __init__(self, query: QueryService, *, interval_s: float = 0.25, max_total: int = 256,
                 max_per_client: int = 16, queue_lines: int = QUEUE_LINES) -> None:
        self.query = query
        self.interval_s = interval_s
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.queue_lines = queue_lines
        self.tails: set[Tail] = set()
        self.per_client: Counter = Counter()
        self.after: Optional[int] = None     # the newest batch the poller has read
        self.polls = 0                       # reads of new lines, for tests and figures
        self._task: Optional[asyncio.Task] = None

    async def open(self, client: str, flt: TailFilter, resume: Optional[int]) -> tuple[Tail, int]:
        """A new tail and the batch the poller stands at (its lines after it come through the queue).
        Raises TooManyTails when a cap is reached."""
        if len(self.tails) >= self.max_total:
            raise TooManyTails(f"{len(self.tails)} live tails are open, the most this server serves at once "
                               f"(--max-tails {self.max_total}); retry later")
        if self.per_client[client] >= self.max_per_client:
            raise TooManyTails(f"this client holds {self.per_client[client]} live tails, the most one client may "
                               f"(--max-tails-per-client {self.max_per_client}); close one or retry later")
        tail = Tail(client, flt, 0, self.queue_lines)
        self.tails.add(tail)
        self.per_client[client] += 1
        try:
            if self.after is None:
                self.after = await run_in_threadpool(self.query.last_batch)
        except BaseException:
            self.close(tail)
            raise
        at = self.after
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

    async def _run(self) -> None:
        """Poll while any tail is open; then forget the position (the next tail starts from the newest)."""
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
        finally:
            if not self.tails:
                self.after = None

    async def _poll(self) -> bool:
        """One read of new lines, handed to every tail; True when more may be waiting."""
        start = self.after
        lines, last, more = await run_in_threadpool(read_after, self.query, start)
        self.polls += 1
        if lines:
            verdicts = {}
            undecided = set()
            for tail in list(self.tails):
                for k, line in enumerate(lines):
                    v = tail.filter.matches(line)
                    verdicts[(id(tail), k)] = v
                    if v is None:
                        undecided.add((_cut_key(line), tail.filter.q))
            found = set()
            if undecided:
                found = await run_in_threadpool(self.query.cut_lines_containing, start, last,
                                                sorted({q for _, q in undecided}))
            data = [orjson.dumps(line) for line in lines]   # encoded once, whatever the number of tails
            for tail in list(self.tails):
                picked = []
                for k, line in enumerate(lines):
                    v = verdicts.get((id(tail), k), False)
                    if v is None:
                        v = (_cut_key(line), tail.filter.q) in found
                    if v and line["batch"] > tail.after:
                        picked.append(k)
                sse = events([lines[k] for k in picked], [data[k] for k in picked])
                for k, item in zip(picked, sse):
                    if not _offer(tail, (lines[k]["batch"], item)):
                        break
        self.after = last
        return more


def _offer(tail: Tail, item) -> bool:
    """Queue `item` for the tail; False (and the tail marked lagging) when its reader is too far behind."""
    try:
        tail.queue.put_nowait(item)
        return True
    except asyncio.QueueFull:
        tail.lagging = True
        return False
