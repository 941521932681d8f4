"""`creditnode log export|verify`: the exchange log as a JSON file, and its offline check
(DESIGN.md §7). Verification trusts only the verifier keys given on the command line."""

from __future__ import annotations

import json
import pathlib

import click

from node import logverify, notes
from node.cli.options import home_option
from node.errors import InvalidInput
from node.home import NodeHome
from node.keys import NodeKeys
from node.store import Store


def _open_store(home: pathlib.Path) -> Store:
    return Store.open(NodeHome(home).db_url(), migrate=False)


def _home_log_verifier(home: pathlib.Path) -> notes.NoteVerifier:
    return NodeKeys.open(NodeHome(home)).log_verifier()


@click.group("log")
def log_group() -> None:
    """Export or verify this node's exchange log."""


@log_group.command("export")
@home_option
@click.option("--out", "out", required=True,
              type=click.Path(dir_okay=False, path_type=pathlib.Path), help="JSON file to write.")
def export_command(home: pathlib.Path, out: pathlib.Path) -> None:
    """Write the whole log (entries, tree nodes, checkpoints, cosignatures) as JSON."""
    with _open_store(home) as store:
        doc = logverify.export_log(store)
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    click.echo(f"exported {len(doc['entries'])} entries and {len(doc['checkpoints'])} "
               f"checkpoints to {out}")


@log_group.command("verify")
@click.option("--home", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help="Verify the database of this node home.")
@click.option("--file", "file", type=click.Path(dir_okay=False, exists=True,
                                                path_type=pathlib.Path),
              default=None, help="Verify a file written by `creditnode log export`.")
@click.option("--log-key", "log_key", default=None, metavar="VKEY",
              help="The log's verifier key text (NodeInfo.log_verifier_key); with --home it "
              "defaults to the home's own log key.")
@click.option("--witness-key", "witness_keys", multiple=True, metavar="VKEY",
              help="A witness's verifier key; its cosignatures are checked. Repeatable.")
def verify_command(home: pathlib.Path | None, file: pathlib.Path | None, log_key: str | None,
                   witness_keys: tuple[str, ...]) -> None:
    """Recompute the tree and check every checkpoint, cosignature and stored hash."""
    if (home is None) == (file is None):
        raise click.UsageError("give exactly one of --home DIR or --file FILE")
    if log_key is not None:
        log_verifier = notes.NoteVerifier.from_text(log_key)
    elif home is not None:
        log_verifier = _home_log_verifier(home)
    else:
        raise click.UsageError("--file needs --log-key VKEY: the log's verifier key text")
    witnesses = [notes.NoteVerifier.from_text(k) for k in witness_keys]
    if file is not None:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{file} is not a JSON log export: {exc}") from None
        report = logverify.verify_export(doc, log_verifier, witnesses)
    else:
        assert home is not None
        with _open_store(home) as store:
            report = logverify.verify_store(store, log_verifier, witnesses)
    if not report.ok:
        click.echo(f"FAILED: {report.problem}", err=True)
        raise SystemExit(1)
    click.echo(f"OK: {report.size} entries, {report.checkpoints} checkpoints, "
               f"{report.cosignatures} cosignatures verified")


def register(main: click.Group) -> None:
    main.add_command(log_group)
