"""gRPC's side of the error mapping (`node.error_status`): a method's domain errors become
its status code and ErrorInfo, a request it cannot decode is refused as malformed, and
anything else is a generic fault with an incident id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc
from grpc_status import rpc_status

from node import errors
from node.error_status import to_rpc_status


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


async def _decoded(
    requests: AsyncIterator[bytes],
    decode: Callable[[bytes], Any],
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
