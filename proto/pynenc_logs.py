"""pynenc's log lines to tasktrail: a handler on each app's logger, added as pynenc creates it (the
exporter installs it unless TASKTRAIL_LOGS=off; proto/pynenc.py)."""
from __future__ import annotations

import logging
import traceback as tb
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pynenc import Exporter


class LogForwarder(logging.Handler):
    """Carries one pynenc app's log lines to tasktrail as log records: a handler on the app's logger
    (`pynenc.<app_id>`, at the level pynenc configured), whose PynencContextFilter has set each record's
    runner_ctx, invocation_id and task_id. Like every hook it never raises into pynenc and never blocks."""

    def __init__(self, ex: "Exporter", app) -> None:
        super().__init__(logging.NOTSET)
        self.ex, self.app = ex, app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            exc = None
            if record.exc_info and record.exc_info[0] is not None:
                exc = (record.exc_info[0].__name__, str(record.exc_info[1]),
                       "".join(tb.format_exception(*record.exc_info)))
            runner = self.ex.runner(getattr(record, "runner_ctx", None))
            inv, task = getattr(record, "invocation_id", None), getattr(record, "task_id", None)
        except Exception:  # a message that cannot be formatted: pynenc's own handler reports it
            return
        self.ex.send(self.app, lambda em: em.log(
            message, level=record.levelno, invocation_id=inv, task_id=str(task) if task else None, runner=runner,
            logger_name=record.name, exception=exc, timestamp=record.created))


def forward_logs(ex: "Exporter") -> None:
    """Add a LogForwarder to each pynenc app's logger as pynenc creates it (pynenc.app.create_logger)."""
    import pynenc.app as pynenc_app

    create = pynenc_app.create_logger
    if getattr(create, "__tasktrail__", False):
        return

    def create_logger(app, *args, **kwargs):
        logger = create(app, *args, **kwargs)
        if not any(isinstance(h, LogForwarder) for h in logger.handlers):
            logger.addHandler(LogForwarder(ex, app))
        return logger

    create_logger.__tasktrail__ = True
    pynenc_app.create_logger = create_logger
