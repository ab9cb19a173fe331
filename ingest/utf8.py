"""Invalid UTF-8 in `string` fields: find it and replace it, so one bad string does not sink a request.

Protobuf's parser refuses a whole message for one string field holding invalid UTF-8, which the Go and
Rust SDKs (and the OTel Collector, which does not check) let through. `repair` walks the serialized
message's wire format with its descriptor, replaces the invalid bytes of each string field with U+FFFD
(Python's "replace" error handler: one U+FFFD per maximal invalid subsequence, as Unicode recommends
and as opentelemetry-proto's implementation notes advise), rewrites the lengths of the enclosing
messages, and names every field it repaired by its path. It runs only after the fast parser has
refused a body for bad UTF-8, and it asks that parser about each sub-message before walking it, so
only the records that hold a bad string are walked field by field in Python (a 5 MB request of 40,000
records with two bad ones: ~0.3 s; walking all of it: ~3 s).
"""
from __future__ import annotations

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_MAX_DEPTH = 100                 # protobuf's own nesting limit
_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"
_CLASSES: dict = {}              # message classes by full name, to ask the C parser about a part


class Malformed(ValueError):
    """The bytes are not a well-formed protobuf message of the given type; the message says where."""


def repair(buf: bytes, descriptor, found: list[str]) -> bytes | None:
    """`buf` (a serialized message of type `descriptor`) with every string field's invalid UTF-8
    replaced by U+FFFD; None when no string needed it. Appends to `found` the path of each repaired
    field, e.g. "resource_logs[0].scope_logs[0].log_records[3].attributes['user']". Raises Malformed
    when the wire format is broken; `found` then holds the invalid strings met before that point."""
    return _message(buf, 0, len(buf), descriptor, "", 0, found)


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise Malformed("a varint runs past the end of its message")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _message(buf: bytes, pos: int, end: int, desc, path: str, depth: int, found: list[str]) -> bytes | None:
    """The bytes buf[pos:end] (one message) repaired, or None when nothing in them needed it."""
    if depth > _MAX_DEPTH:
        raise Malformed(f"messages nest deeper than {_MAX_DEPTH} levels")
    start = pos
    pieces: list[tuple[int, int, bytes]] = []        # (from, to, replacement) of buf, in order
    seen: dict[int, int] = {}
    fields = desc.fields_by_number
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            size, body = _varint(buf, pos, end)
            length_at, pos = pos, body + size
            if pos > end:
                raise Malformed(f"a field of {path or desc.name} runs past the end of its message")
            field = fields.get(number)
            if field is None or field.type not in (_STRING, _MESSAGE):
                continue
            index = seen.get(number, -1) + 1
            seen[number] = index
            if field.type == _STRING:
                raw = buf[body:pos]
                try:
                    raw.decode("utf-8")
                    continue
                except UnicodeDecodeError:
                    fixed = raw.decode("utf-8", "replace").encode("utf-8")
                found.append(readable(_field_path(path, field, index, buf, body, pos)))
            else:
                if _parses(field.message_type, buf[body:pos]):
                    continue        # nothing to repair in it: the C parser says so much faster
                fixed = _message(buf, body, pos, field.message_type, _field_path(path, field, index, buf, body, pos),
                                 depth + 1, found)
                if fixed is None:
                    continue
            pieces.append((length_at, pos, _encode_varint(len(fixed)) + fixed))
        else:
            raise Malformed(f"{path or desc.name} holds a field of wire type {wire}, which OTLP never uses")
        if pos > end:
            raise Malformed(f"a field of {path or desc.name} runs past the end of its message")
    if not pieces:
        return None
    out, at = [], start
    for a, b, replacement in pieces:
        out.append(buf[at:a])
        out.append(replacement)
        at = b
    out.append(buf[at:end])
    return b"".join(out)


def _parses(desc, data: bytes) -> bool:
    cls = _CLASSES.get(desc.full_name)
    if cls is None:
        cls = _CLASSES[desc.full_name] = message_factory.GetMessageClass(desc)
    try:
        cls.FromString(data)
        return True
    except (DecodeError, RecursionError):
        return False


def _field_path(path: str, field, index: int, buf: bytes, body: int, end: int) -> str:
    name = f"{path}.{field.name}" if path else field.name
    if not _is_repeated(field):
        return name
    if field.type == _MESSAGE and field.message_type.full_name == _KEY_VALUE:
        key = _kv_key(buf, body, end)
        if key is not None:
            return f"{name}[{key!r}]"
    return f"{name}[{index}]"


def _is_repeated(field) -> bool:
    rep = getattr(field, "is_repeated", None)
    return rep if rep is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _kv_key(buf: bytes, pos: int, end: int) -> str | None:
    """The key (field 1) of a serialized KeyValue, for naming an attribute; None when it has none."""
    key = None
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if tag >> 3 == 1:
                key = buf[pos:pos + size].decode("utf-8", "replace")
            pos += size
        else:
            return key
    return key


def readable(path: str, tails=(".value.string_value", ".string_value")) -> str:
    """An attribute's string value is named by the attribute: drop the AnyValue plumbing."""
    for tail in tails:
        if path.endswith(tail):
            return path[: -len(tail)]
    return path
