"""Queue depths of a rustvello app, sent to tasktrail with one call.

rustvello 0.9 counts the invocations waiting in each declared broker queue (`App.queue_depths()`, one
queue `App.queue_depth(name)`) but sends no such figure over OTLP. Attach a reporter beside the app and it
sends one `tasktrail.queue.depth` record per queue right away and then every `interval_s` seconds (default
TASKTRAIL_QUEUE_INTERVAL, else 5) from a daemon thread, through tasktrail's emitter (tasktrail.v1):

    from tasktrail.proto.rustvello_queues import report_queue_depths
    reporter = report_queue_depths(app, "http://127.0.0.1:4318", token="...")   # or emitter=an Emitter
    ...
    reporter.stop()                                                              # when done (app.stop() first is fine)

`queues` adds queues the broker does not declare (rustvello counts those only by name); `consumers`
names the runner ids that consume every reported queue, when the caller knows them. tasktrail also counts
as consumers the workers alive that started work from a queue (query/queues.py). Counting never raises
into the app: a failed count is skipped until the next interval. Needs `tasktrail[emitter]`.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Iterable, Optional

from .emitter import Emitter, Runner
from .pynenc_queues import DEFAULT_INTERVAL_S, interval_s as interval_from_env

log = logging.getLogger("tasktrail.rustvello")


def app_id_of(app) -> str:
    """The rustvello app's id (`App.config.app_id`), else "rustvello"."""
    return str(getattr(getattr(app, "config", None), "app_id", None) or "rustvello")


class QueueDepthReporter:
    """Sends `app`'s queue depths every `interval_s` seconds until `stop()` (module doc)."""

    def __init__(self, app, emitter: Emitter, *, interval_s: float = DEFAULT_INTERVAL_S, queues: Iterable[str] = (),
                 consumers: Optional[Iterable[str]] = None, runner: Optional[Runner] = None,
                 owns_emitter: bool = False) -> None:
        self.app, self.emitter, self.interval_s = app, emitter, interval_s
        self.queues = tuple(queues)
        self.consumers = list(consumers) if consumers is not None else None
        self.runner = runner or Runner(f"queue-depths@{socket.gethostname()}-{os.getpid()}", "QueueDepthReporter")
        self.owns_emitter = owns_emitter
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tasktrail-rustvello-queues", daemon=True)
        self._thread.start()

    def depths(self) -> dict:
        """{queue: waiting invocations} as rustvello counts them now: `queue_depths()` and the extra `queues`."""
        out = {str(q): int(d) for q, d in dict(self.app.queue_depths()).items()}
        for q in self.queues:
            if q not in out:
                out[q] = int(self.app.queue_depth(q))
        return out

    def report(self) -> dict:
        """Count and send once; returns what was sent."""
        sent = self.depths()
        for queue, depth in sent.items():
            self.emitter.queue_depth(queue, depth, consumers=self.consumers, runner=self.runner)
        return sent

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.report()
            except Exception as exc:  # observability must not break the app
                self.errors += 1
                if self.errors <= 3:
                    log.warning("tasktrail: rustvello queue depths failed: %s", exc)
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread, send what is queued (and close the emitter this reporter opened)."""
        self._stop.set()
        self._thread.join(timeout_s)
        self.emitter.flush(int(timeout_s * 1000))
        if self.owns_emitter:
            self.emitter.shutdown()


def report_queue_depths(app, endpoint: Optional[str] = None, *, token: Optional[str] = None,
                        emitter: Optional[Emitter] = None, interval_s: Optional[float] = None,
                        queues: Iterable[str] = (), consumers: Optional[Iterable[str]] = None,
                        protocol: str = "http/protobuf") -> QueueDepthReporter:
    """Attach a QueueDepthReporter to the rustvello `app`: through `emitter`, or a new one for `endpoint`
    (OTLP/HTTP by default; the app id is rustvello's). `interval_s` defaults to TASKTRAIL_QUEUE_INTERVAL, else
    5 s. Raises ValueError with neither `emitter` nor `endpoint`."""
    if emitter is None and not endpoint:
        raise ValueError("report_queue_depths needs an emitter or a tasktrail endpoint")
    own = emitter is None
    if own:
        emitter = Emitter(endpoint, app_id_of(app), protocol=protocol, token=token, service_name="rustvello-queues")
    every = interval_s if interval_s is not None else (interval_from_env() or DEFAULT_INTERVAL_S)
    return QueueDepthReporter(app, emitter, interval_s=every, queues=queues, consumers=consumers, owns_emitter=own)
