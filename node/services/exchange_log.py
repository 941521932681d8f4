"""The ExchangeLog servicer (DESIGN.md §6-§7): checkpoints with cosignatures, proofs and
entries of this node's log, and AddCheckpoint for the logs this node witnesses.

Thin: wire message → sequencer tree / store / witness → wire message. Proofs are served only
up to the latest signed checkpoint, so every proof verifies against a note a client can get.
Checkpoints and proofs go to every member; entries only as far as the reader's scope allows
(node.disclosure, docs/adr/0007): the others are sent with their index and empty data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from node import disclosure, wire
from node.errors import InvalidInput, NotFound, PermissionDenied
from node.log import notes
from node.log.sequencer import Sequencer
from node.log.store import LogStore
from node.log.witness import Witness
from node.store import Store

SERVICE = "creditx.v1.ExchangeLog"
# A GetEntries stream ends after this many entries even before `end` (DESIGN.md §6); the
# client asks again from the next index. Documented in README.
MAX_ENTRIES_PER_CALL = 1000

Context = Any  # grpc.aio.ServicerContext
Authenticate = Callable[[Context], str]
EntryScopeOf = Callable[[str], disclosure.EntryScope]  # a reader's node id -> what it may read


class ExchangeLogServicer:
    def __init__(
        self,
        store: Store,
        sequencer: Sequencer,
        authenticate: Authenticate,
        witness: Witness,
        entry_scope: EntryScopeOf,
    ) -> None:
        self._entry_scope = entry_scope
        self._log = LogStore(store)
        self._sequencer = sequencer
        self._authenticate = authenticate
        self._witness = witness

    async def _latest(self, wanted: int = 0) -> tuple[str, int]:
        """The latest checkpoint, caught up first with what an answering worker committed
        when we know we are behind or are asked about a larger tree (its receipts may be
        newer than our last look)."""
        note = self._sequencer.latest_checkpoint
        if not note or notes.checkpoint_size(note) < wanted or self._sequencer.behind:
            await self._sequencer.refresh()
            note = self._sequencer.latest_checkpoint
        if not note:
            raise NotFound("this node's exchange log has no checkpoint yet", reason="NO_CHECKPOINT")
        return note, notes.checkpoint_size(note)

    def _cosigned(self, note: str, size: int) -> str:
        lines = self._log.cosignature_lines(size)
        return notes.add_signature_lines(note, lines) if lines else note

    async def GetCheckpoint(self, request: Any, context: Context) -> wire.spb.Checkpoint:
        self._authenticate(context)
        note, size = await self._latest()
        return wire.spb.Checkpoint(note=await asyncio.to_thread(self._cosigned, note, size))

    async def GetInclusionProof(
        self, request: wire.spb.InclusionProofRequest, context: Context
    ) -> wire.spb.InclusionProof:
        self._authenticate(context)
        _, latest = await self._latest(request.tree_size)
        index, size = request.index, request.tree_size
        if not 0 < size <= latest:
            raise InvalidInput(
                f"tree_size {size} must be between 1 and the latest checkpoint's size {latest}"
            )
        if index >= size:
            raise InvalidInput(f"index {index} is not in a tree of size {size}")
        tree = self._sequencer.tree
        return wire.spb.InclusionProof(
            index=index,
            tree_size=size,
            leaf_hash=tree.leaf(index),
            hashes=tree.inclusion_proof(index, size),
        )

    async def GetConsistencyProof(
        self, request: wire.spb.ConsistencyProofRequest, context: Context
    ) -> wire.spb.ConsistencyProof:
        self._authenticate(context)
        _, latest = await self._latest(request.to_size)
        old, new = request.from_size, request.to_size
        # RFC 9162 §2.1.4: a proof is defined for 0 < first <= second.
        if not 0 < old <= new:
            raise InvalidInput(f"from_size {old} must be at least 1 and at most to_size {new}")
        if new > latest:
            raise InvalidInput(f"to_size {new} is beyond the latest checkpoint's size {latest}")
        return wire.spb.ConsistencyProof(hashes=self._sequencer.tree.consistency_proof(old, new))

    async def GetEntries(
        self, request: wire.spb.GetEntriesRequest, context: Context
    ) -> AsyncIterator[wire.spb.LogEntry]:
        caller = self._authenticate(context)
        scope = self._entry_scope(caller)
        if scope.is_empty:
            # DESIGN.md §6: entries are for auditors and witnesses; proofs and checkpoints
            # stay open to every member.
            raise PermissionDenied(
                f"{caller} is neither an auditor nor a witness of this log; entries are not "
                "served to it (checkpoints and proofs are)",
                reason="NOT_AUDITOR_OR_WITNESS",
            )
        _, latest = await self._latest(request.end)
        start, end = request.start, request.end
        if start >= end:
            raise InvalidInput(f"start {start} must be below end {end} (end is exclusive)")
        if end > latest:
            raise InvalidInput(f"end {end} is beyond the latest checkpoint's size {latest}")
        end = min(end, start + MAX_ENTRIES_PER_CALL)  # the caller asks again from `end`
        for index, data in await asyncio.to_thread(self._entries, start, end, scope):
            yield wire.spb.LogEntry(index=index, data=data)

    def _entries(
        self, start: int, end: int, scope: disclosure.EntryScope
    ) -> list[tuple[int, bytes]]:
        """Entries [start, end), each disclosed or withheld (empty data, index kept)."""
        return [
            (index, disclosure.disclose(scope, data))
            for index, data in self._log.entries(start, end)
        ]

    async def AddCheckpoint(
        self, request: wire.spb.AddCheckpointRequest, context: Context
    ) -> wire.spb.AddCheckpointResponse:
        self._authenticate(context)
        line = await asyncio.to_thread(
            self._witness.add_checkpoint,
            request.old_size,
            list(request.consistency_proof),
            request.checkpoint,
        )
        return wire.spb.AddCheckpointResponse(cosignature=line)


def methods(servicer: ExchangeLogServicer) -> dict[str, grpc.RpcMethodHandler]:
    def ser(message: Any) -> bytes:
        return bytes(message.SerializeToString())

    spb = wire.spb
    return {
        "GetCheckpoint": grpc.unary_unary_rpc_method_handler(
            servicer.GetCheckpoint,
            request_deserializer=spb.GetCheckpointRequest.FromString,
            response_serializer=ser,
        ),
        "GetInclusionProof": grpc.unary_unary_rpc_method_handler(
            servicer.GetInclusionProof,
            request_deserializer=spb.InclusionProofRequest.FromString,
            response_serializer=ser,
        ),
        "GetConsistencyProof": grpc.unary_unary_rpc_method_handler(
            servicer.GetConsistencyProof,
            request_deserializer=spb.ConsistencyProofRequest.FromString,
            response_serializer=ser,
        ),
        "GetEntries": grpc.unary_stream_rpc_method_handler(
            servicer.GetEntries,
            request_deserializer=spb.GetEntriesRequest.FromString,
            response_serializer=ser,
        ),
        "AddCheckpoint": grpc.unary_unary_rpc_method_handler(
            servicer.AddCheckpoint,
            request_deserializer=spb.AddCheckpointRequest.FromString,
            response_serializer=ser,
        ),
    }
