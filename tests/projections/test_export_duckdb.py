"""docs/AUDIT.md's DuckDB session is true: each of its queries runs on a Parquet export of
a log the system wrote and returns rows, and the invariants they show hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from saleday.projections.export import export
from tests.projections.audit_logs import real_sale

duckdb = pytest.importorskip("duckdb")

DOC = (Path(__file__).parents[2] / "docs" / "AUDIT.md").read_text()


def doc_queries() -> dict[str, str]:
    """The statements of the doc's DuckDB session, by the number of their `-- N.` comment."""
    block = re.search(r"```sql\n(.*?)```", DOC.split("### A DuckDB session", 1)[1], re.S)
    assert block is not None, "docs/AUDIT.md has no sql block under 'A DuckDB session'"
    statements = [s.strip() for s in block.group(1).split(";") if s.strip()]
    found = {}
    for s in statements:
        number = re.search(r"^--\s*(\d+)\.", s, re.M)
        found[number.group(1) if number else s] = s
    return found


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """DuckDB in the directory of a Parquet export of a small sale day."""
    data = tmp_path_factory.mktemp("sale")
    url = f"sqlite:///{data}/events.db"
    real_sale(url, orders=120)
    out = export(url, fmt="parquet", out=data / "export").path.parent
    connection = duckdb.connect()
    connection.execute(f"SET file_search_path = '{out}'")
    yield connection
    connection.close()


def rows(con, query: str) -> list[dict]:
    result = con.execute(query)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def test_every_query_of_the_doc_returns_rows(con):
    """Each statement of the session runs, and each query returns at least one row."""
    queries = doc_queries()
    assert len(queries) >= 5
    for key, query in queries.items():
        if query.upper().startswith("SET"):
            con.execute(query)
            continue
        assert rows(con, query), f"query {key} returned no rows"


def test_the_queries_show_the_invariants(con):
    """No SKU went below zero, no coupon was redeemed twice, every cause is in the log."""
    queries = doc_queries()
    assert all(r["lowest_available"] >= 0 for r in rows(con, queries["1"]))
    (coupons,) = rows(con, queries["3"])
    assert coupons["most_redemptions_of_one_coupon"] == 1
    caused = rows(con, queries["4"])
    assert {r["caused_by"] for r in caused} >= {"inventory.stock_reserved",
                                                 "teams.red_packet_split"}
    assert all(r["caused_by"] is not None for r in caused)


def test_the_columns_have_query_types(con):
    """Event time is a timestamp, the payload JSON, and the entity its SKU, user or order."""
    types = {r["column_name"]: r["column_type"]
             for r in rows(con, "DESCRIBE FROM 'events.parquet'")}
    assert types["recorded_at"].startswith("TIMESTAMP") and types["data"] == "JSON"
    (mismatch,) = con.execute("SELECT count(*) FROM 'events.parquet' WHERE type LIKE 'inventory.%' "
                              "AND entity IS DISTINCT FROM data->>'sku'").fetchone()
    assert mismatch == 0
