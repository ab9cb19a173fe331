"""OTLP logs requests written as protobuf bytes directly, the constant parts built once.

What proto/otlp_sender.py sends: the same message opentelemetry-proto's generated classes would build
(tests/test_otlp_sender.py reads it back with them), at a third of their cost, because most of a
tasktrail.v1 record does not change from one record to the next:

- a record's runner context (`tasktrail.runner.*`) goes once per request on its own `ScopeLogs`, as that
  scope's `InstrumentationScope.attributes` (tasktrail's mapper applies a scope's attributes to each of its
  records, a record's own attribute winning: ingest/map.py), not on every record;
- the scope, the resource and each record's constant head (severity, body, event name) are encoded once
  and kept; so is each attribute key, and each value of the attributes that take few values (status, task,
  owner runner).

A queued record is (time ns, event name or None, body, severity number, severity text, attributes, scope
name[, context attributes]): the optional eighth item is a mapping sent as the scope's attributes.
"""
from __future__ import annotations

import struct
from typing import Mapping, Optional

from . import names as n

_VARINT1 = [bytes((i,)) for i in range(128)]
_TIMES = struct.Struct("<BQBQ")    # LogRecord.time_unix_nano (fixed64, field 1), observed_time (field 11)
_DOUBLE = struct.Struct("<d")
# Attributes whose values repeat: their encoded KeyValue is kept (at most _MAX_KEPT, then started over).
_REPEATING = frozenset({n.TT_STATUS, n.TT_PREVIOUS_STATUS, n.TT_TASK_ID, n.TT_OWNER_RUNNER_ID, n.TT_WORKFLOW_TYPE,
                        n.TT_ERROR_TYPE, n.TT_RUNNER_ID, n.TT_RUNNER_CLASS, n.TT_RUNNER_HOSTNAME,
                        n.TT_RUNNER_PARENT_ID})
_MAX_KEPT = 8192
_kept: dict = {}      # (key, value) -> encoded KeyValue field bytes
_keys: dict = {}      # key -> b"\x0a" len key b"\x12" (KeyValue.key, then the tag of KeyValue.value)
_heads: dict = {}     # (severity number, severity text, body, event name) -> encoded LogRecord fields
_scopes: dict = {}    # (scope name, context key) -> encoded InstrumentationScope field


def _varint(v: int) -> bytes:
    if v < 128:
        return _VARINT1[v]
    if v < 16384:
        return bytes(((v & 0x7F) | 0x80, v >> 7))
    if v < 2097152:
        return bytes(((v & 0x7F) | 0x80, ((v >> 7) & 0x7F) | 0x80, v >> 14))
    out = bytearray()
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _len(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    n = len(body)
    return tag + (_VARINT1[n] if n < 128 else _varint(n)) + body


def _utf8(s: str) -> bytes:
    return s.encode("utf-8", "replace")


def _any(v) -> bytes:
    """An AnyValue message's bytes for a Python value (anything else as its str)."""
    t = type(v)
    if t is str:
        return _len(b"\x0a", _utf8(v))
    if t is bool:
        return b"\x10\x01" if v else b"\x10\x00"
    if t is int:
        return b"\x18" + _varint(v if v >= 0 else v + (1 << 64))
    if t is float:
        return b"\x21" + _DOUBLE.pack(v)
    if t is list or t is tuple:
        return _len(b"\x2a", b"".join(_len(b"\x0a", _any(x)) for x in v))   # ArrayValue.values
    if t is bytes:
        return _len(b"\x3a", v)
    return _len(b"\x0a", _utf8(str(v)))


def _kv(key: str, v, tag: bytes = b"\x32") -> bytes:
    """One `attributes` field (KeyValue; `tag` is the field's: 0x32 for LogRecord, 0x0a for Resource,
    0x1a for InstrumentationScope)."""
    head = _keys.get(key)
    if head is None:
        head = _len(b"\x0a", _utf8(key)) + b"\x12"
        if len(_keys) < _MAX_KEPT:   # attribute names: a few dozen, but a sender may make up its own
            _keys[key] = head
    t = type(v)
    if t is str:
        b = _utf8(v)
        n = len(b)
        value = (b"\x0a" + _VARINT1[n] + b) if n < 128 else _len(b"\x0a", b)
    else:
        value = _any(v)
    n = len(value)
    return _len(tag, head + (_VARINT1[n] if n < 128 else _varint(n)) + value)


def _attrs(attrs: Mapping[str, object]) -> bytes:
    """A record's `attributes` fields. Strings (nearly every value) are written inline; the KeyValue of a
    repeating value is kept."""
    kept, keys, var1 = _kept, _keys, _VARINT1
    out = bytearray()
    for k, v in attrs.items():
        if type(v) is str:
            if k in _REPEATING:
                b = kept.get((k, v))
                if b is None:
                    if len(kept) >= _MAX_KEPT:
                        kept.clear()
                    b = kept[(k, v)] = _kv(k, v)
                out += b
                continue
            head = keys.get(k)
            b = v.encode("utf-8", "replace")
            n = len(b)
            if head is not None and n < 126 and len(head) + n < 125:   # every length fits one byte
                out += b"\x32"
                out += var1[len(head) + n + 3]
                out += head
                out += var1[n + 2]
                out += b"\x0a"
                out += var1[n]
                out += b
                continue
        elif type(v) is int and 0 <= v < 1 << 63:   # a sequence, a pid: AnyValue.int_value
            head = keys.get(k)
            if head is not None and len(head) < 110:
                b = _varint(v)
                out += b"\x32"
                out += var1[len(head) + len(b) + 2]
                out += head
                out += var1[len(b) + 1]
                out += b"\x18"
                out += b
                continue
        out += _kv(k, v)
    return bytes(out)


def _head(severity_number: int, severity_text: str, body, event_name: Optional[str]) -> bytes:
    keep = body is None or (type(body) is str and len(body) <= 64)   # event names as bodies repeat, log lines not
    key = (severity_number, severity_text, body, event_name) if keep else None
    head = _heads.get(key) if keep else None
    if head is None:
        head = (b"\x10" + _varint(severity_number) if severity_number else b"")
        if severity_text:
            head += _len(b"\x1a", _utf8(severity_text))
        if body is not None:
            head += _len(b"\x2a", _any(body))
        if event_name:
            head += _len(b"\x62", _utf8(event_name))
        if keep and len(_heads) < 4096:
            _heads[key] = head
    return head


def _scope(name: str, context: Optional[Mapping[str, object]]) -> bytes:
    """ScopeLogs.scope (field 1): the InstrumentationScope named `name` with `context` as its attributes."""
    key = (name, id(context) if context else None)
    b = _scopes.get(key)
    if b is None or (context and b[1] is not context):
        body = _len(b"\x0a", _utf8(name)) if name else b""
        if context:
            body += b"".join(_kv(k, v, b"\x1a") for k, v in context.items())
        b = (_len(b"\x0a", body), context)
        if len(_scopes) >= _MAX_KEPT:
            _scopes.clear()
        _scopes[key] = b
    return b[0]


def encode(resource: Mapping[str, object], records: list) -> bytes:
    """One OTLP `ExportLogsServiceRequest` (serialized protobuf) holding `records` under one resource, one
    ScopeLogs per distinct (scope name, context), the records of each in the order given."""
    groups: dict = {}
    times, head_of, attrs_of = _TIMES.pack, _head, _attrs
    for rec in records:
        ts, event_name, body, severity_number, severity_text, attrs, scope = rec[:7]
        context = rec[7] if len(rec) > 7 else None
        key = (scope, id(context) if context else None)
        group = groups.get(key)
        if group is None:
            group = groups[key] = [_scope(scope, context)]
        lr = times(0x09, ts, 0x59, ts) + head_of(severity_number, severity_text, body, event_name) + attrs_of(attrs)
        n = len(lr)
        group.append(b"\x12" + (_VARINT1[n] if n < 128 else _varint(n)) + lr)
    res = _len(b"\x0a", b"".join(_kv(k, v, b"\x0a") for k, v in resource.items()))
    rl = res + b"".join(_len(b"\x12", b"".join(g)) for g in groups.values())
    return _len(b"\x0a", rl)
