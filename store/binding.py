"""What DuckDB's Python binding costs per query that is not DuckDB's work, and the one setting that cuts it.

Before it binds a query parameter, DuckDB's binding asks whether the value is a pandas object by importing
`pandas` (its import cache). When pandas is not installed, the import fails and Python does not remember
the failure: every parameter of every query searches all of `sys.path` again — measured 367 µs for a query of
three parameters against 116 µs once the failure is immediate (a point read of one invocation runs 4–13
queries; a py-spy profile of `GET /api/v1/invocations/{id}` over HTTP on a 1M-invocation store showed
11.6 % of the server's time in those imports). tasktrail never passes pandas objects, so when pandas is
absent the store records it as absent in `sys.modules` (None: `import pandas` then raises ImportError at
once, as it would after the search). Where pandas is installed nothing changes.
"""
from __future__ import annotations

import importlib.util
import sys

# Modules DuckDB's binding tries to import for each parameter, that tasktrail does not need.
OPTIONAL_MODULES = ("pandas",)


def skip_absent_imports() -> list[str]:
    """Record each of OPTIONAL_MODULES that is not installed as absent (`sys.modules[name] = None`), so
    DuckDB's per-parameter import of it fails at once. Returns the names so recorded; a module that is
    installed, or already imported or recorded, is left alone. Never raises."""
    done = []
    for name in OPTIONAL_MODULES:
        if name in sys.modules:
            continue
        try:
            missing = importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            missing = True
        if missing:
            sys.modules[name] = None
            done.append(name)
    return done
