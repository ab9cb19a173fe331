"""The counters /metrics derives from the log never go down: retention removes old days, and what it
removes is carried (store/carry.py), so Prometheus never sees a drop it would read as a restart."""
from datetime import datetime

from tasktrail.ingest.pipeline import Ingestor
from tasktrail.query.service import QueryService, QuerySettings
from tasktrail.store.duckdb import DuckDBStore
from tasktrail.store.retention import RetentionPolicy

from .helpers import fixture_requests


def counters(snap: dict) -> dict:
    return {"transitions": sorted(snap["transitions"]), "finished": sorted(snap["finished"]),
            "durations": sorted((app, task, list(buckets), n, round(total, 9))
                                for app, task, buckets, n, total in snap["durations"]),
            "ingest": sorted(snap["ingest"])}


def test_counters_never_go_down_when_retention_removes_old_days(tmp_path):
    store = DuckDBStore(str(tmp_path / "c.duckdb"))
    try:
        ingestor = Ingestor(store)
        for sig, body in fixture_requests():
            rows, n, entry = ingestor.prepare(sig, body, "protobuf", "http")
            store.submit(rows, n, entry).result(10)
        qs = QueryService(store, QuerySettings())
        before = qs.metrics_snapshot()
        assert sum(n for *_, n in before["transitions"]) == 24 and len(before["finished"]) == 3
        assert {s: n for _, s, n in before["invocations_by_status"] if n} == {"SUCCESS": 5, "FAILED": 1}

        # A pass far in the future removes every invocation, its transitions and the ingest ledger.
        report = store.retain(RetentionPolicy(1, 1, 10_000), now=datetime(2100, 1, 1))
        assert report.invocations == 6
        assert store.query("select count(*) from transitions").rows[0][0] == 0
        assert store.query("select count(*) from ingest_ledger").rows[0][0] == 0
        after = qs.metrics_snapshot()
        assert counters(after) == counters(before)
        assert not any(n for *_, n in after["invocations_by_status"])  # gauges follow the store

        # Another pass changes nothing: the carry is kept summed, one row per figure and key.
        store.retain(RetentionPolicy(1, 1, 10_000), now=datetime(2100, 1, 2))
        assert counters(qs.metrics_snapshot()) == counters(before)
        keys = store.query("select figure, app_id, k1, k2, count(*) from metric_carry group by all").rows
        assert keys and all(row[-1] == 1 for row in keys)
    finally:
        store.close()
