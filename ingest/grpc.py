"""OTLP/gRPC receiver: the three collector services' Export, on grpc.aio.

Requests arrive as raw bytes (no deserializer) so the one decoder handles them; grpc
itself inflates messages a client compressed (gzip or deflate). Records refused one by
one are answered OK with the response's partial_success, as over HTTP.
Backpressure answers RESOURCE_EXHAUSTED / UNAVAILABLE with a RetryInfo in the
`google.rpc.retryinfo-bin` trailer, which is where OTel exporters read the delay.
"""
from __future__ import annotations

import grpc

from tasktrail.proto.bearer import token_ok
from tasktrail.store.api import QueueFull, StoreClosed, StoreUnavailable

from .decode import DecodeError, retry_info_bytes, success
from .pipeline import Ingestor

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def _handler(ingestor: Ingestor, signal: str, ingest_token: str | None):
    empty = success(signal, "protobuf")

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if ingest_token:
            md = {k: v for k, v in (context.invocation_metadata() or ())}
            if not token_ok(ingest_token, md.get("authorization")):
                ingestor.reject(signal, "grpc", "unauthenticated")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong ingest token "
                                    "(metadata authorization: Bearer <token>)")
        try:
            accepted = await ingestor.export(signal, request, "protobuf", "grpc")
        except DecodeError as exc:
            ingestor.reject(signal, "grpc", "bad_data")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except QueueFull as exc:
            ingestor.reject(signal, "grpc", "queue_full")
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                                trailing_metadata=(("google.rpc.retryinfo-bin",
                                                    retry_info_bytes(exc.retry_after_s)),))
        except (StoreClosed, StoreUnavailable) as exc:
            ingestor.reject(signal, "grpc", "unavailable")
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc),
                                trailing_metadata=(("google.rpc.retryinfo-bin", retry_info_bytes(5.0)),))
        if accepted.rejected or accepted.message:
            return success(signal, "protobuf", accepted.rejected, accepted.message)
        return empty

    return grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)


async def start_grpc_server(ingestor: Ingestor, host: str, port: int, *, ingest_token: str | None,
                            max_body_bytes: int, max_connections: int = 1000,
                            handshake_timeout_s: float = 10.0) -> tuple[grpc.aio.Server, int]:
    """Start the server; returns it and the bound port (port 0 picks a free one). A connection that has not
    sent its HTTP/2 settings within `handshake_timeout_s` is closed; past `max_connections` open ones, new
    ones are closed at once (grpc's own connection quota)."""
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", max_body_bytes),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ("grpc.server_handshake_timeout_ms", max(1, round(handshake_timeout_s * 1000))),
        ("grpc.max_allowed_incoming_connections", max_connections),
    ])
    for signal, service in SERVICES.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {"Export": _handler(ingestor, signal, ingest_token)}),))
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")  # IPv6 in brackets
    if bound == 0:
        raise OSError(f"cannot bind OTLP gRPC to {host}:{port}")
    await server.start()
    return server, bound
