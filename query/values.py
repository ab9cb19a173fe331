"""Huge values as bounded previews: an invocation's arguments, result, error message and traceback,
and log line bodies.

Runners send megabytes in these (a 5 MB argument list, a 0.7 MB traceback). Reads fetch only a
preview (the first `limit` bytes, cut on a UTF-8 character boundary) and the full size, with
SQL `left()` / `strlen()`, so a detail or a list never carries a whole huge value; the whole value
is read only by its download route. Every preview has a description beside it:

    {"bytes": 5242880, "preview_bytes": 4096, "truncated": true, "url": "/api/v1/invocations/<id>/values/arguments"}

`bytes` is the whole value's size in UTF-8 bytes, `preview_bytes` the preview's, `truncated` whether
the preview is shorter than the value, `url` where the whole value downloads (null for a log line
that is not cut: its message is already whole).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlencode

from .errors import BadRequest, NotFound

# The value columns of `transitions`, by the name their download route uses.
INVOCATION_VALUES = ("arguments", "result", "error_message", "error_traceback")
# Values that runners send as JSON (tasktrail.v1 encodes non-string arguments and results as JSON).
JSON_VALUES = ("arguments", "result")


@dataclass(frozen=True)
class PreviewLimits:
    """Preview sizes in UTF-8 bytes."""
    value_bytes: int = 4096          # arguments, result, error message, log line body
    traceback_bytes: int = 16384     # error traceback

    def of(self, name: str) -> int:
        return self.traceback_bytes if name == "error_traceback" else self.value_bytes


def cut(text: Optional[str], limit: int) -> Optional[str]:
    """The longest prefix of `text` whose UTF-8 encoding is at most `limit` bytes (never half a
    character); None stays None."""
    if text is None:
        return None
    if len(text) * 4 <= limit:  # short enough whatever its characters
        return text
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", errors="ignore")  # drops only a trailing partial character


def describe(preview: str, total_bytes: int, url: Optional[str]) -> dict:
    """The description beside a preview: {bytes, preview_bytes, truncated, url}."""
    shown = len(preview.encode("utf-8"))
    return {"bytes": int(total_bytes), "preview_bytes": shown, "truncated": shown < total_bytes, "url": url}


def invocation_value_url(invocation_id: str, name: str, app: Optional[str] = None) -> str:
    """/api/v1/invocations/{id}/values/{name} (id percent-encoded, `?app=` when given)."""
    url = f"/api/v1/invocations/{quote(invocation_id, safe='')}/values/{name}"
    return url + ("?" + urlencode({"app": app}) if app else "")


# --- an invocation's values ------------------------------------------------------------------
class Preview(str):
    """A value's preview (a str: its first bytes, cut on a character) that knows the whole value's size
    (`total_bytes`) and the record carrying it (`record_id`, `ts` in micros as sent, `status`), so the
    value a history picks (copies included) can be described and downloaded."""
    total_bytes: int
    record_id: Optional[str]
    ts: int
    status: str

    @classmethod
    def of(cls, text: str, limit: int, total_bytes: int, row: dict) -> "Preview":
        p = cls(cut(text, limit))
        p.total_bytes, p.record_id, p.ts, p.status = int(total_bytes), row.get("record_id"), row["ts"], row["status"]
        return p


def transition_columns(limits: PreviewLimits, rel: str = "", only: Optional[tuple] = None) -> str:
    """What a read of an invocation's transitions selects: every column but `batch` (or those of `only`),
    `ts` in epoch micros, and each value as a prefix of at most its limit in characters (cut to bytes by
    `as_previews`) with its size in bytes (`<name>_bytes`). `rel`: the relation's name in a join."""
    p = rel + "." if rel else ""
    if only is None:
        cols = [f"{p}* EXCLUDE (batch, ts, " + ", ".join(INVOCATION_VALUES) + ")", f"epoch_us({p}ts) AS ts"]
    else:
        cols = [f"{p}{c}" for c in only if c not in INVOCATION_VALUES] + [f"epoch_us({p}ts) AS ts"]
    for name in INVOCATION_VALUES if only is None else [v for v in INVOCATION_VALUES if v in only]:
        cols.append(f"left({p}{name}, {int(limits.of(name))}) AS {name}, strlen({p}{name}) AS {name}_bytes")
    return ", ".join(cols)


def as_previews(rows: list[dict], limits: PreviewLimits) -> list[dict]:
    """`rows` read with `transition_columns`, each value turned into a `Preview` (in place)."""
    for r in rows:
        for name in INVOCATION_VALUES:
            if name not in r:  # not read (transition_columns' `only`)
                continue
            total = r.pop(f"{name}_bytes")
            if r[name] is not None:
                r[name] = Preview.of(r[name], limits.of(name), total, r)
    return rows


def described(previews: dict, invocation_id: str, app: Optional[str] = None) -> dict:
    """{name: description} of an invocation's values ({name: Preview or None}); a value never sent has
    no entry."""
    return {name: describe(p, p.total_bytes, invocation_value_url(invocation_id, name, app))
            for name, p in previews.items() if p is not None}


def whole_sql(name: str, preview: Preview, limits: PreviewLimits) -> tuple[str, dict]:
    """(SQL, params) reading the whole value `name` as bytes, and whether it is JSON, from the record
    `preview` came from (its record id, else its time and status; its size and preview must match).
    The caller adds $id, $lo, $hi (the invocation's range) and may append conditions."""
    check(name)
    is_json = f"json_valid({name})" if name in JSON_VALUES else "false"
    where = "record_id = $rid" if preview.record_id is not None else "epoch_us(ts) = $ts AND status = $status"
    params = ({"rid": preview.record_id} if preview.record_id is not None
              else {"ts": preview.ts, "status": preview.status})
    params.update(n=preview.total_bytes, p=str(preview))
    return (f"SELECT encode({name}), {is_json} FROM transitions WHERE invocation_id = $id AND ts BETWEEN $lo AND $hi "
            f"AND {where} AND strlen({name}) = $n AND starts_with({name}, $p)", params)


def check(name: str) -> None:
    """Raises NotFound unless `name` is one of INVOCATION_VALUES."""
    if name not in INVOCATION_VALUES:
        raise NotFound(f"no value {name!r}: an invocation's values are {', '.join(INVOCATION_VALUES)}")


# --- log line bodies ---------------------------------------------------------------------------
def log_lines_sql(columns: str, where: str, order: str, limit: int, preview_bytes: int) -> str:
    """Log lines with `body` as a preview: the filter, order and limit run first (inner query), and the
    previews, sizes and content hashes are computed only for the lines returned. `columns`: the other
    columns, without `body`."""
    n = int(preview_bytes)
    return f"""SELECT {columns}, left(body, {n}) AS body, strlen(body) AS body_bytes, epoch_us(ts) AS ts_us,
                      CASE WHEN strlen(body) > {n} THEN md5(body) END AS body_md5
               FROM (SELECT {columns}, body FROM log_records {where} ORDER BY {order} LIMIT {int(limit)})
               ORDER BY {order}"""


def log_message(d: dict, preview_bytes: int) -> tuple[Optional[str], dict]:
    """(message preview, {"message": description}) of a row read by `log_lines_sql`; a cut line's
    url names it by commit, time and content hash (`log_key`)."""
    body = cut(d["body"], preview_bytes)
    if body is None:
        return None, {}
    desc = describe(body, d["body_bytes"], None)
    if desc["truncated"]:
        desc["url"] = f"/api/v1/logs/{log_key(d['batch'], d['ts_us'], d['body_md5'])}/body"
    return body, {"message": desc}


def log_key(batch: int, ts_us: int, body_md5: str) -> str:
    """A log line's address: `<batch>.<time in epoch micros>.<md5 of its body>` (two identical lines
    in one commit at one time are one value)."""
    return f"{int(batch)}.{int(ts_us)}.{body_md5}"


_TS_US = (-62135596800000000, 253402300799999999)  # years 1 to 9999


def parse_log_key(key: str) -> tuple[int, int, str]:
    """(batch, epoch micros, md5) of a `log_key`; raises BadRequest for anything else."""
    parts = key.split(".")
    try:
        if len(parts) != 3 or len(parts[2]) != 32 or not parts[0].isdigit():
            raise ValueError
        int(parts[2], 16)
        batch, ts_us = int(parts[0]), int(parts[1])
        if batch >= 1 << 63 or not _TS_US[0] <= ts_us <= _TS_US[1]:
            raise ValueError
        return batch, ts_us, parts[2].lower()
    except ValueError:
        raise BadRequest(f"log line key must be <batch>.<epoch micros>.<md5 of the body>, got {key!r}") from None


LOG_BODY_SQL = ("SELECT encode(body) FROM log_records WHERE batch = $batch AND ts = make_timestamp($ts_us::BIGINT) "
                "AND md5(body) = $md5 LIMIT 1")


def filename(stem: str, name: str, is_json: bool) -> str:
    """A download's file name: the stem's safe characters, the value's name, .json or .txt."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in stem)[:80] or "value"
    return f"{safe}-{name}.{'json' if is_json else 'txt'}"
