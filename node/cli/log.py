"""`creditnode log export|verify`: the exchange log as a JSON file, and its offline check
(DESIGN.md §7). Verification trusts the log and witness keys given on the command line, the
home's own, those the home's verified trust lists carry (DESIGN.md §5 Member 9-10), and a
witness's NodeInfo over mutual TLS for a witness no list gives a key for."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import tempfile
from typing import Any

import click
import grpc

from node.cli import exits
from node.cli.options import home_option
from node.clock import SYSTEM
from node.errors import ConfigError, CreditNodeError, InvalidInput
from node.home import NodeHome
from node.keys import NodeKeys
from node.log import logverify, notes
from node.log.store import LogStore
from node.log_client import PeerLog
from node.store import Store
from node.trust import TrustStore
from node.trust_files import load_home_trust


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
    exits.check_out_path(out, "--out")
    with _open_store(home) as store:
        doc = logverify.export_log(store)
    try:
        _write_private(out, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise exits.CannotWrite(f"cannot write {out}: {exc.strerror}") from None
    click.echo(
        f"exported {len(doc['entries'])} entries and {len(doc['checkpoints'])} checkpoints to {out}"
    )


@log_group.command("verify")
@home_option
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path),
    default=None,
    help="Verify a file written by `creditnode log export` instead of the home's own log.",
)
@click.option(
    "--peer",
    default=None,
    metavar="NODE",
    help="Fetch and verify a peer's log over mutual TLS (the home gives our keys and "
    "trust lists; we must be its witness or auditor).",
)
@click.option(
    "--log-key",
    "log_key",
    default=None,
    metavar="VKEY",
    help="The log's verifier key text. Default: the home's own log key for its log; for an "
    "export or a peer, the key the trust lists give the log's node.",
)
@click.option(
    "--witness-key",
    "witness_keys",
    multiple=True,
    metavar="VKEY",
    help="A witness's verifier key, beyond those learned from the trust lists and the "
    "witnesses' NodeInfo. Repeatable.",
)
def verify_command(
    home: pathlib.Path,
    file: pathlib.Path | None,
    peer: str | None,
    log_key: str | None,
    witness_keys: tuple[str, ...],
) -> None:
    """Recompute the tree and check every checkpoint, cosignature and stored hash.

    Without --file or --peer, checks the home's own log (the home is --home, else
    $CREDITNODE_HOME, else the current directory); --file an export; --peer a peer's log as
    it serves it (entries recomputed against its latest checkpoint). Cosignatures count for
    every witness whose key is known: given with --witness-key, in a trust list the home
    holds, or else in the witness's NodeInfo.
    """
    if file is not None and peer is not None:
        raise click.UsageError("give --file FILE or --peer NODE, not both")
    node_home = NodeHome(home)
    keys = _Keys.given(witness_keys)
    if peer is not None:
        _verify_peer(node_home, peer, log_key, keys)
        return
    if file is not None:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{file} is not a JSON log export: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidInput(f"{file} is not a JSON log export")
        names = {str(c.get("witness")) for c in doc.get("cosignatures", []) if isinstance(c, dict)}
        node = _log_node(doc)
        if node_home.has_config():
            with _open_store(home) as store:
                keys.learn(node_home, store, names)
        log_verifier = _log_verifier(node_home, node, log_key, keys, f"--file {file}")
        report = logverify.verify_export(doc, log_verifier, keys.verifiers())
    else:
        with _open_store(home) as store:
            names = {witness for _, witness, _ in LogStore(store).snapshot().cosignatures}
            if node_home.has_config():
                keys.learn(node_home, store, names)
            log_verifier = (
                notes.NoteVerifier.from_text(log_key)
                if log_key is not None
                else _home_log_verifier(home)
            )
            report = logverify.verify_store(store, log_verifier, keys.verifiers())
    if not report.ok:
        click.echo(f"FAILED: {report.problem}", err=True)
        raise SystemExit(exits.Exit.FAILED)
    click.echo(
        f"OK: {report.size} entries, {report.checkpoints} checkpoints, "
        f"{report.cosignatures} cosignatures verified{keys.describe()}"
    )


@dataclasses.dataclass
class _Keys:
    """Witness verifier keys by key name, and where each came from."""

    witnesses: dict[str, notes.NoteVerifier]
    sources: dict[str, str]
    unknown: set[str] = dataclasses.field(default_factory=set)
    seen: set[str] | None = None  # key names on the cosignatures, once learned
    trust: TrustStore | None = None

    @classmethod
    def given(cls, texts: tuple[str, ...]) -> _Keys:
        verifiers = [notes.NoteVerifier.from_text(t) for t in texts]
        return cls({v.name: v for v in verifiers}, {v.name: "--witness-key" for v in verifiers})

    def learn(self, home: NodeHome, store: Store, names: set[str]) -> None:
        """Witness keys from the home's trust lists, then the NodeInfo of each witness in
        `names` (key names seen on cosignatures) that no list gives."""
        self.seen = set(names)
        self.trust = load_home_trust(home, SYSTEM.now(), store.trust_floors).store
        for vkey in self.trust.witness_verifier_keys().values():
            verifier = notes.NoteVerifier.from_text(vkey)
            if verifier.name not in self.witnesses:
                self.witnesses[verifier.name] = verifier
                self.sources[verifier.name] = "trust list"
        missing = sorted(n for n in names if n not in self.witnesses)
        if missing:
            self._ask_node_info(home, missing)

    def _ask_node_info(self, home: NodeHome, names: list[str]) -> None:
        from node.runtime import NodeRuntime  # the runtime is a floor above the log tools

        async def ask() -> None:
            runtime = NodeRuntime(home)
            try:
                for name in names:
                    node = _witness_node(name)
                    try:
                        if node is None:
                            raise ConfigError("not a node's witness key name")
                        client = runtime.peer_client(node, "")
                        try:
                            info = await client.node_info()
                        finally:
                            await client.close()
                        verifier = notes.NoteVerifier.from_text(info.witness_verifier_key)
                    except (CreditNodeError, grpc.aio.AioRpcError):
                        self.unknown.add(name)
                        continue
                    if verifier.name == name:
                        self.witnesses[name] = verifier
                        self.sources[name] = "NodeInfo"
                    else:
                        self.unknown.add(name)
            finally:
                await runtime.stop()

        asyncio.run(ask())

    def verifiers(self) -> list[notes.NoteVerifier]:
        return list(self.witnesses.values())

    def describe(self) -> str:
        """`; witness keys: cn-330400 (trust list)`, and the witnesses left unchecked."""
        shown = sorted(n for n in self.witnesses if self.seen is None or n in self.seen)
        used = [f"{_witness_node(n) or n} ({self.sources[n]})" for n in shown]
        text = f"; witness keys: {', '.join(used)}" if used else ""
        if self.unknown:
            text += f"; not checked, key unknown: {', '.join(sorted(self.unknown))}"
        return text


def _witness_node(key_name: str) -> str | None:
    """`creditx/cn-330400/witness` -> cn-330400 (DESIGN.md §7 key names)."""
    parts = key_name.split("/")
    if len(parts) == 3 and parts[0] == "creditx" and parts[2] == "witness":
        return parts[1] if notes.witness_key_name(parts[1]) == key_name else None
    return None


def _log_node(doc: dict[str, Any]) -> str | None:
    """The node whose log an export holds: its first checkpoint's origin names it."""
    checkpoints = doc.get("checkpoints")
    if not isinstance(checkpoints, list) or not checkpoints:
        return None
    try:
        body, _ = notes.split_note(str(checkpoints[0].get("note", "")))
        origin = notes.Checkpoint.parse_body(body).origin
    except (CreditNodeError, AttributeError):
        return None
    parts = origin.split("/")
    return parts[1] if len(parts) == 3 and notes.log_origin(parts[1]) == origin else None


def _log_verifier(
    home: NodeHome, node: str | None, log_key: str | None, keys: _Keys, what: str
) -> notes.NoteVerifier:
    """--log-key, else this home's own key for its own log, else the key a trust list held
    here gives the log's node (DESIGN.md §5 Member 9)."""
    if log_key is not None:
        return notes.NoteVerifier.from_text(log_key)
    if home.has_config() and node == home.load_config().node_id:
        return NodeKeys.open(home).log_verifier()
    listed = keys.trust.log_verifier_key(node) if keys.trust is not None and node else None
    if listed is None:
        raise click.UsageError(
            f"{what}: no trust list held in {home.path} gives the log key of "
            f"{node or 'the log'}; pass --log-key VKEY"
        )
    return notes.NoteVerifier.from_text(listed)


def _verify_peer(home: NodeHome, peer: str, log_key: str | None, keys: _Keys) -> None:
    from node.runtime import NodeRuntime  # the runtime is a floor above the log tools

    async def fetch() -> tuple[PeerLog, str | None]:
        runtime = NodeRuntime(home)
        try:
            return await runtime.fetch_peer_log(peer), runtime.trust.log_verifier_key(peer)
        finally:
            await runtime.stop()

    fetched, listed = asyncio.run(fetch())
    with _open_store(home.path) as store:
        _, lines = notes.split_note(fetched.checkpoint)
        keys.learn(home, store, {line.name for line in lines} - {notes.log_origin(peer)})
    if log_key:
        vkey, source = log_key, "the key given"
    elif fetched.key_pinned:
        vkey, source = fetched.log_verifier_key, "our pinned key"
    elif listed:
        vkey, source = listed, "the trust list"
    else:
        vkey, source = fetched.log_verifier_key, f"{peer}'s NodeInfo"
    report = logverify.verify_log(
        fetched.entries,
        [fetched.checkpoint],
        notes.NoteVerifier.from_text(vkey),
        keys.verifiers(),
    )
    if not report.ok:
        click.echo(f"FAILED: {peer}: {report.problem}", err=True)
        raise SystemExit(exits.Exit.FAILED)
    click.echo(
        f"OK: {peer}: {report.size} entries match its checkpoint signed by the log key "
        f"from {source}; {report.cosignatures} cosignatures verified{keys.describe()}"
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
