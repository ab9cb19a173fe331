"""What every handler reads off a request: the query service, and query parameters as text or integers
(a bad integer is a BadRequest, answered 400 in the one error shape)."""
from __future__ import annotations

from starlette.requests import Request

from tasktrail.query.errors import BadRequest
from tasktrail.query.service import QueryService


def _qs(request: Request) -> QueryService:
    return request.app.state.query


def _int(request: Request, name: str):
    v = request.query_params.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {v!r}") from None


def _p(request: Request, name: str):
    v = request.query_params.get(name)
    return v if v not in (None, "") else None
