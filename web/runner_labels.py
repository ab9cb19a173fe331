"""A label per runner id on a page: class, host/pid and the shortest id prefix that tells it from the other
runners the page shows (query/runners.labels, one read by the page's ids). `render` collects the ids from the
page's data (`labels_for`) and sets them for the time the template renders (`rendering`); the `runner`
macro of _macros.html asks `runner_label(id)`."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Optional

# The keys under which a page's data holds runner ids.
RUNNER_KEYS = frozenset({"runner_id", "worker_id", "owner_runner_id", "parent_runner_id", "assigned_runner_id",
                         "atomic_service_runner_id", "emitted_by_runner_id"})
MAX_IDS = 5000  # a page never shows more; beyond it the rest keep their plain id

_LABELS: ContextVar[dict] = ContextVar("runner_labels", default={})


def runner_ids(data: Any, found: Optional[set] = None, depth: int = 0) -> set:
    """Every runner id under RUNNER_KEYS in `data` (dicts and lists, a few levels down)."""
    found = set() if found is None else found
    if depth > 6 or len(found) >= MAX_IDS:
        return found
    if isinstance(data, dict):
        for k, v in data.items():
            if k in RUNNER_KEYS and isinstance(v, str) and v:
                found.add(v)
            elif isinstance(v, (dict, list)):
                runner_ids(v, found, depth + 1)
    elif isinstance(data, list):
        for v in data:
            if isinstance(v, (dict, list)):
                runner_ids(v, found, depth + 1)
    return found


def labels_for(qs, data: Any, live: Any = None) -> dict:
    """{id: label dict} of the runners `data` names (empty when the service cannot say); `live`: the
    Liveness the page read its runners with (the labels then come from its rows, no read)."""
    ids = runner_ids(data)
    if not ids or not hasattr(qs, "runner_labels"):
        return {}
    return qs.runner_labels(sorted(ids), live) if live is not None else qs.runner_labels(sorted(ids))


@contextmanager
def rendering(labels: dict):
    token = _LABELS.set(labels)
    try:
        yield
    finally:
        _LABELS.reset(token)


def runner_label(runner_id: Optional[str]) -> Optional[dict]:
    """The label of `runner_id` on the page being rendered, or None."""
    return _LABELS.get().get(runner_id) if runner_id else None
