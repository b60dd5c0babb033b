"""After the traffic the progress bar names what the run does (draining, auditing, charts),
and while it is shown, log events go to a file instead of breaking it."""

from __future__ import annotations

import io

import structlog
from rich.console import Console

from saleday.cluster import logs
from saleday.simulator.progress import RunProgress


def test_the_bar_names_the_phase_after_the_sale():
    """`phase` replaces the bar's label, keeping its place."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    with RunProgress(planned=None, sim_end_s=100.0, force=True, console=console) as progress:
        progress.update(sim_t_s=98, commands=10)
        progress.phase("auditing")
    text = out.getvalue()
    assert "auditing 00:01:38" in text and " 98%" in text


def test_log_events_go_to_the_file_while_it_lasts(tmp_path, capsys):
    """Inside `to_file` a warning is appended to the file, not printed; after, stderr again."""
    logs.configure("info")
    log = structlog.get_logger("test")
    with logs.to_file(tmp_path / "data" / "simulate.log") as path:
        log.warning("append_unavailable", stream="sku-000")
    log.warning("after_the_bar")
    err = capsys.readouterr().err
    assert "append_unavailable" in path.read_text() and "append_unavailable" not in err
    assert "after_the_bar" in err
