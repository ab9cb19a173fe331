"""The bearer token on the wire: what a sender puts in `authorization` and how a receiver checks it.

Both ends live here so they agree: the emitters send `Bearer <token>` (proto/emitter.py); the OTLP
receivers (ingest/http.py, ingest/grpc.py) and the web's token check (web/app.py) compare it in
constant time.
"""
from __future__ import annotations

import hmac
from typing import Optional


def bearer(token: str) -> str:
    """The `authorization` header's value that carries `token`."""
    return f"Bearer {token}"


def token_ok(expected: Optional[str], authorization: Optional[str]) -> bool:
    """True when no token is configured, or `authorization` is `Bearer <expected>` (the scheme in any case,
    as RFC 7235 has it: `bearer <expected>` too)."""
    if not expected:
        return True
    if not authorization or authorization[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), expected.encode())
