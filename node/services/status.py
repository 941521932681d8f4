"""The one mapping from domain errors to gRPC status codes and HTTP statuses (DESIGN.md §6).

Every refusal carries a message a person can act on and a google.rpc.ErrorInfo with an
UPPER_SNAKE `reason` in domain "creditx". Anything that is not a CreditNodeError becomes
INTERNAL with a generic message: no stack trace or internal detail crosses the wire.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

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
                    return code, http, exc.reason, (
                        f"this node cannot answer right now ({exc.reason}); retry later, or "
                        f"give its operator incident {incident}"
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


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    await context.abort_with_status(rpc_status.to_status(to_rpc_status(exc)))


Handler = Callable[..., Any]
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def _decoder(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's request parser, with a request it cannot parse refused as the caller's
    error (INVALID_ARGUMENT, MALFORMED_REQUEST) rather than gRPC's own INTERNAL and traceback.
    """
    if deserializer is None:  # the handler takes the bytes received
        return None
    message = getattr(deserializer, "__self__", None)
    descriptor = getattr(message, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", "the method's request message")

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            raise errors.InvalidInput(
                f"the request is not a valid {name} ({len(data)} bytes could not be decoded); "
                "check the client's protobuf definitions against DESIGN.md",
                reason="MALFORMED_REQUEST",
            ) from None

    return decode


Decode: TypeAlias = "Callable[[bytes], Any] | None"


async def _decoded(requests: AsyncIterator[bytes], decode: Callable[[bytes], Any],
                   ) -> AsyncIterator[Any]:
    async for data in requests:
        yield decode(data)


def _request(request: Any, decode: Decode, streaming: bool) -> Any:
    if decode is None:
        return request
    return _decoded(request, decode) if streaming else decode(request)


def _wrap_unary(behavior: Handler, decode: Decode, streaming: bool) -> Handler:
    async def wrapper(request: Any, context: Context) -> Any:
        try:
            return await behavior(_request(request, decode, streaming), context)
        except errors.CreditNodeError as exc:
            await abort(context, exc)
        except (grpc.aio.AbortError, grpc.aio.UsageError):  # already aborted by the handler
            raise
        except Exception as exc:
            await abort(context, exc)
        return None

    return wrapper


def _wrap_stream(behavior: Handler, decode: Decode, streaming: bool) -> Handler:
    async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for item in behavior(_request(request, decode, streaming), context):
                yield item
        except errors.CreditNodeError as exc:
            await abort(context, exc)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await abort(context, exc)

    return wrapper


def map_errors(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same method, with any domain error it raises turned into its status code +
    ErrorInfo (and any other error into a generic fault with an incident id), and a request it
    cannot decode refused as malformed. Applied once, when the server registers its services,
    rather than by an interceptor on every call."""
    decode = _decoder(handler.request_deserializer)
    streaming = handler.request_streaming
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary, decode, streaming),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(handler.stream_unary, decode, streaming),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream, decode, streaming),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, decode, streaming),
            response_serializer=handler.response_serializer,
        )
    return handler
