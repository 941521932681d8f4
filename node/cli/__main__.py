"""`python -m node.cli`: the same as the `creditnode` command."""

from node.cli import run

if __name__ == "__main__":  # not when a reader process (node.split_reading) imports it
    run()
