"""`creditnode`'s exit statuses and its one way of showing an error (issue 14 §6, §8).

Every failure ends in one line `error: …` on stderr — or, when the command was given --json,
one JSON object `{"error": {...}}` on stdout — and an exit status a script can branch on. No
traceback reaches the operator; a message is cut to a bounded length, since it may quote what
the caller typed.
"""

from __future__ import annotations

import enum
import json
import os
import pathlib
import sys

import click

from node import model
from node.errors import (
    AddressInUse,
    ConfigError,
    CreditNodeError,
    HomeInUse,
    KeyMaterialError,
)

MAX_MESSAGE = 600  # characters of an error message shown; the rest is cut
TRACEBACK_ENV = "CREDITNODE_TRACEBACK"  # set to 1 to see where an unexpected error arose


class Exit(enum.IntEnum):
    """The exit status of every command; `query` ends with the decision's own status."""

    OK = 0  # done; for `query`, GRANTED (signature, binding and receipt verified)
    FAILED = 1  # the command failed; for `query`, the exchange failed (peer unreachable, …)
    USAGE = 2  # a bad option or argument
    REFUSED = 3  # `query`: the peer refused (not in the zone, purpose not agreed, rate)
    NOT_FOUND = 4  # `query`: the peer holds no current result for the subject
    REJECTED = 5  # `query`: the peer's answer did not verify (signature, binding, receipt)
    CONFIG = 6  # the home, its node.toml or its keys are missing or wrong
    IN_USE = 7  # another `serve` runs on this home, or a listen address is taken
    CANNOT_WRITE = 8  # a file or directory cannot be written or read (e.g. --out's directory)
    INTERNAL = 70  # a fault in creditnode itself (sysexits EX_SOFTWARE)


_MEANING = {
    Exit.OK: "done; query: GRANTED",
    Exit.FAILED: "failed; query: the exchange FAILED (peer unreachable, …)",
    Exit.USAGE: "bad option or argument",
    Exit.REFUSED: "query: REFUSED by the peer",
    Exit.NOT_FOUND: "query: NOT_FOUND at the peer",
    Exit.REJECTED: "query: the answer was REJECTED (did not verify)",
    Exit.CONFIG: "the home, node.toml or keys are missing or wrong",
    Exit.IN_USE: "another serve runs on this home, or a listen address is taken",
    Exit.CANNOT_WRITE: "a file or directory cannot be written or read",
    Exit.INTERNAL: "a fault in creditnode itself",
}
# For `creditnode --help` (click keeps a paragraph that starts with \b as it is written).
EXIT_HELP = "\b\nExit statuses:\n" + "\n".join(
    f"  {status.value:>2} {status.name:<13} {_MEANING[status]}" for status in Exit
)


class CannotWrite(click.ClickException):
    """A file the operator asked for cannot be written where it was asked for."""

    exit_code = Exit.CANNOT_WRITE


def check_out_path(path: pathlib.Path, option: str) -> None:
    """Refuse an output path whose directory is missing, before any work is done."""
    parent = path.parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise CannotWrite(f"{option} {path}: the directory {parent} {why}")
    if path.is_dir():
        raise CannotWrite(f"{option} {path} is a directory; give a file name")


def for_decision(decision: model.Decision, rejected: bool) -> Exit:
    """A `query` outcome's exit status: REJECTED when the answer came but did not verify."""
    if rejected:
        return Exit.REJECTED
    return {
        model.Decision.GRANTED: Exit.OK,
        model.Decision.REFUSED: Exit.REFUSED,
        model.Decision.NOT_FOUND: Exit.NOT_FOUND,
    }.get(decision, Exit.FAILED)


def for_error(exc: CreditNodeError) -> Exit:
    if isinstance(exc, HomeInUse | AddressInUse):
        return Exit.IN_USE
    if isinstance(exc, ConfigError | KeyMaterialError):
        return Exit.CONFIG
    return Exit.FAILED


def bounded(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def fail(status: Exit, message: str, *, reason: str, as_json: bool) -> None:
    """Show one error and exit with `status`."""
    message = bounded(message)
    if as_json:
        error = {"status": status.name, "exit_code": int(status), "reason": reason}
        click.echo(json.dumps({"error": {**error, "message": message}}, ensure_ascii=False))
    else:
        click.echo(f"error: {message}", err=True)
    raise SystemExit(int(status))


def show_traceback() -> bool:
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def run(main: click.Group, args: list[str] | None = None) -> None:
    """Run the command line; every way it can end is one of `Exit`, with one error shown."""
    args = sys.argv[1:] if args is None else args
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    try:
        returned = main.main(args, prog_name="creditnode", standalone_mode=False)
    except click.exceptions.Abort:
        raise SystemExit(130) from None
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        fail(Exit.USAGE, exc.format_message() + where, reason="USAGE", as_json=as_json)
    except click.ClickException as exc:
        status = Exit(exc.exit_code) if exc.exit_code in Exit._value2member_map_ else Exit.FAILED
        fail(status, exc.format_message(), reason=status.name, as_json=as_json)
    except CreditNodeError as exc:
        fail(for_error(exc), exc.message, reason=exc.reason, as_json=as_json)
    except OSError as exc:  # a file the operator named: say which and why, not where in us
        where = f"{exc.filename}: " if exc.filename is not None else ""
        fail(Exit.CANNOT_WRITE, f"{where}{exc.strerror or exc}", reason="OS_ERROR", as_json=as_json)
    except Exception as exc:
        if show_traceback():
            raise
        fail(
            Exit.INTERNAL,
            f"unexpected {type(exc).__name__} in creditnode; set {TRACEBACK_ENV}=1 to see where",
            reason="INTERNAL",
            as_json=as_json,
        )
    raise SystemExit(returned if isinstance(returned, int) else 0)
