"""A debugging aid for issue 20's memory figures: with TASKTRAIL_MEMORY_TRACE=<file> set, `tasktrail serve`
appends one JSON line to <file> every TASKTRAIL_MEMORY_TRACE_S seconds (default 30) saying where the process's
memory is: its RSS, DuckDB's own accounting (`duckdb_memory()`, `PRAGMA database_size`), DuckDB's jemalloc
(allocated / resident bytes), glibc's heap (mallinfo2), and the sizes of the writer's in-memory windows. With
TASKTRAIL_TRACEMALLOC=1 it also traces Python's allocations and writes the 15 source lines whose allocations
grew most since the first line (tracemalloc slows the server: a debugging run only).

Off unless the variable is set; it reads the store's private state on purpose (it is a probe, not an API).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import threading
import time

log = logging.getLogger("tasktrail.memory")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _smaps_mb() -> dict:
    """Resident MB by kind of mapping: glibc's heap, other anonymous memory (DuckDB's jemalloc, pyarrow's pool,
    thread stacks, glibc's mmapped blocks) and files (libraries)."""
    out = {"heap": 0, "anon": 0, "file": 0}
    kind = "anon"
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                parts = line.split()
                name = parts[5] if len(parts) > 5 else ""
                kind = "heap" if name == "[heap]" else "file" if name.startswith("/") else "anon"
            elif line.startswith("Rss:"):
                out[kind] += int(line.split()[1])
    return {k: round(v / 1024, 1) for k, v in out.items()}


def _jemalloc_mb() -> dict:
    """DuckDB's jemalloc: allocated and resident MB (empty where the wheel exports no mallctl)."""
    try:
        import _duckdb
        mallctl = ctypes.CDLL(_duckdb.__file__).duckdb_je_mallctl
    except (ImportError, OSError, AttributeError):
        return {}
    epoch = ctypes.c_uint64(1)
    mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
    out = {}
    for name in ("allocated", "active", "resident", "mapped", "retained"):
        v, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        if mallctl(f"stats.{name}".encode(), ctypes.byref(v), ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
            out[name] = round(v.value / 2 ** 20, 1)
    return out


def _arrow_mb() -> dict:
    """pyarrow's default pool: its backend and the MB it has allocated now and at most."""
    import pyarrow as pa
    pool = pa.default_memory_pool()
    return {"backend": pool.backend_name, "allocated": round(pool.bytes_allocated() / 2 ** 20, 1),
            "max": round(pool.max_memory() / 2 ** 20, 1)}


def _glibc_mb() -> dict:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"heap": round(m.arena / 2 ** 20, 1), "mmapped": round(m.hblkhd / 2 ** 20, 1),
            "in_use": round(m.uordblks / 2 ** 20, 1), "free": round(m.fordblks / 2 ** 20, 1)}


def _store_figures(store, cur) -> dict:
    """DuckDB's accounting and the writer's windows (counts), read through the probe's own cursor."""
    out: dict = {}
    try:
        rows = cur.execute("SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() "
                           "WHERE memory_usage_bytes > 0 OR temporary_storage_bytes > 0").fetchall()
        out["duckdb_memory_mb"] = {t: round(m / 2 ** 20, 1) for t, m, _ in rows}
        # fetchall, never fetchone: a result left open holds its transaction, and an open transaction stops
        # DuckDB's automatic checkpoint while the writer updates the caches (the WAL then grows for good)
        size = cur.execute("PRAGMA database_size").fetchall()[0]
        out["duckdb_size"] = {"wal": size[6], "memory_usage": size[7], "memory_limit": size[8]}
    except Exception as exc:  # a probe never takes the server down
        out["duckdb_error"] = str(exc)[:200]
    window = getattr(store, "_window", None)
    recent = getattr(store, "_recent", None)
    known = getattr(store, "_known", None)
    out["windows"] = {
        "request_hashes": len(getattr(store, "_hashes", ())),
        "record_window": getattr(window, "_count", None),
        "record_window_batches": len(getattr(window, "_order", ())),
        "recent_histories": len(getattr(recent, "_rows", ())),
        "known_ids_bytes": int(known.bits.nbytes) if known is not None else None,
        "resource_ids": len(getattr(store, "_resource_ids", ())),
        "queue_records": getattr(store, "_pending", None),
        "checkpoints": store.stats().checkpoints,
    }
    return out


def _python_top(first, limit: int = 15) -> list:
    import tracemalloc
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.compare_to(first, "lineno") if first is not None else snap.statistics("lineno")
    return [{"where": str(s.traceback[0]), "mb": round(s.size / 2 ** 20, 2),
             "grew_mb": round(getattr(s, "size_diff", 0) / 2 ** 20, 2), "count": s.count} for s in stats[:limit]]


def start(store, path: str, every_s: float, python: bool) -> threading.Event:
    """Start the probe's daemon thread (see the module's docstring); returns the Event that stops it."""
    stop = threading.Event()
    first = None
    if python:
        import tracemalloc
        tracemalloc.start(1)
        first = tracemalloc.take_snapshot()
    cur = store._read_root.cursor()
    t0 = time.monotonic()

    def run() -> None:
        while not stop.wait(every_s):
            line = {"s": round(time.monotonic() - t0, 1), "rss_mb": round(_rss_mb(), 1), "arrow_mb": _arrow_mb(),
                    "smaps_mb": _smaps_mb(),
                    "jemalloc_mb": _jemalloc_mb(), "glibc_mb": _glibc_mb(), **_store_figures(store, cur)}
            if python:
                line["python_top"] = _python_top(first)
            with open(path, "a") as fh:
                fh.write(json.dumps(line) + "\n")

    threading.Thread(target=run, name="tasktrail-memory-trace", daemon=True).start()
    log.warning("memory trace every %.0f s to %s (tracemalloc %s)", every_s, path, "on" if python else "off")
    return stop
