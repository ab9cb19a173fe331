"""How the pynenc exporter hooks pynenc's classes (proto/pynenc.py): a method wrapped so a hook runs after
(or before) it, never raising into pynenc; abstract methods hooked on the concrete class pynenc builds."""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("tasktrail.pynenc")


def after(cls, name: str, hook: Callable, mark: str = "__tasktrail__") -> None:
    """Wrap cls.name so `hook(self, *args, **kwargs)` runs after it returns (its errors swallowed), once per
    `mark`: a part of the exporter that hooks a method another part hooked already passes a mark of its own."""
    original = getattr(cls, name)
    if getattr(original, mark, False):
        return

    def wrapper(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:  # never into pynenc
            log.debug("tasktrail hook %s failed: %s", name, exc)
        return out

    wrapper.__tasktrail__ = True
    setattr(wrapper, mark, True)
    wrapper.__wrapped__ = original
    wrapper.__name__, wrapper.__doc__ = original.__name__, original.__doc__
    setattr(cls, name, wrapper)


def before(cls, name: str, hook: Callable) -> None:
    """Wrap cls.name so `hook(self, *args, **kwargs)` runs before it (its errors swallowed)."""
    original = getattr(cls, name)
    if getattr(original, "__tasktrail__", False):
        return

    def wrapper(self, *args, **kwargs):
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:  # never into pynenc
            log.debug("tasktrail hook %s failed: %s", name, exc)
        return original(self, *args, **kwargs)

    wrapper.__tasktrail__ = True
    wrapper.__wrapped__ = original
    wrapper.__name__, wrapper.__doc__ = original.__name__, original.__doc__
    setattr(cls, name, wrapper)


def on_init(base, hooks: dict) -> None:
    """When pynenc builds a `base` subclass, hook these methods on that concrete class."""
    original = base.__init__
    if getattr(original, "__tasktrail__", False):
        return

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        for name, hook in hooks.items():
            after(type(self), name, hook)

    init.__tasktrail__ = True
    base.__init__ = init
