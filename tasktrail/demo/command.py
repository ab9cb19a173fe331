"""`tasktrail demo`: serve tasktrail and feed it real runners (tasktrail/demo/loop.py) until Ctrl-C."""
from __future__ import annotations

import asyncio
import logging

import click

from ..options import PORT
from ..settings import Settings
from ..sql_command import DEMO_DB


@click.command()
@click.option("--db", default=f"./{DEMO_DB}", show_default=True, help="DuckDB file for the demo's data.")
@click.option("--host", default=Settings.host, show_default=True)
@click.option("--http-port", type=PORT, default=Settings.http_port, show_default=True,
              help="Web UI and API. Use 0 to pick a free port.")
@click.option("--otlp-grpc-port", type=PORT, default=Settings.otlp_grpc_port, show_default=True)
@click.option("--otlp-http-port", type=PORT, default=Settings.otlp_http_port, show_default=True)
@click.option("--every", type=click.FloatRange(1), default=15.0, show_default=True,
              help="Seconds between workload rounds.")
@click.option("--runner", type=click.Choice(["auto", "pynenc", "rustvello"]), default="auto", show_default=True,
              help="auto: every runner that is installed — rustvello (the `demo` extra) and pynenc (a Python "
                   "3.12 with pynenc 0.4: TASKTRAIL_PY312 or the project's .venv312); what is missing is said "
                   "once, with the command that installs it.")
def demo(db, host, http_port, otlp_grpc_port, otlp_http_port, every, runner):
    """Serve tasktrail and feed it real runners until Ctrl-C.

    rustvello 0.9 (`pip install -e '.[demo]'`): retries and a workflow. pynenc 0.4 where a Python 3.12
    with pynenc is found (TASKTRAIL_PY312 or the project's .venv312): retries, a workflow, a status
    trigger, cron core tasks and the atomic service, alternating the thread and persistent-process
    runners. By default every one that is installed runs, each round.
    """
    from pathlib import Path

    from ..server import print_bound, serve as run_server
    from .loop import GET_PYNENC, GET_RUSTVELLO, DemoLoop, find_python312, has_rustvello

    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import secrets

    # rustvello sends OTLP only with a bearer token: the demo's server makes one up for its runners.
    token = secrets.token_urlsafe(16)
    settings = Settings(db=db, host=host, http_port=http_port, otlp_grpc_port=otlp_grpc_port,
                        otlp_http_port=otlp_http_port, ingest_token=token)
    problems = settings.validate()
    if problems:
        raise click.UsageError("; ".join(problems))
    python312 = None if runner == "rustvello" else find_python312(Path(__file__).resolve().parents[2])
    rustvello = runner != "pynenc" and has_rustvello()
    if runner == "pynenc" and python312 is None:
        raise click.ClickException(f"no Python 3.12 with pynenc 0.4 and tasktrail; to get one: {GET_PYNENC}")
    if runner == "rustvello" and not rustvello:
        raise click.ClickException(f"rustvello is not installed; to get it: {GET_RUSTVELLO}")
    if runner == "auto":
        if not rustvello:
            click.echo(f"demo: rustvello is not installed, so its runs are left out; to get it: {GET_RUSTVELLO}")
        if python312 is None:
            click.echo(f"demo: no Python 3.12 with pynenc 0.4, so pynenc's runs are left out; to get it: {GET_PYNENC}")
    loops = []

    def ready(bound):
        print_bound(settings, bound)
        h = host if ":" not in host else f"[{host}]"
        loop = DemoLoop(f"http://{h}:{bound.otlp_http_port}", f"{h}:{bound.otlp_grpc_port}", token, every, python312,
                        rustvello=rustvello)
        click.echo(f"demo: feeding it {loop.runner_name} every {every:g} s; open http://{h}:{bound.web_port}")
        loop.start()
        loops.append(loop)

    from tasktrail.store.api import StoreUnavailable
    try:
        asyncio.run(run_server(settings, on_ready=ready))
    except (OSError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        for loop in loops:
            loop.stop()
