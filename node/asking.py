"""Asking a peer (floor 5): one query sent, the answer and its log receipt verified
(node.peer_client), an ASKED entry in our log whatever came back (DESIGN.md §2, §5), and a
verified result recognised on our scheme (node.recognition) and kept with its envelope.

The entry's decision comes from the peer's gRPC status (`decision_for`); an answer that came
but does not verify is FAILED with a reason starting with `REJECTED`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Mapping

import grpc

from node import metrics, model, wire
from node.answer.builder import pseudonymise
from node.clock import Clock
from node.errors import CreditNodeError, PeerUnavailable
from node.log.sequencer import LogWrite, Sequencer
from node.log_client import log_key_of
from node.peer_client import PeerClient, VerifiedAnswer, refusal_reason, verify_receipt
from node.recognition import NotRecognised, RecognisedView, Recognition
from node.store.received import ReceivedRepository

REJECTED = "answer rejected"  # reason prefix of an answer that failed verification

# A peer's refusal by its status; any other status (UNAVAILABLE, INTERNAL, …) is FAILED.
DECISION_BY_STATUS: Mapping[grpc.StatusCode, model.Decision] = {
    grpc.StatusCode.NOT_FOUND: model.Decision.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: model.Decision.REFUSED,
    grpc.StatusCode.INVALID_ARGUMENT: model.Decision.REFUSED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: model.Decision.REFUSED,
}


def decision_for(code: grpc.StatusCode) -> model.Decision:
    """The decision our ASKED entry records for a peer's gRPC status."""
    return DECISION_BY_STATUS.get(code, model.Decision.FAILED)


@dataclasses.dataclass(frozen=True)
class AskOutcome:
    query: model.CreditQuery
    decision: model.Decision
    reason: str
    answer: VerifiedAnswer | None
    log_index: int  # our ASKED entry
    # The answer on our scheme, with the crosswalk id@version used, or why not; None: no answer
    # (or an Asker without recognition).
    recognised: RecognisedView | NotRecognised | None = None


@dataclasses.dataclass(frozen=True)
class Asker:
    """This node asking its peers; `connect(peer, zone)` gives a client of `peer` (ConfigError
    when it is on no trust list held), `pinned_logs` our [witness.logs]."""

    local_node: str
    connect: Callable[[str, str], PeerClient]
    pinned_logs: Mapping[str, str]
    sequencer: Sequencer
    subject_key: Callable[[], bytes]  # pseudonymises a resident id in our log
    clock: Clock
    # Keeps each verified result with its envelope, for revocation notices (node.store.received).
    received: ReceivedRepository | None = None
    # Reads a verified answer on our scheme (node.recognition); None: shown as the peer sent it.
    recognition: Recognition | None = None

    async def ask(
        self,
        peer: str,
        zone: str,
        purpose: str,
        subject: model.SubjectRef,
        request_id: str | None = None,
    ) -> AskOutcome:
        """Ask a peer, verify its answer and receipt, and record an ASKED entry in our log.

        The ASKED entry is durable before this returns, whatever the outcome; the peer's whole
        response (signed result and receipt) is kept beside it.
        """
        query = model.CreditQuery(
            request_id or f"{self.local_node}-{uuid.uuid4().hex}", subject, zone, purpose
        )
        sent = wire.serialize(wire.query_to_pb(query))
        started = self.clock.monotonic()
        client = self.connect(peer, zone)
        answer: VerifiedAnswer | None = None
        decision, reason = model.Decision.GRANTED, ""
        try:
            answer = await client.query(query)
            verify_receipt(answer.receipt, (await log_key_of(client, self.pinned_logs))[0], peer)
        except grpc.aio.AioRpcError as exc:
            decision = decision_for(exc.code())
            reason = f"{exc.code().name} {refusal_reason(exc)}: {exc.details()}"
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
        subject_logged = pseudonymise(subject, self.subject_key())
        record = model.ExchangeRecord(
            time=self.clock.now(),
            direction=model.Direction.ASKED,
            requester_node=self.local_node,
            responder_node=peer,
            zone=zone,
            purpose=purpose,
            subject=subject_logged,
            request_id=query.request_id,
            request_digest=hashlib.sha256(sent).digest(),
            decision=decision,
            reason=reason,
            result_id=answer.result.result_id if answer else "",
            result_digest=hashlib.sha256(answer.envelope.payload).digest() if answer else b"",
        )
        entry = wire.record_bytes(record)
        kept = wire.serialize(response) if response is not None else b""
        receipt = await self.sequencer.append(
            lambda index: LogWrite(
                entry, requester=self.local_node, request_id=query.request_id, answer=kept
            ),
            lambda index, exc: entry,
        )
        metrics.EXCHANGES.labels("ASKED", peer, decision.name).inc()
        metrics.QUERY_SECONDS.labels("ASKED").observe(self.clock.monotonic() - started)
        recognised = (
            self.recognition.recognise(answer.result, zone)
            if answer is not None and self.recognition is not None
            else None
        )
        if answer is not None and self.received is not None:
            await asyncio.to_thread(
                self.received.keep,
                issuer_node=peer,
                result_id=answer.result.result_id,
                zone=zone,
                purpose=purpose,
                envelope=wire.envelope_bytes(answer.envelope),
                at=record.time,
                recognised=recognised,
            )
        return AskOutcome(query, decision, reason, answer, receipt.log_index, recognised)
