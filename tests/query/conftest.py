"""A store per test module, filled in this process through ingest's decode and map (no server)."""
import pytest

from ..helpers import LocalStore


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("query") / "q.duckdb")
    yield store
    store.close()
