"""report.json and timeline.csv next to report.html: the whole report, and the time series
one row per bucket, readable without parsing tables."""

from __future__ import annotations

import csv
import json

from saleday.simulator.files import TIMELINE_COLUMNS, write_files
from saleday.simulator.results import RunReport
from tests.simulator.test_report import a_report


def test_report_json_reads_back_as_the_same_report(tmp_path):
    """report.json is the report (naming the files written), valid as a RunReport."""
    report = a_report(bucket_s=60.0)
    data, timeline = write_files(report, tmp_path / "report")
    back = RunReport.from_json_dict(json.loads(data.read_text()))
    assert back.files == [str(data), str(timeline)]
    assert back.model_copy(update={"files": []}) == report


def test_timeline_csv_has_a_row_per_bucket_with_its_rate_per_simulated_second(tmp_path):
    """Each bucket is a row: its start on the sale clock, counts, and offered / bucket."""
    report = a_report(bucket_s=60.0)
    _, timeline = write_files(report, tmp_path)
    with timeline.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TIMELINE_COLUMNS
    assert len(rows) == len(report.timeline)
    for row, point in zip(rows, report.timeline):
        assert float(row["t_s"]) == point.t_s and int(row["offered"]) == point.offered
        assert float(row["offered_per_sim_s"]) == round(point.offered / 60.0, 3)
        assert float(row["p99_ms"]) == point.p99_ms
    assert rows[1]["sale_clock"] == "01:00"
