"""Publish one task (instrumented) to a queue given on the command line, print its id, exit: no worker
consumes that queue, so only the apply_async span ever reaches tasktrail."""
import sys

from cel_tasks import add, setup_otel

setup_otel("celery-web")
result = add.apply_async((1, 2), queue=sys.argv[1])
from opentelemetry import trace  # noqa: E402

trace.get_tracer_provider().force_flush()
print(result.id)
