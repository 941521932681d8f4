"""Options shared by every subcommand."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

import click

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
