"""`python -m saleday`: the same command line as `saleday`."""

from saleday.cli import main

main()
