"""Bearer-token checks shared by the web app and the OTLP receivers (constant-time compare)."""
from __future__ import annotations

import hmac
from typing import Optional


def token_ok(expected: Optional[str], authorization: Optional[str]) -> bool:
    """True when no token is configured, or `authorization` is `Bearer <expected>`."""
    if not expected:
        return True
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), expected.encode())
