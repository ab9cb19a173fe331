"""Protobuf request bodies as OTLP/JSON (hex ids), for B2's JSON figure."""
from __future__ import annotations

import base64
import json

from google.protobuf import json_format

from tasktrail.ingest.decode import REQUEST

_IDS = ("traceId", "spanId", "parentSpanId")


def _hexify(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _IDS and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                _hexify(v)
    elif isinstance(node, list):
        for x in node:
            _hexify(x)


def to_otlp_json(signal: str, body: bytes) -> bytes:
    d = json_format.MessageToDict(REQUEST[signal].FromString(body))
    _hexify(d)
    return json.dumps(d).encode()
