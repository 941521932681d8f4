"""The frames between `creditnode serve` and its answering worker (docs/adr/0005): over a
socket pair, `<message id: u32><length: u32><body>`; a body is a list of byte fields, each
`<length: u32><bytes>`, after a `<count: u32>`.

- request (server → worker): single ("1"/"0"), caller, the zones whose trust list in force
  holds this node and those that hold the caller (each joined by newlines), then each query
  as received;
- policy (server → worker): "policy" and the zone policy reloaded from node.toml, as the JSON
  of `node.policy.policy_to_mapping`; answered "ok" once the worker decides by it;
- reply (worker → server): "ok", the worker's committed log size, the entry counts of the
  batches it committed since its last reply (comma-separated, for the server's
  `creditnode_log_batch_entries` histogram), then per query its meta
  (refused "1"/"0" followed by the logged decision) and its serialized response; or "fault"
  and a message when the worker could not answer at all;
- the worker's first frame (id 0): "ready" and its log size.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

_HEADER = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
READY_ID = 0
POLICY = b"policy"  # first field of a policy frame; a request's is "1" or "0"


def pack(fields: Sequence[bytes]) -> bytes:
    parts = [_LENGTH.pack(len(fields))]
    for field in fields:
        parts.append(_LENGTH.pack(len(field)))
        parts.append(field)
    return b"".join(parts)


def unpack(body: bytes) -> list[bytes]:
    (count,), offset = _LENGTH.unpack_from(body), _LENGTH.size
    fields = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(body, offset)
        offset += _LENGTH.size
        if offset + length > len(body):
            raise ValueError("truncated frame")
        fields.append(body[offset : offset + length])
        offset += length
    if offset != len(body):
        raise ValueError("trailing bytes in frame")
    return fields


def frame(message_id: int, fields: Sequence[bytes]) -> bytes:
    body = pack(fields)
    return _HEADER.pack(message_id, len(body)) + body


class Outbox:
    """Frames written in one turn of the event loop leave in one write: one system call for
    a batch's worth of requests or replies, not one each."""

    def __init__(self, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.writer = writer
        self._loop = loop
        self._frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        if not self._frames:
            self._loop.call_soon(self._flush)
        self._frames.append(data)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self.writer.is_closing():
            self.writer.write(b"".join(frames))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    message_id, length = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return message_id, unpack(await reader.readexactly(length))
