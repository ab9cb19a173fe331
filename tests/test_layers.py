"""DESIGN.md's layers and the rules spelled once: the import contracts (import-linter), the SQL rendered
from proto/status.py and store/api.py, and the shape of the invocation_state cache."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from tasktrail.proto.status import RANK_SCALE, STATUS_RANK, STATUSES, UNKNOWN_RANK
from tasktrail.store.api import INVOCATION_COLUMNS
from tasktrail.store.duckdb import DuckDBStore
from tasktrail.store.invocation_state import STATE_SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def test_imports_keep_the_layers():
    """`lint-imports` with pyproject.toml's contracts: web and ingest above query above store above proto,
    the composition root above them all, and the store reached through store/api.py only."""
    run = subprocess.run([sys.executable, str(ROOT / ".ci" / "lint-imports")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_sizes():
    """No module of proto/ ingest/ store/ web/ tasktrail/ over 400 lines, no function over 60."""
    too_long = []
    for folder in ("proto", "ingest", "store", "web", "tasktrail"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            if len(text.splitlines()) > 400:
                too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        node.end_lineno - node.lineno + 1 > 60:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                    f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_sql_spells_the_rules_of_proto_and_the_contract(tmp_path):
    """status_order (store/sql/views.sql) orders as proto/status.py's rank; invocation_state has the columns
    STATE_SCHEMA names, and the `invocations` view shows INVOCATION_COLUMNS (is_final after status)."""
    store = DuckDBStore(str(tmp_path / "t.duckdb"))
    try:
        con = store._con
        for status in (*STATUSES, "COMPLETED", None):
            got = con.execute("SELECT status_order(make_timestamp(5), ?::VARCHAR)", [status]).fetchone()[0]
            assert got == 5 * RANK_SCALE + STATUS_RANK.get(status, UNKNOWN_RANK), status
        assert max(STATUS_RANK.values()) < RANK_SCALE and UNKNOWN_RANK < RANK_SCALE
        table = [(r[0], r[1]) for r in con.execute("DESCRIBE invocation_state").fetchall() if r[0] != "id_hash"]
        types = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.timestamp("us"): "TIMESTAMP"}
        assert table == [(f.name, types[f.type]) for f in STATE_SCHEMA]
        view = [r[0] for r in con.execute("DESCRIBE invocations").fetchall()]
        shown = list(INVOCATION_COLUMNS)
        shown.insert(shown.index("status") + 1, "is_final")
        assert view == shown
    finally:
        store.close()
