"""What one page view costs in SQL: the statements each page and API read runs, counted in process.

    python -m benchmarks.page_reads --db STORE [--invocation ID] [--reps N] [--show VIEW] [--explain] [--json OUT]
    python -m benchmarks.page_reads --invocations 20000      # builds B5's store of that size first (CI)

Opens STORE (e.g. one `python -m benchmarks.queries --keep DIR` built) read through the web app in process
(Starlette's TestClient: no sockets), counts every statement the store runs for each path (the store's
`_read`, which `query`, `query_arrow` and `stream` all go through) and their time, and prints the statements
of one view (--show, default the invocation page). With --explain, EXPLAIN ANALYZE of each statement of the overview, tasks and runners
pages lists the tables each scans and how many rows. "now" is the end of the store's data (its newest
transition), as benchmarks/queries.py sets it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter

from tasktrail.proto.urlpath import segment

from .common import report
from .queries import store_arguments, store_of


def paths(inv: str) -> dict[str, str]:
    s = segment(inv)
    return {"invocation page": f"/invocations/{s}", "invocation page JSON twin": f"/invocations/{s}?format=json",
            "invocation JSON": f"/api/v1/invocations/{s}", "history JSON": f"/api/v1/invocations/{s}/history",
            "family JSON": f"/api/v1/invocations/{s}/family", "logs JSON": f"/api/v1/invocations/{s}/logs",
            "overview page": "/", "tasks page": "/tasks", "runners page": "/runners"}


class Counted:
    """Wraps the store's one read door and keeps (sql, params, ms) of each statement since `reset`."""

    def __init__(self, store) -> None:
        self.store, self.seen = store, []
        inner = store._read

        def read(sql, params, timeout_s, take):
            t = time.perf_counter()
            try:
                return inner(sql, params, timeout_s, take)
            finally:
                self.seen.append((sql, params, (time.perf_counter() - t) * 1000))
        store._read = read

    def reset(self) -> list:
        seen, self.seen = self.seen, []
        return seen


def tables_scanned(store, sql: str, params) -> list[tuple[str, int]]:
    """(table, rows scanned) of each table scan in EXPLAIN (ANALYZE, FORMAT JSON) of `sql`."""
    res = store._read("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params, 60, lambda r: r.fetchall())
    out: list[tuple[str, int]] = []

    def walk(node: dict) -> None:
        if node.get("operator_type") == "TABLE_SCAN":
            info = node.get("extra_info", {})
            out.append((str(info.get("Table", "?")), int(node.get("operator_rows_scanned", 0))))
        for child in node.get("children", []):
            walk(child)
    walk(json.loads(res[0][1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_arguments(ap)
    ap.add_argument("--invocation", help="default: an invocation in the middle of the store with a parent")
    ap.add_argument("--explain", action="store_true")
    ap.add_argument("--reps", type=int, default=1, help="requests per path; the SQL time is their median")
    ap.add_argument("--show", default="invocation page", help="the path whose statements are printed")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store_of(args, d)
        run(args)


def run(args) -> None:
    from starlette.testclient import TestClient

    from tasktrail.query.service import QueryService
    from tasktrail.store.duckdb import DuckDBStore
    from tasktrail.web.app import create_app

    store = DuckDBStore(args.db)
    end = store.query("SELECT max(ts) FROM transitions").rows[0][0]
    inv = args.invocation or store.query(
        "SELECT invocation_id FROM invocation_state WHERE parent_invocation_id IS NOT NULL "
        "ORDER BY created_at LIMIT 1 OFFSET (SELECT count(*) // 2 FROM invocation_state "
        "WHERE parent_invocation_id IS NOT NULL)").rows[0][0]
    counted = Counted(store)
    client = TestClient(create_app(QueryService(store, clock=lambda: end)))
    rows, detail = [("path", "statements · median ms in SQL")], {}
    for name, path in paths(inv).items():
        client.get(path)  # warm
        counted.reset()
        sql_ms = []
        for _ in range(args.reps):
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            seen = counted.reset()
            sql_ms.append(sum(s[2] for s in seen))
        rows.append((name, f"{len(seen)} · {statistics.median(sql_ms):.1f}"))
        detail[name] = [{"sql": " ".join(s[0].split())[:160], "ms": round(s[2], 2)} for s in seen]
        dup = [k for k, n in Counter((s[0], str(s[1])) for s in seen).items() if n > 1]
        if dup:
            rows.append(("  repeated statements", str(len(dup))))
    print(f"invocation {inv}; now = {end}")
    for s in detail[args.show]:
        print(f"  {s['ms']:7.2f} ms  {s['sql']}")
    if args.explain:
        for name in ("overview page", "tasks page", "runners page"):
            counted.reset()
            client.get(paths(inv)[name])
            for sql, params, ms in counted.reset():
                scans = tables_scanned(store, sql, params)
                big = [f"{t} {n:,}" for t, n in scans if n > 10_000]
                print(f"{name}: {ms:7.2f} ms  {' '.join(sql.split())[:110]}" + (f"\n      scans: {big}" if big else ""))
    store.close()
    report("page reads (SQL statements per request)", rows, {"statements": detail}, args.json_path)


if __name__ == "__main__":
    main()
