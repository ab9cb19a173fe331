"""The process's memory cap (`--max-memory`): the bound on what one query can take that DuckDB's own
memory limit does not reach.

DuckDB's `memory_limit` bounds its buffer pool (hash tables, sorts, aggregates, cached blocks), but a
scalar that builds one huge value (`range(0, 20000000)` as a list, `repeat`, `list_reduce` doubling a
list, `damerau_levenshtein` of two long strings, 2,048 rows of such values in one vector…) allocates
outside the pool, and nothing inside DuckDB interrupts it until it returns. The only bound that reaches
every allocation is the kernel's: RLIMIT_DATA (heap and private writable mappings). Past it an
allocation fails; DuckDB turns that into its OutOfMemoryException, which the query answers as a 400
naming the limit (store/reads.py), and the process goes on.

For the process to go on *well*, the address space a failed query reached must be given back, or the
next allocation of any thread (a receiver, the writer) fails at the cap too. Two allocator settings do
that, measured with seven such queries under a 3 GB cap (the data segment after them: 2.86 GB and every
OTLP export refused afterwards with the defaults; 1.43 GB, back to its start, and every export stored
with both settings): DuckDB's jemalloc returns freed extents (`retain:false`, through
DUCKDB_JE_MALLOC_CONF, read when DuckDB loads; the store runs DuckDB's allocator background threads, which
purge on time), and glibc keeps one malloc arena (M_ARENA_MAX 1) whose blocks of 256 KiB and more are
mappings of their own (M_MMAP_THRESHOLD), unmapped when freed instead of staying in per-thread arenas or a
heap that only shrinks from its top. `prepare_allocators()` sets them, before DuckDB is imported, when the cap is on. One arena costs the
writer: B1 served 5–7 % fewer records/s on a quiet machine (alternating pairs, 200k records); with
`--max-memory 0` the allocators keep their defaults.

The cap covers the whole process, so it sits above what the server uses together (DuckDB's limit plus
the rest: MIN_HEADROOM at least). While a huge query holds memory, other requests of the moment can fail
too (a receiver answers 503 and the client retries; nothing acknowledged is lost); once it fails, they
work again.
"""
from __future__ import annotations

import os
import re
from typing import Optional

# Below this much room above DuckDB's memory limit the cap would fail ordinary work, not only huge values:
# the server's data segment starts near 1.3 GB (thread stacks and reserved mappings count, used or not).
MIN_HEADROOM = 2 << 30
JEMALLOC_ENV = "DUCKDB_JE_MALLOC_CONF"
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3   # glibc's mallopt parameters
# Blocks from this size up get a mapping of their own, unmapped when freed. Setting it also stops glibc from
# raising the threshold after each such free (up to 32 MiB), which left large blocks in a heap that only
# shrinks from its top (256 KiB gave the same result with more mappings).
MMAP_THRESHOLD = 4 << 20

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> Optional[int]:
    """Bytes of a size as DuckDB and --max-memory write it ("6GB", "512MiB", "1.5 GB", "1000000"); None
    for anything else (a percentage, a typo). Decimal units are powers of 1000, binary ones of 1024."""
    m = _SIZE.fullmatch(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def problems(max_memory: str, duckdb_memory_limit: str) -> list[str]:
    """Why `max_memory` cannot be the cap (empty when it can): not a size, or too close to DuckDB's limit.
    "0" turns the cap off and is always valid."""
    cap = parse_size(max_memory)
    if cap is None:
        return [f"max_memory must be a size such as 6GB, or 0 for no cap, got {max_memory!r}"]
    pool = parse_size(duckdb_memory_limit)
    if cap and pool is not None and cap < pool + MIN_HEADROOM:
        return [f"max_memory ({max_memory}) must be at least the DuckDB memory limit ({duckdb_memory_limit}) "
                f"plus {MIN_HEADROOM >> 30} GiB, the room the rest of the server needs"]
    return []


def prepare_allocators() -> None:
    """Make freed memory go back to the system (see the module's docstring): jemalloc's retain:false for
    DuckDB unless DUCKDB_JE_MALLOC_CONF is set already, and one glibc malloc arena. Call it before DuckDB
    is imported; harmless elsewhere (no glibc: only the variable is set)."""
    os.environ.setdefault(JEMALLOC_ENV, "retain:false")
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def apply(max_memory: str) -> Optional[int]:
    """Set this process's RLIMIT_DATA to `max_memory` (inherited by the processes it starts). Returns the
    bytes set, or None when the cap is off ("0") or the platform has no such limit. A hard limit already
    lower than the cap is kept (the cap is lowered to it). Raises ValueError for a size parse_size refuses."""
    cap = parse_size(max_memory)
    if cap is None:
        raise ValueError(f"not a size: {max_memory!r}")
    if not cap:
        return None
    try:
        import resource
        limit = resource.RLIMIT_DATA
    except (ImportError, AttributeError):
        return None
    _, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY and hard < cap:
        cap = hard
    resource.setrlimit(limit, (cap, hard))
    return cap
