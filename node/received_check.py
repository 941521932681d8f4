"""A result received from a peer, verified again offline (floor 5, issue 11 §4): the envelope we
kept checked against the trust lists held now, as when it arrived (node.peer_client steps 1-2),
and its recognised view derived again through the crosswalk version stored beside it.

No network: the peer's keys come from the signed trust lists on disk.
"""

from __future__ import annotations

import dataclasses

from node import model, wire
from node.errors import BadAnswer, InvalidInput
from node.peer_client import verify_issued_result
from node.recognition import NotRecognised, RecognisedView, Recognition
from node.store.received import Received
from node.trust import TrustStore


@dataclasses.dataclass(frozen=True, slots=True)
class Reverified:
    """A kept result whose envelope verified again."""

    result: model.CreditResult
    signed_by: str  # keyid
    # The stored view derived again (None: none was stored); equal to the stored one or not.
    recognised_again: RecognisedView | NotRecognised | None

    def recognition_holds(self, kept: Received) -> bool:
        """Whether the stored recognised view is what its crosswalk version gives today."""
        return not isinstance(kept.recognised, RecognisedView) or (
            self.recognised_again == kept.recognised
        )


def verify_received(
    kept: Received, *, local_node: str, trust: TrustStore, recognition: Recognition
) -> Reverified:
    """Check `kept` again: raise BadSignature/UntrustedKey/BadAnswer when it does not verify.

    1. Its envelope is signed by a key of its issuer listed in the trust lists held (that of
       the zone it was received under, when we still hold the issuer there), valid when the
       result was issued, and the result was issued by that peer to this node.
    2. The payload is the result the row says: same result id, zone and purpose.
    3. A stored recognised view is derived again through the same crosswalk version.
    """
    try:
        envelope = wire.envelope_from_bytes(kept.envelope)
    except (InvalidInput, ValueError) as exc:
        raise BadAnswer(f"the kept envelope of {kept.result_id} cannot be read: {exc}") from None
    zone = kept.zone if trust.member(kept.zone, kept.issuer_node) else None
    result, keyid = verify_issued_result(  # 1
        envelope,
        peer=kept.issuer_node,
        local_node=local_node,
        key_for=lambda node, key: trust.peer_key(node, key, zone=zone),
    )
    found = (result.result_id, result.zone, result.purpose)  # 2
    if found != (kept.result_id, kept.zone, kept.purpose):
        raise BadAnswer(
            f"the kept envelope holds result {result.result_id} ({result.zone}, "
            f"{result.purpose}), not {kept.result_id} ({kept.zone}, {kept.purpose})"
        )
    again = (  # 3
        recognition.again(result, kept.recognised)
        if isinstance(kept.recognised, RecognisedView)
        else None
    )
    return Reverified(result, keyid, again)
