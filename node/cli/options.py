"""Options shared by every subcommand."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

import click

from node.errors import InvalidInput
from node.keys import MAX_HOSTS, host_name

F = TypeVar("F", bound=Callable[..., Any])


def default_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CREDITNODE_HOME") or ".")


def home_option(func: F) -> F:
    """`--home DIR`: the node home (default $CREDITNODE_HOME, else the current directory)."""
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=default_home,
        show_default="$CREDITNODE_HOME or .",
        help="Node home directory holding node.toml, keys/ and data/.",
    )(func)


def host_option(help_text: str) -> Callable[[F], F]:
    """`--host NAME_OR_IP` (repeatable): names and addresses peers reach this node by, for
    its TLS certificate; each is checked by `check_hosts` before anything is written."""
    return click.option("--host", "hosts", multiple=True, metavar="NAME_OR_IP", help=help_text)


def check_hosts(hosts: tuple[str, ...]) -> None:
    """Refuse a bad --host as a usage error, without echoing a long value (node.keys.host_name
    cuts it), and more than MAX_HOSTS of them."""
    if len(hosts) > MAX_HOSTS:
        raise click.BadParameter(f"at most {MAX_HOSTS} host names", param_hint="--host")
    for host in hosts:
        try:
            host_name(host)
        except InvalidInput as exc:
            raise click.BadParameter(exc.message, param_hint="--host") from None
