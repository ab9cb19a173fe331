"""OTLP/HTTP receiver: POST /v1/{traces,logs,metrics}; protobuf or JSON; gzip or deflate; chunked bodies.

Moves bytes and maps errors; decoding is ingest/decode.py's. The body is capped
while it is read (chunked bodies have no Content-Length) and again after inflating.
A body refused unread (too large, no token, wrong type) is still read and thrown
away, up to `drain_bytes` and for `DRAIN_SECONDS`, as nginx's lingering close does:
a client that sends its whole body before reading the answer (urllib, requests: no
`Expect: 100-continue`) then reads the 413 / 401 / 415 instead of a connection reset.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tasktrail.proto.bearer import token_ok
from tasktrail.store.api import QueueFull, StoreClosed, StoreUnavailable

from .decode import DecodeError, TooLarge, gunzip, inflate, rpc_status, success
from .pipeline import Ingestor

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_INFLATE = {"gzip": gunzip, "x-gzip": gunzip, "deflate": inflate}
DRAIN_SECONDS = 5.0
MAX_DRAIN_BYTES = 256 * 1024 * 1024


async def _drain(stream: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop the rest of the body from `stream`, up to `budget` bytes and DRAIN_SECONDS."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in stream:
                budget -= len(chunk)
                if budget < 0:
                    return
    except (TimeoutError, ClientDisconnect, OSError):  # slow or gone: the connection closes after the answer
        return


def _fmt(content_type: str) -> str | None:
    ct = content_type.split(";")[0].strip().lower()
    if ct in (_PROTOBUF, "application/protobuf"):
        return "protobuf"
    if ct == _JSON:
        return "json"
    return None


def create_otlp_http_app(ingestor: Ingestor, *, ingest_token: str | None, max_body_bytes: int) -> "OtlpHttpApp":
    """The OTLP/HTTP app. Answers 200 with an Export*ServiceResponse (its partial_success names the
    records refused one by one and any repaired string), else a google.rpc.Status body: 400 bad data,
    401 token, 413 too large, 415 content type or encoding, 429 / 503 with Retry-After."""
    return OtlpHttpApp(ingestor, ingest_token, max_body_bytes)


class OtlpHttpApp:
    """The ASGI app of create_otlp_http_app: a 404 in OTLP's error shape for any path but the three
    signals' (before routing), else POST /v1/{signal} (`export`)."""

    def __init__(self, ingestor: Ingestor, ingest_token: str | None, max_body_bytes: int) -> None:
        self.ingestor = ingestor
        self.ingest_token = ingest_token
        self.max_body_bytes = max_body_bytes
        self.drain_bytes = min(4 * max_body_bytes, MAX_DRAIN_BYTES)
        self.app = Starlette(routes=[Route("/v1/{signal:str}", self.export, methods=["POST"])])

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            sig = path[4:] if path.startswith("/v1/") else None
            if sig not in ("traces", "logs", "metrics"):
                resp = Response(rpc_status(404, f"no OTLP endpoint at {path}; use /v1/traces, /v1/logs or "
                                                f"/v1/metrics", "json"), status_code=404, media_type=_JSON)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def answer(self, status: int, message: str, fmt: str, signal: str, reason: str,
               retry_after: float | None = None) -> Response:
        self.ingestor.reject(signal, "http", reason)
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
        return Response(rpc_status(status, message, fmt, retry_after), status_code=status,
                        media_type=_JSON if fmt == "json" else _PROTOBUF, headers=headers)

    async def refuse_unread(self, request: Request, status: int, message: str, fmt: str, signal: str,
                            reason: str) -> Response:
        """Refuse before reading the body: read and drop it first (within `drain_bytes`), unless the client
        waits for this answer before sending it (`Expect: 100-continue`)."""
        declared = request.headers.get("content-length", "")
        fits = not declared.isdigit() or int(declared) <= self.drain_bytes
        if fits and "100-continue" not in request.headers.get("expect", "").lower():
            await _drain(request.stream(), self.drain_bytes)
        return self.answer(status, message, fmt, signal, reason)

    def _refusal(self, request: Request, fmt: str | None, encoding: str) -> tuple | None:
        """(status, message, answer's format, reason) when the head alone refuses the request, else None."""
        if fmt is None:
            return (415, f"unsupported Content-Type {request.headers.get('content-type')!r}: use {_PROTOBUF} "
                         f"or {_JSON}", "json", "content_type")
        if not token_ok(self.ingest_token, request.headers.get("authorization")):
            return 401, "missing or wrong ingest token (Authorization: Bearer <token>)", fmt, "unauthenticated"
        if encoding not in _INFLATE and encoding not in ("identity", ""):
            return 415, f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none", fmt, "content_encoding"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            return 413, f"body of {declared} bytes is over the {self.max_body_bytes}-byte limit", fmt, "too_large"
        return None

    async def export(self, request: Request) -> Response:
        signal = request.path_params["signal"]
        fmt = _fmt(request.headers.get("content-type", ""))
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        refused = self._refusal(request, fmt, encoding)
        if refused is not None:
            status, message, answer_fmt, reason = refused
            return await self.refuse_unread(request, status, message, answer_fmt, signal, reason)
        chunks, size, stream = [], 0, request.stream()
        async for chunk in stream:
            size += len(chunk)
            if size > self.max_body_bytes:
                await _drain(stream, self.drain_bytes - size)
                return self.answer(413, f"body is over the {self.max_body_bytes}-byte limit", fmt, signal, "too_large")
            chunks.append(chunk)
        return await self._store(b"".join(chunks), encoding, fmt, signal)

    async def _store(self, body: bytes, encoding: str, fmt: str, signal: str) -> Response:
        """Inflate, decode, map and store one request's body; its answer."""
        try:
            if encoding in _INFLATE:
                body = _INFLATE[encoding](body, self.max_body_bytes)
            accepted = await self.ingestor.export(signal, body, fmt, "http")
        except TooLarge as exc:
            return self.answer(413, str(exc), fmt, signal, "too_large")
        except DecodeError as exc:
            return self.answer(400, str(exc), fmt, signal, "bad_data")
        except QueueFull as exc:
            return self.answer(429, str(exc), fmt, signal, "queue_full", exc.retry_after_s)
        except (StoreClosed, StoreUnavailable) as exc:
            return self.answer(503, str(exc), fmt, signal, "unavailable", 5.0)
        # The commit holding the request, when it was committed before the answer (without a journal).
        headers = {"X-Tasktrail-Batch": str(accepted.ack.batch)} if accepted.ack.batch else {}
        return Response(success(signal, fmt, accepted.rejected, accepted.message),
                        media_type=_JSON if fmt == "json" else _PROTOBUF, headers=headers)
