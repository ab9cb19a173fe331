"""Giving freed memory back to the system after a query failed for lack of memory (tasktrail/memory_cap.py).

Under `--max-memory` a query that builds one huge value fails at the process's cap; the address space it
reached must be given back at once, or the next allocation of any thread (a receiver, the writer) fails at the
cap too. DuckDB's jemalloc returns freed extents on its own (`retain:false`) when its background thread purges
them, after their decay time, and alone that is usually seconds. But not always: in whole-suite runs under
load the data segment stayed at 2.3 GB of a 2.5 GB cap for 30 s and more after one such query
(tests/test_read_limits.py; 2 of 4 runs one day), which a run alone never showed, and why the purge did not
come is not known (one background thread serves every arena: `max_background_threads` is 1 here). So a read
that failed for memory purges every jemalloc arena itself (`arena.<MALLCTL_ARENAS_ALL>.purge` through the
`duckdb_je_mallctl` the DuckDB wheel exports) and trims glibc's heap (malloc_trim), at once and again a little
later, when DuckDB's worker threads have let go of what they held. Measured in one process under a 2.5 GB cap:
2,341 MB right after the failure, 68 MB after the purge. Where the symbol or glibc is missing, nothing happens
(the background threads still purge).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Optional


_ALL_ARENAS = b"arena.4096.purge"    # MALLCTL_ARENAS_ALL is 4096 in jemalloc 5
# Purge again this many seconds after the failure: DuckDB's threads free what they held a little later.
AGAIN_AFTER_S = (1.0, 5.0)

_lock = threading.Lock()
_libs: Optional[tuple] = None


def _load() -> tuple:
    """(jemalloc's mallctl or None, glibc's malloc_trim or None), found once."""
    global _libs
    with _lock:
        if _libs is None:
            mallctl = trim = None
            try:
                import _duckdb
                mallctl = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
            except (ImportError, OSError, AttributeError):
                pass
            try:
                trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):
                pass
            _libs = (mallctl, trim)
        return _libs


def purge() -> bool:
    """Return every jemalloc arena's unused pages and glibc's free heap top to the system now. Returns
    whether jemalloc's purge ran (False where the DuckDB build exports no mallctl). Never raises."""
    mallctl, trim = _load()
    done = False
    if mallctl is not None:
        done = mallctl(_ALL_ARENAS, None, None, None, ctypes.c_size_t(0)) == 0
    if trim is not None:
        trim(0)
    return done


def purge_after_failure() -> None:
    """After a read failed for lack of memory: purge now, and again after each of AGAIN_AFTER_S seconds
    (daemon timers; the read's answer does not wait for them)."""
    purge()
    for delay in AGAIN_AFTER_S:
        timer = threading.Timer(delay, purge)
        timer.daemon = True
        timer.start()
