"""The API's OpenAPI description is complete, and schemathesis driving the live server from it gets no 5xx."""
import collections
import os
import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st

from tasktrail.web.api import ROUTES

from .helpers import PB, fixture_requests, start_server
from .strategies import odd_sql, time_values
EXAMPLES = int(os.environ.get("TASKTRAIL_SCHEMATHESIS_EXAMPLES", "30"))
SEEN = collections.Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("oa") / "tt.duckdb"), "--ingest-token", "tok123",
                       "--sql-timeout", "3")
    for sig, body in fixture_requests():  # real invocations, runners and spans to find
        httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).raise_for_status()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.api + "/openapi.json")


def test_every_route_is_described(live):
    doc = httpx.get(live.api + "/openapi.json").json()
    assert doc["openapi"].startswith("3.0")
    routes = {re.sub(r"{(\w+):\w+}", r"{\1}", r.path) for r in ROUTES} - {"/openapi.json"}  # {x:path} → {x}
    assert set(doc["paths"]) == routes


def test_no_server_errors(live, api_schema):
    """Every operation, EXAMPLES generated cases each (hypothesis, through schemathesis's strategies)."""
    failures = []
    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) == len(ROUTES) - 1
    for op in ops:
        if op.path == "/logs/tail":  # an endless stream; its filters are the log filters, covered by /logs
            continue

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(base_url=live.api, timeout=30)
            SEEN[response.status_code] += 1
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.path_parameters, case.query, case.body,
                                 response.status_code, response.text[:300]))
                return
            if response.status_code >= 400:
                err = response.json()["error"]  # one error shape
                assert err["status"] == response.status_code and err["message"]

        check()
    assert not failures, failures[:5]


def test_time_extremes_and_odd_sql_find_no_server_errors(live, api_schema):
    """schemathesis's cases with the time parameters' extremes and the SQL endpoint's odd values drawn in
    (tests/strategies.py): every operation taking since/until, and POST /sql."""
    failures = []
    timed = 0
    for op in [r.ok() for r in api_schema.get_all_operations()]:
        names = {p.name for p in op.query}
        if op.path == "/logs/tail" or not ({"since", "until"} & names or op.path == "/sql"):
            continue
        timed += op.path != "/sql"

        @given(case=op.as_strategy(), since=st.one_of(st.none(), time_values),
               until=st.one_of(st.none(), time_values), sql=odd_sql)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case, since, until, sql):
            if op.path == "/sql":
                case.body = {"sql": sql}
            else:
                case.query = {**(case.query or {}), **{k: v for k, v in (("since", since), ("until", until))
                                                         if k in names and v is not None}}
            response = case.call(base_url=live.api, timeout=30)
            SEEN[response.status_code] += 1
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.query, case.body, response.status_code,
                                 response.text[:300]))
                return
            if response.status_code >= 400:
                err = response.json()["error"]
                assert err["status"] == response.status_code and err["message"]

        check()
    assert timed >= 14
    assert not failures, failures[:5]


def test_schemathesis_tally(record):
    total = sum(SEEN.values())
    assert total > 0
    record("API", "schemathesis against /api/v1/openapi.json (every operation, generated parameters and bodies; "
                  "then every operation taking since/until with times at their extremes drawn in, and POST /sql "
                  "with SELECTs over odd values; the store holds the rustvello fixtures)", total,
           "no 5xx; statuses " + ", ".join(f"{k}: {v}" for k, v in sorted(SEEN.items()))
           + "; every error in the one error shape")
