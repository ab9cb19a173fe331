"""DuckDB's Python binding imports pandas for every query parameter (store/binding.py): with pandas absent,
the store makes that failure immediate, so a point read does not search sys.path once per parameter."""
import importlib.util
import sys

import duckdb
import pytest

from tasktrail.store import binding


class _Finder:
    """A meta path finder that only notes which modules Python searched for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name, path=None, target=None):
        self.names.append(name)
        return None


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None, reason="pandas is installed: nothing to skip")
def test_parameters_search_no_path_once_pandas_is_known_absent(tmp_path):
    con = duckdb.connect(str(tmp_path / "b.duckdb"))
    con.execute("SELECT ?", [1]).fetchall()
    saved = sys.modules.pop("pandas", "unset")
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        con.execute("SELECT ?, ?", ["a", 2]).fetchall()
        assert "pandas" in finder.names            # what DuckDB's binding does by itself: a search per parameter
        assert binding.skip_absent_imports() == ["pandas"] and sys.modules["pandas"] is None
        finder.names.clear()
        assert con.execute("SELECT ?, ?, ?", ["a", 2, 3.5]).fetchall() == [("a", 2, 3.5)]
        assert "pandas" not in finder.names        # known absent: no search
        with pytest.raises(ImportError):
            import pandas  # noqa: F401
        assert binding.skip_absent_imports() == []  # once is enough
    finally:
        sys.meta_path.remove(finder)
        if saved != "unset":
            sys.modules["pandas"] = saved
