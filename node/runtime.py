"""A running node built from its home (floor 6): keys, store, trust lists, policy, the log
sequencer, the gRPC services, witnessing and asking peers — wired together and started.

Wiring only: node.toml's tables are parsed by node.answer.parts and node.serving_config, the
witnessing loop is node.log.witnessing, asking a peer node.asking, and reading a peer's log
node.log_client. What stays here binds them to this node's keys, trust lists and clock, and
answers the services' questions about a caller (who, which zones, which entries) from the
trust lists in force, cached until a list changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization

from adapters.schemes import issued_schemes
from node import changefeed, credit_repair, metrics, model, tls, tls_rollout, wire
from node import policy as policies
from node.answer.local import Answerer, LocalAnswerer
from node.answer.parts import AnsweringParts
from node.answer.worker_client import WorkerAnswerer
from node.asking import Asker, AskOutcome
from node.clock import SYSTEM, Clock
from node.config import NodeConfig, WitnessConfig
from node.disclosure import EntryScope
from node.errors import ConfigError, KeyMaterialError, PermissionDenied, StoreUnavailable
from node.home import NodeHome
from node.keys import certificate_sha256, certificate_spki
from node.log import notes
from node.log.witness import Witness
from node.log.witnessing import Witnessing
from node.log_client import PeerLog, fetch_peer_log
from node.peer_client import PeerClient
from node.policy_file import PolicyFile
from node.recognition import Recognition
from node.revocation import Notifier
from node.revocation_watch import NoticeRejected, RevocationWatch
from node.server import GrpcServer
from node.services import exchange_log as log_svc
from node.services import greenloan as greenloan_svc
from node.services import interchange as svc
from node.serving_config import ServingConfig
from node.store.engine import is_file_sqlite
from node.trust import TrustStore
from node.trust_fetch import TrustListPoller
from node.trust_files import TrustListFiles, load_home_trust
from node.trust_model import PublicKeyInfo

log = logging.getLogger(__name__)
SOFTWARE_VERSION = "credit-interchange-node/0.1.0"
TRUST_REFRESH_S = 5.0
CONFIG_POLL_S = TRUST_REFRESH_S  # node.toml's zone policy is polled as often as the lists


class NodeRuntime:
    """Everything a serving node holds; `start()` then `stop()`."""

    def __init__(self, home: NodeHome, clock: Clock = SYSTEM) -> None:
        self.home = home
        self.clock = clock  # every decision here that reads the time asks it
        self.parts = parts = AnsweringParts(home, clock)
        self.config: NodeConfig = parts.config
        self.policy_file = PolicyFile(home, parts.document, parts.policy)
        serving = ServingConfig.from_document(parts.document, str(home.config_file))
        self.witness_config: WitnessConfig = serving.witness
        self.audit_readers = serving.audit_readers
        self.keys = parts.keys
        self.log_signer = parts.log_signer
        self.tls_key_pem = self.keys.tls_private_key_pem()  # checked against tls.crt
        self._tls_spki = certificate_spki(self.keys.tls_certificate())
        self.tls_cert_pem = b""  # the one presented: chosen once the trust lists are loaded
        self.store = parts.store
        try:
            # The versions accepted before bound what the list files may hold (rollback).
            self.trust_files: TrustListFiles = load_home_trust(
                home, clock.now(), self.store.trust_floors
            )
            self.trust_poller = TrustListPoller(home, self.trust_files, clock)  # trust_list_url
            self.present_tls_certificate()
        except BaseException:
            self.store.close()
            raise
        self.witnessing = Witnessing(
            self.witness_config.peers, self.store, lambda peer: self.peer_client(peer, "")
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._new_issuer = asyncio.Event()
        self._notices_refused: set[str] = set()  # peers whose notice failed its checks
        self._reloads: set[asyncio.Task[bool]] = set()
        self._reloading = asyncio.Lock()
        self.server: GrpcServer | None = None
        self.answerer: Answerer | None = None
        self._zones_cache: dict[tuple[int, int, str], frozenset[str]] = {}
        self._callers: dict[tuple[int, str], str | None] = {}
        # Each peer's NodeInfo (its log and witness keys), fetched once and kept.
        self._peer_info: dict[str, wire.pb.NodeInfo] = {}

    @property
    def node_id(self) -> str:
        return self.config.node_id

    @property
    def trust(self) -> TrustStore:
        return self.trust_files.store

    @property
    def policy(self) -> policies.Policy:
        """The zone policy in force (node.toml, reloaded without a restart)."""
        return self.policy_file.policy

    # --- identity --------------------------------------------------------------------------

    def present_tls_certificate(self) -> bool:
        """Present the certificate `node.tls_rollout` chooses: a staged one (`tls reissue`)
        once the lists in force pin it. Re-reads the certificate files; True when the
        certificate presented, to callers and as a caller, changed. It must bind the TLS key
        loaded at start (a reissue keeps the key, ADR 0013)."""
        keys = self.keys
        chosen = tls_rollout.presented_certificate(
            keys.tls_certificate(),
            keys.staged_tls_certificate(),
            self.trust,
            self.node_id,
            self.clock.now(),
        )
        pem = chosen.public_bytes(serialization.Encoding.PEM)
        if pem == self.tls_cert_pem:
            return False
        if certificate_spki(chosen) != self._tls_spki:
            raise KeyMaterialError(
                f"the TLS certificate sha256:{certificate_sha256(chosen)} in "
                f"{keys.tls_cert_path.parent} is not for the TLS key this node started with: "
                "restart serve"
            )
        log.info("presenting TLS certificate sha256:%s", certificate_sha256(chosen))
        self.tls_cert_pem = pem
        return True

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
                z for z in self.trust.zones_in_force(now) if self.trust.member(z, node_id)
            )
            self._zones_cache[key] = zones
        return zones

    def membership(self, caller: str) -> policies.Membership:
        """The zones whose trust list in force holds this node and `caller` (DESIGN.md §8:
        membership comes from the signed lists alone)."""
        return policies.Membership(self.trusted_zones(self.node_id), self.trusted_zones(caller))

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
            z
            for z in in_force
            if self.trust.member(z, self.node_id)
            and (member := self.trust.member(z, node_id)) is not None
            and (witnesses_us or {"witness", "auditor"} & set(member.roles))
        )
        return self.audit_readers.get(node_id, EntryScope()) | EntryScope(shared)

    def feed_scope(
        self, caller: str, subject_types: Sequence[model.SubjectType]
    ) -> changefeed.FeedScope:
        """What `caller` may receive of the changefeed: it must hold the role green-loan-sync
        on a trust list in force that lists us too (DESIGN.md §6)."""
        now = self.clock.now()
        zones = [
            z
            for z in self.trust.zones_in_force(now)
            if self.trust.member(z, self.node_id)
            and (member := self.trust.member(z, caller)) is not None
            and changefeed.GREEN_LOAN_ROLE in member.roles
        ]
        if not zones:
            raise PermissionDenied(
                f"{caller} does not hold the role {changefeed.GREEN_LOAN_ROLE} on any trust list "
                "in force here; the changefeed is only for the Green Loan Link sync job",
                reason="NOT_GREEN_LOAN_SYNC",
            )
        served = self.policy.zones
        rules = {
            z: zone.purposes.get(changefeed.GREEN_LOAN_PURPOSE)
            if (zone := served.get(z)) is not None
            else None
            for z in zones
        }
        return changefeed.feed_scope(caller, rules, subject_types)

    def node_info(self) -> wire.pb.NodeInfo:
        identity = self.keys.public_identity()
        zones = self.policy.served(self.trusted_zones(self.node_id))
        purposes = sorted({p for z in zones for p in self.policy.zones[z].purposes})
        return wire.pb.NodeInfo(
            node_id=self.node_id,
            name=self.config.name,
            division_code=self.config.division_code,
            zones=zones,
            signing_keys=[
                wire.public_key_to_pb(
                    PublicKeyInfo(
                        keyid=k.keyid,
                        algorithm=k.algorithm,
                        spki_der=k.spki_der,
                        not_before=k.not_before,
                        not_after=k.not_after,
                        status=k.listed_status,
                    )
                )
                for k in identity.signing_keys
            ],
            schemes=issued_schemes(self.config.division_code),
            purposes=purposes,
            log_origin=identity.log_origin,
            log_verifier_key=identity.log_verifier_key,
            witness_verifier_key=identity.witness_verifier_key,
            software_version=SOFTWARE_VERSION,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def open_log(self, *, commit_on_loop: bool = False, commit_delay: float = 0.0) -> None:
        """Start the exchange log's sequencer (enough for asking peers). `commit_on_loop` and
        `commit_delay`: for a process whose event loop does nothing but answer
        (node.answer.worker); see node.log.sequencer.Sequencer."""
        on_checkpoint = self.witnessing.listener()
        self.sequencer = self.parts.sequencer(
            on_checkpoint=on_checkpoint, commit_on_loop=commit_on_loop, commit_delay=commit_delay
        )
        self.witnessing.follow(self.sequencer)
        self.asker = Asker(
            self.node_id,
            self.peer_client,
            self.witness_config.logs,
            self.sequencer,
            self.keys.subject_hmac_key,
            self.clock,
            self.store.received,
            self.recognition(),
        )
        await self.sequencer.start()

    def recognition(self) -> Recognition:
        """How asked results read on our scheme: node.toml's [recognition], else the scheme
        of our province among those we issue (node.recognition)."""
        return Recognition.for_node(
            self.config.division_code, self.parts.document, str(self.home.config_file)
        )

    @property
    def answers_in_worker(self) -> bool:
        """Whether `start` answers in a worker process: as configured, and only where a second
        process can open the same database (not an in-memory SQLite one)."""
        url = self.store.engine.url
        return self.config.answer_worker and (
            url.get_backend_name() != "sqlite" or is_file_sqlite(url)
        )

    def local_answerer(self, *, count: bool = True) -> LocalAnswerer:
        """Answering in this process, on the log `open_log` opened."""
        return self.parts.local_answerer(self.sequencer, count=count)

    async def start(self, listen: str | None = None) -> None:
        """Open the log and serve: the node's main job. A start that fails (its address taken,
        say) stops what it had started and closes the store before the error goes on: a gRPC
        server or channel left to the garbage collector, after its event loop has closed, can
        hang the process in gRPC's shutdown."""
        try:
            await self._start(listen)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, listen: str | None) -> None:
        await self.open_log()
        if self.answers_in_worker:
            self.answerer = worker = WorkerAnswerer(self.home, self.sequencer.observe)
            await worker.start()  # one that fails is closed by `stop`
        else:
            self.answerer = self.local_answerer()
        authenticate = svc.caller_from_certificate(self.caller_of)
        known_logs = {
            origin: notes.NoteVerifier.from_text(vkey)
            for origin, vkey in self.witness_config.logs.items()
        }
        witness = Witness(self.store, self.keys.witness_signer(), known_logs, self.clock)
        services = {
            svc.SERVICE: svc.methods(
                svc.InterchangeServicer(
                    self.answerer,
                    authenticate,
                    self.node_info,
                    self.membership,
                    notices=self.store.revocations.notices,
                )
            ),
            log_svc.SERVICE: log_svc.methods(
                log_svc.ExchangeLogServicer(
                    self.store, self.sequencer, authenticate, witness, self.entry_scope
                )
            ),
            greenloan_svc.SERVICE: greenloan_svc.methods(
                greenloan_svc.GreenLoanSyncServicer(
                    self.store.changes,
                    self.node_id,
                    lambda: self.parts.signer,
                    authenticate,
                    self.feed_scope,
                    self.clock,
                )
            ),
        }
        credentials = tls.server_credentials(
            self.tls_key_pem, lambda: self.tls_cert_pem, self.trust.anchors_pem
        )
        self.server = GrpcServer(services, credentials, listen or self.config.listen)
        await self.server.start()
        await self.report_trust()
        self._tasks = [
            asyncio.create_task(self._refresh_trust(), name="trust-refresh"),
            asyncio.create_task(self._watch_config(), name="config-watch"),
            asyncio.create_task(self.trust_poller.run(), name="trust-list-poll"),
            asyncio.create_task(self.notifier().run(), name="revocation-notices"),
            asyncio.create_task(self._watch_revocations(), name="revocation-watch"),
            asyncio.create_task(
                credit_repair.run_expiry(self.store, self.clock), name="penalty-expiry"
            ),
        ]
        self.witnessing.start()

    async def stop(self) -> None:
        await self.witnessing.stop()  # the last checkpoints still go out first
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
        try:  # a key switch set by `keys rotate --activate` (issue 14 §4)
            await asyncio.to_thread(self.parts.signers.refresh)
        except Exception:
            log.exception("re-reading the signing keys failed; signing on with the keys held")
        try:  # a certificate reissued by `tls reissue`, once the lists pin it (ADR 0013)
            await asyncio.to_thread(self.present_tls_certificate)
        except Exception:
            log.exception("choosing the TLS certificate failed; presenting the one held")
        await self.report_trust()
        with contextlib.suppress(StoreUnavailable):  # a store outage is reported elsewhere
            metrics.CHANGEFEED_HEAD.set(await asyncio.to_thread(self.store.changes.head))

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_S)
            await self.reload_config()

    async def reload_config(self, *, force: bool = False) -> bool:
        """Take node.toml's zone policy if the file changed (`force`: re-read it anyway, as on
        SIGHUP) and hand it to the answerer; True when a new policy is in use on return. A bad
        file is refused and logged by node.policy_file; the policy in force stays."""
        async with self._reloading:
            try:
                policy = await asyncio.to_thread(self.policy_file.check, force=force)
            except Exception:
                log.exception("reading node.toml failed; keeping the policy in force")
                return False
            if policy is None:
                return False
            self.parts.policy = policy  # for answerers made from now on
            if self.answerer is not None:
                await self.answerer.use_policy(policy)
            return True

    def request_reload(self) -> None:
        """Reload node.toml now (SIGHUP), without waiting for the next poll."""
        task = asyncio.create_task(self.reload_config(force=True), name="config-reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

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

    # --- revocation notices ----------------------------------------------------------------

    def notifier(self) -> Notifier:
        """Writes the notices due to the peers that received a result no longer current."""
        return Notifier(self.store, self.node_id, lambda: self.parts.signer, self.clock)

    def revocation_watch(self, peer: str, **options: Any) -> RevocationWatch:
        """Applies `peer`'s notices to the results we received from it (the log must be open)."""
        return RevocationWatch(
            peer=peer,
            client=self.peer_client(peer, ""),
            local_node=self.node_id,
            store=self.store,
            key_for=lambda node, keyid: self.trust.peer_key(node, keyid),
            sequencer=self.sequencer,
            subject_key=self.keys.subject_hmac_key,
            clock=self.clock,
            **options,
        )

    async def _watch_revocations(self) -> None:
        """Follow the notices of every peer we hold results of (a new one within seconds of
        our first result from it)."""
        following: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                self._new_issuer.clear()  # before reading: an ask meanwhile sets it again
                try:
                    issuers = await asyncio.to_thread(self.store.received.issuers)
                except StoreUnavailable:
                    issuers = []
                for peer in issuers:
                    task = following.get(peer)
                    if peer not in self._notices_refused and (task is None or task.done()):
                        try:
                            watch = self.revocation_watch(peer)
                        except ConfigError:  # no longer on any list held: nothing to follow
                            continue
                        following[peer] = asyncio.create_task(
                            self._follow_notices(watch), name=f"revocations-{peer}"
                        )
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
                # that arrives as the event is set (an ask right before `stop`).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TRUST_REFRESH_S):
                        await self._new_issuer.wait()
        finally:
            for task in following.values():
                task.cancel()
            await asyncio.gather(*following.values(), return_exceptions=True)

    async def _follow_notices(self, watch: RevocationWatch) -> None:
        try:
            await watch.follow()
        except NoticeRejected as exc:
            self._notices_refused.add(watch.peer)
            log.error("%s; not following %s until restart", exc.message, watch.peer)
        except Exception:
            log.exception("revocation notices of %s: watch failed", watch.peer)
        finally:
            await watch.close()

    # --- asking peers ----------------------------------------------------------------------

    def peer_client(self, peer: str, zone: str) -> PeerClient:
        """A client for `peer`, found on `zone`'s trust list or else on any list we hold (the
        peer decides whether we may ask under `zone`; its keys are taken from `zone`'s list
        when we hold it)."""
        member = self.trust.member(zone, peer) or next(
            (m for z in self.trust.zones() if (m := self.trust.member(z, peer))), None
        )
        if member is None:
            raise ConfigError(f"{peer} is on no trust list held here; cannot reach it")
        key_zone = zone if self.trust.member(zone, peer) else None
        return PeerClient(
            local_node=self.node_id,
            peer=peer,
            endpoint=member.endpoint,
            key_pem=self.tls_key_pem,
            cert_pem=self.tls_cert_pem,
            peer_cert_pem=member.tls_cert_pem,
            key_for=lambda node, keyid: self.trust.peer_key(node, keyid, zone=key_zone),
            node_infos=self._peer_info,
            # Named should the peer refuse our certificate: the list it must hold for us.
            zones=[zone] if zone else [z for z in self.trust.zones() if self.trust.member(z, peer)],
        )

    async def ask(
        self,
        peer: str,
        zone: str,
        purpose: str,
        subject: model.SubjectRef,
        request_id: str | None = None,
    ) -> AskOutcome:
        """Ask a peer, verify its answer and receipt, and record an ASKED entry in our log
        (node.asking); the log must be open (`open_log`)."""
        outcome = await self.asker.ask(peer, zone, purpose, subject, request_id)
        if outcome.answer is not None:
            self._new_issuer.set()  # follow its revocation notices now if we did not yet
        return outcome

    async def fetch_peer_log(self, peer: str) -> PeerLog:
        """`peer`'s latest checkpoint and every entry under it (node.log_client)."""
        client = self.peer_client(peer, "")
        try:
            return await fetch_peer_log(client, self.witness_config.logs, self.node_id)
        finally:
            await client.close()
