"""issue 14 §8: a scriptable `creditnode` — one exit status per query outcome, JSON errors with
--json, peers and zones by their Chinese names, a warning for a name that is not the division's,
and `log verify` that takes $CREDITNODE_HOME and learns witness keys from the trust lists and
NodeInfo. Real nodes on loopback with mutual TLS; the CLI in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from collections.abc import AsyncIterator, Mapping

import pytest
from click.testing import CliRunner

from devtools.federation import Federation, build, run_cli
from node.cli import main
from node.home import NodeHome
from node.runtime import NodeRuntime
from tests.federation_helpers import HANGZHOU, HUZHOU, JIAXING, company, started

UNKNOWN_USCC = "91350100M000100Y43"  # valid check character, in nobody's store


async def creditnode(*args: object, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """The real CLI in a child process: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", *map(str, args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def nodes(tmp_path: pathlib.Path) -> AsyncIterator[tuple[Federation, dict[str, NodeRuntime]]]:
    """Huzhou and Jiaxing in hjjw (Jiaxing witnesses Huzhou), and Hangzhou — also named 湖州
    here — with both in hz-metro, so that 湖州 names one node in hjjw and two in hz-metro."""
    fed = build(
        tmp_path, {HUZHOU: "湖州", JIAXING: "嘉兴", HANGZHOU: "湖州"},
        {"hjjw": (HUZHOU, JIAXING), "hz-metro": (HANGZHOU, HUZHOU, JIAXING)},
        subjects=30, witnesses={HUZHOU: [JIAXING]},
    )  # fmt: skip
    running = {n: NodeRuntime(NodeHome(fed.home(n))) for n in (HUZHOU, JIAXING)}
    async with started(running):
        yield fed, running


async def _query(fed: Federation, *args: object) -> tuple[int, str, str]:
    return await creditnode("query", "--home", fed.home(JIAXING), *args)


async def test_query_exit_status_names_the_outcome(
    nodes: tuple[Federation, dict[str, NodeRuntime]],
) -> None:
    fed, running = nodes
    subject = company(fed).id
    ask = ("--peer", HUZHOU, "--zone", "hjjw", "--subject", subject)
    cases = [
        ((*ask, "--purpose", "xinyi-dai"), 0, "GRANTED"),
        ((*ask, "--purpose", "joint-sanction"), 3, "REFUSED"),
        ((*ask[:4], "--subject", UNKNOWN_USCC, "--purpose", "xinyi-dai"), 4, "NOT_FOUND"),
        (("--peer", HUZHOU, "--zone", "hjjw", "--purpose", "xinyi-dai"), 2, "error: Missing"),
    ]
    for args, status, shown in cases:
        code, out, err = await _query(fed, *args)
        assert code == status, (args, out, err)
        assert shown in out + err
        assert "Traceback" not in out + err

    # REJECTED: Huzhou signs with a key its coordinator has not published yet.
    await running[HUZHOU].stop()
    run_cli("keys", "rotate", "--home", fed.home(HUZHOU))
    running[HUZHOU] = NodeRuntime(NodeHome(fed.home(HUZHOU)))
    await running[HUZHOU].start()
    code, out, _ = await _query(fed, *ask, "--purpose", "xinyi-dai", "--json")
    assert code == 5 and json.loads(out)["reason"].startswith("answer rejected: UNTRUSTED_KEY")

    # FAILED: nobody answers at Huzhou's endpoint.
    await running[HUZHOU].stop()
    code, out, _ = await _query(fed, *ask, "--purpose", "xinyi-dai", "--json")
    assert code == 1 and json.loads(out)["decision"] == "FAILED"


async def test_peer_and_zone_by_their_chinese_names(
    nodes: tuple[Federation, dict[str, NodeRuntime]],
) -> None:
    fed, _ = nodes
    subject = company(fed).id
    code, out, err = await _query(
        fed, "--peer", "湖州", "--zone", "湖嘉金温", "--purpose", "xinyi-dai", "--subject", subject
    )
    assert code == 0, out + err
    assert out.startswith("GRANTED") and "in hjjw for xinyi-dai" in out

    # In hz-metro (杭州都市圈), 湖州 names two members: refused, both ids named, nothing asked.
    code, out, err = await _query(
        fed,
        "--peer",
        "湖州",
        "--zone",
        "杭州都市圈",
        "--purpose",
        "xinyi-dai",
        "--subject",
        subject,
    )
    assert code == 2 and out == ""
    assert f"'湖州' is ambiguous: it names nodes {HANGZHOU}, {HUZHOU}" in err
    assert err.count("\n") == 1 and err.startswith("error: ")

    code, out, err = await _query(
        fed, "--peer", HUZHOU, "--zone", "长三角" * 40, "--purpose", "xinyi-dai", "--subject",
        subject, "--json",
    )  # fmt: skip
    assert code == 2 and err == ""
    error = json.loads(out)["error"]
    assert error["status"] == "USAGE" and error["exit_code"] == 2
    assert "is neither a zone id nor the name of one" in error["message"]
    assert "hjjw 湖嘉金温" in error["message"]
    assert "长三角" * 14 not in error["message"]  # the caller's text is quoted cut short


async def test_local_errors_are_json_with_json(tmp_path: pathlib.Path) -> None:
    """No node.toml in the home: the CONFIG status and a JSON object on stdout, nothing else."""
    code, out, err = await creditnode(
        "query", "--home", tmp_path, "--peer", HUZHOU, "--zone", "hjjw", "--purpose",
        "xinyi-dai", "--subject", UNKNOWN_USCC, "--json",
    )  # fmt: skip
    assert (code, err) == (6, "")
    assert json.loads(out) == {
        "error": {
            "status": "CONFIG",
            "exit_code": 6,
            "reason": "CONFIG_ERROR",
            "message": f"no node.toml in {tmp_path}: run `creditnode init` there, or pass "
            "--home (or set CREDITNODE_HOME) to the node's home",
        }
    }
    code, out, err = await creditnode("query", "--home", tmp_path, "--peer", HUZHOU)
    assert code == 2 and out == "" and err.startswith("error: Missing option")
    assert "(see 'creditnode query --help')" in err


def test_help_documents_the_exit_statuses() -> None:
    text = CliRunner().invoke(main, ["--help"]).output
    for line in ("0 OK", "1 FAILED", "2 USAGE", "3 REFUSED", "4 NOT_FOUND", "5 REJECTED"):
        assert line in " ".join(text.split()), line


@pytest.mark.parametrize(
    ("name", "warned"),
    [("湖州", False), ("湖州市", False), ("嘉兴", True), ("Huzhou", True)],
)
def test_init_warns_when_the_name_is_not_the_divisions(
    tmp_path: pathlib.Path, name: str, warned: bool
) -> None:
    result = CliRunner().invoke(
        main, ["init", "--node-id", HUZHOU, "--name", name, "--home", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    warning = f"warning: --name {name!r} is not the name of division 330500 (湖州市)"
    assert (warning in result.stderr) is warned
    assert (tmp_path / "node.toml").is_file()  # a warning, not a refusal


async def test_log_verify_takes_the_home_from_the_environment_and_learns_witness_keys(
    nodes: tuple[Federation, dict[str, NodeRuntime]],
) -> None:
    """Huzhou's log, cosigned by Jiaxing: the witness key comes from the hjjw list; from a
    list without it (signed before Member 10), from Jiaxing's NodeInfo; with Jiaxing down and
    no list naming its key, the cosignatures are named as unchecked."""
    fed, running = nodes
    for i in range(3):
        await running[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, i))
    await running[HUZHOU].witnessing.flush()
    env = {"CREDITNODE_HOME": str(fed.home(HUZHOU))}

    code, out, err = await creditnode("log", "verify", env=env)
    assert code == 0, out + err
    assert "cosignatures verified; witness keys: cn-330400 (trust list)" in out
    assert " 0 cosignatures" not in out

    # Lists without witness keys, as an older coordinator signs them, installed at Huzhou.
    for zone in ("hjjw", "hz-metro"):
        draft_path = fed.coordinator_dir() / f"{zone}.draft.json"
        draft = json.loads(draft_path.read_text())
        for member in draft["members"]:
            member.pop("witness_verifier_key")
        draft_path.write_text(json.dumps(draft))
        old_style = fed.sign_zone(zone, "without-witness-keys")
        run_cli("zone", "install", "--zone", zone, old_style, "--home", fed.home(HUZHOU))
    code, out, err = await creditnode("log", "verify", env=env)
    assert code == 0, out + err
    assert "cosignatures verified; witness keys: cn-330400 (NodeInfo)" in out

    await running[JIAXING].stop()
    code, out, err = await creditnode("log", "verify", env=env)
    assert code == 0, out + err
    assert " 0 cosignatures verified" in out
    assert "not checked, key unknown: creditx/cn-330400/witness" in out
