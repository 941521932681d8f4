"""Witnessing of exchange logs (DESIGN.md §7, C2SP tlog-witness): cosign another node's
checkpoint only when it verifies under that log's key and extends the one we last cosigned.

Invariant: for each origin, `witnessed_logs` only moves forward along consistent checkpoints,
by compare-and-swap in one transaction, so a witness never cosigns two inconsistent views.
The logging side (`send_checkpoint`) never raises into the serving path: a refusal is an ALARM.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence

import grpc

from node import metrics, wire
from node.clock import SYSTEM, Clock
from node.errors import Conflict, CreditNodeError, InvalidInput, PermissionDenied
from node.log import merkle, notes
from node.log.store import Held, LogStore
from node.store import Store

log = logging.getLogger(__name__)

ADD_CHECKPOINT = "/creditx.v1.ExchangeLog/AddCheckpoint"
_HOLDS_SIZE = re.compile(r"holds size (\d+)")


def origin_of(note: str) -> str:
    """The origin line of a checkpoint note, read before any signature is checked."""
    text, _ = notes.split_note(note)
    return text.split("\n", 1)[0]


def check_growth(
    held: Held, old_size: int, proof: Sequence[bytes], checkpoint: notes.Checkpoint
) -> None:
    """tlog-witness §add-checkpoint checks, pure. Raises Conflict when `old_size` is not the
    size we hold, InvalidInput/InvalidProof when the proof does not take `held` to `checkpoint`.
    """
    if old_size > checkpoint.size:
        raise InvalidInput(
            f"old_size {old_size} is larger than the checkpoint's size {checkpoint.size}"
        )
    if old_size != held.size:
        raise Conflict(
            f"this witness holds size {held.size} for {checkpoint.origin}, not {old_size}: "
            f"send a consistency proof from size {held.size}"
        )
    if held.size == 0:
        # From the empty tree any tree is consistent; there is nothing to prove.
        if proof:
            raise InvalidInput("a consistency proof from size 0 must be empty")
        return
    # Same size with a different root (a split view) fails here too.
    merkle.verify_consistency(held.size, checkpoint.size, held.root, checkpoint.root_hash, proof)


class Witness:
    """This node as a witness of other nodes' logs (the AddCheckpoint side)."""

    def __init__(
        self,
        store: Store,
        witness_signer: notes.WitnessSigner,
        known_logs: Mapping[str, notes.NoteVerifier],
        clock: Clock = SYSTEM,
    ) -> None:
        self._log = LogStore(store, clock)
        self._signer = witness_signer
        self._known_logs = dict(known_logs)
        self._clock = clock

    def held(self, origin: str) -> Held:
        return self._log.witnessed(origin)

    def add_checkpoint(self, old_size: int, proof: Sequence[bytes], note: str) -> str:
        """Verify and cosign `note`; returns the cosignature line (ending in newline)."""
        # 1. We witness only logs we were told to witness.
        origin = origin_of(note)
        log_key = self._known_logs.get(origin)
        if log_key is None:
            raise PermissionDenied(
                f"this node does not witness the log {origin!r}", reason="UNKNOWN_LOG"
            )
        # 2. The log's own key must have signed it (BadSignature / UntrustedKey otherwise).
        checkpoint = notes.open_checkpoint(note, log_key).checkpoint
        body = checkpoint.to_body()

        def check(held: Held) -> None:
            check_growth(held, old_size, proof, checkpoint)

        # 3. Compare and swap: the checks and the write share one transaction.
        self._log.advance_witnessed(origin, check, checkpoint.size, checkpoint.root_hash, note)
        log.info("cosigned %s at size %d", origin, checkpoint.size)
        return notes.cosign_checkpoint(body, self._signer, int(self._clock.now().timestamp()))


# --- the logging side: send our checkpoints to the nodes that witness us ---------------------


@dataclasses.dataclass(slots=True)
class WitnessingStats:
    cosigned: int = 0
    alarms: int = 0
    unreachable: int = 0


def confirmed_size(store: Store, witness_name: str) -> int:
    """The largest of our checkpoint sizes that `witness_name` has cosigned (0 if none)."""
    return LogStore(store).confirmed_size(witness_name)


def store_cosignature(store: Store, size: int, witness_name: str, line: str) -> None:
    LogStore(store).store_cosignature(size, witness_name, line)


async def send_checkpoint(
    channel: grpc.aio.Channel,
    store: Store,
    tree: merkle.InMemoryTree,
    note: str,
    witness_key: notes.NoteVerifier,
    stats: WitnessingStats,
    *,
    timeout: float = 10.0,
) -> str | None:
    """Ask one witness to cosign `note`; store and return its verified cosignature line.

    Starts from the size the witness last confirmed; when it says it holds another size
    (FAILED_PRECONDITION), retries once from that size. Never raises: a refusal or a bad
    cosignature is logged as an ALARM and counted, an unreachable witness as a warning.
    """
    body, _ = notes.split_note(note)
    size = notes.Checkpoint.parse_body(body).size
    add = channel.unary_unary(
        ADD_CHECKPOINT,
        request_serializer=wire.serialize,
        response_deserializer=wire.spb.AddCheckpointResponse.FromString,
    )
    old_size = confirmed_size(store, witness_key.name)
    for attempt in range(2):
        try:
            proof = tree.consistency_proof(old_size, size) if 0 < old_size <= size else []
            response = await add(
                wire.spb.AddCheckpointRequest(
                    old_size=old_size, consistency_proof=proof, checkpoint=note
                ),
                timeout=timeout,
            )
            notes.verify_cosignature(response.cosignature, body, witness_key)
        except grpc.aio.AioRpcError as exc:
            held = _HOLDS_SIZE.search(exc.details() or "")
            if (
                exc.code() == grpc.StatusCode.FAILED_PRECONDITION
                and attempt == 0
                and held is not None
                and int(held.group(1)) <= size
            ):
                old_size = int(held.group(1))
                continue
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                stats.unreachable += 1
                metrics.WITNESS_UNREACHABLE.labels(witness_key.name).inc()
                log.warning(
                    "witness %s unreachable for size %d: %s", witness_key.name, size, exc.details()
                )
                return None
            stats.alarms += 1
            metrics.WITNESS_ALARMS.labels(witness_key.name).inc()
            log.error(
                "ALARM: witness %s refused our checkpoint of size %d from size %d: %s %s",
                witness_key.name,
                size,
                old_size,
                exc.code().name,
                exc.details(),
            )
            return None
        except CreditNodeError as exc:
            stats.alarms += 1
            metrics.WITNESS_ALARMS.labels(witness_key.name).inc()
            log.error(
                "ALARM: witness %s returned a bad cosignature for size %d: %s",
                witness_key.name,
                size,
                exc.message,
            )
            return None
        store_cosignature(store, size, witness_key.name, response.cosignature)
        stats.cosigned += 1
        metrics.WITNESS_COSIGNED.labels(witness_key.name).inc()
        return str(response.cosignature)
    return None  # pragma: no cover - the loop always returns
