"""Commands (abort, rerun): the read model over the log's `command_records` and the `commands` view.

Each command's life is a run of records: requested (the API), delivered (handed to one runner context),
then done, refused or expired (docs/control.md). The view `commands` (store/sql/views.sql) folds them into
one row per command, its latest state by that order; `records` shows every state of one command.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Optional, Sequence

from tasktrail.proto.names import COMMAND_FINAL_STATES, COMMAND_STATES

from . import params
from .errors import BadRequest, NotFound
from .params import cursor_of, cursor_values, cursor_time, iso
from .reader import Reader, conditions, where

COLUMNS = ("command_id", "app_id", "kind", "target", "target_kind", "requested_by", "requested_at", "state",
           "runner_id", "updated_at", "reason", "parameters", "new_invocation_id")
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM commands"
# A command aimed at an invocation (params: its id twice): at it, or at a workflow run that names it.
_AIMED_AT = "(target = ? OR list_contains(json_extract_string(parameters, '$.invocations[*]'), ?))"
# An agent's reason as the API and pages show it, in characters: a longer one is cut (`reason_truncated`);
# the whole stays in `command_records` (SQL).
REASON_CHARS = 2000


def _reason(out: dict) -> dict:
    """`out` with its `reason` cut to REASON_CHARS and `reason_truncated` saying whether it was."""
    reason = out.get("reason")
    out["reason_truncated"] = bool(reason) and len(reason) > REASON_CHARS
    if out["reason_truncated"]:
        out["reason"] = reason[:REASON_CHARS] + "…"
    return out


def ended(status: Optional[str], is_final: bool) -> bool:
    """Whether an invocation is over for commands: final, or KILLED (aborted work: pynenc may still reroute
    it, but nothing of it runs now). Abort needs it not ended, re-run needs it ended."""
    return bool(is_final) or status == "KILLED"


def shape(row: dict) -> dict:
    """One command as the API answers it (API.md): times RFC 3339, parameters as JSON, `is_final`."""
    out = dict(row)
    out["requested_at"], out["updated_at"] = iso(row["requested_at"]), iso(row["updated_at"])
    out["parameters"] = json.loads(row["parameters"]) if row.get("parameters") else {}
    out["is_final"] = row["state"] in COMMAND_FINAL_STATES
    return _reason(out)


def listing(q: Reader, *, app: Optional[str], target: Optional[str], state: Optional[str],
            since: Optional[datetime], limit: int, cursor: Optional[str],
            until: Optional[datetime] = None) -> dict:
    """{items: [command], next_cursor}: the newest requested first. `state` one of COMMAND_STATES, in any
    case (BadRequest otherwise); `since` and `until` on requested_at; `cursor` the previous page's next_cursor."""
    state = state.lower() if state is not None else None
    if state is not None and state not in COMMAND_STATES:
        raise BadRequest(f"state must be one of {', '.join(COMMAND_STATES)}, got {state!r}")
    clauses, args = conditions(("app_id = ?", app), ("target = ?", target), ("state = ?", state),
                               ("requested_at >= ?", since), ("requested_at <= ?", until))
    after = cursor_values(cursor, 2)
    if after:
        clauses.append("(requested_at, command_id) < (?, ?)")
        args += [cursor_time(after[0]), after[1]]
    rows = q(f"{_SELECT} {where(clauses)} ORDER BY requested_at DESC, command_id DESC LIMIT ?",
             args + [limit + 1]).dicts()
    nxt = cursor_of(rows[limit - 1]["requested_at"], rows[limit - 1]["command_id"]) if len(rows) > limit else None
    return {"items": [shape(r) for r in rows[:limit]], "next_cursor": nxt}


def one(q: Reader, command_id: str) -> dict:
    """The command `command_id` with `records`, every state it went through, oldest first. Raises NotFound."""
    rows = q(f"{_SELECT} WHERE command_id = ?", [command_id]).dicts()
    if not rows:
        raise NotFound(f"no command {command_id!r}")
    out = shape(rows[0])
    out["records"] = records(q, [command_id]).get(command_id, [])
    return out


def records(q: Reader, ids: Sequence[str]) -> dict[str, list[dict]]:
    """{command_id: [{timestamp, state, runner_id, reason, new_invocation_id, source}]}, oldest first: the
    records that count (view `command_steps`; a report not from the runner it was delivered to is left out)."""
    if not ids:
        return {}
    ph = ", ".join("?" * len(ids))
    rows = q(f"SELECT command_id, ts, state, runner_id, reason, new_invocation_id, source FROM command_steps "
             f"WHERE command_id IN ({ph}) ORDER BY batch, ts, state", list(ids)).dicts()
    out: dict[str, list[dict]] = {}
    for r in rows:
        cid, ts = r.pop("command_id"), r.pop("ts")
        out.setdefault(cid, []).append(_reason({"timestamp": iso(ts), **r}))
    return out


def for_invocation(q: Reader, invocation_id: str, app: Optional[str] = None,
                   any_aimed: Optional[bool] = None) -> dict:
    """What an invocation's page shows of commands: `commands` aimed at it (each with its `records`, newest
    first), `rerun_of` (the invocation this one re-ran, or None) and `reruns` (the invocations re-running
    it), both from done re-run commands; with `app`, only that app's commands (an id two apps share).
    `any_aimed`: whether any command record names it, when the caller looked (query/invocation_read.py)."""
    # Most invocations were never acted on: one look at the raw records says so, before the views' work.
    if any_aimed is None:
        any_aimed = bool(q("SELECT 1 FROM command_records WHERE target = ? OR new_invocation_id = ? "
                           "OR contains(parameters, ?) LIMIT 1", [invocation_id, invocation_id, invocation_id]).rows)
    if not any_aimed:
        return {"commands": [], "rerun_of": None, "reruns": []}
    rows = q(f"{_SELECT} WHERE {_AIMED_AT} AND (? IS NULL OR app_id = ?) ORDER BY requested_at DESC LIMIT 200",
             [invocation_id, invocation_id, app, app]).dicts()
    recs = records(q, [r["command_id"] for r in rows])
    cmds = [{**shape(r), "records": recs.get(r["command_id"], [])} for r in rows]
    back = q("SELECT target FROM commands WHERE kind = 'rerun' AND new_invocation_id = ? AND (? IS NULL OR app_id = ?)"
             " LIMIT 1", [invocation_id, app, app]).rows
    return {"commands": cmds, "rerun_of": back[0][0] if back else None, "reruns": reruns_of(cmds)}


def reruns_of(cmds: list[dict]) -> list[str]:
    """The new invocations of the done re-run commands among `cmds` (newest first), oldest first."""
    return [c["new_invocation_id"] for c in reversed(cmds) if c["kind"] == "rerun" and c["new_invocation_id"]]


def rerun_origins(q: Reader, ids: Sequence[str]) -> dict[str, str]:
    """{new invocation id: the invocation it re-ran} for those of `ids` made by a done re-run command (a runs
    table's "↻ re-run of" links); empty when none was. One look at the raw records first: most stores have
    few commands, most pages none of their re-runs."""
    ids = [i for i in ids if i]
    if not ids or not q("SELECT 1 FROM command_records WHERE new_invocation_id IS NOT NULL LIMIT 1").rows:
        return {}
    rows = q("SELECT new_invocation_id, target FROM commands WHERE kind = 'rerun' AND state = 'done' "
             "AND new_invocation_id IN (SELECT unnest(?::VARCHAR[]))", [list(ids)]).rows
    return {new: original for new, original in rows}


def with_rerun_origins(q: Reader, items: list[dict], key: str) -> list[dict]:
    """`items` (rows of a runs table) each with `rerun_of`: the invocation its `key` re-ran, or None."""
    origins = rerun_origins(q, [r.get(key) for r in items])
    for r in items:
        r["rerun_of"] = origins.get(r.get(key))
    return items


def pending(q: Reader, app: str, limit: int = 100) -> list[dict]:
    """The app's commands still `requested` (not handed out), oldest first, with their parameters."""
    rows = q(f"{_SELECT} WHERE app_id = ? AND state = 'requested' ORDER BY requested_at, command_id LIMIT ?",
             [app, limit]).dicts()
    return [shape(r) for r in rows]


def open_of(q: Reader, kind: str, target: str, app: Optional[str] = None) -> Optional[dict]:
    """The command of `kind` on `target` (of `app`, when given) that is not final yet (requested or
    delivered), or None: {command_id, target_kind, target}. An open command of a workflow run names its
    member invocations (`parameters.invocations`): it is open on each of them too."""
    rows = q(f"SELECT command_id, target_kind, target FROM commands WHERE kind = ? AND (? IS NULL OR app_id = ?) "
             f"AND state IN ('requested', 'delivered') AND {_AIMED_AT} ORDER BY requested_at LIMIT 1",
             [kind, app, app, target, target]).dicts()
    return rows[0] if rows else None


def due(q: Reader, before: datetime, limit: int = 1000) -> list[dict]:
    """Commands requested or delivered whose latest record is older than `before` (naive UTC): to expire."""
    return [shape(r) for r in q(f"{_SELECT} WHERE state IN ('requested', 'delivered') AND updated_at < ? "
                                f"ORDER BY updated_at LIMIT ?", [before, limit]).dicts()]


class CommandReads:
    """The command reads of the query facade (QueryService mixes this in: it gives `_q`, `_window`)."""

    def commands(self, *, app=None, target=None, state=None, since=None, until=None, limit=None,
                 cursor=None) -> dict:
        """{items: [command], next_cursor}, newest requested first (API.md `GET /commands`)."""
        lo, hi = self._window(since, until)
        return listing(self._q, app=app, target=target, state=state, since=lo, until=hi,
                       limit=params.limit(limit), cursor=cursor)

    def command(self, command_id: str) -> dict:
        """One command with every record of its life; raises NotFound."""
        return one(self._q, command_id)

    def invocation_commands(self, invocation_id: str, app: Optional[str] = None) -> dict:
        """{commands, rerun_of, reruns} of one invocation (for_invocation)."""
        return for_invocation(self._q, invocation_id, app)

    def pending_commands(self, app: str, limit: int = 100) -> list[dict]:
        """The app's commands not handed out yet, oldest first."""
        return pending(self._q, app, limit)

    def open_command(self, kind: str, target: str, app: Optional[str] = None) -> Optional[dict]:
        """The not-yet-final command of `kind` on `target` (of `app`), or None (open_of)."""
        return open_of(self._q, kind, target, app)

    def due_commands(self, before) -> list[dict]:
        """Commands requested or delivered with no record since `before` (naive UTC datetime)."""
        return due(self._q, before)
