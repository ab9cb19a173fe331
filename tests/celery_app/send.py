"""Send tasks to the Celery app (instrumented: tasktrail sees each sent) and print their ids as JSON.
argv[1]: a JSON list of [task name, args, kwargs]."""
import json
import sys

from cel_tasks import app, setup_otel

setup_otel("celery-client")
ids = [app.send_task(name, args=args, kwargs=kwargs).id for name, args, kwargs in json.loads(sys.argv[1])]
from opentelemetry import trace  # noqa: E402

trace.get_tracer_provider().force_flush()
print(json.dumps(ids))
