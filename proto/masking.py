"""Secret-looking values masked before a definition leaves the process (proto/emitter.py sends app
configuration, runner settings and task options through `mask`).

A value is masked when its name says it is a secret (password, secret, token, api key, credential, private
key) and it holds text, or when it is a URL with a password in it (`redis://user:pw@host`: only the password
is replaced).
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_NAME = re.compile(r"passw(or)?d|(^|_)pass($|_)|secret|token|api_?key|credential|private_?key|(^|_)auth($|_)",
                          re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?=@)", re.I)


def mask_value(name: str, value: Any) -> Any:
    """`value` as it may be shown: MASK for a secret's name (when it is set), a URL's password replaced,
    containers masked item by item; anything else unchanged."""
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_value(name, v) for v in value]
    if isinstance(value, (str, bytes)) and value and _SECRET_NAME.search(name or ""):
        return MASK
    if isinstance(value, str) and "://" in value:
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)
    return value


def mask(settings: dict) -> dict:
    """A copy of `settings` (name -> value) with secret-looking values masked (`mask_value`)."""
    return {str(k): mask_value(str(k), v) for k, v in settings.items()}
