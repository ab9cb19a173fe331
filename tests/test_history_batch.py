"""The writer's batch-at-once plain-order path (proto/history_batch.py) decides and sums up every invocation
exactly as the per-invocation rule does (proto/history.py: plain_order, quick_summary)."""
from __future__ import annotations

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasktrail.proto.history import RANK, plain_order, quick_summary
from tasktrail.proto import history_batch

STATUSES = list(RANK) + ["SOMETHING_ELSE"]
SCHEMA = pa.schema([("ts", pa.int64()), ("app_id", pa.string()), ("invocation_id", pa.string()),
                    ("status", pa.string()), ("attempt", pa.int32()), ("seq", pa.int64()),
                    ("record_id", pa.string()), ("runner_id", pa.string()), ("worker_id", pa.string()),
                    ("source", pa.string())])

record = st.fixed_dictionaries({
    "ts": st.integers(1_700_000_000_000_000, 1_700_000_000_000_006),   # few distinct times: many ties
    "app_id": st.sampled_from(["a", "b"]),
    "invocation_id": st.sampled_from(["i1", "i2", "i3", "i\x00x", "/x y"]),
    "status": st.sampled_from(STATUSES),
    "attempt": st.one_of(st.none(), st.integers(-2, 3)),
    "seq": st.one_of(st.none(), st.integers(0, 4)),
    "record_id": st.one_of(st.none(), st.sampled_from(["r1", "r2", "r3", "r4", "r5", "r6"])),
    "runner_id": st.sampled_from([None, "", "run-1"]),
    "worker_id": st.sampled_from([None, "", "w-1", "w-2"]),
    "source": st.sampled_from([None, "tasktrail.v1"]),
})


def expected(rows: list[dict]):
    """What the per-invocation rule says of one invocation's rows (arrival order)."""
    cols = {c: [r[c] for r in rows] for c in ("ts", "status", "attempt", "seq", "record_id")}
    senders = [r["worker_id"] or r["runner_id"] or r["source"] for r in rows]
    args = (cols["ts"], cols["status"], cols["attempt"], cols["seq"], senders, cols["record_id"])
    return plain_order(*args) is not None, quick_summary(*args)


def _r(status, ts=5, inv="i", **kw):
    return {"ts": ts, "app_id": "a", "invocation_id": inv, "status": status, "attempt": None, "seq": None,
            "record_id": None, "runner_id": None, "worker_id": "w", "source": None} | kw


@settings(max_examples=600, deadline=None)
@given(st.lists(record, min_size=1, max_size=40) | st.lists(record, min_size=1, max_size=6))
@example([_r("RUNNING"), _r("PENDING")])                                  # one tick, sent out of rank order
@example([_r("RUNNING", seq=2), _r("PENDING", seq=1, ts=4), _r("SUCCESS", seq=0, ts=6)])  # seq against time
@example([_r("RUNNING", attempt=2, ts=1), _r("PENDING", attempt=1, ts=2)])  # an attempt against time
@example([_r("SUCCESS", ts=1), _r("RUNNING", ts=2)])                      # a final record before the run
@example([_r("PENDING", ts=1), _r("REGISTERED", ts=2)])                   # registration after its queueing
@example([_r("REGISTERED", record_id="x"), _r("RUNNING", ts=6, record_id="x")])   # one record id twice
@example([_r("REGISTERED", ts=1), _r("REGISTERED", ts=2, inv="j"), _r("RUNNING", ts=3)])  # two invocations
def test_batch_path_agrees_with_the_rule_for_every_invocation(rows):
    tbl = pa.Table.from_pylist(rows, schema=SCHEMA)
    grp = history_batch.group(tbl)
    by_key: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        by_key.setdefault((r["app_id"], r["invocation_id"]), []).append(i)
    assert grp.count == len(by_key)
    for key, idx in by_key.items():
        k = int(grp.of_row[idx[0]])
        assert list(grp.of_row[idx]) == [k] * len(idx)
        assert int(grp.first_row[k]) == idx[0]
        plain, q = expected([rows[i] for i in idx])
        assert bool(grp.plain[k]) == plain, (key, [rows[i] for i in idx])
        if plain:
            first, last, started, runs = q
            assert int(grp.head[k]) == idx[first] and int(grp.tail[k]) == idx[last]
            assert (None if grp.started[k] < 0 else int(grp.started[k])) == started
            assert int(grp.runs[k]) == runs
            assert int(grp.lo[k]) == min(rows[i]["ts"] for i in idx)
            assert int(grp.hi[k]) == max(rows[i]["ts"] for i in idx)


def test_first_known_is_the_first_value_sent():
    tbl = pa.table({"g": [None, "x", None, "y", "z"]})
    import numpy as np
    of_row = np.array([0, 0, 1, 1, 2])
    got = history_batch.first_known(tbl.column("g"), of_row, 3)
    assert got.tolist() == [1, 3, 4]
    got = history_batch.first_known(pa.chunked_array([pa.array([None, None], pa.string())]), np.array([0, 1]), 2)
    assert got.tolist() == [-1, -1]
