"""The auditor service on a real store and a real sequencer, served over real HTTP on port 0.

`audit_setting` appends exchange records with varied peers, zones, purposes, subjects,
decisions and directions through the log's own sequencer (signed checkpoints, a witness's
cosignatures), adds three tokens, and serves the application. Entries are appended directly
through the sequencer, never through gRPC, so a large log builds in seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import yarl
from cryptography.hazmat.primitives.asymmetric import ed25519

from node import admin_http, model, wire
from node.answer.builder import pseudonymise
from node.audit import web as audit_web
from node.audit.access import AuditorFile
from node.clock import ManualClock
from node.home import NodeHome
from node.identifiers import make_resident_id, make_uscc
from node.log import merkle, notes
from node.log import store as log_store
from node.log.sequencer import LogWrite, Planned, Sequencer
from node.log.store import LogStore
from node.store import Store
from node.store.engine import SQLITE_BEGIN, SQLITE_BEGIN_BY_CALLER

HUZHOU = "cn-330500"
PEERS = ("cn-330400", "cn-310000", "cn-330100")
ZONES = ("yrd", "hjjw", "hz-metro")
PURPOSES = ("xinyi-dai", "xinyi-you")
HMAC_KEY = b"k" * 32
START = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
COMPANIES = tuple(make_uscc(f"91330500MA000000{n}") for n in range(3))
RESIDENT = make_resident_id("33050219800101003")
LOG_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(b"L" * 32)
WITNESS_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(b"W" * 32)
WITNESS = "cn-330400"


def subject_of(i: int) -> model.SubjectRef:
    if i % 5 == 4:
        return pseudonymise(model.SubjectRef(model.SubjectIdType.RESIDENT_ID, RESIDENT), HMAC_KEY)
    return model.SubjectRef(model.SubjectIdType.USCC, COMPANIES[i % 3])


def record(i: int) -> model.ExchangeRecord:
    """Entry i of the test log: every field varies with i, on its own period."""
    decision = model.Decision((i % 4) + 1)
    return model.ExchangeRecord(
        time=START + dt.timedelta(hours=7 * i),
        direction=model.Direction.ANSWERED if i % 3 else model.Direction.ASKED,
        requester_node=PEERS[i % 3] if i % 3 else HUZHOU,
        responder_node=HUZHOU if i % 3 else PEERS[i % 3],
        zone=ZONES[i % 3 if i % 7 else 1],
        purpose=PURPOSES[i % 2],
        subject=subject_of(i),
        request_id=f"req-{i}",
        request_digest=bytes(32),
        decision=decision,
        reason={
            model.Decision.GRANTED: "",
            model.Decision.REFUSED: "NOT_IN_ZONE: the caller is not in the zone",
            model.Decision.NOT_FOUND: "SUBJECT_NOT_FOUND: no current result",
            model.Decision.FAILED: "FAILED: RuntimeError",
        }[decision],
        result_id=f"r-{i}" if decision is model.Decision.GRANTED else "",
        result_digest=bytes(range(32)) if decision is model.Decision.GRANTED else b"",
    )


class _Bytes:
    """A planner that logs entry bytes as they are (the Planner protocol)."""

    def read(self, conn: Any, items: Sequence[bytes]) -> Sequence[Any]:
        return [None] * len(items)

    def build(self, item: bytes, read: Any, index: int) -> Planned:
        return Planned(LogWrite(item))

    def failed(self, item: bytes, index: int, error: BaseException) -> bytes:
        raise AssertionError("the test planner never fails")


def bulk_log(store: Store, entries: Sequence[bytes], now: dt.datetime) -> None:
    """Write `entries` as one batch straight through the log store, before a sequencer opens
    the log: the tree, its stored nodes and one signed checkpoint, as the sequencer would write
    them, without the receipts' proofs a sequencer computes for its callers."""
    signer = log_signer()
    compact = merkle.CompactRange()
    batch = log_store.Batch()
    for index, entry in enumerate(entries):
        leaf = merkle.leaf_hash(entry)
        batch.entries.append((index, entry, leaf))
        batch.nodes.extend((n.level, n.index, n.hash) for n in compact.append(leaf)[1:])
    root = compact.root()
    note = notes.sign_checkpoint(notes.Checkpoint(signer.name, compact.size, root), signer)
    with store.engine.connect() as conn:
        conn.execution_options(**{SQLITE_BEGIN: SQLITE_BEGIN_BY_CALLER})
        with conn.begin():
            writer = log_store.BatchWriter(conn)
            assert writer.lock() == (0, b"")
            frontier = b"".join(h for _, h in compact.frontier)
            writer.write(batch, now, compact.size, frontier, root, note)
            writer.close()


def log_signer(node_id: str = HUZHOU) -> notes.NoteSigner:
    return notes.NoteSigner(notes.log_origin(node_id), LOG_KEY)


def witness_signer() -> notes.WitnessSigner:
    return notes.WitnessSigner(notes.witness_key_name(WITNESS), WITNESS_KEY)


@dataclasses.dataclass
class Setting:
    store: Store
    sequencer: Sequencer
    clock: ManualClock
    url: str
    session: aiohttp.ClientSession
    tokens: dict[str, str]  # name -> token
    service: audit_web.AuditService

    async def append(self, entries: Sequence[bytes], *, cosign: bool = True) -> None:
        await self.sequencer.append_many(_Bytes(), list(entries))
        if cosign:  # the witness cosigns the latest checkpoint, as witnessing would
            note = self.sequencer.latest_checkpoint
            size = notes.checkpoint_size(note)
            text, _ = notes.split_note(note)
            line = notes.cosign_checkpoint(text, witness_signer(), 1_770_000_000 + size)
            log = LogStore(self.store, self.clock)  # received now, by the test's clock
            log.store_cosignature(size, notes.witness_key_name(WITNESS), line)

    async def get(self, path: str, token: str | None = "auditor", **params: str) -> tuple[int, Any]:
        headers = (
            {} if token is None else {"Authorization": f"Bearer {self.tokens.get(token, token)}"}
        )
        async with self.session.get(f"{self.url}{path}", params=params, headers=headers) as r:
            body = await r.json() if r.content_type == "application/json" else await r.read()
            return r.status, body

    async def post(self, path: str, body: bytes, token: str | None = "operator") -> tuple[int, Any]:
        """POST `body` (bytes as given) to `path`, which is already URL-encoded."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
        url = yarl.URL(f"{self.url}{path}", encoded=True)
        async with self.session.post(url, data=body, headers=headers) as r:
            return r.status, await r.json() if r.content_type == "application/json" else None


@contextlib.asynccontextmanager
async def audit_setting(
    store: Store,
    home: pathlib.Path,
    entries: int = 0,
    *,
    bulk: Sequence[bytes] = (),
    first: int = 0,
    port: int = 0,
) -> AsyncIterator[Setting]:
    """`entries` records (record(first), …) appended through the sequencer, or `bulk` entries
    written as one batch before it opens the log; served on `port` (0: any free one)."""
    clock = ManualClock(START + dt.timedelta(days=400))
    signer = log_signer()
    if bulk:
        bulk_log(store, bulk, clock.now())

    def sign(size: int, root: bytes) -> str:
        return notes.sign_checkpoint(notes.Checkpoint(signer.name, size, root), signer)

    sequencer = Sequencer(store.engine, sign, clock=clock)
    await sequencer.start()
    auditors = AuditorFile(NodeHome(home))
    tokens = {}
    for name, role, zones, personal in (
        ("auditor", "auditor", ["yrd"], False),
        ("operator", "operator", ["*"], False),
        ("personal", "auditor", ["*"], True),
    ):
        _, tokens[name] = auditors.add(name, role, zones, personal=personal, now=clock.now())
    service = audit_web.AuditService(
        store,
        sequencer,
        auditors,
        lambda ref: pseudonymise(ref, HMAC_KEY),
        audit_web.NodeFacts(
            node_id=HUZHOU,
            name="湖州",
            log_verifier_key=signer.verifier_key_text(),
            witness_keys=lambda: {witness_signer().name: witness_signer().verifier_key_text()},
        ),
        clock,
    )
    runner, port = await admin_http.start(audit_web.application(service), "127.0.0.1", port)
    session = aiohttp.ClientSession()
    setting = Setting(
        store, sequencer, clock, f"http://127.0.0.1:{port}/", session, tokens, service
    )
    try:
        if entries:
            await setting.append([wire.record_bytes(record(first + i)) for i in range(entries)])
        yield setting
    finally:
        await session.close()
        await runner.cleanup()
        await sequencer.close()
