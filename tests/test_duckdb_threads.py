"""--duckdb-threads: DuckDB's worker threads, one on one or two cores (a second one slows small reads there)."""
from __future__ import annotations

import os

import click
from click.testing import CliRunner

from tasktrail.options import serve_options, settings_from
from tasktrail.server import open_store
from tasktrail.settings import DEFAULT_DUCKDB_THREADS, Settings


def _settings(*args: str) -> Settings:
    got = {}

    @click.command()
    @serve_options
    def cmd(**opts):
        got["s"] = settings_from(opts)

    res = CliRunner().invoke(cmd, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return got["s"]


def test_the_default_is_one_thread_on_two_cores_or_fewer():
    assert DEFAULT_DUCKDB_THREADS == (1 if (os.cpu_count() or 1) <= 2 else 2)
    assert Settings().duckdb_threads == DEFAULT_DUCKDB_THREADS
    assert any("duckdb_threads" in p for p in Settings(duckdb_threads=0).validate())


def test_the_option_reaches_the_store(tmp_path):
    settings = _settings("--db", str(tmp_path / "t.duckdb"), "--duckdb-threads", "3")
    assert settings.duckdb_threads == 3
    store = open_store(settings)
    try:
        assert store.query("SELECT current_setting('threads')").rows == [(3,)]
    finally:
        store.close()
    assert _settings("--db", "x.duckdb").duckdb_threads == DEFAULT_DUCKDB_THREADS
