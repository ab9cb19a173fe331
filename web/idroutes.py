"""Routes whose id may hold any character: /invocations/{id}, /invocations/{id}/history, /runners/{id}, ...

Starlette routes on the decoded path, where `%2F` has already become `/`, so `{id}` stops at an
encoded slash and `{id:path}` cannot tell `/invocations/a%2Fhistory` (the invocation "a/history") from
`/invocations/a/history` (the history of "a"). An IdRoute reads the raw path the client sent
(`scope["raw_path"]`) instead:

- after the route's prefix, the raw path splits on its real slashes only; an id's encoded `%2F`
  never splits it (segments decode with proto/urlpath.unsegment: percent-escapes, and the "~2E" of
  a dots-only id);
- a suffix route (`suffix="history"`) matches when the last raw segment is that word; the id is
  everything before it. The bare route refuses a last raw segment that is one of its family's
  suffixes, so registration order does not matter;
- a raw `/` inside an id is taken as part of it (`/invocations/export/2026-11/user-7` is the
  invocation "export/2026-11/user-7"), except a trailing one, which Starlette's redirect drops.

The links pages build (urlpath.segment, TT.seg) always encode `/`, so they are never ambiguous.
Without a raw path (some test clients) the decoded path is read the same way, suffix last.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence
from urllib.parse import unquote

from starlette.routing import Match, Route
from starlette.types import Scope

from tasktrail.proto.urlpath import undot, unsegment


class IdRoute(Route):
    """`prefix` + one id (+ "/" + `suffix`); `siblings`: the suffixes other routes of the family take.
    The endpoint reads the id as request.path_params[param] (decoded, exactly as stored)."""

    def __init__(self, prefix: str, endpoint: Callable, *, param: str = "id", suffix: Optional[str] = None,
                 siblings: Sequence[str] = (), methods: Optional[list] = None) -> None:
        assert prefix.endswith("/")
        template = prefix + "{" + param + ":path}" + (f"/{suffix}" if suffix else "")
        super().__init__(template, endpoint, methods=methods)
        self.prefix, self.param, self.suffix = prefix, param, suffix
        self.siblings = tuple(s for s in siblings if s != suffix)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        route_path = _route_path(scope)
        if not route_path.startswith(self.prefix) or len(route_path) == len(self.prefix):
            return Match.NONE, {}
        rest = route_path[len(self.prefix):]
        raw = _raw_rest(scope, rest)
        if raw is False:
            return Match.NONE, {}
        found = self._ident(raw.split("/") if raw is not None else None, rest)
        if found is None:
            return Match.NONE, {}
        ident, extra = found
        child = {"endpoint": self.endpoint,
                 "path_params": {**scope.get("path_params", {}), **extra, self.param: ident}}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child

    def _ident(self, raw_segments: Optional[list[str]], rest: str) -> Optional[str]:
        """The id these raw segments (or, without them, the decoded rest) name for this route; None
        when the path is not this route's."""
        if raw_segments is None:  # no raw path: the decoded one, suffix last
            raw_segments = rest.split("/")
            decode: Callable[[str], str] = undot
        else:
            decode = unsegment
        if raw_segments[-1] == "" and len(raw_segments) > 1:
            return None  # a trailing slash: Starlette's redirect to the path without it
        extra: dict = {}
        if self.suffix is not None:
            parts = self.suffix.split("/")  # several segments ("values/{name}"); "{x}" takes any one
            got = _tail(raw_segments, parts)
            if got is None:
                return None
            extra = {k: decode(v) for k, v in got.items()}
            raw_segments = raw_segments[:-len(parts)]
        elif any(_tail(raw_segments, sib.split("/")) is not None for sib in self.siblings):
            return None
        ident = "/".join(decode(s) for s in raw_segments)
        return (ident, extra) if ident else None


def _tail(segments: list[str], parts: list[str]) -> Optional[dict]:
    """{placeholder: raw segment} when the last segments are `parts` (after at least one id segment)."""
    if len(segments) <= len(parts):
        return None
    got = {}
    for seg, part in zip(segments[-len(parts):], parts):
        if part.startswith("{") and part.endswith("}"):
            if not seg:
                return None
            got[part[1:-1]] = seg
        elif seg != part:
            return None
    return got


def _route_path(scope: Scope) -> str:
    """The decoded path below the mount this route sits in (what Starlette's own routes match)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


def _raw_rest(scope: Scope, rest: str):
    """What follows the route prefix in the raw path, still percent-encoded; None without a raw path;
    False when the raw path does not have the prefix as real segments (an encoded `/` inside it)."""
    raw_path = scope.get("raw_path")
    if not raw_path:
        return None
    raw = raw_path.decode("latin-1")
    path = unquote(raw)  # the whole decoded path, as the server decoded it
    if not path.endswith(rest):
        return False
    slashes = path[: len(path) - len(rest)].count("/")  # up to the id: literal segments, real slashes
    parts = raw.split("/", slashes)
    if len(parts) <= slashes:
        return False
    tail = parts[-1]
    return tail if unquote(tail) == rest else False


def id_routes(prefix: str, endpoint: Callable, suffixes: dict[str, Callable] | None = None,
              param: str = "id") -> list[IdRoute]:
    """The bare route of a family and one route per suffix (`{"history": history_endpoint}`)."""
    suffixes = suffixes or {}
    names = tuple(suffixes)
    return [IdRoute(prefix, endpoint, param=param, siblings=names)] + [
        IdRoute(prefix, fn, param=param, suffix=name, siblings=names) for name, fn in suffixes.items()]
