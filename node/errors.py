"""The error tree, named by who is at fault (CONVENTIONS.md §3).

Every error carries a `reason` (UPPER_SNAKE, sent as google.rpc.ErrorInfo.reason) and a message
a person can act on. One place (`node.error_status`) maps these classes to gRPC status codes
and HTTP statuses; nothing else decides a status code.
"""

from __future__ import annotations


class CreditNodeError(Exception):
    """Base of every error this package raises on purpose."""

    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


# --- the caller is at fault -------------------------------------------------------------------


class CallerError(CreditNodeError):
    """The request or input is wrong; the caller can fix it."""


class InvalidInput(CallerError):
    """Malformed request, bad identifier, bad file (gRPC INVALID_ARGUMENT)."""

    reason = "INVALID_ARGUMENT"


class InvalidIdentifier(InvalidInput):
    reason = "INVALID_SUBJECT_ID"


class ImportRejected(InvalidInput):
    """An import file was rejected as a whole; `problems` lists every bad row, in row order,
    or the first of them and `more` counts the rest (a file's problems can outnumber what
    memory should hold)."""

    reason = "IMPORT_REJECTED"

    def __init__(self, message: str, problems: list[RowProblem], more: int = 0) -> None:
        super().__init__(message)
        self.problems = problems
        self.more = more


class RowProblem:
    """One bad row of an import file: where, which field, why."""

    __slots__ = ("field", "reason", "row")

    def __init__(self, row: int, field: str, reason: str) -> None:
        self.row = row
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.reason}"

    def __repr__(self) -> str:
        return f"RowProblem({self.row!r}, {self.field!r}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RowProblem) and (self.row, self.field, self.reason) == (
            other.row,
            other.field,
            other.reason,
        )

    def __hash__(self) -> int:
        return hash((self.row, self.field, self.reason))


class Unauthenticated(CallerError):
    """Unknown or untrusted client certificate (gRPC UNAUTHENTICATED)."""

    reason = "UNTRUSTED_CLIENT"


class PermissionDenied(CallerError):
    """Caller not in the zone, purpose not agreed, subject type not allowed."""

    reason = "PERMISSION_DENIED"


class RateLimited(CallerError):
    reason = "RATE_LIMITED"


class NotFound(CallerError):
    reason = "SUBJECT_NOT_FOUND"


class Conflict(CallerError):
    """The caller's view is out of date (e.g. witness old_size mismatch; FAILED_PRECONDITION)."""

    reason = "FAILED_PRECONDITION"


# --- a peer (or a signed object from one) is at fault ----------------------------------------


class PeerError(CreditNodeError):
    """Something a peer sent us does not verify."""


class BadSignature(PeerError):
    reason = "BAD_SIGNATURE"


class UntrustedKey(PeerError):
    reason = "UNTRUSTED_KEY"


class ExpiredTrustList(PeerError):
    reason = "EXPIRED_TRUST_LIST"


class RolledBackTrustList(PeerError):
    reason = "ROLLED_BACK_TRUST_LIST"


class UnsignedEnvelope(BadSignature):
    """A signed object arrived with no signature at all."""

    reason = "UNSIGNED"


class TrustListZoneMismatch(PeerError):
    """A trust list signed for one zone was offered as another zone's list."""

    reason = "TRUST_LIST_ZONE_MISMATCH"


class BadAnswer(PeerError):
    """A peer's answer is well signed but not bound to our request (audience, digest, id)."""

    reason = "BAD_ANSWER"


class InconsistentLog(PeerError):
    """A log's checkpoints or proofs do not agree (split view, rewritten history)."""

    reason = "INCONSISTENT_LOG"


class PeerRefused(PeerError):
    """A peer answered our call with a refusal (its status code and reason are in the text)."""

    reason = "PEER_REFUSED"


class PeerUnavailable(PeerError):
    reason = "PEER_UNAVAILABLE"


class PeerRefusesCertificate(PeerUnavailable):
    """The peer ends the TLS handshake over our certificate: its trust list does not hold it
    (older than ours, or we were removed). Asking again does not help."""

    reason = "CERTIFICATE_NOT_ACCEPTED"


# --- we are at fault -------------------------------------------------------------------------


class NodeFault(CreditNodeError):
    """Our own configuration or infrastructure is at fault."""


class ConfigError(NodeFault):
    reason = "CONFIG_ERROR"


class KeyMaterialError(NodeFault):
    reason = "KEY_MATERIAL_ERROR"


class StoreUnavailable(NodeFault):
    reason = "STORE_UNAVAILABLE"


class HomeInUse(NodeFault):
    """Another process already serves this node home (one `serve` per home)."""

    reason = "HOME_IN_USE"


class AddressInUse(NodeFault):
    """A listen address is taken by another process."""

    reason = "ADDRESS_IN_USE"
