"""Clickstream readers: Taobao and RetailRocket logs as normalised clicks, streamed, never fatal."""

from __future__ import annotations

import gzip
import random
import time
import tracemalloc
from itertools import islice
from pathlib import Path

import pytest

from saleday.simulator.clicks import (
    Click,
    ClickstreamError,
    ClickstreamNotFound,
    ClickstreamReadError,
    UnknownLayout,
)
from saleday.simulator.clickstream import detect_layout, read, retailrocket, taobao

DATA = Path(__file__).parent / "data"
TAOBAO = DATA / "taobao_sample.csv"
TAOBAO_GZ = DATA / "taobao_sample.csv.gz"
RETAILROCKET = DATA / "retailrocket_events.csv"

TAOBAO_MALFORMED = {"bad_int": 2, "unknown_behavior": 1, "field_count": 2, "empty_id": 1,
                    "timestamp_out_of_range": 2, "blank_line": 1, "non_ascii": 1}
RETAILROCKET_MALFORMED = {"unknown_behavior": 1, "timestamp_out_of_range": 1,
                          "missing_transactionid": 1, "empty_id": 1, "bad_int": 2,
                          "field_count": 2}


# ---- Taobao -------------------------------------------------------------------------------

def test_taobao_rows_become_clicks():
    """Given UserBehavior rows, each valid one is a click in ms with pv/cart/fav/buy normalised."""
    clicks = list(taobao(TAOBAO))
    assert clicks[0] == Click(ts_ms=1_511_544_070_000, user="1", item="2268318", action="view")
    assert [c.action for c in clicks[8:12]] == ["view", "cart", "fav", "buy"]
    assert {c.action for c in clicks} == {"view", "cart", "fav", "buy"}


def test_taobao_buys_in_the_same_second_share_an_order():
    """Taobao has no order ids: one user's buys within a second read as one order."""
    buys = [c for c in taobao(TAOBAO) if c.action == "buy"]
    assert [b.order_ref for b in buys] == ["tb:100:1511680485", "tb:100:1511680485",
                                           "tb:1000:1511600785", "tb:100001:1512225901"]
    assert all(c.order_ref == "" for c in taobao(TAOBAO) if c.action != "buy")


def test_taobao_malformed_rows_are_counted_by_reason_and_skipped():
    """Bad rows are counted by reason with sample line numbers; the rest are read on."""
    reader = taobao(TAOBAO)
    clicks = list(reader)
    stats = reader.stats
    assert (stats.rows, stats.clicks, len(clicks)) == (36, 26, 26)
    assert stats.malformed == TAOBAO_MALFORMED
    assert stats.rows == stats.clicks + stats.malformed_rows
    assert stats.samples["bad_int"] == [17, 24]
    assert stats.samples["timestamp_out_of_range"] == [22, 23]
    assert stats.samples["blank_line"] == [25]
    assert (stats.first_ts, stats.last_ts) == (1_511_544_070_000, 1_512_301_650_000)


def test_gzipped_file_reads_the_same_as_plain():
    """A .csv.gz gives the same clicks and stats as the .csv it was made from."""
    plain, packed = taobao(TAOBAO), taobao(TAOBAO_GZ)
    assert list(plain) == list(packed)
    assert plain.stats.malformed == packed.stats.malformed
    assert packed.stats.layout == "taobao"


def test_a_narrower_time_window_rejects_clicks_outside_it():
    """Given Taobao's documented window, clicks after it count as out of range."""
    reader = taobao(TAOBAO, min_ts_ms=1_511_539_200_000, max_ts_ms=1_512_000_000_000)
    clicks = list(reader)
    assert max(c.ts_ms for c in clicks) < 1_512_000_000_000
    assert reader.stats.malformed["timestamp_out_of_range"] == 2 + 7


def test_reading_again_starts_over_with_fresh_stats():
    """A reader iterated twice reads the file twice and counts each pass alone."""
    reader = taobao(TAOBAO)
    assert len(list(reader)) == len(list(reader)) == 26
    assert reader.stats.rows == 36


def test_windows_line_endings_and_a_bom_read_like_plain_lines(tmp_path):
    """A file saved with CRLF and a UTF-8 BOM reads the same; padded fields are not ints."""
    path = tmp_path / "UserBehavior.csv"
    path.write_bytes(b"\xef\xbb\xbf1,2268318,2520377,pv,1511544070\r\n"
                     b"1,2333346,2520771,buy,1511561733\r\n"
                     b"1, 2333346,2520771,pv,1511561733\r\n")
    reader = taobao(path)
    assert list(reader) == [Click(1_511_544_070_000, "1", "2268318", "view"),
                            Click(1_511_561_733_000, "1", "2333346", "buy", "tb:1:1511561733")]
    assert reader.stats.malformed == {"bad_int": 1}


def test_a_reader_stopped_early_has_counted_what_it_read():
    """Taking the first clicks only, the stats count the rows read up to the last one taken."""
    reader = taobao(TAOBAO)
    taken = list(islice(reader, 17))
    assert taken[-1].user == "100001"
    assert (reader.stats.rows, reader.stats.clicks, reader.stats.malformed_rows) == (27, 17, 10)
    assert reader.stats.last_ts == 1_511_778_204_000


# ---- RetailRocket -------------------------------------------------------------------------

def test_retailrocket_rows_become_clicks_with_transaction_ids():
    """Given events.csv, views, add-to-carts and transactions become clicks; buys keep their order."""
    clicks = list(retailrocket(RETAILROCKET))
    assert clicks[0] == Click(ts_ms=1_433_221_332_117, user="257597", item="355908", action="view")
    buys = [c for c in clicks if c.action == "buy"]
    assert [(b.item, b.order_ref) for b in buys] == [("356475", "4000"), ("15335", "11117"),
                                                      ("81345", "11117"), ("10572", "17504")]
    assert {c.action for c in clicks} == {"view", "cart", "buy"}


def test_retailrocket_malformed_rows_are_counted_and_skipped():
    """Seconds for milliseconds, unknown events, a transaction without an id: counted, skipped."""
    reader = retailrocket(RETAILROCKET)
    assert len(list(reader)) == 21
    stats = reader.stats
    assert (stats.rows, stats.clicks) == (29, 21)
    assert stats.malformed == RETAILROCKET_MALFORMED
    assert stats.samples["timestamp_out_of_range"] == [21]  # line numbers count the header
    assert stats.samples["field_count"] == [25, 27]
    assert (stats.first_ts, stats.last_ts) == (1_433_176_736_375, 1_442_545_187_788)


def test_retailrocket_columns_are_found_by_name(tmp_path):
    """A header in another column order reads the same events."""
    path = tmp_path / "events.csv"
    path.write_text("visitorid,itemid,event,transactionid,timestamp\n"
                    "7,9,transaction,55,1433221332117\n7,9,view,,1433221332118\n")
    assert list(retailrocket(path)) == [Click(1_433_221_332_117, "7", "9", "buy", "55"),
                                        Click(1_433_221_332_118, "7", "9", "view", "")]


def test_retailrocket_without_its_columns_is_an_unknown_layout():
    """A file whose header lacks the RetailRocket columns is refused before reading."""
    with pytest.raises(UnknownLayout, match="lacks timestamp, visitorid, event, itemid"):
        retailrocket(TAOBAO)


# ---- layouts and errors -------------------------------------------------------------------

def test_detect_layout_tells_the_two_apart():
    """The header tells RetailRocket; Taobao-shaped rows tell Taobao, gzipped or not."""
    assert detect_layout(RETAILROCKET) == "retailrocket"
    assert detect_layout(TAOBAO) == "taobao"
    assert detect_layout(TAOBAO_GZ) == "taobao"
    assert read(TAOBAO_GZ).layout == "taobao"
    assert len(list(read(RETAILROCKET, "auto"))) == 21


def test_unknown_layouts_are_refused_readably(tmp_path):
    """An empty file, an unrelated CSV or an unknown layout name raise UnknownLayout."""
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    other = tmp_path / "orders.csv"
    other.write_text("order_id,total\nA-1,4900\nA-2,5100\n")
    with pytest.raises(UnknownLayout, match="empty"):
        detect_layout(empty)
    with pytest.raises(UnknownLayout, match="'order_id,total'"):
        read(other)
    with pytest.raises(UnknownLayout, match="no reader for layout 'amazon'"):
        read(TAOBAO, "amazon")


def test_a_missing_file_is_a_typed_error_at_once(tmp_path):
    """Naming a file that does not exist fails when the reader is made, not mid-iteration."""
    missing = tmp_path / "UserBehavior.csv"
    for make in (taobao, retailrocket, detect_layout, read):
        with pytest.raises(ClickstreamNotFound, match="UserBehavior.csv': no such file"):
            make(missing)
    with pytest.raises(FileNotFoundError):
        taobao(tmp_path)  # a directory is not a clickstream


def test_a_truncated_gzip_stops_with_a_read_error(tmp_path):
    """A gzip cut short yields the clicks before the cut, then a ClickstreamReadError."""
    path = tmp_path / "cut.csv.gz"
    body = "".join(f"{u},{u * 7},{u % 50},pv,{1_511_600_000 + u}\n" for u in range(1, 20_000))
    path.write_bytes(gzip.compress(body.encode(), mtime=0)[:30_000])
    got = []
    with pytest.raises(ClickstreamReadError, match="cannot read past line") as caught:
        got.extend(taobao(path))
    assert isinstance(caught.value, ClickstreamError)
    assert 1_000 < len(got) < 19_999
    assert got[0] == Click(1_511_600_001_000, "1", "7", "view")


# ---- streaming ----------------------------------------------------------------------------

def write_taobao(path: Path, rows: int, seed: int = 7) -> None:
    """A synthetic UserBehavior file: Zipf-ish items, 9 days, one bad row in 1,000."""
    rnd = random.Random(seed)
    actions = ["pv"] * 89 + ["cart"] * 6 + ["fav"] * 3 + ["buy"] * 2
    with open(path, "w") as f:
        for i in range(rows):
            if i % 1000 == 999:
                f.write(f"{i},oops,1,pv,1511600000\n")
                continue
            user = rnd.randrange(1, 1_018_012)
            item = int(5_163_070 * rnd.random() ** 3) + 1
            f.write(f"{user},{item},{item % 9439},{rnd.choice(actions)},"
                    f"{1_511_539_200 + rnd.randrange(777_600)}\n")


def peak_while_reading(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        n = sum(1 for _ in taobao(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return n, peak


@pytest.mark.slow
def test_reading_a_large_file_keeps_memory_flat(tmp_path):
    """Ten times the rows costs no more memory: the reader streams (and reports its rate)."""
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_taobao(small, 20_000)
    write_taobao(large, 200_000)
    packed = tmp_path / "small.csv.gz"
    packed.write_bytes(gzip.compress(small.read_bytes(), compresslevel=1))
    n_small, peak_small = peak_while_reading(small)
    n_large, peak_large = peak_while_reading(large)
    n_packed, peak_packed = peak_while_reading(packed)
    assert (n_small, n_large, n_packed) == (19_980, 199_800, 19_980)
    assert peak_large < peak_small + 64_000  # not a byte per row more
    assert max(peak_large, peak_packed) < 1_000_000  # a 200k-row file is ~8 MB of text

    reader = taobao(large)
    started = time.perf_counter()
    n = sum(1 for _ in reader)
    rate = reader.stats.rows / (time.perf_counter() - started)
    print(f"\ntaobao reader: {reader.stats.rows:,} rows, {n:,} clicks, {rate:,.0f} rows/s; "
          f"tracemalloc peak {peak_small:,} B at 20k rows, {peak_large:,} B at 200k rows, "
          f"{peak_packed:,} B gzipped")
    assert reader.stats.malformed == {"bad_int": 200}
    assert rate > 50_000
