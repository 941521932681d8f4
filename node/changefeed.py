"""The Green Loan Link changefeed (DESIGN.md §6 `GreenLoanSync`), both sides, without I/O.

Serving: `feed_scope` decides what a `green-loan-sync` caller may receive (the zones' agreed
`green-loan` purpose: subject types, fields, indicators); `select_changes` turns journal entries
into the changes of one batch; `sign_batch` makes its DSSE envelope. A batch covers every seq
from `first_seq` to `last_seq`: what the caller may not see, or may no longer see (a result
revoked since, e.g. repaired), is left out, and the range still advances its cursor.

Consuming: `open_change_batch` checks one received envelope, numbered like the protocol's
steps, so that a sync job applies only signed batches that continue exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence

from node import model, signing, wire
from node import policy as policies
from node.errors import BadAnswer, InvalidInput, PermissionDenied, UntrustedKey
from node.store.changes import StoredChange
from node.trust_model import PublicKeyInfo

GREEN_LOAN_ROLE = "green-loan-sync"
GREEN_LOAN_PURPOSE = "green-loan"
DEFAULT_BATCH = 500  # changes per batch when the caller asks for none (`max_batch` = 0)
MAX_BATCH = 1000  # a larger `max_batch` is capped: a batch stays well under 4 MiB on the wire


@dataclasses.dataclass(frozen=True, slots=True)
class FeedScope:
    """What one consumer receives: results of these subject types, trimmed by `rule`."""

    audience: str
    subject_types: frozenset[model.SubjectType]
    rule: policies.PurposeRule


def feed_scope(
    audience: str,
    rules: Mapping[str, policies.PurposeRule | None],
    requested: Iterable[model.SubjectType] = (),
) -> FeedScope:
    """The scope of `audience`, which holds the role `green-loan-sync` on the lists of the
    zones in `rules`, each with its `green-loan` purpose here (None: not agreed there).

    Raises PermissionDenied when no such zone agrees the purpose, or when the caller asks for a
    subject type the purpose does not allow.
    """
    agreed = [rule for _, rule in sorted(rules.items()) if rule is not None]
    if not agreed:
        where = ", ".join(sorted(rules)) or "none"
        raise PermissionDenied(
            f"purpose {GREEN_LOAN_PURPOSE} is not agreed here in any zone where {audience} holds "
            f"the role {GREEN_LOAN_ROLE} (zones: {where})",
            reason="PURPOSE_NOT_AGREED",
        )
    # Several zones: what any of them allows (each is an agreement with the same province).
    rule = policies.PurposeRule(
        GREEN_LOAN_PURPOSE,
        frozenset().union(*(r.subject_types for r in agreed)),
        frozenset().union(*(r.fields for r in agreed)),
        frozenset().union(*(r.indicators for r in agreed)),
    )
    wanted = frozenset(requested)
    refused = sorted(t.name for t in wanted - rule.subject_types)
    if refused:
        allowed = ", ".join(sorted(t.name for t in rule.subject_types))
        raise PermissionDenied(
            f"purpose {GREEN_LOAN_PURPOSE} does not allow subjects of type "
            f"{', '.join(refused)} (allowed: {allowed})",
            reason="SUBJECT_TYPE_NOT_ALLOWED",
        )
    return FeedScope(audience, wanted or rule.subject_types, rule)


def select_changes(entries: Iterable[StoredChange], scope: FeedScope) -> list[model.Change]:
    """The changes of `entries` that `scope` receives, results trimmed to what it may see.

    An UPSERT of a result that has been REVOKED since (repaired, expired, corrected) is left
    out: repaired information is never fed again (DESIGN.md §1.5); its REVOKE still goes out.
    """
    changes: list[model.Change] = []
    for entry in entries:
        result = entry.result
        if result.subject_type not in scope.subject_types:
            continue
        if entry.kind is model.ChangeKind.REVOKE:
            changes.append(model.Change(entry.seq, entry.kind, result_id=result.result_id))
        elif result.status is not model.ResultStatus.REVOKED:
            trimmed = policies.redact(result, scope.rule)
            changes.append(model.Change(entry.seq, entry.kind, result=trimmed))
    return changes


def sign_batch(
    changes: Sequence[model.Change],
    *,
    first_seq: int,
    last_seq: int,
    issuer: str,
    audience: str,
    now: dt.datetime,
    signer: signing.Signer,
) -> signing.Envelope:
    """The DSSE envelope of one `ChangeBatchBody` covering seqs first_seq..last_seq."""
    batch = model.ChangeBatch(first_seq, last_seq, tuple(changes), issuer, audience, now)
    return signing.sign_envelope(
        signing.PAYLOAD_CHANGE_BATCH, wire.change_batch_bytes(batch), [signer]
    )


KeyLookup = Callable[[str, str], PublicKeyInfo]  # (node id, keyid) -> listed key; UntrustedKey


def open_change_batch(
    envelope: signing.Envelope,
    *,
    issuer: str,
    audience: str,
    after_seq: int,
    key_for: KeyLookup,
) -> model.ChangeBatch:
    """Check a received batch and return it; raise BadSignature, UntrustedKey or BadAnswer.

    A batch is applied only when it is signed by `issuer`, addressed to `audience`, and
    continues exactly after `after_seq` (the last seq applied): so a tampered, replayed,
    reordered or gapped batch is refused, never applied.
    """
    # 1. Signed by a key of the issuer on our trust lists, over the bytes received; only then
    #    is the payload decoded (DESIGN.md §4).
    known: dict[str, PublicKeyInfo] = {}
    for sig in envelope.signatures:
        try:
            known[sig.keyid] = key_for(issuer, sig.keyid)
        except UntrustedKey:
            continue
    verified = signing.verify_envelope(
        envelope,
        payload_type=signing.PAYLOAD_CHANGE_BATCH,
        keys={keyid: key.verification_key for keyid, key in known.items()},
    )
    batch = wire.change_batch_from_bytes(verified.payload)
    if not known[verified.keyid].valid_at(batch.issued_at):
        raise UntrustedKey(
            f"key {verified.keyid[:16]}… of {issuer} was not valid when the batch was issued "
            f"({batch.issued_at.isoformat()})"
        )
    # 2. From that issuer, to us.
    if batch.issuer_node != issuer:
        raise BadAnswer(f"change batch is issued by {batch.issuer_node}, not by {issuer}")
    if batch.audience != audience:
        raise BadAnswer(f"change batch is addressed to {batch.audience}, not to us ({audience})")
    # 3. Continuity: the next seq after the last one applied. An earlier first_seq is a replay
    #    (or a reordering), a later one a gap; neither is applied.
    if batch.first_seq <= after_seq:
        raise BadAnswer(
            f"change batch {batch.first_seq}..{batch.last_seq} repeats changes up to seq "
            f"{after_seq} already applied (a replayed or reordered batch)"
        )
    if batch.first_seq != after_seq + 1:
        raise BadAnswer(
            f"change batch starts at seq {batch.first_seq}, but the last applied is {after_seq}: "
            f"seqs {after_seq + 1}..{batch.first_seq - 1} are missing (a gap in the feed)"
        )
    # 4. Each change names what it changes, and an UPSERT comes from the issuer itself.
    for change in batch.changes:
        if change.kind is model.ChangeKind.UPSERT:
            assert change.result is not None  # model.Change checks it
            if change.result.issuer_node != issuer:
                raise BadAnswer(
                    f"change {change.seq} upserts a result issued by "
                    f"{change.result.issuer_node}, not by {issuer}"
                )
    return batch


def subject_types_from(values: Iterable[int]) -> tuple[model.SubjectType, ...]:
    """Subject types a `SyncRequest` names; InvalidInput for a number outside the contract."""
    types: list[model.SubjectType] = []
    for value in values:
        try:
            types.append(model.SubjectType(value))
        except ValueError:  # 0 (UNSPECIFIED) names no subjects; others are not in the contract
            raise InvalidInput(
                f"subject type {value} names no subject type of the contract (1-6)"
            ) from None
    return tuple(types)
