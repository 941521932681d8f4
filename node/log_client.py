"""Reading a peer's exchange log (floor 5): its latest checkpoint and every entry under it,
over the mutual-TLS channel of a `PeerClient`, and the key its checkpoints are checked with
(DESIGN.md §6-§7). Verifying what was read is node.log.logverify's job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import grpc

from node import wire
from node.disclosure import WITHHELD
from node.errors import BadAnswer, PeerRefused, PermissionDenied
from node.log import notes
from node.peer_client import PeerClient, refusal_reason
from node.services import exchange_log as log_svc


@dataclasses.dataclass(frozen=True)
class PeerLog:
    """A peer's log as fetched: all entries up to its latest checkpoint, and the key to check it."""

    entries: list[bytes]
    checkpoint: str
    log_verifier_key: str
    key_pinned: bool  # from our [witness.logs] config, rather than the peer's NodeInfo


async def log_key_of(client: PeerClient, pinned_logs: Mapping[str, str]) -> tuple[str, bool]:
    """(verifier key text of the peer's log, whether it is pinned in `pinned_logs`, our
    [witness.logs]): the pinned key when we witness that log, else the one the peer publishes
    in NodeInfo over the authenticated channel."""
    pinned = pinned_logs.get(notes.log_origin(client.peer))
    if pinned is not None:
        return pinned, True
    return (await client.node_info()).log_verifier_key, False


async def fetch_peer_log(
    client: PeerClient, pinned_logs: Mapping[str, str], local_node: str
) -> PeerLog:
    """Fetch the peer's latest checkpoint and every entry under it, paging on where the
    peer ends a GetEntries stream early (DESIGN.md §6). We (`local_node`) must be one of its
    auditors with access to every entry (docs/adr/0007): entries it withholds from us (those of
    zones we do not share) leave the tree beyond recomputation, and we say so
    (PermissionDenied). The caller closes `client`."""
    peer = client.peer
    try:
        vkey, pinned = await log_key_of(client, pinned_logs)
        channel = client.channel
        checkpoint = await channel.unary_unary(
            f"/{log_svc.SERVICE}/GetCheckpoint",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.Checkpoint.FromString,
        )(wire.spb.GetCheckpointRequest(), timeout=30)
        body, _ = notes.split_note(checkpoint.note)
        size = notes.Checkpoint.parse_body(body).size
        get_entries = channel.unary_stream(
            f"/{log_svc.SERVICE}/GetEntries",
            request_serializer=wire.serialize,
            response_deserializer=wire.spb.LogEntry.FromString,
        )
        entries: list[bytes] = []
        while len(entries) < size:
            before = len(entries)
            async for entry in get_entries(
                wire.spb.GetEntriesRequest(start=len(entries), end=size), timeout=60
            ):
                if entry.index != len(entries):
                    raise BadAnswer(f"{peer} sent entry {entry.index}, expected {len(entries)}")
                entries.append(entry.data)
            if len(entries) == before:
                raise BadAnswer(f"{peer} sent no entries from {before} on")
    except grpc.aio.AioRpcError as exc:
        refused = await client.refusal_of(exc)
        if refused is not None:
            raise refused from None
        raise PeerRefused(
            f"{peer} refused: {exc.code().name} {refusal_reason(exc)}: {exc.details()}"
        ) from None
    withheld = sum(1 for data in entries if data == WITHHELD)
    if withheld:
        raise PermissionDenied(
            f"{peer} withheld {withheld} of its {size} entries from {local_node} (a "
            "witness reads only the entries of zones it shares with the log's node), so "
            "its tree cannot be recomputed here; verifying the whole log needs auditor "
            f"access to every entry: {peer}'s node.toml [audit] readers = "
            f'{{ "{local_node}" = ["*"] }} (docs/adr/0007)',
            reason="ENTRIES_WITHHELD",
        )
    return PeerLog(entries, checkpoint.note, vkey, pinned)
