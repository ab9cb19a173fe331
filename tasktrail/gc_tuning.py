"""Python's cyclic garbage collector, tuned for a server that allocates per record.

With Python's defaults (thresholds 700, 10, 10) a served ingest runs the young collection every 700
allocations, and the full one every few seconds; each full collection walks every container the process
holds, the ~65k objects of the libraries imported at start included, and the rows queued for the writer.
Measured on `python -m benchmarks.ingest --records 600000` (2 cores, load 5–8, thread CPU inside the
collector): 2.4 s of collector CPU for 600k records (4 µs a record, with the GIL held), 14 full collections
of 51–166 ms each, in the gRPC loop's thread or the writer's, so an acknowledgement or a commit waits for them.

`settle()` is what `tasktrail serve|ingest|web` calls once its listeners are up: it collects once, moves every
object alive then (modules, classes, the store's long-lived state) out of the collector's sight (`gc.freeze`,
as Instagram's servers and CPython's documentation suggest for a pre-forked or long-lived process), and raises
the young threshold so the young collection runs every YOUNG allocations. The same 400k-record run then spends
0.48 s in the collector (1.2 µs a record) with two full collections. Cycles are still collected: only less often.
"""
from __future__ import annotations

import gc

YOUNG = 10_000       # allocations between young collections (Python's default: 700)
OLDER = (20, 20)     # young collections per middle one, middle ones per full one (Python's: 10, 10)


def settle() -> tuple[int, int, int]:
    """Collect, freeze what is alive now, and set the thresholds; returns the thresholds now in force."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, *OLDER)
    return gc.get_threshold()
