"""The pynenc 0.4 app of the search test (tests/pn_search_app.py runs it; pynenc wants tasks in an importable
module): PN_KIND "memory" or "sqlite" (PN_DB), a ThreadRunner in the submitting process."""
import os

from pynenc import PynencBuilder

KIND = os.environ.get("PN_KIND", "memory")
builder = PynencBuilder().app_id(f"pn-search-{KIND}") \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01)
builder = builder.sqlite(os.environ["PN_DB"]) if KIND == "sqlite" else builder.memory()
app = builder.thread_runner(min_threads=1, max_threads=4).build()


@app.task
def process(order, customer, note="none"):
    if customer == "bad":
        raise ValueError(f"order {order} rejected: customer blocked")
    return {"processed": order, "for": customer}


@app.task
def ship(order_id, express=False):
    return f"shipped {order_id}{' express' if express else ''}"
