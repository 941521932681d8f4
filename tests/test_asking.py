"""Asking a peer: the decision our ASKED entry records for each gRPC status a peer answers
with (node.asking). The whole exchange runs in tests/test_federation.py."""

from __future__ import annotations

import grpc
import pytest

from node.asking import decision_for
from node.model import Decision


@pytest.mark.parametrize(
    ("code", "decision"),
    [
        (grpc.StatusCode.NOT_FOUND, Decision.NOT_FOUND),
        (grpc.StatusCode.PERMISSION_DENIED, Decision.REFUSED),
        (grpc.StatusCode.INVALID_ARGUMENT, Decision.REFUSED),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, Decision.REFUSED),  # over its rate
        # Not a refusal of ours: the exchange failed.
        (grpc.StatusCode.UNAVAILABLE, Decision.FAILED),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Decision.FAILED),
        (grpc.StatusCode.UNAUTHENTICATED, Decision.FAILED),
        (grpc.StatusCode.FAILED_PRECONDITION, Decision.FAILED),
        (grpc.StatusCode.INTERNAL, Decision.FAILED),
        (grpc.StatusCode.UNKNOWN, Decision.FAILED),
    ],
)
def test_a_peers_status_becomes_the_asked_entrys_decision(
    code: grpc.StatusCode, decision: Decision
) -> None:
    assert decision_for(code) is decision
