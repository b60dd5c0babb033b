"""A run as data files next to report.html: `report.json` and `timeline.csv`.

Written after every run (with or without charts), so a pipeline reads the figures
without parsing tables, and the time series is at hand without `--json`:
- `report.json`: the whole report (`RunReport.to_json_dict()`), as `--json` prints it;
- `timeline.csv`: one row per bucket of simulated time: when it starts (simulated
  seconds since the window opened, and on the sale clock), the bucket's length, commands
  offered, served (of which refused by the rules), refused Busy and failed (unavailable),
  the offered rate per *simulated* second, and the bucket's p50/p95/p99/max latency in ms
  (empty when nothing was served).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from saleday.simulator.report import clock
from saleday.simulator.results import RunReport

TIMELINE_COLUMNS = ("t_s", "sale_clock", "bucket_s", "offered", "served", "rejected", "busy",
                    "errors", "offered_per_sim_s", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def write_files(report: RunReport, out_dir: str | Path) -> list[Path]:
    """Write `report.json` and `timeline.csv` under `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timeline = out / "timeline.csv"
    bucket = report.bucket_s or 1.0
    with timeline.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(TIMELINE_COLUMNS)
        for p in report.timeline:
            writer.writerow((p.t_s, clock(p.t_s), bucket, p.offered, p.served, p.rejected, p.busy,
                             p.errors, round(p.offered / bucket, 3),
                             *("" if v is None else v
                               for v in (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms))))
    data = out / "report.json"
    files = [str(data), str(timeline)]
    body = report.model_copy(update={"files": files}).to_json_dict()
    data.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return [data, timeline]
