"""How an id travels as one URL path segment (/invocations/<segment>, /runners/<segment>, ...).

Runners choose ids freely (Celery's task_id="export/2026-11/user-7", idempotency keys), so a segment
is the id percent-encoded with nothing left out (`/` → %2F, `%` → %25, `#`, `?`, `+`, spaces,
non-ASCII as UTF-8 bytes). Percent-encoding cannot carry an id that is only dots: browsers and most
HTTP clients drop "." and ".." path segments, even written %2E (WHATWG URL), before the request
leaves. Such an id is written with datasette's tilde escape instead, "~2E" per dot; an id that
itself reads like that escape has its "~" percent-encoded (%7E) so the two never meet.

`segment` and `unsegment` round-trip every string: unsegment(segment(x)) == x.
The JavaScript twin is `TT.seg` in web/static/tasktrail.js.
"""
from __future__ import annotations

import re
from urllib.parse import quote, unquote

_DOTS = re.compile(r"\.+")
_TILDE_DOTS = re.compile(r"(?:~2[Ee])+")


def segment(value: str) -> str:
    """`value` as one URL path segment (ASCII, no `/`, never "." or "..")."""
    s = quote(value, safe="")
    if _DOTS.fullmatch(s):
        return "~2E" * len(s)
    if _TILDE_DOTS.fullmatch(s):
        return s.replace("~", "%7E")
    return s


def unsegment(raw: str) -> str:
    """The id one raw (still percent-encoded) path segment names: the inverse of `segment`.
    A segment sent by hand with a bad escape ("100%-x") keeps its `%` as written (as the server's
    own decoding of the path does)."""
    if _TILDE_DOTS.fullmatch(raw):
        return "." * (len(raw) // 3)
    return unquote(raw)


def undot(decoded: str) -> str:
    """A segment already percent-decoded (no raw path to read): only the tilde escape of dots is left."""
    return "." * (len(decoded) // 3) if _TILDE_DOTS.fullmatch(decoded) else decoded
