"""How the pynenc exporter hooks pynenc's classes (proto/pynenc.py): a method wrapped so hooks run after
(or before) it, never raising into pynenc; abstract methods hooked on the concrete class pynenc builds."""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("tasktrail.pynenc")


def after(cls, name: str, hook: Callable, mark: str = "__tasktrail__") -> None:
    """Wrap cls.name so `hook(self, *args, **kwargs)` runs after it returns (its errors swallowed), once per
    `mark`: a part of the exporter that hooks a method another part hooked already passes a mark of its own
    (its configuration reporter, the queue reporter, the agent). The hooks of several marks share one wrapper,
    so pynenc's hot methods (store_runner_context runs with every transition) pay one call layer."""
    original = getattr(cls, name)
    marks = getattr(original, "__tasktrail_marks__", None)
    if marks is not None:
        if mark not in marks:
            marks.add(mark)
            original.__tasktrail_hooks__ += (hook,)   # a new tuple: a call under way keeps the old one
        return
    if getattr(original, mark, False):
        return

    def wrapper(self, *args, **kwargs):
        if kwargs:
            out = original(self, *args, **kwargs)
            _run(wrapper.__tasktrail_hooks__, name, self, args, kwargs)
            return out
        out = original(self, *args)   # positional only (pynenc's usual call): no keyword dict passed on
        for h in wrapper.__tasktrail_hooks__:
            try:
                h(self, *args)
            except Exception as exc:  # never into pynenc
                log.debug("tasktrail hook %s failed: %s", name, exc)
        return out

    wrapper.__tasktrail__ = True
    wrapper.__tasktrail_hooks__, wrapper.__tasktrail_marks__ = (hook,), {mark}
    wrapper.__wrapped__ = original
    wrapper.__name__, wrapper.__doc__ = original.__name__, original.__doc__
    setattr(cls, name, wrapper)


def _run(hooks, name: str, self, args, kwargs) -> None:
    for h in hooks:
        try:
            h(self, *args, **kwargs)
        except Exception as exc:  # never into pynenc
            log.debug("tasktrail hook %s failed: %s", name, exc)


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
