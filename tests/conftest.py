import pytest

from .helpers import chromium, start_server


@pytest.fixture
def server(tmp_path):
    """A fresh `tasktrail serve` with ingest token tok123 (what the rustvello captures carry)."""
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for a module's browser tests (tests/helpers.chromium)."""
    with chromium() as b:
        yield b


@pytest.fixture(scope="session")
def record():
    """Adds a row to docs/reliability.md (tests/reliability.py)."""
    from .reliability import RECORDER
    return RECORDER.add


def pytest_sessionfinish(session, exitstatus):
    """A full, green run rewrites docs/reliability.md from what the tests recorded; any other run
    writes its partial table to test-artifacts/ instead, so the committed page stays whole."""
    from pathlib import Path

    from .reliability import DOC, EXPECTED_SECTIONS, RECORDER
    if not RECORDER.rows:
        return
    whole = session.testsfailed == 0 and RECORDER.sections >= EXPECTED_SECTIONS
    target = DOC if whole else Path(__file__).resolve().parents[1] / "test-artifacts" / "reliability.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(RECORDER.render() + "\n")
