"""Which tasks are a runner's own ("system" or "core") tasks, hidden by the timeline's `show_system=0`.

Pynmon hides pynenc 0.4's core tasks, the task ids under `pynenc.core_tasks.` (pynenc/core_tasks.py:
`recover_pending_invocations`, `recover_running_invocations`, run by every runner on a cron). tasktrail
reads the same rule for every runner it hears from, on the task id alone (no record carries a flag):

- drop a leading language tag `<lang>::` (rustvello's task ids read `python::module.name`, `rust::…`);
- the task is a system task when what is left is `<module>.<name>` and the module's last component is
  `core_tasks` (pynenc's `pynenc.core_tasks`, rustvello's own `core_tasks`, or any runner's
  `<package>.core_tasks`), or the module is exactly `celery` (Celery's built-in tasks such as
  `celery.backend_cleanup`, `celery.chord_unlock`).

A tasktrail.v1 runner marks its internal tasks the same way: it names them `<package>.core_tasks.<name>`
(docs/conventions.md, "System tasks"). `SQL_PATTERN` is the same rule for DuckDB's `regexp_full_match`
(RE2), so the store and Python agree.
"""
from __future__ import annotations

import re

SQL_PATTERN = r"(?:\w+::)?(?:(?:[\w.]*\.)?core_tasks|celery)\.[^.]+"
_RE = re.compile(SQL_PATTERN)


def is_system_task(task_id: str | None) -> bool:
    """True when `task_id` names a runner's own task (the module rule above); False for None or ''."""
    return bool(task_id) and _RE.fullmatch(task_id) is not None
