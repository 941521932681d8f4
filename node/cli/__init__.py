"""`creditnode`: the operator's command line (floor 6).

Each subcommand lives in its own module under `node.cli` and is registered here; the commands
are thin shells that parse options, call the domain code, and print.
"""

from __future__ import annotations

import importlib

import click

from node.cli import exits

# Modules that each add their commands to `main` (imported lazily so --help stays fast).
COMMAND_MODULES = (
    "node.cli.identity",
    "node.cli.ingest",
    "node.cli.zone",
    "node.cli.keys_cmd",
    "node.cli.tls_cmd",
    "node.cli.log",
    "node.cli.serve",
    "node.cli.greenloan",
    "node.cli.revocations",
    "node.cli.received",
    "node.cli.auditor",
    "node.cli.status",
    "node.cli.repair",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=exits.EXIT_HELP)
@click.version_option(package_name="credit-interchange-node")
def main() -> None:
    """A city's credit-interchange node: exchange signed public-credit results with peer
    cities, keep a witnessed exchange log, and feed the Green Loan Link.

    Every command works on a node home (node.toml, keys/, data/) chosen by --home, else
    $CREDITNODE_HOME, else the current directory.
    """


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet
                continue
            raise
        module.register(main)


_register()


def run() -> None:
    """Entry point: every error is one line `error: …` (or a JSON object with --json) and an
    exit status of `node.cli.exits.Exit`, documented in `creditnode --help`."""
    exits.run(main)
