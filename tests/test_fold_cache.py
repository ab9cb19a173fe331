"""The writer's memory between batches (store/fold_cache.py): the filter of known invocation ids never
forgets one, agrees with the SQL that loads it, and the remembered histories stay bounded."""
from __future__ import annotations

import duckdb

from tasktrail.store.fold_cache import KnownIds, RecentHistories, id_hashes

IDS = ["a", "inv-1", "über/straße%2F?#", "x" * 300, "", "\u2603 snow", "c0c0c0c0-1234"]


def _con(ids):
    con = duckdb.connect()
    con.execute("CREATE TABLE invocation_state (invocation_id VARCHAR)")
    if ids:
        con.executemany("INSERT INTO invocation_state VALUES (?)", [[i] for i in ids])
    return con


def test_hashes_equal_duckdbs_md5_number_lower():
    con = _con(IDS)
    want = [r[0] for r in con.execute("SELECT md5_number_lower(invocation_id) FROM invocation_state").fetchall()]
    assert id_hashes(IDS).tolist() == want


def test_filter_never_forgets_an_id_and_rarely_claims_a_new_one():
    stored = [f"stored-{i}" for i in range(20_000)]
    known = KnownIds()
    con = _con([])
    con.execute("INSERT INTO invocation_state SELECT 'stored-' || i FROM range(20000) r(i)")
    known.load(con)
    assert known.maybe(stored).all()
    later = [f"later-{i}" for i in range(300_000)]   # added batch by batch: the filter grows from the store
    for k in range(0, len(later), 5_000):
        con.execute(f"INSERT INTO invocation_state SELECT 'later-' || i FROM range({k}, {k + 5_000}) r(i)")
        known.add(later[k:k + 5_000], con)
    assert known.maybe(stored).all() and known.maybe(later).all()
    never = [f"never-{i}" for i in range(100_000)]
    assert known.maybe(never).mean() < 0.01     # false positives only cost a lookup


def test_recent_histories_keep_unfinished_ones_and_stay_bounded():
    recent = RecentHistories(capacity=3, longest=2)
    st = ("t", "RUNNING")
    recent.apply({("a", "1"): ([{"r": 1}], st), ("a", "2"): ([{"r": 1}, {"r": 2}], st), ("a", "3"): ([{}] * 3, st)})
    assert ("a", "1") in recent and ("a", "2") in recent and ("a", "3") not in recent   # too long
    recent.apply({("a", "1"): None})                                                   # final: forgotten
    assert recent.get(("a", "1")) is None
    assert recent.get(("a", "2")) == ([{"r": 1}, {"r": 2}], st)
    recent.apply({("a", str(i)): ([{}], st) for i in range(4, 9)})
    assert [k for k in [("a", str(i)) for i in range(9)] if k in recent] == [("a", "6"), ("a", "7"), ("a", "8")]
