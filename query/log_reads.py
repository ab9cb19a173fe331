"""The log reads of the QueryService facade (query/service.py): log lines with their filters and
pagination, a live tail's next lines, an invocation's lines, a cut line's whole body, the log explorer.
A mixin: it uses the facade's `_q` (Reader), `_window` and `settings`."""
from __future__ import annotations

from typing import Optional, Sequence

from . import explore, invocations as inv, logs, params, values


class LogReads:
    def _log_filters(self, *, app=None, q=None, level=None, runner=None, worker=None, invocation=None, task=None,
                     since=None, until=None) -> tuple[list, list]:
        """(clauses, params) of a log read's filters; BadRequest for a bad one (web checks a tail's with it)."""
        lo, hi = self._window(since, until)
        return logs.filters(app=app, text=q, level=params.level(level), runner=runner, worker=worker,
                            invocation=invocation, task=task, since=lo, until=hi)

    def logs(self, *, limit: Optional[int] = None, cursor: Optional[str] = None, **filters) -> dict:
        """Log lines, newest first, with cursor pagination."""
        limit = params.limit(limit)
        clauses, args = self._log_filters(**filters)
        return logs.page(self._q, clauses, args, limit=limit, after=params.log_cursor(cursor),
                         preview_bytes=self.settings.previews.value_bytes)

    def logs_after(self, after_batch: int, *, limit: int = 1000, upto_batch: Optional[int] = None,
                   **filters) -> tuple[list[dict], int]:
        """Log lines committed in batches after `after_batch` (and up to `upto_batch` when given), oldest
        first, and the newest batch seen: what a live tail sends next."""
        clauses, args = self._log_filters(**filters)
        return logs.after_batch(self._q, clauses, args, after_batch, limit=limit, upto=upto_batch,
                                preview_bytes=self.settings.previews.value_bytes)

    def cut_lines_containing(self, after_batch: int, upto_batch: int, texts: Sequence[str]) -> set[tuple[str, str]]:
        """(line key, text) of the cut lines in batches (after_batch, upto_batch] holding `text`
        (query/logs.py)."""
        return logs.cut_lines_containing(self._q, after_batch, upto_batch, texts, self.settings.previews.value_bytes)

    def last_batch(self) -> int:
        return logs.last_batch(self._q)

    def invocation_logs(self, invocation_id: str, limit: int = 1000) -> list[dict]:
        """Its log lines, oldest first, within its own time range (query/logs.py)."""
        return self._invocation_logs(invocation_id, inv.time_range(self._q, invocation_id), limit)

    def _invocation_logs(self, invocation_id: str, rng, limit: int) -> list[dict]:
        return logs.of_invocation(self._q, invocation_id, rng, limit=params.limit(min(limit, params.MAX_LIMIT)),
                                  related_after_s=self.settings.related_after_s,
                                  preview_bytes=self.settings.previews.value_bytes)

    def log_body(self, key: str) -> bytes:
        """The whole body of the log line a preview's url names. BadRequest for a malformed key, NotFound
        when no line matches it."""
        return logs.body(self._q, *values.parse_log_key(key), key)

    def explore(self, text: str) -> dict:
        """Parse pasted log lines and resolve what they mention (query/explore.py)."""
        return explore.explore(self._q, text)
