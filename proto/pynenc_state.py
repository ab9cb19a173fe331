"""What the pynenc exporter (proto/pynenc.py) keeps between hooks: bounded caches and its counts."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


class Lru(OrderedDict):
    """A dict of at most `size` entries: `put` drops the least recently put one past it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


@dataclass
class Stats:
    """The exporter's counts since start: records handed to the emitter, dropped on a full queue, hooks failed."""
    emitted: int = 0
    dropped: int = 0
    errors: int = 0
