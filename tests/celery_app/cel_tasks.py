"""A real Celery app with opentelemetry-instrumentation-celery, exporting OTLP/HTTP to tasktrail."""
import os
import time

from celery import Celery
from celery.signals import worker_process_init

app = Celery("cel_tasks", broker=os.environ["CELERY_BROKER"], backend=os.environ["CELERY_BACKEND"])
app.conf.task_default_queue = os.environ["CELERY_QUEUE"]
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True
# The result backend keeps each task's name, args and kwargs: tasktrail's Celery re-run reads them there.
app.conf.result_extended = True


def setup_otel(service: str) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "cel-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=os.environ["OTLP_HTTP"] + "/v1/traces", headers={"authorization": "Bearer tok123"})))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument()


@worker_process_init.connect(weak=False)
def _init_worker(*args, **kwargs):
    setup_otel("celery-worker")


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=2)
def flaky(self, x):
    try:
        raise ValueError(f"bad {x}")
    except ValueError as exc:
        raise self.retry(exc=exc, countdown=0)


@app.task
def parent(n):
    return [add.delay(i, i).id for i in range(n)]


@app.task
def sleepy(key, seconds):
    """Says it runs (its process id under `key` in the result backend's Redis), then sleeps."""
    import redis
    redis.Redis.from_url(os.environ["CELERY_BACKEND"]).set(key, os.getpid(), ex=300)
    time.sleep(seconds)
    return "woke"


@app.task
def boom(x, y=0):
    raise ValueError(f"boom {x} {y}")
