"""The `tasktrail` command: serve (the default), ingest, web, sql (tasktrail/sql_command.py), demo
(tasktrail/demo/command.py), rebuild, conventions; the options serve, ingest and web share: tasktrail/options.py."""
from __future__ import annotations

import asyncio
import logging

import click

from . import __version__, memory_cap
from .demo.command import demo
from .options import serve_options, settings_from
from .settings import Settings
from .sql_command import sql


class DefaultGroup(click.Group):
    """`tasktrail` with no command, or with only options, runs `serve`."""

    def parse_args(self, ctx, args):
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h", "--version")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tasktrail")
def main() -> None:
    """tasktrail: OTLP in, an append-only DuckDB log, histories, timelines and runners out.

    Run `tasktrail serve` (the default command) and point a runner's OTLP exporter at it.
    """


def _run(role: str, log_level: str, **opts) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(opts)
    problems = settings.validate()
    if role != "all" and not settings.store:
        problems.append(f"`tasktrail {role}` shares a store with other processes: give --store ducklake:... "
                        "and --data-path (one DuckDB file belongs to one `tasktrail serve`)")
    if problems:
        raise click.UsageError("; ".join(problems))
    if settings.exposed_without_token():
        click.echo(f"warning: listening on {settings.host} without both --ingest-token and --api-token: "
                   "anyone who can reach it can send data or read it", err=True)
    if memory_cap.apply(settings.max_memory):
        memory_cap.prepare_allocators()  # before DuckDB loads: freed address space goes back to the system
    from .server import print_bound, serve as run_server
    from tasktrail.store.api import StoreUnavailable
    try:
        asyncio.run(run_server(settings, role=role, on_ready=lambda b: print_bound(settings, b), settle_gc=True))
    except (OSError, StoreUnavailable) as exc:  # a port taken, a store another process holds
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@serve_options
def serve(**opts):
    """Receive OTLP (gRPC and HTTP), store it, serve the UI and API, until Ctrl-C."""
    _run("all", **opts)


@main.command()
@serve_options
def ingest(**opts):
    """Receivers and writer only (no web), into a shared --store ducklake:...; run several behind a
    load balancer. The web options are ignored."""
    _run("ingest", **opts)


@main.command()
@serve_options
def web(**opts):
    """UI, API and /metrics only (no ingest) over a shared --store ducklake:...; it also keeps the
    store's caches folded, compacts files and applies retention. The OTLP options are ignored."""
    _run("web", **opts)


@main.command()
@click.option("--db", default=Settings.db, show_default=True, envvar="TASKTRAIL_DB",
              help="DuckDB file (stop the server first).")
@click.option("--store", default="", envvar="TASKTRAIL_STORE", help="A DuckLake store (ducklake:...) instead.")
@click.option("--data-path", default="", envvar="TASKTRAIL_DATA_PATH", help="The DuckLake store's Parquet files.")
def rebuild(db, store, data_path):
    """Recompute the caches kept beside the log (invocation_state, runner_state) from the log itself."""
    import os

    from tasktrail.store.api import StoreUnavailable

    try:
        if store:
            from tasktrail.store.ducklake import DuckLakeStore
            st = DuckLakeStore(store.removeprefix("ducklake:"), data_path, fold=False)
        else:
            from tasktrail.store.duckdb import DuckDBStore
            if not os.path.exists(db):
                raise click.ClickException(f"no store at {db}")
            st = DuckDBStore(db)
    except StoreUnavailable as exc:
        raise click.ClickException(f"{exc}\n(stop the server that holds it first)") from None
    try:
        n = st.rebuild_state()
    finally:
        st.close()
    click.echo(f"rebuilt invocation_state and runner_state: {n} invocations")


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def conventions(output):
    """Print the tasktrail.v1 reference (docs/tasktrail-v1.md is this output)."""
    from tasktrail.proto.reference import render

    text = render()
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


main.add_command(sql)
main.add_command(demo)
