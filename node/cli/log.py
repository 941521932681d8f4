"""`creditnode log export|verify`: the exchange log as a JSON file, and its offline check
(DESIGN.md §7). Verification trusts only the verifier keys given on the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import tempfile

import click

from node.cli.options import home_option
from node.errors import InvalidInput
from node.home import NodeHome
from node.keys import NodeKeys
from node.log import logverify, notes
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
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="JSON file to write.",
)
def export_command(home: pathlib.Path, out: pathlib.Path) -> None:
    """Write the whole log (entries, tree nodes, checkpoints, cosignatures) as JSON, in a
    file only its owner can read (mode 0600)."""
    with _open_store(home) as store:
        doc = logverify.export_log(store)
    try:
        _write_private(out, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    click.echo(
        f"exported {len(doc['entries'])} entries and {len(doc['checkpoints'])} checkpoints to {out}"
    )


@log_group.command("verify")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="Verify the database of this node home.",
)
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path),
    default=None,
    help="Verify a file written by `creditnode log export`.",
)
@click.option(
    "--peer",
    default=None,
    metavar="NODE",
    help="Fetch and verify a peer's log over mutual TLS (needs --home for our keys "
    "and trust lists; we must be its witness or auditor).",
)
@click.option(
    "--log-key",
    "log_key",
    default=None,
    metavar="VKEY",
    help="The log's verifier key text (NodeInfo.log_verifier_key); with --home it "
    "defaults to the home's own log key.",
)
@click.option(
    "--witness-key",
    "witness_keys",
    multiple=True,
    metavar="VKEY",
    help="A witness's verifier key; its cosignatures are checked. Repeatable.",
)
def verify_command(
    home: pathlib.Path | None,
    file: pathlib.Path | None,
    peer: str | None,
    log_key: str | None,
    witness_keys: tuple[str, ...],
) -> None:
    """Recompute the tree and check every checkpoint, cosignature and stored hash.

    --home checks this node's own log; --file an export; --peer a peer's log as it serves it
    (entries recomputed against its latest checkpoint).
    """
    witnesses = [notes.NoteVerifier.from_text(k) for k in witness_keys]
    if peer is not None:
        if home is None or file is not None:
            raise click.UsageError("--peer NODE needs --home DIR (this node) and no --file")
        _verify_peer(home, peer, log_key, witnesses)
        return
    if (home is None) == (file is None):
        raise click.UsageError("give exactly one of --home DIR, --file FILE or --peer NODE")
    if log_key is not None:
        log_verifier = notes.NoteVerifier.from_text(log_key)
    elif home is not None:
        log_verifier = _home_log_verifier(home)
    else:
        raise click.UsageError("--file needs --log-key VKEY: the log's verifier key text")
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
    click.echo(
        f"OK: {report.size} entries, {report.checkpoints} checkpoints, "
        f"{report.cosignatures} cosignatures verified"
    )


def _verify_peer(
    home: pathlib.Path, peer: str, log_key: str | None, witnesses: list[notes.NoteVerifier]
) -> None:
    from node.runtime import NodeRuntime  # the runtime is a floor above the log tools

    async def fetch() -> tuple[logverify.Report, str]:
        runtime = NodeRuntime(NodeHome(home))
        try:
            fetched = await runtime.fetch_peer_log(peer)
        finally:
            await runtime.stop()
        verifier = notes.NoteVerifier.from_text(log_key or fetched.log_verifier_key)
        source = (
            "the key given"
            if log_key
            else "our pinned key"
            if fetched.key_pinned
            else f"{peer}'s NodeInfo"
        )
        return logverify.verify_log(
            fetched.entries, [fetched.checkpoint], verifier, witnesses
        ), source

    report, source = asyncio.run(fetch())
    if not report.ok:
        click.echo(f"FAILED: {peer}: {report.problem}", err=True)
        raise SystemExit(1)
    click.echo(
        f"OK: {peer}: {report.size} entries match its checkpoint signed by the log key "
        f"from {source}; {report.cosignatures} cosignatures verified"
    )


def _write_private(path: pathlib.Path, text: str) -> None:
    """Replace `path` by a file of mode 0600 whatever was there: written as a new file that
    mkstemp makes 0600 from the start, then renamed over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def register(main: click.Group) -> None:
    main.add_command(log_group)
