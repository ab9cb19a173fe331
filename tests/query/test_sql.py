"""query/sql.py: one ad-hoc SELECT over the log, admitted by its guard and answered under its limits (rows,
bytes, time); SQL that is refused or that DuckDB cannot run is a BadRequest saying why."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest
from tasktrail.store.api import QueryTimeout

from .common import NOW, ago


@pytest.fixture(scope="module")
def local_filled(local):
    em = local.emitter("sql-app", Runner("sql-r", "ThreadRunner", hostname="h", pid=1))
    for k in range(5):
        em.status(f"q-{k}", "REGISTERED", task_id="app.sql", timestamp=ago(100 - k))
        em.status(f"q-{k}", "SUCCESS" if k % 2 else "FAILED", timestamp=ago(90 - k))
    em.shutdown()
    return local


def test_a_select_over_the_log(local_filled):
    qs = local_filled.service(clock=lambda: NOW)
    a = qs.sql("SELECT status, count(*) AS n FROM transitions GROUP BY 1 ORDER BY 1")
    assert a.columns == ["status", "n"] and a.python_rows() == [["FAILED", 3], ["REGISTERED", 5], ["SUCCESS", 2]]
    assert not a.truncated and a.body().startswith(b'{"columns":["status","n"],"truncated":false')
    inv = qs.sql("SELECT invocation_id, status FROM invocations ORDER BY 1 LIMIT 2")
    assert inv.python_rows() == [["q-0", "FAILED"], ["q-1", "SUCCESS"]]


def test_row_and_byte_caps(local_filled):
    capped = local_filled.service(sql_max_rows=2).sql("SELECT * FROM range(10)")
    assert (len(capped.rows), capped.truncated_by) == (2, "rows")
    assert capped.notice == "cut at the row cap of 2 rows (--sql-max-rows)"
    small = local_filled.service(sql_max_bytes=300).sql("SELECT repeat('x', 50) FROM range(100)")
    assert small.truncated_by == "bytes" and 0 < len(small.rows) < 100


def test_refused_failing_and_slow_sql(local_filled):
    qs = local_filled.service()
    for statement, message in (("DELETE FROM transitions", "only read-only SELECT statements are allowed"),
                               ("SELECT 1; SELECT 2", "send exactly one statement, got 2"),
                               ("SELECT * FROM checkpoint()", r"checkpoint\(\) is not allowed in ad-hoc SQL"),
                               ("SELECT nope FROM transitions", "SQL error:")):
        with pytest.raises(BadRequest, match=message):
            qs.sql(statement)
    with pytest.raises(QueryTimeout):
        local_filled.service(sql_timeout_s=0.2).sql("SELECT count(*) FROM range(100000000000)")
