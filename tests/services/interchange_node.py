"""A Huzhou node serving CreditInterchange on real gRPC with real mutual TLS (a real store, the
real log), and the calls a peer makes to it. The fixtures that start one are in conftest.py."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import tomllib
from collections.abc import Callable

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from node import model, policy, signing, wire
from node.answer.exchange import Interchange
from node.answer.local import Answerer, LocalAnswerer, encode_answer
from node.clock import ManualClock
from node.log import notes
from node.log.sequencer import Sequencer
from node.server import GrpcServer
from node.services import interchange as svc
from node.store import Store
from node.store.lookup import StoreResultSource
from node.tls import channel_credentials, server_credentials
from tests.pki import NodeTls

HUZHOU, JIAXING, SHANGHAI = "cn-330500", "cn-330400", "cn-310000"
# Who is on each zone's trust list in force at Huzhou (DESIGN.md §1): the runtime finds this
# on the signed lists it holds; this harness has no lists, and answers it from here.
ZONE_MEMBERS: dict[str, frozenset[str]] = {
    "yrd": frozenset({"cn-310000", "cn-320100", "cn-320500", "cn-330100", HUZHOU, "cn-340100"}),
    "hz-metro": frozenset({"cn-330100", HUZHOU, JIAXING, "cn-330600", "cn-330800", "cn-341000"}),
    "hjjw": frozenset({HUZHOU, JIAXING, "cn-330700", "cn-330300"}),
    "hyzt": frozenset({HUZHOU, "cn-330200", "cn-330900", "cn-331000"}),
}
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
COMPANY = "91330500MA2B3C4D5B"
STUB = "creditx.v1.CreditInterchange"


def company(
    uscc: str, name: str, subject_type: model.SubjectType = model.SubjectType.ENTERPRISE
) -> model.CreditResult:
    return model.CreditResult(
        result_id=f"{HUZHOU}:{uscc}",
        subject=model.SubjectRef(model.SubjectIdType.USCC, uscc),
        subject_name=name,
        subject_type=subject_type,
        issuer_node=HUZHOU,
        scheme="zj-public-credit@2023",
        native_level="A",
        native_score=92.0,
        level=model.CreditLevel.A,
        flags=("RED_LIST",),
        indicators={"green_rating": "G1"},
        evaluated_at=T0,
        valid_until=T0 + dt.timedelta(days=365),
    )


class Node:
    """One node: store, sequencer, interchange and a gRPC server on port 0."""

    def __init__(self, store: Store, tls: NodeTls, members: dict[str, str]) -> None:
        self.store, self.tls, self.members = store, tls, members
        self.signer = signing.Ed25519Signer.generate()
        self.log_signer = notes.NoteSigner(
            notes.log_origin(HUZHOU), ed25519.Ed25519PrivateKey.generate()
        )
        text = importlib.resources.files("node.data").joinpath("zones.example.toml").read_text()
        self.policy = policy.policy_from_mapping(tomllib.loads(text))
        self.clock = ManualClock(T0 + dt.timedelta(days=30))  # the results were evaluated at T0
        self.caller_items_held = svc.CALLER_ITEMS_HELD
        self.over_rate_delay_s = svc.OVER_RATE_DELAY_S
        self.legacy_codes: frozenset[str] = frozenset()  # its legacy-uscc.txt
        self.zone_members = dict(ZONE_MEMBERS)  # the lists in force, as `membership` reads them

    async def start(
        self, anchors: list[NodeTls], wrap: Callable[[Answerer], Answerer] | None = None
    ) -> None:
        """`wrap`: an answerer around the node's own, for a test to watch or pace."""

        def sign_checkpoint(size: int, root: bytes) -> str:
            return notes.sign_checkpoint(
                notes.Checkpoint(self.log_signer.name, size, root), self.log_signer
            )

        self.sequencer = Sequencer(self.store.engine, sign_checkpoint, clock=self.clock)
        await self.sequencer.start()
        interchange = Interchange(
            node_id=HUZHOU,
            policy=self.policy,
            results=StoreResultSource(),
            signer=lambda: self.signer,
            sequencer=self.sequencer,
            subject_key=b"k" * 32,
            encode=encode_answer,
            clock=self.clock,
            legacy_codes=self.legacy_codes,
        )
        answerer: Answerer = LocalAnswerer(interchange, self.sequencer)
        self.servicer = servicer = svc.InterchangeServicer(
            wrap(answerer) if wrap is not None else answerer,
            svc.caller_from_certificate(self.members.get),
            self.node_info,
            self.membership,
            caller_items_held=self.caller_items_held,
            over_rate_delay_s=self.over_rate_delay_s,
        )
        anchors_pem = b"".join(a.cert_pem for a in anchors)
        self.server = GrpcServer(
            {svc.SERVICE: svc.methods(servicer)},
            server_credentials(self.tls.key_pem, self.tls.cert_pem, lambda: anchors_pem),
        )
        await self.server.start()

    def zones_of(self, node_id: str) -> frozenset[str]:
        return frozenset(z for z, members in self.zone_members.items() if node_id in members)

    def membership(self, caller: str) -> policy.Membership:
        return policy.Membership(self.zones_of(HUZHOU), self.zones_of(caller))

    def node_info(self) -> wire.pb.NodeInfo:
        return wire.pb.NodeInfo(
            node_id=HUZHOU,
            name="湖州",
            division_code="330500",
            zones=self.policy.served(self.zones_of(HUZHOU)),
            signing_keys=[
                wire.pb.PublicKey(
                    keyid=self.signer.keyid,
                    spki_der=self.signer.spki_der,
                    algorithm=signing.ED25519,
                    status="active",
                )
            ],
            log_origin=self.log_signer.name,
            log_verifier_key=self.log_signer.verifier_key_text(),
        )

    async def stop(self) -> None:
        await self.server.stop(0)
        await self.sequencer.close()


def channel(node: Node, client: NodeTls) -> grpc.aio.Channel:
    creds = channel_credentials(client.key_pem, client.cert_pem, node.tls.cert_pem)
    return grpc.aio.secure_channel(node.server.target, creds)


def query(
    request_id: str,
    subject: str = COMPANY,
    zone: str = "hjjw",
    purpose: str = "xinyi-dai",
    id_type: wire.pb.SubjectIdType = wire.pb.USCC,
) -> wire.pb.CreditQuery:
    return wire.pb.CreditQuery(
        request_id=request_id,
        zone=zone,
        purpose=purpose,
        subject=wire.pb.SubjectRef(id_type=id_type, id=subject),
    )


async def call(ch: grpc.aio.Channel, q: wire.pb.CreditQuery) -> wire.spb.QueryCreditResponse:
    method = ch.unary_unary(
        f"/{STUB}/QueryCredit",
        request_serializer=wire.serialize,
        response_deserializer=wire.spb.QueryCreditResponse.FromString,
    )
    response: wire.spb.QueryCreditResponse = await method(q, timeout=10)
    return response


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None, "a refusal carries google.rpc.Status details"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == "creditx"
            return str(info.reason)
    raise AssertionError("no ErrorInfo in the status")
