"""The `saleday` command line."""

from saleday.cli.main import app, main

__all__ = ["app", "main"]
