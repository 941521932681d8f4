"""Offline log verification: an intact log verifies; flipping any byte of a stored entry, leaf
hash, tree node, checkpoint or cosignature fails and names what is bad (store, export, CLI)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ed25519

from node.cli import main
from node.log import logverify, merkle, notes
from node.log.sequencer import LogWrite, Sequencer
from node.log.witness import store_cosignature
from node.store import Store
from node.store import log_tables as t

ORIGIN = notes.log_origin("cn-330500")
BATCHES = (3, 1, 5, 4)  # checkpoints at sizes 3, 4, 9, 13


class Log:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.signer = notes.NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
        self.witness = notes.WitnessSigner(
            notes.witness_key_name("cn-330400"), ed25519.Ed25519PrivateKey.generate()
        )

    async def fill(self) -> None:
        def sign(size: int, root: bytes) -> str:
            return notes.sign_checkpoint(notes.Checkpoint(ORIGIN, size, root), self.signer)

        sequencer = Sequencer(self.store.engine, sign)
        await sequencer.start()
        try:
            for count in BATCHES:
                # Appended together, they commit as one batch under one checkpoint.
                await asyncio.gather(
                    *(
                        sequencer.append(
                            lambda i: LogWrite(entry=f"record {i}".encode()),
                            lambda i, exc: b"failed",
                        )
                        for _ in range(count)
                    )
                )
                note = sequencer.latest_checkpoint
                body = notes.split_note(note)[0]
                size = notes.Checkpoint.parse_body(body).size
                store_cosignature(
                    self.store,
                    size,
                    self.witness.name,
                    notes.cosign_checkpoint(body, self.witness, 1_772_000_000 + size),
                )
        finally:
            await sequencer.close()

    def verify(self) -> logverify.Report:
        return logverify.verify_store(self.store, self.signer.verifier(), [self.witness.verifier()])


@pytest.fixture
async def log(sqlite_url: str) -> AsyncIterator[Log]:
    store = Store.open(sqlite_url)
    log = Log(store)
    await log.fill()
    yield log
    store.close()


def flip_byte(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def flip_char(text: str, position: int) -> str:
    """Change one character to another printable ASCII one (a byte flip that stays text)."""
    return text[:position] + ("B" if text[position] != "B" else "C") + text[position + 1 :]


def test_intact_log_verifies(log: Log) -> None:
    report = log.verify()
    assert report.ok, report.problem
    assert (report.size, report.checkpoints, report.cosignatures) == (13, 4, 4)


def test_cosignature_of_unknown_witness_is_not_counted(log: Log) -> None:
    report = logverify.verify_store(log.store, log.signer.verifier())
    assert report.ok and report.cosignatures == 0


def test_wrong_log_key_fails(log: Log) -> None:
    other = notes.NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    report = logverify.verify_store(log.store, other.verifier())
    assert not report.ok and "checkpoint 0" in (report.problem or "")


Tamper = Callable[[sa.Connection], None]


def _update_entry(column: str, index: int, position: int) -> Tamper:
    def tamper(conn: sa.Connection) -> None:
        value = conn.execute(
            sa.select(t.log_entries.c[column]).where(t.log_entries.c.idx == index)
        ).scalar_one()
        conn.execute(
            sa.update(t.log_entries)
            .where(t.log_entries.c.idx == index)
            .values({column: flip_byte(value, position)})
        )

    return tamper


def _update_node(level: int, index: int) -> Tamper:
    def tamper(conn: sa.Connection) -> None:
        where = (t.log_nodes.c.level == level) & (t.log_nodes.c.idx == index)
        value = conn.execute(sa.select(t.log_nodes.c.hash).where(where)).scalar_one()
        conn.execute(sa.update(t.log_nodes).where(where).values(hash=flip_byte(value, 31)))

    return tamper


def _update_checkpoint(size: int, part: str) -> Tamper:
    def tamper(conn: sa.Connection) -> None:
        where = t.log_checkpoints.c.size == size
        note = conn.execute(sa.select(t.log_checkpoints.c.note).where(where)).scalar_one()
        position = {
            "origin": 2,
            "root": len(ORIGIN) + len(str(size)) + 5,
            "signature": len(note) - 10,
        }[part]
        conn.execute(
            sa.update(t.log_checkpoints).where(where).values(note=flip_char(note, position))
        )

    return tamper


def _update_cosignature(size: int) -> Tamper:
    def tamper(conn: sa.Connection) -> None:
        where = t.log_cosignatures.c.size == size
        line = conn.execute(sa.select(t.log_cosignatures.c.line).where(where)).scalar_one()
        conn.execute(
            sa.update(t.log_cosignatures).where(where).values(line=flip_char(line, len(line) - 8))
        )

    return tamper


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (_update_entry("data", 0, 0), "entry 0"),
        (_update_entry("data", 7, 3), "entry 7"),
        (_update_entry("data", 12, 8), "entry 12"),
        (_update_entry("leaf_hash", 5, 0), "entry 5"),
        (_update_node(1, 0), "tree node (level 1, index 0)"),
        (_update_node(2, 1), "tree node (level 2, index 1)"),
        (_update_node(3, 0), "tree node (level 3, index 0)"),
        (_update_checkpoint(3, "origin"), "checkpoint 0"),
        (_update_checkpoint(9, "root"), "checkpoint 2"),
        (_update_checkpoint(13, "signature"), "checkpoint 3"),
        (_update_cosignature(4), "checkpoint 1"),
    ],
)
def test_tampered_store_is_named(log: Log, tamper: Tamper, named: str) -> None:
    with log.store.begin() as conn:
        tamper(conn)
    report = log.verify()
    assert not report.ok
    assert named in (report.problem or ""), report.problem


def test_data_and_leaf_hash_rewritten_together_is_caught_by_the_checkpoint(log: Log) -> None:
    """A careful forger recomputes the leaf hash too: the signed root still catches it."""
    with log.store.begin() as conn:
        forged = b"record 6, rewritten"
        conn.execute(
            sa.update(t.log_entries)
            .where(t.log_entries.c.idx == 6)
            .values(data=forged, leaf_hash=merkle.leaf_hash(forged))
        )
        conn.execute(sa.delete(t.log_nodes))  # and drops the stored nodes
    report = log.verify()
    assert not report.ok
    assert "checkpoint 2 (size 9)" in (report.problem or ""), report.problem


def test_missing_entry_is_named(log: Log) -> None:
    with log.store.begin() as conn:
        conn.execute(sa.delete(t.log_entries).where(t.log_entries.c.idx == 4))
    assert "entry 4 is missing" in (log.verify().problem or "")


# --- the JSON export ---------------------------------------------------------------------------


def _flip_b64(value: str) -> str:
    raw = base64.b64decode(value)
    return base64.b64encode(flip_byte(raw, len(raw) // 2)).decode()


EDITS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (lambda d: d["entries"][8].update(data=_flip_b64(d["entries"][8]["data"])), "entry 8"),
    (lambda d: d["nodes"][2].update(hash=_flip_b64(d["nodes"][2]["hash"])), "tree node"),
    (
        lambda d: d["checkpoints"][1].update(note=flip_char(d["checkpoints"][1]["note"], 3)),
        "checkpoint 1",
    ),
    (
        lambda d: d["cosignatures"][3].update(line=flip_char(d["cosignatures"][3]["line"], 40)),
        "checkpoint 3",
    ),
    (lambda d: d["checkpoints"][0].update(size=99), "checkpoint 0"),
]


@pytest.mark.parametrize(("edit", "named"), EDITS)
def test_tampered_export_is_named(
    log: Log, edit: Callable[[dict[str, Any]], None], named: str
) -> None:
    doc = json.loads(json.dumps(logverify.export_log(log.store)))
    keys = (log.signer.verifier(), [log.witness.verifier()])
    assert logverify.verify_export(doc, *keys).ok
    tampered = copy.deepcopy(doc)
    edit(tampered)
    report = logverify.verify_export(tampered, *keys)
    assert not report.ok
    assert named in (report.problem or ""), report.problem


def test_checkpoint_beyond_the_entries_is_named(log: Log) -> None:
    doc = logverify.export_log(log.store)
    doc["entries"] = doc["entries"][:10]
    doc["nodes"] = []
    report = logverify.verify_export(doc, log.signer.verifier())
    assert report.problem == "checkpoint 3 (size 13) claims more entries than the 10 present"


# --- the command line --------------------------------------------------------------------------


def test_cli_export_and_verify(log: Log, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITNODE_DB_URL", str(log.store.engine.url))
    out = tmp_path / "log.json"
    runner = CliRunner()
    result = runner.invoke(main, ["log", "export", "--out", str(out), "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    key = log.signer.verifier_key_text()
    wkey = log.witness.verifier_key_text()
    ok = runner.invoke(
        main, ["log", "verify", "--file", str(out), "--log-key", key, "--witness-key", wkey]
    )
    assert ok.exit_code == 0, ok.output
    assert "OK: 13 entries, 4 checkpoints, 4 cosignatures" in ok.output
    home_ok = runner.invoke(main, ["log", "verify", "--home", str(tmp_path), "--log-key", key])
    assert home_ok.exit_code == 0 and "OK: 13 entries" in home_ok.output

    doc = json.loads(out.read_text())
    doc["entries"][2]["data"] = _flip_b64(doc["entries"][2]["data"])
    out.write_text(json.dumps(doc))
    bad = runner.invoke(main, ["log", "verify", "--file", str(out), "--log-key", key])
    assert bad.exit_code == 1
    assert "FAILED: entry 2" in bad.output
