"""The answer of one ad-hoc SQL statement, built under its limits: rows, bytes and time.

Rows are converted (query/sql_cells.py) and encoded to JSON one by one as DuckDB streams them, so the
answer's size is known while it is read, and conversion and encoding count inside the time limit.
The answer stops at `max_rows` rows or before the row that would take its JSON past `max_bytes`
bytes, and says so (`truncated`, `truncated_by`, `notice`), as the row cap always did. A row whose raw
Arrow size alone passes what is left is not even converted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import orjson
import pyarrow as pa

from tasktrail.store.api import QueryTimeout

from .sql_cells import cell, column_cells

_OPTS = orjson.OPT_NON_STR_KEYS


@dataclass
class SqlAnswer:
    """Columns, rows (each already encoded as a JSON array) and what cut it, if anything."""
    columns: list[str]
    rows: list[bytes] = field(default_factory=list)
    truncated_by: Optional[str] = None        # "rows" or "bytes"
    notice: Optional[str] = None

    @property
    def truncated(self) -> bool:
        return self.truncated_by is not None

    def head(self) -> bytes:
        """The JSON object's members other than `rows`, encoded."""
        return orjson.dumps({"columns": self.columns, "truncated": self.truncated,
                             "truncated_by": self.truncated_by, "notice": self.notice}, option=_OPTS)

    def body(self) -> bytes:
        """The whole answer as JSON: {columns, rows, truncated, truncated_by, notice}."""
        return self.head()[:-1] + b',"rows":[' + b",".join(self.rows) + b"]}"

    def python_rows(self) -> list[list]:
        """The rows as Python lists of JSON values."""
        return [orjson.loads(r) for r in self.rows]


class AnswerBuilder:
    """The consumer of a streamed read (EventLog.stream): `builder(columns, batches)` is the SqlAnswer.
    Raises QueryTimeout once `timeout_s` seconds have passed since `started` (time.monotonic(); default:
    when the store hands the answer over, just after it armed its own time limit for the query)."""

    def __init__(self, *, max_rows: int, max_bytes: int, timeout_s: float, started: Optional[float] = None) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.deadline = None if started is None else started + timeout_s

    def _in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout(f"query stopped at its time limit of {self.timeout_s:g} s "
                               "(reading and encoding its answer)")

    def __call__(self, columns: list[str], batches: Iterator) -> SqlAnswer:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.timeout_s
        answer = SqlAnswer(list(columns))
        used = len(answer.head()) + 64  # the envelope, with room for the longest notice's difference
        for batch in _grouped(batches, self._in_time):
            self._in_time()
            if not batch.num_rows:
                continue
            if len(answer.rows) >= self.max_rows:
                answer.truncated_by = "rows"
                answer.notice = f"cut at the row cap of {self.max_rows} rows (--sql-max-rows)"
                break
            take = min(batch.num_rows, self.max_rows - len(answer.rows))
            part = batch.slice(0, take)
            stopped = False
            if part.nbytes <= self.max_bytes - used:   # the usual case: the whole part at once
                rows = self._rows(part)
            else:                                        # large rows: one at a time, checked before converting
                rows = []
                for i in range(take):
                    self._in_time()
                    one = part.slice(i, 1)
                    if one.nbytes > self.max_bytes - used - sum(len(r) + 1 for r in rows):
                        stopped = True
                        break
                    rows.extend(self._rows(one))
            for k, encoded in enumerate(rows):
                if used + len(encoded) + 1 > self.max_bytes:
                    stopped = True
                    break
                used += len(encoded) + 1
                answer.rows.append(encoded)
                if k % 256 == 255:
                    self._in_time()
            if stopped:
                answer.truncated_by = "bytes"
                answer.notice = (f"cut at {len(answer.rows)} rows: the next row would take the answer past its cap "
                                 f"of {self.max_bytes} bytes (--sql-max-bytes)")
                break
            if take < batch.num_rows:
                answer.truncated_by = "rows"
                answer.notice = f"cut at the row cap of {self.max_rows} rows (--sql-max-rows)"
                break
        self._in_time()
        return answer

    @staticmethod
    def _rows(batch) -> list[bytes]:
        """Each row of an Arrow batch as an encoded JSON array."""
        cols = [column_cells(c) for c in batch.columns]
        out = []
        for row in zip(*cols):
            try:
                out.append(orjson.dumps(row, option=_OPTS))
            except (orjson.JSONEncodeError, TypeError):  # a value cell() did not foresee: as text
                out.append(orjson.dumps([cell(v) if _encodable(v) else str(v) for v in row], option=_OPTS))
        return out


# Small batches from DuckDB (a few rows each, so one huge row is never copied with many others) are
# converted together up to this many rows or Arrow bytes: per-batch costs stay small for small rows.
GROUP_ROWS = 2048
GROUP_BYTES = 1 << 20


def _grouped(batches: Iterator, check) -> Iterator:
    """The batches, consecutive small ones combined into one of up to GROUP_ROWS rows / GROUP_BYTES bytes;
    `check()` runs as each batch arrives (the time limit)."""
    group, rows, size = [], 0, 0
    for batch in batches:
        check()
        if not batch.num_rows:
            continue
        if group and (rows + batch.num_rows > GROUP_ROWS or size + batch.nbytes > GROUP_BYTES):
            yield _combine(group)
            group, rows, size = [], 0, 0
        group.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
    if group:
        yield _combine(group)


def _combine(group: list):
    if len(group) == 1:
        return group[0]
    return pa.Table.from_batches(group).combine_chunks().to_batches(max_chunksize=None)[0]


def _encodable(v) -> bool:
    try:
        orjson.dumps(v, option=_OPTS)
        return True
    except (orjson.JSONEncodeError, TypeError):
        return False
