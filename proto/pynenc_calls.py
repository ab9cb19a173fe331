"""What the pynenc exporter (proto/pynenc.py) sends of an invocation's call: pynenc's own call id.

pynenc gives every invocation a call (`invocation.call`): the task and its arguments. Its id,
`call.call_id.key`, is the task id and a SHA-256 of the serialized arguments (`pynenc.call.compute_args_id`,
"no_args" without arguments), so every invocation of one task with equal arguments shares it; pynmon's
/calls pages list them. The exporter sends it as `tasktrail.call.id` on the REGISTERED transition.
"""
from __future__ import annotations

from typing import Optional


def call_id(invocation) -> Optional[str]:
    """pynenc's call id key of `invocation` ("<task id key>:<args id>"), or None when it has none (a call
    whose arguments cannot be serialized: pynenc itself would fail on it)."""
    try:
        key = invocation.call.call_id.key
    except Exception:
        return None
    return str(key) if key else None
