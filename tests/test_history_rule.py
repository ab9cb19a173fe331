"""The one history rule (proto/history.py), on its own: each record once, causality first, the sender's
order, time only inside that, adjusted clocks that keep a sender's durations, the dialects' readings."""
import random

import pytest

from tasktrail.proto.history import causal_order, settle

S = 1_000_000


def rec(ts, status, attempt=None, seq=None, sender="w", record_id=None, **kw):
    return {"ts": int(ts), "status": status, "attempt": attempt, "seq": seq, "worker_id": sender, "runner_id": None,
            "source": "test", "record_id": record_id, **kw}


def statuses(rows):
    return [r["status"] for r in settle(rows)]


def test_each_record_once_whatever_the_arrival_order():
    rows = [rec(1 * S, "REGISTERED", sender="c", record_id="a"), rec(2 * S, "RUNNING", 0, record_id="b"),
            rec(3 * S, "SUCCESS", 0, record_id="c")]
    for seed in range(20):
        arrived = rows + [dict(random.Random(seed).choice(rows)) for _ in range(4)]
        random.Random(seed).shuffle(arrived)
        assert statuses(arrived) == ["REGISTERED", "RUNNING", "SUCCESS"]


def test_a_publisher_ahead_keeps_the_registration_first_and_the_worker_keeps_its_durations():
    hist = settle([rec(12.0 * S, "REGISTERED", sender="publisher"), rec(10.1 * S, "PENDING", sender="runner"),
                   rec(10.2 * S, "RUNNING", sender="worker"), rec(11.2 * S, "SUCCESS", sender="worker")])
    assert [h["status"] for h in hist] == ["REGISTERED", "PENDING", "RUNNING", "SUCCESS"]
    assert [h["ts"] - h["sent_ts"] for h in hist] == [0, 1.9 * S, 1.8 * S, 1.8 * S]
    assert hist[3]["ts"] - hist[2]["ts"] == 1 * S  # the worker's own second


def test_a_clock_that_steps_back_during_a_task_never_leaves_it_running():
    hist = settle([rec(0, "REGISTERED", sender="c"), rec(5 * S, "RUNNING"), rec(4 * S, "SUCCESS")])
    assert [h["status"] for h in hist] == ["REGISTERED", "RUNNING", "SUCCESS"]
    assert hist[2]["ts"] == hist[1]["ts"] and hist[2]["ts"] - hist[2]["sent_ts"] == 1 * S


def test_attempts_in_order_across_hosts_whose_clocks_disagree():
    hist = settle([rec(0, "REGISTERED", sender="c"), rec(10 * S, "RUNNING", 0, sender="a"),
                   rec(11 * S, "RETRY", 0, sender="a"), rec(9 * S, "RUNNING", 1, sender="b"),
                   rec(9.5 * S, "SUCCESS", 1, sender="b")])
    assert [(h["status"], h["attempt"]) for h in hist] == [("REGISTERED", None), ("RUNNING", 0), ("RETRY", 0),
                                                           ("RUNNING", 1), ("SUCCESS", 1)]
    assert [h["ts"] for h in hist] == sorted(h["ts"] for h in hist)


@pytest.mark.parametrize("with_seq", [True, False])
def test_one_clock_tick_keeps_the_order_sent(with_seq):
    sent = [("REGISTERED", None), ("PENDING", None), ("RUNNING", 0), ("RETRY", 0), ("PENDING", None), ("RUNNING", 1),
            ("PAUSED", 1), ("RUNNING", 1), ("SUCCESS", 1)]
    rows = [rec(7 * S, st, att, seq=k if with_seq else None) for k, (st, att) in enumerate(sent)]
    if with_seq:  # with seq the arrival order does not matter
        random.Random(3).shuffle(rows)
    assert statuses(rows) == [s for s, _ in sent]


def test_seq_beats_a_clock_that_went_back_within_one_sender():
    rows = [rec(5 * S, "REGISTERED", seq=1), rec(4 * S, "PENDING", seq=2), rec(3 * S, "RUNNING", seq=3),
            rec(6 * S, "PAUSED", seq=4), rec(2 * S, "RUNNING", seq=5)]
    assert statuses(rows) == ["REGISTERED", "PENDING", "RUNNING", "PAUSED", "RUNNING"]


def test_equal_times_of_different_senders_follow_the_lifecycle():
    rows = [rec(1 * S, "RUNNING", sender="w"), rec(1 * S, "PENDING", sender="r"), rec(1 * S, "REGISTERED", sender="c")]
    assert statuses(rows) == ["REGISTERED", "PENDING", "RUNNING"]


def test_rustvello_retried_failure_and_celery_resend_readings():
    rv = [rec(1 * S, "REGISTERED", sender="s"), rec(2 * S, "RUNNING", 0), rec(3 * S, "FAILED", 0, error_type="E"),
          rec(3 * S, "RETRY", 0), rec(4 * S, "RUNNING", 1), rec(5 * S, "FAILED", 1)]
    hist = settle(rv)
    assert [h["status"] for h in hist] == ["REGISTERED", "RUNNING", "RETRY", "RUNNING", "FAILED"]
    assert hist[2]["error_type"] == "E"
    celery = [rec(1 * S, "REGISTERED", sender="client"), rec(2 * S, "RUNNING", 0),
              rec(2.5 * S, "REGISTERED", sender="w"), rec(3 * S, "RETRY", 0), rec(4 * S, "RUNNING", 1),
              rec(5 * S, "SUCCESS", 1)]
    assert statuses(celery) == ["REGISTERED", "RUNNING", "RETRY", "PENDING", "RUNNING", "SUCCESS"]


def test_contradictions_still_give_every_record_once_and_monotone_times():
    """A seq that contradicts the attempts (a broken sender) cannot be satisfied: the rule still ends."""
    rows = [rec(1 * S, "RUNNING", 1, seq=1), rec(2 * S, "RUNNING", 0, seq=2), rec(3 * S, "RETRY", 0, seq=3)]
    hist = settle(rows)
    assert len(hist) == 3 and [h["ts"] for h in hist] == sorted(h["ts"] for h in hist)
    assert causal_order([]) == []


def test_a_long_history_is_ordered_in_linear_time():
    rows = [rec(0, "REGISTERED", sender="c")]
    for k in range(1000):
        rows += [rec((k * 2 + 1) * S, "RUNNING", sender="w"), rec((k * 2 + 2) * S, "PAUSED", sender="w")]
    hist = settle(rows)
    assert len(hist) == 2001 and hist[-1]["status"] == "PAUSED"


def test_a_real_celery_retry_sequence():
    """Times from a real Celery 5 worker (tests/test_celery.py): each retry's run span ends after the next
    attempt started, and each re-send is published from inside the attempt it retries."""
    raw = [(340886662, "REGISTERED", None, "client"), (340972037, "REGISTERED", None, "w-client"),
           (341219379, "REGISTERED", None, "w-client"), (340927468, "RUNNING", 0, "w"), (341415506, "RETRY", 0, "w"),
           (341174475, "RUNNING", 1, "w"), (341952630, "RETRY", 1, "w"), (341967523, "RUNNING", 2, "w"),
           (342024453, "FAILED", 2, "w")]
    hist = settle([rec(t, st, att, sender=sd) for t, st, att, sd in raw])
    assert [h["status"] for h in hist] == ["REGISTERED", "RUNNING", "RETRY", "PENDING", "RUNNING", "RETRY", "PENDING",
                                           "RUNNING", "FAILED"]
    assert [h["ts"] for h in hist] == sorted(h["ts"] for h in hist)
