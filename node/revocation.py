"""Revocation notices (DESIGN.md §1.5, §5-§6): telling each peer that received a result that it
is no longer current, and checking such a notice on the receiving side.

Issuing: the exchange log says who received what (its ANSWERED GRANTED entries); `Notifier`
indexes new entries and new revocations in the changes journal, and the store writes one signed
notice per recipient and result (node.store.revocations). Receiving: `open_revocation_notice`
checks a notice, numbered like the protocol's steps, before anything is marked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from node import model, signing, wire
from node.clock import Clock
from node.errors import BadAnswer, InvalidInput, UntrustedKey
from node.log.store import LogStore
from node.store import Store
from node.store.revocations import Due
from node.trust_model import PublicKeyInfo

log = logging.getLogger(__name__)

NOTIFY_INTERVAL_S = 0.2  # how often `serve` looks for new deliveries and revocations
_ENTRIES_PER_PASS = 5_000


def deliveries_in(entries: Iterable[tuple[int, bytes]]) -> list[tuple[str, str, int]]:
    """(result id, recipient, log index) of every result this node's log says it issued."""
    found: list[tuple[str, str, int]] = []
    for index, data in entries:
        record = wire.record_from_bytes(data)
        if (
            record.direction is model.Direction.ANSWERED
            and record.decision is model.Decision.GRANTED
            and record.result_id
        ):
            found.append((record.result_id, record.requester_node, index))
    return found


def sign_notice(due: Due, seq: int, issuer: str, signer: signing.Signer) -> bytes:
    """The serialized envelope of the notice numbered `seq` for `due.audience`."""
    revoked = due.revoked
    notice = model.RevocationNotice(
        seq=seq,
        result_id=revoked.result_id,
        subject=model.SubjectRef.trusted(model.SubjectIdType(revoked.id_type), revoked.subject_id),
        issuer_node=issuer,
        reason=revoked.reason,
        revoked_at=revoked.revoked_at,
        audience_node=due.audience,
        superseded_by=revoked.superseded_by,
    )
    envelope = signing.sign_envelope(
        signing.PAYLOAD_REVOCATION, wire.revocation_notice_bytes(notice), [signer]
    )
    return wire.envelope_bytes(envelope)


class Notifier:
    """Writes the notices due: run `notify_once` (blocking) or `run` (a task inside `serve`)."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        signer: Callable[[], signing.Signer],
        clock: Clock,
    ) -> None:
        self._store = store
        self._log = LogStore(store)
        self._node_id = node_id
        self._signer = signer
        self._clock = clock

    def notify_once(self) -> int:
        """Index what is new in the log and the journal; write the notices due. Returns how
        many were written."""
        log_size, change_seq = self._store.revocations.state()
        entries = self._log.entries(log_size, log_size + _ENTRIES_PER_PASS)
        if entries and entries[0][0] != log_size:
            raise RuntimeError(f"exchange log entry {log_size} is missing")  # never: no holes
        new_log_size = entries[-1][0] + 1 if entries else log_size
        changes = self._store.changes.read(change_seq, _ENTRIES_PER_PASS)
        new_seq = changes[-1].seq if changes else change_seq
        if new_log_size == log_size and new_seq == change_seq:
            return 0
        signer = self._signer()
        return self._store.revocations.record_pass(
            deliveries=deliveries_in(entries),
            log_size=new_log_size,
            revoked_ids=[c.result.result_id for c in changes if c.kind is model.ChangeKind.REVOKE],
            change_seq=new_seq,
            sign=lambda due, seq: sign_notice(due, seq, self._node_id, signer),
            now=self._clock.now(),
        )

    async def run(self, interval_s: float = NOTIFY_INTERVAL_S) -> None:
        while True:
            try:
                while await asyncio.to_thread(self.notify_once):
                    pass  # more may be waiting: a pass reads a bounded slice
            except Exception:
                log.exception("revocation notices: pass failed; retrying")
            await asyncio.sleep(interval_s)


KeyLookup = Callable[[str, str], PublicKeyInfo]  # (node id, keyid) -> listed key; UntrustedKey


def open_revocation_notice(
    envelope: signing.Envelope,
    *,
    issuer: str,
    audience: str,
    after_seq: int,
    key_for: KeyLookup,
) -> model.RevocationNotice:
    """Check a received notice and return it; raise BadSignature, UntrustedKey or BadAnswer.

    Applied only when signed by `issuer`, addressed to `audience`, and numbered exactly one
    after the last notice applied (a replayed one is numbered too low, a lost one leaves a gap).
    """
    # 1. Signed by a key of the issuer on our lists, over the bytes received (DESIGN.md §4).
    known: dict[str, PublicKeyInfo] = {}
    for sig in envelope.signatures:
        try:
            known[sig.keyid] = key_for(issuer, sig.keyid)
        except UntrustedKey:
            continue
    verified = signing.verify_envelope(
        envelope,
        payload_type=signing.PAYLOAD_REVOCATION,
        keys={keyid: key.verification_key for keyid, key in known.items()},
    )
    try:
        notice = wire.revocation_notice_from_bytes(verified.payload)
    except InvalidInput as exc:
        raise BadAnswer(f"revocation notice from {issuer} is malformed: {exc.message}") from None
    if not known[verified.keyid].valid_at(notice.revoked_at):
        raise UntrustedKey(
            f"key {verified.keyid[:16]}… of {issuer} was not valid when the result was revoked"
        )
    # 2. From that issuer, to us.
    if notice.issuer_node != issuer:
        raise BadAnswer(f"revocation notice is issued by {notice.issuer_node}, not by {issuer}")
    if notice.audience_node != audience:
        raise BadAnswer(
            f"revocation notice is addressed to {notice.audience_node}, not to us ({audience})"
        )
    # 3. In order: the next one after the last applied.
    if notice.seq <= after_seq:
        raise BadAnswer(
            f"revocation notice {notice.seq} from {issuer} was applied already (last: {after_seq})"
        )
    if notice.seq != after_seq + 1:
        raise BadAnswer(
            f"revocation notice {notice.seq} from {issuer} follows {after_seq}: notices "
            f"{after_seq + 1}..{notice.seq - 1} are missing"
        )
    return notice
