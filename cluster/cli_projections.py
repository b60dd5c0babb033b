"""`saleday` commands for projections (registered by cluster/cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the `saleday` app (and its `bench` group)."""
