"""issue 14 §8, DESIGN.md §5 Member 9-10: a trust list carries each member's log and witness
verifier keys (from `identity export`, put in by `zone add-member`), so a receipt and a
cosignature verify offline from the signed list alone; lists signed before the fields open."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from devtools.federation import build
from node import signing, trust, trust_files, wire
from node.clock import SYSTEM
from node.errors import InvalidInput
from node.home import NodeHome
from node.log import logverify, notes
from node.peer_client import verify_receipt
from node.runtime import NodeRuntime
from node.store import Store
from tests.federation_helpers import HUZHOU, JIAXING, company, started
from tests.trust_lists import T0, make_list, make_member


def _verifier(node_id: str, *, witness: bool = False) -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    if witness:
        return notes.WitnessSigner(notes.witness_key_name(node_id), key).verifier().to_text()
    return notes.NoteSigner(notes.log_origin(node_id), key).verifier().to_text()


async def test_receipt_and_cosignature_verify_from_the_signed_list_alone(
    tmp_path: pathlib.Path,
) -> None:
    """Jiaxing asks Huzhou, which Jiaxing witnesses. Afterwards, with nothing but the signed
    hjjw list file and the coordinator's public key, the answer's receipt verifies against
    Huzhou's log key and Huzhou's checkpoints count Jiaxing's cosignatures."""
    fed = build(
        tmp_path, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)},
        subjects=30, witnesses={HUZHOU: [JIAXING]},
    )  # fmt: skip
    nodes = {n: NodeRuntime(NodeHome(fed.home(n))) for n in (HUZHOU, JIAXING)}
    async with started(nodes):
        outcome = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed))
        await nodes[HUZHOU].witnessing.flush()
    assert outcome.answer is not None, outcome.reason

    coordinator = fed.coordinator_dir()
    envelope = signing.Envelope.from_json(
        (coordinator / "hjjw.current.trustlist.json").read_bytes()
    )
    pem = trust_files.read_public_key_pem(coordinator / "hjjw.coordinator.pub.pem")
    key = signing.VerificationKey.from_spki_der(pem)
    trust_list = trust.open_trust_list(envelope, key, now=SYSTEM.now(), held_version=None)
    huzhou, jiaxing = trust_list.member(HUZHOU), trust_list.member(JIAXING)
    assert huzhou is not None and jiaxing is not None

    size = verify_receipt(outcome.answer.receipt, huzhou.log_verifier_key, HUZHOU)
    assert size > outcome.answer.receipt.log_index

    with Store.open(NodeHome(fed.home(HUZHOU)).db_url(), migrate=False) as store:
        report = logverify.verify_store(
            store,
            notes.NoteVerifier.from_text(huzhou.log_verifier_key),
            [notes.NoteVerifier.from_text(jiaxing.witness_verifier_key)],
        )
    assert report.ok, report.problem
    assert report.cosignatures >= 1
    # Another node's witness key (Huzhou's own) counts none: the count is Jiaxing's doing.
    with Store.open(NodeHome(fed.home(HUZHOU)).db_url(), migrate=False) as store:
        other = logverify.verify_store(
            store,
            notes.NoteVerifier.from_text(huzhou.log_verifier_key),
            [notes.NoteVerifier.from_text(huzhou.witness_verifier_key)],
        )
    assert other.ok and other.cosignatures == 0


def test_store_serves_the_keys_of_the_newest_list() -> None:
    log_key, witness_key = _verifier("cn-330500"), _verifier("cn-330500", witness=True)
    member = dataclasses.replace(
        make_member("cn-330500"), log_verifier_key=log_key, witness_verifier_key=witness_key
    )
    coordinator = signing.Ed25519Signer.generate()
    store = trust.TrustStore({"hjjw": coordinator.verification_key()})
    store.offer("hjjw", trust.sign_trust_list(make_list(1, member), coordinator), T0)
    assert store.log_verifier_key("cn-330500") == log_key
    assert store.witness_verifier_keys() == {"cn-330500": witness_key}
    assert store.log_verifier_key("cn-330400") is None


def test_a_list_signed_before_the_fields_opens_with_no_keys() -> None:
    """A Member without fields 9-10 (an older coordinator's list) decodes; the keys are empty."""
    member = make_member("cn-330500")
    payload = wire.trust_list_bytes(make_list(1, member))
    msg = wire.pb.TrustList.FromString(payload)
    assert not msg.members[0].log_verifier_key  # nothing is written for an absent key
    opened = wire.trust_list_from_bytes(payload)
    assert opened.members[0].log_verifier_key == opened.members[0].witness_verifier_key == ""
    doc = trust.member_to_json(member)
    del doc["log_verifier_key"], doc["witness_verifier_key"]  # a draft written before them
    assert trust.member_from_json(doc) == member


def test_keys_round_trip_through_the_signed_payload_and_the_draft() -> None:
    member = dataclasses.replace(
        make_member("cn-330500"),
        log_verifier_key=_verifier("cn-330500"),
        witness_verifier_key=_verifier("cn-330500", witness=True),
    )
    assert wire.trust_list_from_bytes(wire.trust_list_bytes(make_list(1, member))).members == (
        member,
    )
    assert trust.member_from_json(trust.member_to_json(member)) == member


@pytest.mark.parametrize(
    ("field", "vkey", "message"),
    [
        (
            "log_verifier_key",
            _verifier("cn-330400"),
            "must be named creditx/cn-330500/exchange-log",
        ),
        ("log_verifier_key", _verifier("cn-330500", witness=True), "must be named"),
        ("witness_verifier_key", _verifier("cn-330500"), "must be named creditx/cn-330500/witness"),
        ("witness_verifier_key", "not a key", "witness verifier key is malformed"),
    ],
    ids=["log-key-of-another-node", "witness-key-as-log-key", "log-key-as-witness", "garbage"],
)
def test_a_verifier_key_not_of_the_member_is_refused(field: str, vkey: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        if field == "log_verifier_key":
            dataclasses.replace(make_member("cn-330500"), log_verifier_key=vkey)
        else:
            dataclasses.replace(make_member("cn-330500"), witness_verifier_key=vkey)
