"""Queue depths from pynenc runners (part of the pynenc exporter, proto/pynenc.py).

When a pynenc runner starts (`BaseRunner.on_start`: a top-level runner's `run()`; the workers a runner
spawns start with `_on_start` and report nothing), a daemon thread in its process sends, right away and
then every TASKTRAIL_QUEUE_INTERVAL seconds (default 5; 0 or "off": never), one `tasktrail.queue.depth`
record per queue: every queue the broker declares (`broker.conf.queues`) and any other the runner
consumes, each with pynenc's own count, `broker.count_invocations([queue])` (invocations routed to that
queue and not yet retrieved by a runner). The record names the runner as a consumer of the queues it
takes work from (`runner.conf.queues`, or every broker queue when that is empty, pynenc's rule), with the
runner's context as the reporter. The thread ends when the runner stops (`runner.running` goes false).

In pynenc 0.4 a queue is a logical name the broker routes invocation ids to (task option `queue`, default
"default"; broker setting `queues` declares them), and a runner consumes the queues of its `queues`
setting. Counting never raises into pynenc; a count that fails is skipped until the next interval.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Optional

log = logging.getLogger("tasktrail.pynenc")
ENV_QUEUE_INTERVAL = "TASKTRAIL_QUEUE_INTERVAL"
DEFAULT_INTERVAL_S = 5.0


def interval_s(environ=os.environ) -> Optional[float]:
    """The reporting interval in seconds from TASKTRAIL_QUEUE_INTERVAL (default 5), None when off."""
    raw = str(environ.get(ENV_QUEUE_INTERVAL, DEFAULT_INTERVAL_S)).strip().lower()
    if raw in ("off", "no", "false", ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("tasktrail exporter: %s=%r is not a number of seconds; using %g", ENV_QUEUE_INTERVAL, raw,
                    DEFAULT_INTERVAL_S)
        return DEFAULT_INTERVAL_S
    return value if value > 0 else None


def queues_of(runner) -> tuple[tuple[str, ...], frozenset]:
    """(queues to report, queues `runner` consumes): the broker's declared queues and the runner's own, and
    the runner's `queues` setting or, when empty, every broker queue (pynenc's BaseRunner rule)."""
    declared = tuple(runner.app.broker.conf.queues)
    own = tuple(runner.conf.queues or ())
    return tuple(dict.fromkeys(declared + own)), frozenset(own or declared)


def depths(broker, queues) -> dict:
    """{queue: pynenc's own count of pending invocations in it}; a queue whose count fails is left out (the
    memory broker's dict may change size while a runner routes work)."""
    out = {}
    for queue in queues:
        for _ in range(3):
            try:
                out[queue] = int(broker.count_invocations([queue]))
                break
            except RuntimeError:
                continue
            except Exception as exc:
                log.debug("tasktrail exporter: counting queue %s failed: %s", queue, exc)
                break
    return out


class DepthReporter:
    """The daemon thread of one runner (module doc)."""

    def __init__(self, ex, runner, every_s: float) -> None:
        self.ex, self.runner, self.every_s = ex, runner, every_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="tasktrail-queue-depths", daemon=True)
        self.thread.start()

    def report(self) -> None:
        runner = self.runner
        queues, consumed = queues_of(runner)
        ctx = self.ex.runner(runner.runner_context)
        me = [runner.runner_id]
        for queue, depth in depths(runner.app.broker, queues).items():
            self.ex.send(runner.app, lambda em, q=queue, d=depth: em.queue_depth(
                q, d, consumers=me if q in consumed else [], runner=ctx))

    def _loop(self) -> None:
        while not self.stopped.is_set() and getattr(self.runner, "running", False):
            try:
                self.report()
            except Exception as exc:  # observability must not break the runner
                log.debug("tasktrail exporter: queue depths failed: %s", exc)
            self.stopped.wait(self.every_s)


def install(ex) -> None:
    """Start a DepthReporter with every top-level pynenc runner (after `BaseRunner.on_start`)."""
    every = interval_s()
    if every is None:
        return
    from pynenc.runner.base_runner import BaseRunner

    from .pynenc_hooks import after

    def started(runner) -> None:
        ex.depth_reporters = [r for r in getattr(ex, "depth_reporters", []) if r.thread.is_alive()]
        ex.depth_reporters.append(DepthReporter(ex, runner, every))

    after(BaseRunner, "on_start", started, mark="__tasktrail_queues__")
