"""Reading an order-history CSV: usable rows become RecordOrder, bad rows are counted."""

from __future__ import annotations

import pytest

from saleday.flows.history import (
    HistoryFileError,
    order_ref,
    parse_amount,
    parse_ordered_at,
    parse_orders,
)

NOW = 1


def test_each_usable_row_becomes_an_imported_order_in_cents_and_utc_ms():
    """A date is midnight UTC, an offset is honoured, yuan become cents."""
    parsed = parse_orders(["user,ordered_at,amount",
                           "alice,2025-11-11,199.5",
                           "bob,2025-11-11T08:00:00+08:00,7"], now=NOW)
    assert [(c.user, c.ordered_at, c.amount_cents, c.source) for c in parsed.commands] == [
        ("alice", 1_762_819_200_000, 19_950, "import"),
        ("bob", 1_762_819_200_000, 700, "import")]
    assert parsed.rows == 2 and parsed.bad == {}


def test_columns_may_come_in_any_order_and_a_bom_is_ignored():
    """The header names the columns; their order is free."""
    parsed = parse_orders(["\ufeffamount,user,ordered_at", "3.25,carol,2025-01-02"], now=NOW)
    (c,) = parsed.commands
    assert (c.user, c.amount_cents) == ("carol", 325)


def test_a_file_without_the_header_is_refused_whole():
    """Without user,ordered_at,amount the file cannot be read at all."""
    with pytest.raises(HistoryFileError, match="header"):
        parse_orders(["alice,2025-11-11,1"], now=NOW)
    with pytest.raises(HistoryFileError):
        parse_orders([], now=NOW)


def test_bad_rows_are_counted_by_reason_with_their_line_numbers():
    """Each bad row is skipped under one reason; line 1 is the header."""
    parsed = parse_orders(["user,ordered_at,amount",
                           "a,2025-11-11,1",          # 2 ok
                           "b,2025-13-01,1",          # 3 bad date
                           ",2025-11-11,1",           # 4 empty user
                           "c,2025-11-11,1.234",      # 5 three decimals
                           "d,2025-11-11,-4",         # 6 negative
                           "e,2025-11-11",            # 7 two fields
                           "",                        # blank: no row
                           "f,yesterday,1"], now=NOW)  # 9 bad date
    assert len(parsed.commands) == 1 and parsed.rows == 7
    assert parsed.bad == {"bad_ordered_at": [3, 9], "empty_user": [4], "bad_amount": [5, 6],
                          "wrong_field_count": [7]}


def test_refs_come_from_row_content_not_position():
    """The same rows in another order, or with rows added, get the same refs."""
    rows = ["a,2025-11-11,1", "b,2025-11-12,2", "a,2025-11-11,1"]
    first = parse_orders(["user,ordered_at,amount", *rows], now=NOW).commands
    again = parse_orders(["user,ordered_at,amount", "z,2025-01-01,9", *reversed(rows)],
                         now=NOW).commands
    assert {c.order_ref for c in first} < {c.order_ref for c in again}
    assert first[0].order_ref != first[2].order_ref   # two identical rows are two orders
    assert first[0].order_ref == order_ref("a", first[0].ordered_at, 100, 0)


def test_amounts_and_dates_parse_strictly():
    """Amounts take up to two decimals and no sign; dates are ISO 8601."""
    assert [parse_amount(t) for t in ("0", "12", "12.3", "12.34", " 5 ")] == [0, 1200, 1230,
                                                                             1234, 500]
    assert [parse_amount(t) for t in ("", "1e3", "-1", "1.", "1.234", "¥5")] == [None] * 6
    assert parse_ordered_at("2025-11-11T00:00:00Z") == 1_762_819_200_000
    assert parse_ordered_at("2025-11-11 00:00") == 1_762_819_200_000
    assert parse_ordered_at("11/11/2025") is None
    assert parse_ordered_at("1960-01-01") is None
