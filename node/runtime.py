"""A running node built from its home (floor 6): keys, store, trust lists, policy, the log
sequencer, the gRPC services, witnessing — wired together and started.

node.toml tables read here (besides [node] and [keys]): `[zones.<id>]` the zone policy
(see node/data/zones.example.toml), `[trust.<zone>]` the pinned coordinator keys,
`[witness] peers = [...]` the nodes that witness our log, `[witness.logs]` origin → verifier key
of the logs we witness, `[audit] readers` who may read which of our log's entries
(node.disclosure).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.resources
import importlib.util
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status

from node import error_status as status
from node import metrics, model, tls, wire
from node.answer.exchange import pseudonymise
from node.answer.local import Answerer, LocalAnswerer
from node.answer.parts import AnsweringParts
from node.answer.worker_client import WorkerAnswerer
from node.clock import SYSTEM, Clock
from node.config import NodeConfig
from node.disclosure import WITHHELD, EntryScope, audit_readers_from_document
from node.errors import (
    BadAnswer,
    ConfigError,
    CreditNodeError,
    PeerRefused,
    PeerUnavailable,
    PermissionDenied,
)
from node.home import NodeHome
from node.log import notes
from node.log.sequencer import LogWrite
from node.log.witness import Witness, WitnessingStats, send_checkpoint
from node.peer_client import PeerClient, VerifiedAnswer, verify_receipt
from node.server import GrpcServer
from node.services import exchange_log as log_svc
from node.services import interchange as svc
from node.store.engine import is_file_sqlite
from node.trust import TrustStore
from node.trust_files import TrustListFiles, load_home_trust

log = logging.getLogger(__name__)
T = TypeVar("T")
SOFTWARE_VERSION = "credit-interchange-node/0.1.0"
TRUST_REFRESH_S = 5.0
REJECTED = "answer rejected"  # reason prefix of an answer that failed verification


@dataclasses.dataclass(frozen=True)
class WitnessConfig:
    peers: tuple[str, ...] = ()  # node ids that witness our log
    logs: Mapping[str, str] = dataclasses.field(default_factory=dict)  # origin -> verifier key

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> WitnessConfig:
        table = doc.get("witness", {})
        if not isinstance(table, Mapping):
            raise ConfigError("node.toml [witness] must be a table")
        peers = table.get("peers", [])
        logs = table.get("logs", {})
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise ConfigError("node.toml [witness] peers must be a list of node ids")
        if not isinstance(logs, Mapping) or not all(isinstance(v, str) for v in logs.values()):
            raise ConfigError("node.toml [witness.logs] maps a log origin to its verifier key")
        return cls(tuple(peers), dict(logs))


class NodeRuntime:
    """Everything a serving node holds; `start()` then `stop()`."""

    def __init__(self, home: NodeHome, clock: Clock = SYSTEM) -> None:
        self.home = home
        self.clock = clock  # every decision here that reads the time asks it
        self.parts = parts = AnsweringParts(home, clock)
        self.config: NodeConfig = parts.config
        document = parts.document
        self.policy = parts.policy
        self.witness_config = WitnessConfig.from_document(document)
        self.audit_readers = audit_readers_from_document(document, str(home.config_file))
        self.keys = parts.keys
        self.log_signer = parts.log_signer
        self.tls_key_pem = self.keys.tls_private_key_pem()
        self.tls_cert_pem = self.keys.tls_certificate_pem()
        self.store = parts.store
        try:
            # The versions accepted before bound what the list files may hold (rollback).
            self.trust_files: TrustListFiles = load_home_trust(
                home, clock.now(), self.store.trust_floors)
        except BaseException:
            self.store.close()
            raise
        self.witnessing = WitnessingStats()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pending_checkpoint: asyncio.Event | None = None
        self.server: GrpcServer | None = None
        self.answerer: Answerer | None = None
        self._zones_cache: dict[tuple[int, int, str], frozenset[str]] = {}
        self._callers: dict[tuple[int, str], str | None] = {}
        self._peer_info: dict[str, wire.pb.NodeInfo] = {}

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def trust(self) -> TrustStore:
        return self.trust_files.store

    # --- identity --------------------------------------------------------------------------

    def caller_of(self, fingerprint: str) -> str | None:
        """The member a client certificate belongs to (cached until a trust list changes);
        None when no list holds it, or lists disagree on whose it is.

        A list that has expired still authenticates its members (for checkpoints, proofs and
        witnessing, which every member gets), but it grants them no zone (`trusted_zones`)
        and no entries (`entry_scope`)."""
        key = (self.trust.generation, fingerprint)
        if key not in self._callers:
            if len(self._callers) > 1024:
                self._callers.clear()
            found = {m.node_id for _, m in self.trust.member_by_cert_sha256(fingerprint)}
            self._callers[key] = found.pop() if len(found) == 1 else None
        return self._callers[key]

    def trusted_zones(self, node_id: str) -> frozenset[str]:
        """Zones whose trust list in force holds `node_id`. Cached until a list changes or
        one expires by `self.clock`: from a list's `expires_at` on, its zone is not granted."""
        now = self.clock.now()
        key = (self.trust.generation, self.trust.expired_count(now), node_id)
        zones = self._zones_cache.get(key)
        if zones is None:
            if len(self._zones_cache) > 1024:
                self._zones_cache.clear()
            zones = frozenset(
                z for z in self.trust.zones_in_force(now) if self.trust.member(z, node_id))
            self._zones_cache[key] = zones
        return zones

    def entry_scope(self, node_id: str) -> EntryScope:
        """Which of our log's entries `node_id` may read (docs/adr/0007): what `[audit]
        readers` gives it, and the entries of every zone it shares with us where it is a
        witness (our `[witness] peers`, or its role `witness` or `auditor` on that zone's
        list). Only lists in force count: a reader on none of them reads nothing."""
        now = self.clock.now()
        in_force = self.trust.zones_in_force(now)
        if not any(self.trust.member(z, node_id) for z in in_force):
            return EntryScope()
        witnesses_us = node_id in self.witness_config.peers
        shared = frozenset(
            z for z in in_force
            if self.trust.member(z, self.node_id)
            and (member := self.trust.member(z, node_id)) is not None
            and (witnesses_us or {"witness", "auditor"} & set(member.roles))
        )
        return self.audit_readers.get(node_id, EntryScope()) | EntryScope(shared)

    def node_info(self) -> wire.pb.NodeInfo:
        identity = self.keys.public_identity()
        in_force = self.trust.zones_in_force(self.clock.now())
        zones = sorted(set(self.policy.zones_of(self.node_id)) & set(in_force))
        purposes = sorted({p for z in zones for p in self.policy.zones[z].purposes})
        return wire.pb.NodeInfo(
            node_id=self.node_id, name=self.config.name,
            division_code=self.config.division_code, zones=zones,
            signing_keys=[
                wire.public_key_to_pb(wire.PublicKeyFields(
                    keyid=k.keyid, algorithm=k.algorithm, spki_der=k.spki_der,
                    not_before=k.not_before, not_after=None, status=k.status))
                for k in identity.signing_keys
            ],
            purposes=purposes, log_origin=identity.log_origin,
            log_verifier_key=identity.log_verifier_key,
            witness_verifier_key=identity.witness_verifier_key,
            software_version=SOFTWARE_VERSION,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def open_log(self, *, commit_on_loop: bool = False,
                       commit_delay: float = 0.0) -> None:
        """Start the exchange log's sequencer (enough for asking peers). `commit_on_loop` and
        `commit_delay`: for a process whose event loop does nothing but answer
        (node.answer.worker); see node.log.sequencer.Sequencer."""
        loop = asyncio.get_running_loop()
        self._pending_checkpoint = asyncio.Event()
        loop_thread = threading.get_ident()

        def on_checkpoint(size: int, note: str) -> None:
            """From the commit thread, or from the loop itself (commit_on_loop): there, a
            thread-safe call would cost a wake-up through the loop's self-pipe per batch."""
            event = self._pending_checkpoint
            if event is None:
                return
            if threading.get_ident() == loop_thread:
                event.set()
            else:
                loop.call_soon_threadsafe(event.set)

        self.sequencer = self.parts.sequencer(
            on_checkpoint=on_checkpoint, commit_on_loop=commit_on_loop, commit_delay=commit_delay)
        await self.sequencer.start()

    @property
    def answers_in_worker(self) -> bool:
        """Whether `start` answers in a worker process: as configured, and only where a second
        process can open the same database (not an in-memory SQLite one)."""
        url = self.store.engine.url
        return self.config.answer_worker and (
            url.get_backend_name() != "sqlite" or is_file_sqlite(url))

    def local_answerer(self, *, count: bool = True) -> LocalAnswerer:
        """Answering in this process, on the log `open_log` opened."""
        return self.parts.local_answerer(self.sequencer, count=count)

    async def start(self, listen: str | None = None) -> None:
        """Open the log and serve: the node's main job."""
        await self.open_log()
        if self.answers_in_worker:
            worker = WorkerAnswerer(self.home, self.sequencer.observe)
            await worker.start()
            self.answerer = worker
        else:
            self.answerer = self.local_answerer()
        authenticate = svc.caller_from_certificate(self.caller_of)
        known_logs = {origin: notes.NoteVerifier.from_text(vkey)
                      for origin, vkey in self.witness_config.logs.items()}
        witness = Witness(self.store, self.keys.witness_signer(), known_logs, self.clock)
        services = {
            svc.SERVICE: svc.methods(svc.InterchangeServicer(
                self.answerer, authenticate, self.node_info, self.trusted_zones)),
            log_svc.SERVICE: log_svc.methods(log_svc.ExchangeLogServicer(
                self.store, self.sequencer, authenticate, witness, self.entry_scope)),
        }
        credentials = tls.server_credentials(self.tls_key_pem, self.tls_cert_pem,
                                             self.trust.anchors_pem)
        self.server = GrpcServer(services, credentials, listen or self.config.listen)
        await self.server.start()
        await self.report_trust()
        self._tasks = [
            asyncio.create_task(self._refresh_trust(), name="trust-refresh"),
            asyncio.create_task(self._witness_loop(), name="witnessing"),
        ]

    async def stop(self) -> None:
        if self._pending_checkpoint is not None and self.witness_config.peers:
            # Last checkpoints still go to the witnesses before we leave.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_witnessing(), timeout=5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.server is not None:
            await self.server.stop()
        if isinstance(self.answerer, WorkerAnswerer):
            await self.answerer.close()
        if hasattr(self, "sequencer"):
            await self.sequencer.close()
        self.store.close()

    # --- background work -------------------------------------------------------------------

    async def _refresh_trust(self) -> None:
        while True:
            await asyncio.sleep(TRUST_REFRESH_S)
            await self.refresh_trust()

    async def refresh_trust(self) -> None:
        """Pick up changed list files (logging expiries), then report which lists are in
        force; run every TRUST_REFRESH_S. Granting does not wait for it: `trusted_zones`
        drops an expired zone at the instant itself."""
        try:
            updated = await asyncio.to_thread(self.trust_files.refresh, self.clock.now())
        except Exception:
            log.exception("trust list refresh failed; keeping the lists held")
        else:
            for zone in updated:
                log.info("trust list for zone %s updated", zone)
        await self.report_trust()

    async def report_trust(self) -> None:
        """Metrics per zone (in force or not, and when its list expires) and the interchange's
        gRPC health: NOT_SERVING while no zone's list is in force, since it can grant nothing
        then; the exchange log keeps serving (checkpoints, proofs, witnessing)."""
        now = self.clock.now()
        in_force = set(self.trust.zones_in_force(now))
        for zone in self.trust.zones():
            held = self.trust.trust_list(zone)
            assert held is not None
            metrics.TRUST_LIST_IN_FORCE.labels(zone).set(1 if zone in in_force else 0)
            metrics.TRUST_LIST_EXPIRES.labels(zone).set(held.expires_at.timestamp())
        if self.server is not None:
            await self.server.set_serving(svc.SERVICE, bool(in_force))

    async def _witness_loop(self) -> None:
        """Send the newest checkpoint to each witness peer; coalesces bursts of batches."""
        assert self._pending_checkpoint is not None
        while True:
            await self._pending_checkpoint.wait()
            self._pending_checkpoint.clear()
            note = self.sequencer.latest_checkpoint
            for peer in self.witness_config.peers:
                await self._send_to_witness(peer, note)

    def _witness_task_alive(self) -> bool:
        return any(t.get_name() == "witnessing" and not t.done() for t in self._tasks)

    async def _flush_witnessing(self) -> None:
        assert self._pending_checkpoint is not None
        if self._pending_checkpoint.is_set():
            self._pending_checkpoint.clear()
            for peer in self.witness_config.peers:
                await self._send_to_witness(peer, self.sequencer.latest_checkpoint)

    async def _send_to_witness(self, peer: str, note: str) -> None:
        """Never raises: a witness we cannot reach is counted and tried at the next checkpoint."""
        try:
            client = self.peer_client(peer, "")
        except ConfigError:
            log.warning("witness %s is on no trust list held; checkpoint not sent", peer)
            return
        try:
            info = await self._node_info_of(client)
            key = notes.NoteVerifier.from_text(info.witness_verifier_key)
            await send_checkpoint(client.channel, self.store, self.sequencer.tree, note, key,
                                  self.witnessing)
        except (grpc.aio.AioRpcError, CreditNodeError) as exc:
            self.witnessing.unreachable += 1
            metrics.WITNESS_UNREACHABLE.labels(peer).inc()
            log.warning("witness %s: cannot send checkpoint: %s", peer, exc)
        finally:
            await client.close()

    async def _node_info_of(self, client: PeerClient) -> wire.pb.NodeInfo:
        """A peer's NodeInfo (its log and witness keys), fetched once over the authenticated
        channel and kept: this node rotates only result-signing keys, which come from the
        trust list, never from here."""
        info = self._peer_info.get(client.peer)
        if info is None:
            info = await client.node_info()
            self._peer_info[client.peer] = info
        return info

    async def _log_key_of(self, client: PeerClient) -> tuple[str, bool]:
        """(verifier key text of a peer's log, whether it is pinned in [witness.logs])."""
        pinned = self.witness_config.logs.get(notes.log_origin(client.peer))
        if pinned is not None:
            return pinned, True
        return (await self._node_info_of(client)).log_verifier_key, False

    # --- asking peers ----------------------------------------------------------------------

    def peer_client(self, peer: str, zone: str) -> PeerClient:
        """A client for `peer`, found on `zone`'s trust list or else on any list we hold (the
        peer decides whether we may ask under `zone`; its keys are taken from `zone`'s list
        when we hold it)."""
        member = self.trust.member(zone, peer) or next(
            (m for z in self.trust.zones() if (m := self.trust.member(z, peer))), None)
        if member is None:
            raise ConfigError(f"{peer} is on no trust list held here; cannot reach it")
        key_zone = zone if self.trust.member(zone, peer) else None
        return PeerClient(
            local_node=self.node_id, peer=peer, endpoint=member.endpoint,
            key_pem=self.tls_key_pem, cert_pem=self.tls_cert_pem,
            peer_cert_pem=member.tls_cert_pem,
            key_for=lambda node, keyid: self.trust.peer_key(node, keyid, zone=key_zone),
        )

    async def ask(
        self, peer: str, zone: str, purpose: str, subject: model.SubjectRef,
        request_id: str | None = None,
    ) -> AskOutcome:
        """Ask a peer, verify its answer and receipt, and record an ASKED entry in our log.

        The ASKED entry is durable before this returns, whatever the outcome; the peer's whole
        response (signed result and receipt) is kept beside it.
        """
        query = model.CreditQuery(request_id or f"{self.node_id}-{uuid.uuid4().hex}", subject,
                                  zone, purpose)
        sent = wire.serialize(wire.query_to_pb(query))
        client = self.peer_client(peer, zone)
        answer: VerifiedAnswer | None = None
        decision, reason = model.Decision.GRANTED, ""
        try:
            answer = await client.query(query)
            verify_receipt(answer.receipt, (await self._log_key_of(client))[0], peer)
        except grpc.aio.AioRpcError as exc:
            decision = {grpc.StatusCode.NOT_FOUND: model.Decision.NOT_FOUND,
                        grpc.StatusCode.PERMISSION_DENIED: model.Decision.REFUSED,
                        grpc.StatusCode.INVALID_ARGUMENT: model.Decision.REFUSED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED: model.Decision.REFUSED,
                        }.get(exc.code(), model.Decision.FAILED)
            reason = f"{exc.code().name} {_error_reason(exc)}: {exc.details()}"
            answer = None
        except PeerUnavailable as exc:
            decision, reason, answer = model.Decision.FAILED, f"{exc.reason}: {exc.message}", None
        except CreditNodeError as exc:
            # The peer answered, but the answer or its receipt does not verify: rejected.
            decision, answer = model.Decision.FAILED, None
            reason = f"{REJECTED}: {exc.reason}: {exc.message}"
        finally:
            response = client.last_response
            await client.close()
        subject_logged = pseudonymise(subject, self.keys.subject_hmac_key())
        record = model.ExchangeRecord(
            time=self.clock.now(), direction=model.Direction.ASKED,
            requester_node=self.node_id, responder_node=peer, zone=zone, purpose=purpose,
            subject=subject_logged, request_id=query.request_id,
            request_digest=hashlib.sha256(sent).digest(), decision=decision, reason=reason,
            result_id=answer.result.result_id if answer else "",
            result_digest=hashlib.sha256(answer.envelope.payload).digest() if answer else b"",
        )
        entry = wire.record_bytes(record)
        kept = wire.serialize(response) if response is not None else b""
        receipt = await self.sequencer.append(
            lambda index: LogWrite(entry, requester=self.node_id, request_id=query.request_id,
                                   answer=kept),
            lambda index, exc: entry,
        )
        metrics.EXCHANGES.labels("ASKED", decision.name).inc()
        return AskOutcome(query, decision, reason, answer, receipt.log_index)

    async def fetch_peer_log(self, peer: str) -> PeerLog:
        """Fetch `peer`'s latest checkpoint and every entry under it, paging on where the
        peer ends a GetEntries stream early (DESIGN.md §6). We must be one of its auditors
        with access to every entry (docs/adr/0007): entries it withholds from us (those of
        zones we do not share) leave the tree beyond recomputation, and we say so
        (PermissionDenied). The log key is our pinned one when we witness that log, else the
        one the peer publishes in NodeInfo over the authenticated channel."""
        client = self.peer_client(peer, "")
        try:
            vkey, pinned = await self._log_key_of(client)
            channel = client.channel
            checkpoint = await channel.unary_unary(
                f"/{log_svc.SERVICE}/GetCheckpoint", request_serializer=wire.serialize,
                response_deserializer=wire.spb.Checkpoint.FromString,
            )(wire.spb.GetCheckpointRequest(), timeout=30)
            body, _ = notes.split_note(checkpoint.note)
            size = notes.Checkpoint.parse_body(body).size
            get_entries = channel.unary_stream(
                f"/{log_svc.SERVICE}/GetEntries", request_serializer=wire.serialize,
                response_deserializer=wire.spb.LogEntry.FromString,
            )
            entries: list[bytes] = []
            while len(entries) < size:
                before = len(entries)
                async for entry in get_entries(
                    wire.spb.GetEntriesRequest(start=len(entries), end=size), timeout=60
                ):
                    if entry.index != len(entries):
                        raise BadAnswer(f"{peer} sent entry {entry.index}, expected "
                                        f"{len(entries)}")
                    entries.append(entry.data)
                if len(entries) == before:
                    raise BadAnswer(f"{peer} sent no entries from {before} on")
        except grpc.aio.AioRpcError as exc:
            raise PeerRefused(
                f"{peer} refused: {exc.code().name} {_error_reason(exc)}: {exc.details()}"
            ) from None
        finally:
            await client.close()
        withheld = sum(1 for data in entries if data == WITHHELD)
        if withheld:
            raise PermissionDenied(
                f"{peer} withheld {withheld} of its {size} entries from {self.node_id} (a "
                "witness reads only the entries of zones it shares with the log's node), so "
                "its tree cannot be recomputed here; verifying the whole log needs auditor "
                f"access to every entry: {peer}'s node.toml [audit] readers = "
                f'{{ "{self.node_id}" = ["*"] }} (docs/adr/0007)',
                reason="ENTRIES_WITHHELD",
            )
        return PeerLog(entries, checkpoint.note, vkey, pinned)


@dataclasses.dataclass(frozen=True)
class PeerLog:
    """A peer's log as fetched: all entries up to its latest checkpoint, and the key to check it."""

    entries: list[bytes]
    checkpoint: str
    log_verifier_key: str
    key_pinned: bool  # from our [witness.logs] config, rather than the peer's NodeInfo


@dataclasses.dataclass(frozen=True)
class AskOutcome:
    query: model.CreditQuery
    decision: model.Decision
    reason: str
    answer: VerifiedAnswer | None
    log_index: int  # our ASKED entry

def _error_reason(exc: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason a peer attached to its refusal, if any."""
    found = rpc_status.from_call(exc)
    info = status.error_info(found) if found is not None else None
    return info.reason if info is not None else "UNKNOWN"


def example_zones_toml() -> str:
    return importlib.resources.files("node.data").joinpath("zones.example.toml").read_text()


