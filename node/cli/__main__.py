"""`python -m node.cli`: the same as the `creditnode` command."""

from node.cli import run

run()
