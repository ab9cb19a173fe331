"""The schema's files: forward migrations (store/sql/NNNN_*.sql, each applied once, in order) and the
views and macros (store/sql/views.sql, recreated at every open) rendered from the rules they spell, so
SQL and Python share one spelling of each (proto/status.py: the status rank, the final statuses;
store/api.py: an invocation's columns)."""
from __future__ import annotations

from importlib import resources as importlib_resources

from tasktrail.proto.status import FINAL_SQL, RANK_SCALE, STATUS_RANK, UNKNOWN_RANK

from .api import INVOCATION_COLUMNS


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every forward migration, in order."""
    folder = importlib_resources.files("tasktrail.store").joinpath("sql")
    files = sorted(p for p in folder.iterdir() if p.name[:4].isdigit() and p.name.endswith(".sql"))
    return [(p.name[:-4], p.read_text()) for p in files]


def status_rank_sql(col: str) -> str:
    """SQL: the rank (proto/status.py STATUS_RANK) of the status in `col`."""
    whens = " ".join(f"WHEN '{s}' THEN {r}" for s, r in STATUS_RANK.items())
    return f"CASE {col} {whens} ELSE {UNKNOWN_RANK} END"


def views_sql() -> str:
    """store/sql/views.sql with its rules filled in."""
    text = importlib_resources.files("tasktrail.store").joinpath("sql", "views.sql").read_text()
    shown = ", ".join(f"status, status IN ({FINAL_SQL}) AS is_final" if c == "status" else c
                      for c in INVOCATION_COLUMNS)
    return text.format(rank_scale=RANK_SCALE, status_rank=status_rank_sql("status"), invocation_columns=shown)
