import pytest

from .helpers import start_server


@pytest.fixture
def server(tmp_path):
    """A fresh `tasktrail serve` with ingest token tok123 (what the rustvello captures carry)."""
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123")
    yield srv
    srv.stop()
