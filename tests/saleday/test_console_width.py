"""Tables fit the terminal they print to; piped output is $COLUMNS or 132 columns wide."""

from __future__ import annotations

import os
import sys

from saleday.cli.common import PIPED_WIDTH, console


class Tty:
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_a_terminal_gets_its_own_width(monkeypatch):
    """On an 80-column terminal the console is 80 wide, not forced to 132."""
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((80, 24)))
    assert console().width == 80


def test_piped_output_is_132_or_what_columns_says(monkeypatch):
    """Without a terminal, $COLUMNS decides, else 132 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    assert not sys.stdout.isatty()
    assert console().width == PIPED_WIDTH == 132
    monkeypatch.setenv("COLUMNS", "200")
    assert console().width == 200
