"""The live log tail (`GET /api/v1/logs/tail`, Server-Sent Events) and the log filters the log reads share."""
from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from tasktrail.query.errors import BadRequest

from .errors import error_response
from .request_args import _int, _p, _qs
from .tail_hub import TailFilter, TailHub, TooManyTails, events as sse_events, read_after

LOG_FILTERS = ("app", "q", "level", "runner", "worker", "invocation", "task", "since", "until")


def log_filters(request: Request) -> dict:
    return {k: _p(request, k) for k in LOG_FILTERS}


async def logs_tail(request: Request):
    """Server-Sent Events: one `log` event per new line matching the filters, as it is committed, from the
    shared poller (web/tail_hub.py). `Last-Event-ID` (or `after`) resumes after a batch; `backfill=N`
    first sends the last N lines. Past --max-tails or --max-tails-per-client: 429 with Retry-After."""
    qs = _qs(request)
    filters = log_filters(request)
    filters.pop("until", None)
    qs._log_filters(**filters)  # bad filters answer 400 before the stream starts
    flt = TailFilter.of(filters)
    resume = request.headers.get("last-event-id") or _p(request, "after")
    if resume is not None:
        try:
            resume = int(resume)
        except ValueError:
            raise BadRequest(f"Last-Event-ID / after must be a batch number, got {resume!r}") from None
    backfill = min(_int(request, "backfill") or 0, 1000)
    if backfill < 0:
        raise BadRequest(f"backfill must be a number of lines (at most 1000 are sent), got {backfill}")
    hub: TailHub = request.app.state.tails
    client = request.client.host if request.client else "unknown"
    try:
        tail, at = await hub.open(client, flt, resume)
    except TooManyTails as exc:
        return error_response(429, str(exc), {"Retry-After": str(exc.retry_after_s)})

    async def stream():
        yield ": tasktrail live tail\n\n"
        if backfill:
            page = await run_in_threadpool(lambda: qs.logs(limit=backfill, **filters))
            for line in reversed(page["items"]):
                yield f"id: {tail.after}\nevent: log\ndata: {orjson.dumps(line).decode()}\n\n"
        while tail.after < at:  # resuming from before the poller: this tail's own reads, up to where it stood
            lines, last, more = await run_in_threadpool(lambda: read_after(qs, tail.after, **filters))
            lines = [line for line in lines if line["batch"] <= at]
            if lines:
                yield b"".join(sse_events(lines))
            tail.after = at if not more or not lines else lines[-1]["batch"]
        quiet = 0.0
        while True:
            chunk = await hub.take(tail, 1.0)
            if chunk:
                quiet = 0.0
                yield chunk
            if tail.lagging:
                yield ": this client fell too far behind; reconnect with Last-Event-ID to resume\n\n"
                return
            if not chunk:
                quiet += 1.0
                if quiet >= 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"

    return _TailResponse(stream(), hub, tail, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class _TailResponse(StreamingResponse):
    """The stream of one tail; its place under the caps is given back however the stream ends."""

    def __init__(self, content, hub: TailHub, tail, **kw) -> None:
        super().__init__(content, **kw)
        self._hub, self._tail = hub, tail

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._hub.close(self._tail)
