"""The lake backend: DuckLake (catalog in PostgreSQL, or in a DuckDB file for one node; data as Parquet
files under --data-path) behind the same seam as the embedded file (store/api.py).

What differs from one DuckDB file, and why:
- Many processes write. Ingest nodes only append (DuckLake never conflicts on appends); the caches
  (store/state.py) are folded by a folder thread from the rows each DuckLake snapshot inserted
  (`ducklake_table_changes`), so no two writers update the same table. Several folders are safe:
  a fold commits its progress with its changes, and DuckLake aborts the loser of a conflict.
- Batches are numbered by time and node (`micros << 8 | node`), unique across nodes and roughly in
  commit order, so the log tail and cursors keep working.
- Dedupe holds across nodes: before a commit the writer looks the batch's request hashes up in the
  shared ledger (its last day, which Parquet statistics narrow down), so a client retrying against
  another node is acknowledged without storing twice.
- Commits gather `commit_interval_s` (1 s) of requests: a Parquet file per table per commit, not per
  request. The folder also compacts small files and expires old snapshots.
- The extensions load from the duckdb-extension-* wheels (no download); after ATTACH the connection
  drops external access except for the data path, so ad-hoc SQL still cannot read other files.
"""
from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import random
import re
import threading
import time
from typing import Optional

import duckdb

from tasktrail.proto.model import TABLES

from . import invocation_keys, state
from .api import StoreUnavailable
from .duckdb import DuckDBStore
from .migrations import migration_files, views_sql

log = logging.getLogger("tasktrail.store")
LAKE = "lake"
_LAKE_TABLES = (*TABLES, "ingest_ledger", "invocation_state", "runner_state", "schema_migrations", "invocation_keys",
                "invocation_keys_new", "status_counts", "app_log_span", "open_invocations")


def extension_file(package: str, name: str) -> str:
    """The extension binary a duckdb-extension-* wheel carries for this DuckDB version."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StoreUnavailable(f"the {name} extension is not installed: pip install "
                               f"{package.replace('_', '-')}=={duckdb.__version__}")
    root = list(spec.submodule_search_locations)[0]
    found = glob.glob(os.path.join(root, "extensions", f"v{duckdb.__version__}", f"{name}.duckdb_extension"))
    if not found:
        raise StoreUnavailable(f"{package} holds no {name} extension for duckdb {duckdb.__version__}")
    return found[0]


def lake_views_sql() -> str:
    """views.sql for a lake: views and macros live in this process's in-memory catalog (every process
    makes its own, nothing to conflict over) and read the lake's tables by their full names."""
    sql = views_sql()
    sql = re.sub(r"CREATE OR REPLACE (VIEW|MACRO) (\w+)", r"CREATE OR REPLACE \1 memory.main.\2", sql)
    names = "|".join(_LAKE_TABLES)
    return re.sub(rf"\b(FROM|JOIN)\s+({names})\b", rf"\1 {LAKE}.main.\2", sql)


class DuckLakeStore(DuckDBStore):
    fold_in_writer = False
    keys_in_writer = False   # the folder keeps invocation_keys' runs merged, as it keeps the caches
    commit_interval_s = 1.0

    def __init__(self, catalog: str, data_path: str, *, node_id: int | None = None, fold: bool = True,
                 fold_every_s: float = 1.0, compact_every_s: float = 600.0, commit_interval_s: float = 1.0,
                 **kw) -> None:
        if not data_path:
            raise StoreUnavailable("a DuckLake store needs --data-path (where its Parquet files go)")
        self.catalog = catalog
        self.data_path = os.path.abspath(data_path).rstrip("/") + "/"
        os.makedirs(self.data_path, exist_ok=True)
        self.node_id = (random.randrange(256) if node_id is None else node_id) & 0xFF
        self.commit_interval_s = commit_interval_s
        self._last_batch = 0
        kw.pop("read_only", None)
        super().__init__(f"ducklake:{catalog}", **kw)
        self._stop_folder = threading.Event()
        self._folder = None
        self.fold_every_s, self.compact_every_s = fold_every_s, compact_every_s
        if fold:
            self._folder = threading.Thread(target=self._fold_loop, name="tasktrail-lake-folder", daemon=True)
            self._folder.start()

    # --- opening ---------------------------------------------------------------------
    def _open(self) -> None:
        cfg = {k: v for k, v in self._config.items() if k not in ("enable_external_access", "checkpoint_threshold")}
        try:
            con = duckdb.connect(":memory:", config=cfg)
            con.execute(f"LOAD '{extension_file('duckdb_extension_ducklake', 'ducklake')}'")
            if self.catalog.startswith("postgres:"):
                con.execute(f"LOAD '{extension_file('duckdb_extension_postgres_scanner', 'postgres_scanner')}'")
            con.execute(f"ATTACH 'ducklake:{self.catalog}' AS {LAKE} (DATA_PATH '{self.data_path}')")
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot attach DuckLake {self.catalog}: {str(exc).splitlines()[0]}") from None
        self._con = con
        con.execute(f"USE {LAKE}")
        con.execute("SET enable_progress_bar = false")
        self._migrate()
        con.execute(lake_views_sql())
        self._init_cursor(con)
        # From here on no file outside the lake's data (and a catalog file's folder) can be read or written.
        allowed = [self.data_path] + ([os.path.dirname(os.path.abspath(self.catalog)) + "/"]
                                      if not self.catalog.startswith("postgres:") else [])
        con.execute(f"SET allowed_directories = {allowed!r}")
        con.execute("SET enable_external_access = false")
        self._ready(f"{LAKE}.main.")

    def size_bytes(self) -> Optional[int]:
        """Bytes of the lake's data files under --data-path (and of its catalog, when that is a file)."""
        total = 0
        for root, _dirs, files in os.walk(self.data_path):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(root, f))
        if not self.catalog.startswith("postgres:") and os.path.exists(self.catalog):
            total += os.path.getsize(self.catalog)
        return total

    def _init_cursor(self, cur) -> None:
        cur.execute(f"USE {LAKE}")
        cur.execute(f"SET search_path = '{LAKE}.main,memory.main'")

    MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR, applied_at TIMESTAMP)"

    def _migrate(self) -> None:
        """Migrations as for a file (no PRIMARY KEY: DuckLake has none), but several nodes may start at
        once: a conflicting migration is retried after the winner's, which it then finds applied."""
        con = self._con
        for attempt in range(20):
            try:
                rebuild = self._apply_migrations(con)
                con.execute("CREATE TABLE IF NOT EXISTS cache_progress (snapshot_id BIGINT)")
                if rebuild or not state.hash_is_current(con):
                    self.rebuild_caches(con)
                    return
                state.mend_read_models(con)
                return
            except duckdb.Error as exc:
                if attempt == 19:
                    raise
                log.info("migration raced another node (%s); retrying", str(exc).splitlines()[0][:120])
                time.sleep(0.2 + random.random())

    def _migrated(self, con, name: str) -> None:
        """The log tables migration `name` created are partitioned as it creates them (a table added
        by a later migration does not exist yet when 0001 is applied)."""
        sql = dict(migration_files()).get(name, "")
        self._partition(con, [t for t in TABLES if f"CREATE TABLE {t} (" in sql], ledger=name == "0001_log")

    @staticmethod
    def _partition(con, tables, ledger: bool) -> None:
        """Log tables are partitioned by day, so retention drops whole files and a time window reads
        only its days' files."""
        for table in tables:
            col = {"spans": "start_ts", "resources": "first_seen"}.get(table, "ts")
            con.execute(f"ALTER TABLE {table} SET PARTITIONED BY (year({col}), month({col}), day({col}))")
        if ledger:
            con.execute("ALTER TABLE ingest_ledger SET PARTITIONED BY "
                        "(year(received_at), month(received_at), day(received_at))")

    @staticmethod
    def rebuild_caches(con) -> int:
        """Recompute the caches from the whole log and note, in the same transaction, the snapshot
        they reflect: the folder goes on from there."""
        def progress(c):
            c.execute("DELETE FROM cache_progress")
            c.execute(f"INSERT INTO cache_progress SELECT max(snapshot_id) FROM ducklake_snapshots('{LAKE}')")
        return state.rebuild(con, also=progress, checkpoint=False)

    def rebuild_state(self) -> int:
        return self.rebuild_caches(self._con)

    def _checkpoint_if_due(self) -> None:
        """Parquet files need no WAL checkpoint; compaction is the folder's."""

    # --- writes ----------------------------------------------------------------------
    def _load_state(self) -> None:
        con = self._con
        rows = con.execute("SELECT request_hash, batch FROM ingest_ledger "
                           "WHERE received_at > now()::TIMESTAMP - INTERVAL 1 DAY ORDER BY batch DESC LIMIT ?",
                           [self._dedupe_window]).fetchall()
        for h, b in reversed(rows):
            self._hashes[h] = b
        self._resource_ids = {r[0] for r in con.execute("SELECT DISTINCT resource_id FROM resources").fetchall()}

    def _take_batch_id(self) -> int:
        self._last_batch = max(self._last_batch + 256, ((time.time_ns() // 1000) << 8) | self.node_id)
        return self._last_batch

    def _stored_elsewhere(self, hashes: list[str]) -> set[str]:
        if not hashes:
            return set()
        rows = self._con.execute(
            "SELECT DISTINCT request_hash FROM ingest_ledger WHERE received_at > now()::TIMESTAMP - INTERVAL 1 DAY "
            "AND request_hash IN (SELECT unnest(?::VARCHAR[]))", [hashes]).fetchall()
        return {r[0] for r in rows}

    # --- the folder ------------------------------------------------------------------
    def _fold_loop(self) -> None:
        """Keep the caches current from the snapshots ingest nodes commit; compact and expire now and then."""
        con = self._read_root.cursor()
        self._init_cursor(con)
        last_compact = time.monotonic()
        while not self._stop_folder.wait(self.fold_every_s):
            try:
                self.fold_once(con)
                invocation_keys.keep(con, self._stop_folder.is_set)
                if time.monotonic() - last_compact >= self.compact_every_s:
                    self.compact(con)
                    last_compact = time.monotonic()
            except duckdb.Error as exc:  # a conflict with another folder, or the catalog is away: next round
                log.info("fold skipped: %s", str(exc).splitlines()[0][:200])
                try:
                    con.rollback()
                except duckdb.Error:
                    pass

    def fold_once(self, con=None) -> int:
        """Fold every snapshot committed since the last fold; returns the snapshot reached."""
        con = con or self._con
        row = con.execute("SELECT max(snapshot_id) FROM cache_progress").fetchone()
        done = row[0] if row and row[0] is not None else None
        if done is None:  # no record of what the caches reflect: recompute them
            self.rebuild_caches(con)
            return con.execute("SELECT max(snapshot_id) FROM cache_progress").fetchone()[0]
        end = con.execute(f"SELECT max(snapshot_id) FROM ducklake_snapshots('{LAKE}')").fetchone()[0]
        if end is None or end <= done:
            return done
        con.begin()
        try:
            state.fold_changes(con, LAKE, done + 1, end)
            con.execute("DELETE FROM cache_progress")
            con.execute("INSERT INTO cache_progress VALUES (?)", [end])
            con.commit()
        except Exception:
            con.rollback()
            raise
        return end

    def compact(self, con=None) -> None:
        """Merge small Parquet files, expire snapshots older than a day, delete files nothing references."""
        con = con or self._con
        con.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}')")
        con.execute(f"CALL ducklake_expire_snapshots('{LAKE}', older_than => (now() - INTERVAL 1 DAY)::TIMESTAMP)")
        con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', older_than => (now() - INTERVAL 1 DAY)::TIMESTAMP)")

    def close(self) -> None:
        self._stop_folder.set()
        if self._folder is not None:
            self._folder.join(timeout=30)
        super().close()
