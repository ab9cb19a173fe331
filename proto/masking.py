"""Secret-looking values masked before a definition leaves the process (proto/emitter.py sends app
configuration, runner settings and task options through `mask`) and again when tasktrail stores and reads
one (proto/dialects/tasktrail_v1.py, query/definitions.py), so a runner that sent them raw shows none.

A value is masked (replaced by `***`) when:
- its name says it is a secret (password, passwd, pwd, pass, secret, token, api key, credential, private key,
  auth) and it holds text or bytes; a number too when the name ends with the secret word (`password`,
  `db_pin_token`: masked; `max_tokens`, `token_ttl`: kept);
- it is text (or bytes, read as UTF-8) holding a URL with a password (`redis://user:pw@host`: only the
  password; a password holding `@` or `/` is masked up to the last `@` before the query), a query-string or
  connection-string parameter whose name says secret or ends in `key` (`?password=X`, `&token=X`,
  `host=db password=X`: only the value).
Containers are masked item by item (a list's items under the list's name). Booleans and None are kept.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"
_WORDS = r"passw(?:or)?d|pwd|pass|secret|token|api_?key|credential|private_?key|auth"
_SECRET_NAME = re.compile(r"passw(or)?d|pwd|(^|_)pass($|_)|secret|token|api_?key|credential|private_?key|"
                          r"(^|_)auth($|_)", re.I)
_SECRET_NUMBER_NAME = re.compile(rf"(^|_)(?:{_WORDS})$", re.I)
# scheme://user:PASSWORD@host — the password runs to the last "@" before any query, fragment or blank.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^\s?#]+?)(?=@[^@\s?#]*(?:[?#\s]|$))",
                           re.I)
# name=value in a query string (?a=1&password=X) or a libpq/ODBC connection string (host=db password=X).
_PARAM = re.compile(rf"(?P<head>(?:^|[\s?&;])(?P<name>[\w.\-]*(?:{_WORDS}|key)[\w.\-]*)\s*=\s*)"
                    r"(?P<v>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;#'\"]+)", re.I)


def mask_text(text: str) -> str:
    """`text` with a URL's password and secret-named parameters' values replaced by MASK."""
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    if "=" in text:
        text = _PARAM.sub(lambda m: m.group("head") + (m.group("v") if m.group("v") == MASK else MASK), text)
    return text


def mask_value(name: str, value: Any) -> Any:
    """`value` as it may be shown: MASK for a secret's name (when it is set), a URL's password and secret
    parameters replaced, containers masked item by item, bytes read as UTF-8 text; anything else unchanged."""
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_value(name, v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str) and value and _SECRET_NAME.search(name or ""):
        return MASK
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _SECRET_NUMBER_NAME.search(name or ""):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask(settings: dict) -> dict:
    """A copy of `settings` (name -> value) with secret-looking values masked (`mask_value`)."""
    return {str(k): mask_value(str(k), v) for k, v in settings.items()}
