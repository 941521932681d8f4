"""The page's own checks (node/audit/static/verify.js), run by Node.js's WebCrypto on the same
vectors as the Python side: every RFC 9162 proof vector, and checkpoints, cosignatures and
entries that node.log.notes signs and the API serves — each also tampered with."""

from __future__ import annotations

import base64
import copy
import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from node.log import notes
from node.store import Store
from tests.audit.helpers import HUZHOU, audit_setting, log_signer, witness_signer

HERE = pathlib.Path(__file__).parent
VERIFY_JS = HERE.parents[1] / "node" / "audit" / "static" / "verify.js"
VECTORS = HERE.parents[2] / "shared" / "vectors" / "rfc9162"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js (the Debian package nodejs)")


def run_page_checks(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(HERE / "verify_vectors.mjs"), VERIFY_JS.as_uri()],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(cases)
    return results


def test_rfc9162_vectors() -> None:
    paths = sorted(VECTORS.rglob("*.json"))
    assert len(paths) == 196, f"expected the 196 RFC 9162 vector files under {VECTORS}"
    cases = [
        {**json.loads(p.read_text()), "kind": p.relative_to(VECTORS).parts[0], "path": str(p)}
        for p in paths
    ]
    wrong = [
        (case["path"], result)
        for case, result in zip(cases, run_page_checks(cases), strict=True)
        if result["ok"] == case["wantErr"] or (not result["ok"] and not result["verifyError"])
    ]
    assert wrong == []


def _checkpoint_cases() -> list[tuple[str, dict[str, Any], bool]]:
    signer, witness = log_signer(), witness_signer()
    body = notes.Checkpoint(signer.name, 12, bytes(range(32))).to_body()
    signed = notes.sign_note(body, [signer])
    cosigned = notes.add_signature_lines(
        signed, [notes.cosign_checkpoint(body, witness, 1_770_000_000)]
    )
    stranger = notes.NoteSigner(
        signer.name, ed25519.Ed25519PrivateKey.from_private_bytes(b"S" * 32)
    )
    other_origin = notes.NoteSigner(
        notes.log_origin("cn-330400"), ed25519.Ed25519PrivateKey.from_private_bytes(b"L" * 32)
    )
    keys = {"log_key": signer.verifier_key_text(), "witness_keys": [witness.verifier_key_text()]}
    broken_cosignature = cosigned[:-6] + (
        "AAAA==\n" if not cosigned.endswith("AAAA==\n") else "BBBB==\n"
    )
    return [
        ("signed and cosigned", {"note": cosigned, **keys}, True),
        ("signed, not cosigned", {"note": signed, **keys}, True),
        ("size changed", {"note": cosigned.replace("\n12\n", "\n13\n", 1), **keys}, False),
        ("another log key", {"note": notes.sign_note(body, [stranger]), **keys}, False),
        (
            "origin is not the log",
            {
                "note": notes.sign_note(body, [other_origin]),
                **keys,
                "log_key": other_origin.verifier_key_text(),
            },
            False,
        ),
        ("cosignature broken", {"note": broken_cosignature, **keys}, False),
    ]


def test_checkpoints_and_cosignatures() -> None:
    cases = _checkpoint_cases()
    results = run_page_checks([{"kind": "checkpoint", **case} for _, case, _ in cases])
    assert {name: r["ok"] for (name, _, _), r in zip(cases, results, strict=True)} == {
        name: ok for name, _, ok in cases
    }
    first, second = results[0]["value"], results[1]["value"]
    assert first["size"] == 12
    assert first["witnesses"] == [
        {"name": witness_signer().name, "cosigned": True, "timestamp": 1_770_000_000}
    ]
    assert second["witnesses"][0]["cosigned"] is False


async def test_entries_as_the_api_serves_them(sqlite_url: str, tmp_path: pathlib.Path) -> None:
    with Store.open(sqlite_url) as store:
        async with audit_setting(store, tmp_path, 30) as audit:
            _, whole = await audit.get("api/entries/17", "personal")
            _, person = await audit.get("api/entries/4", "operator")  # bytes withheld
    keys = {
        "log_key": log_signer().verifier_key_text(),
        "witness_keys": [witness_signer().verifier_key_text()],
    }
    other_bytes = copy.deepcopy(whole)
    data = bytearray(base64.b64decode(whole["data"]))
    data[-1] ^= 1
    other_bytes["data"] = base64.b64encode(bytes(data)).decode()
    other_proof = copy.deepcopy(whole)
    other_proof["proof"]["hashes"][0] = base64.b64encode(bytes(32)).decode()
    other_index = copy.deepcopy(whole)
    other_index["proof"]["index"] = 16
    cases = [
        ("entry", whole, True),
        ("person's entry", person, True),
        ("bytes changed", other_bytes, False),
        ("proof changed", other_proof, False),
        ("index changed", other_index, False),
    ]
    results = run_page_checks([{"kind": "entry", "detail": d, **keys} for _, d, _ in cases])
    assert {name: r["ok"] for (name, _, _), r in zip(cases, results, strict=True)} == {
        name: ok for name, _, ok in cases
    }
    assert results[0]["value"] == {"fromBytes": True}
    assert results[1]["value"] == {"fromBytes": False}
    assert HUZHOU in whole["checkpoint"]
