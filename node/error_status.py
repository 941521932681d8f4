"""The one mapping from domain errors to gRPC status codes, HTTP statuses and
google.rpc.Status with ErrorInfo (DESIGN.md §6), used by the services (`node.services.status`)
and by the answer path, which stores a refusal's status in the answer it may replay.

Every refusal carries a message a person can act on and a google.rpc.ErrorInfo with an
UPPER_SNAKE `reason` in domain "creditx". Anything that is not a CreditNodeError becomes
INTERNAL with a generic message: no stack trace or internal detail crosses the wire.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from node import errors

DOMAIN = "creditx"
log = logging.getLogger(__name__)

# Most specific first: the first matching class wins.
_CODES: tuple[tuple[type[errors.CreditNodeError], grpc.StatusCode, int], ...] = (
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, 401),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND, 404),
    (errors.Conflict, grpc.StatusCode.FAILED_PRECONDITION, 409),
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.UntrustedKey, grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.PeerUnavailable, grpc.StatusCode.UNAVAILABLE, 502),
    (errors.PeerError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.StoreUnavailable, grpc.StatusCode.UNAVAILABLE, 503),
)


def classify(exc: BaseException) -> tuple[grpc.StatusCode, int, str, str]:
    """(gRPC code, HTTP status, reason, message) for any exception."""
    if isinstance(exc, errors.CreditNodeError):
        for cls, code, http in _CODES:
            if isinstance(exc, cls):
                if isinstance(exc, errors.NodeFault):
                    # Our own fault: its text names our files and hosts, which stay here.
                    incident = uuid.uuid4().hex[:12]
                    log.error("%s (incident %s): %s", exc.reason, incident, exc.message)
                    return (
                        code,
                        http,
                        exc.reason,
                        (
                            f"this node cannot answer right now ({exc.reason}); retry later, or "
                            f"give its operator incident {incident}"
                        ),
                    )
                return code, http, exc.reason, exc.message
    incident = uuid.uuid4().hex[:12]
    log.error("internal error (incident %s)", incident, exc_info=exc)
    return (
        grpc.StatusCode.INTERNAL,
        500,
        "INTERNAL",
        f"internal error at this node; the operator can find incident {incident} in its log",
    )


def to_rpc_status(exc: BaseException) -> status_pb2.Status:
    """A google.rpc.Status with ErrorInfo, for a refused batch item or a call's trailers."""
    code, _, reason, message = classify(exc)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    return status_pb2.Status(code=code.value[0], message=message, details=[detail])


def status_code_name(status: status_pb2.Status) -> str:
    return str(code_pb2.Code.Name(status.code))


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None
