"""Offline verification of an exchange log (DESIGN.md §7, `creditnode log verify`).

Recomputes the tree from the entry bytes and checks, in order: stored leaf hashes and tree
nodes against the recomputation, then every checkpoint's log signature, root at its size,
known witnesses' cosignatures and consistency with the previous one. Stops at the first
problem and names it. `verify_log` is pure; `export_log`/`verify_store` read a Store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from node import b64
from node.errors import CreditNodeError, InvalidInput
from node.log import merkle, notes
from node.log.store import LogStore
from node.store import Store

EXPORT_FORMAT = "creditx-exchange-log/v1"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredNode:
    """A stored complete subtree hash (log_nodes row)."""

    level: int
    index: int
    hash: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    size: int  # number of entries
    checkpoints: int  # checkpoints that verified
    cosignatures: int  # witness cosignatures that verified
    problem: str | None = None  # the first problem found, naming what is bad

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_log(
    entries: Sequence[bytes],
    checkpoints: Sequence[str],
    log_verifier: notes.NoteVerifier,
    witnesses: Iterable[notes.NoteVerifier] = (),
    *,
    leaf_hashes: Sequence[bytes] | None = None,
    nodes: Iterable[StoredNode] = (),
) -> Report:
    """Check a whole log; `checkpoints` are signed notes (cosignatures appended) in any order.

    `leaf_hashes` and `nodes`, when given, are what the store holds; each must equal the
    recomputation, so tampering with a stored hash is named, not only the checkpoint it breaks.
    """
    witnesses = tuple(witnesses)
    leaves = [merkle.leaf_hash(e) for e in entries]
    tree = merkle.InMemoryTree.from_leaf_hashes(leaves)

    def fail(problem: str, verified: int = 0, cosigned: int = 0) -> Report:
        return Report(len(entries), verified, cosigned, problem)

    # 1. Stored leaf hashes: the first entry whose bytes do not hash to what was recorded.
    if leaf_hashes is not None:
        if len(leaf_hashes) != len(leaves):
            return fail(f"{len(leaf_hashes)} leaf hashes recorded for {len(leaves)} entries")
        for index, (recorded, computed) in enumerate(zip(leaf_hashes, leaves, strict=True)):
            if recorded != computed:
                return fail(
                    f"entry {index}: its data does not hash to its recorded leaf hash "
                    "(the entry or its leaf hash was altered)"
                )
    # 2. Stored tree nodes, lowest first.
    for node in sorted(nodes, key=lambda n: (n.level, n.index)):
        where = f"tree node (level {node.level}, index {node.index})"
        if not 0 < node.level < len(tree.levels) or node.index >= len(tree.levels[node.level]):
            return fail(f"{where} covers leaves beyond the {len(entries)} entries")
        if tree.levels[node.level][node.index] != node.hash:
            return fail(f"{where} does not match the hash recomputed from the entries")
    # 3. Checkpoints in size order.
    opened: list[notes.VerifiedCheckpoint] = []
    for position, note in enumerate(checkpoints):
        try:
            opened.append(notes.open_checkpoint(note, log_verifier, witnesses))
        except CreditNodeError as exc:
            return fail(f"checkpoint {position}: {exc.message}")
    order = sorted(range(len(opened)), key=lambda i: opened[i].checkpoint.size)
    verified = cosigned = 0
    previous: notes.Checkpoint | None = None
    for position in order:
        checkpoint = opened[position].checkpoint
        where = f"checkpoint {position} (size {checkpoint.size})"
        if checkpoint.size > tree.size:
            return fail(
                f"{where} claims more entries than the {tree.size} present", verified, cosigned
            )
        if tree.root(checkpoint.size) != checkpoint.root_hash:
            return fail(
                f"{where}: its root is not the root of entries 0..{checkpoint.size - 1}",
                verified,
                cosigned,
            )
        if previous is not None and previous.size > 0:
            try:
                merkle.verify_consistency(
                    previous.size,
                    checkpoint.size,
                    previous.root_hash,
                    checkpoint.root_hash,
                    tree.consistency_proof(previous.size, checkpoint.size),
                )
            except CreditNodeError as exc:
                return fail(
                    f"{where} is not consistent with size {previous.size}: {exc.message}",
                    verified,
                    cosigned,
                )
        previous = checkpoint
        verified += 1
        cosigned += sum(1 for v in opened[position].note.verified if v.timestamp is not None)
    return Report(len(entries), verified, cosigned)


# --- from a store, and the JSON export --------------------------------------------------------


def verify_store(
    store: Store, log_verifier: notes.NoteVerifier, witnesses: Iterable[notes.NoteVerifier] = ()
) -> Report:
    """Verify the log a node's database holds, including its stored leaf hashes and nodes."""
    stored = LogStore(store).snapshot()
    for position, (index, _, _) in enumerate(stored.entries):
        if index != position:
            return Report(
                len(stored.entries), 0, 0, f"entry {position} is missing (next is {index})"
            )
    lines_of: dict[int, list[str]] = {}
    for size, _, line in stored.cosignatures:
        lines_of.setdefault(size, []).append(line)
    checkpoints = []
    for position, (size, note, root) in enumerate(stored.checkpoints):
        lines = lines_of.get(size, [])
        try:
            stated = notes.Checkpoint.parse_body(notes.split_note(note)[0])
            checkpoints.append(notes.add_signature_lines(note, lines) if lines else note)
        except CreditNodeError as exc:
            return Report(len(stored.entries), 0, 0, f"checkpoint {position}: {exc.message}")
        if (stated.size, stated.root_hash) != (size, root):
            return Report(
                len(stored.entries),
                0,
                0,
                f"checkpoint {position} (size {size}): "
                "its stored size or root differs from its signed note",
            )
    return verify_log(
        [data for _, data, _ in stored.entries],
        checkpoints,
        log_verifier,
        witnesses,
        leaf_hashes=[leaf for _, _, leaf in stored.entries],
        nodes=[StoredNode(*node) for node in stored.nodes],
    )


def export_log(store: Store) -> dict[str, Any]:
    """The whole log as a JSON-ready document: entries (base64), tree nodes, checkpoints (the
    log-signed notes) and the cosignatures received for them."""
    stored = LogStore(store).snapshot()
    return {
        "format": EXPORT_FORMAT,
        "entries": [
            {"index": i, "data": b64.encode(data), "leaf_hash": b64.encode(leaf)}
            for i, data, leaf in stored.entries
        ],
        "nodes": [
            {"level": level, "index": i, "hash": b64.encode(h)} for level, i, h in stored.nodes
        ],
        "checkpoints": [{"size": size, "note": note} for size, note, _ in stored.checkpoints],
        "cosignatures": [
            {"size": size, "witness": witness, "line": line}
            for size, witness, line in stored.cosignatures
        ],
    }


def verify_export(
    doc: Mapping[str, Any],
    log_verifier: notes.NoteVerifier,
    witnesses: Iterable[notes.NoteVerifier] = (),
) -> Report:
    """Verify a document made by `export_log`. Raises InvalidInput for a malformed document."""
    if doc.get("format") != EXPORT_FORMAT:
        raise InvalidInput(f"not an exchange log export (format must be {EXPORT_FORMAT!r})")
    try:
        entries = doc["entries"]
        for position, item in enumerate(entries):
            if item["index"] != position:
                return Report(
                    len(entries), 0, 0, f"entry {position} is missing (next is {item['index']})"
                )
        data = [b64.decode(e["data"], f"entry {i} data") for i, e in enumerate(entries)]
        leaf_hashes = [
            b64.decode(e["leaf_hash"], f"entry {i} leaf hash") for i, e in enumerate(entries)
        ]
        nodes = [
            StoredNode(
                int(n["level"]), int(n["index"]), b64.decode(n["hash"], f"tree node {i} hash")
            )
            for i, n in enumerate(doc.get("nodes", []))
        ]
        by_size: dict[int, list[str]] = {}
        for c in doc.get("cosignatures", []):
            by_size.setdefault(int(c["size"]), []).append(str(c["line"]))
        checkpoints = []
        for position, c in enumerate(doc["checkpoints"]):
            note = str(c["note"])
            try:
                stated = notes.Checkpoint.parse_body(notes.split_note(note)[0]).size
            except CreditNodeError as exc:
                return Report(len(data), 0, 0, f"checkpoint {position}: {exc.message}")
            if stated != int(c["size"]):
                return Report(
                    len(data),
                    0,
                    0,
                    f"checkpoint {position}: listed as size "
                    f"{c['size']} but its note says size {stated}",
                )
            lines = by_size.get(int(c["size"]))
            if lines:
                try:
                    note = notes.add_signature_lines(note, lines)
                except CreditNodeError as exc:
                    return Report(len(data), 0, 0, f"checkpoint {position}: {exc.message}")
            checkpoints.append(note)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed exchange log export: {exc!r}") from None
    return verify_log(
        data, checkpoints, log_verifier, witnesses, leaf_hashes=leaf_hashes, nodes=nodes
    )
