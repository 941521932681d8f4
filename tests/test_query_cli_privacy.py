"""`creditnode query` about a natural person, against a real peer (issue 9 §6): the resident id
is masked in its text and JSON output unless --show-personal is given and node.toml's
`[privacy] operator_may_show_personal` allows it."""

from __future__ import annotations

import asyncio
import csv
import json
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest

from devtools.federation import Federation, build
from node.home import NodeHome
from node.identifiers import mask_resident_id
from node.runtime import NodeRuntime

HUZHOU, HANGZHOU = "cn-330500", "cn-330100"
ZONE = "hz-metro"


@pytest.fixture
async def huzhou_serving(tmp_path: pathlib.Path) -> AsyncIterator[tuple[Federation, str]]:
    """Huzhou serving hz-metro, Hangzhou able to ask it, and one of Huzhou's residents."""
    fed = build(
        tmp_path, {HUZHOU: "湖州", HANGZHOU: "杭州"}, {ZONE: (HANGZHOU, HUZHOU)}, subjects=60
    )
    with (fed.root / f"{HUZHOU}-export.csv").open(encoding="utf-8") as f:
        person = next(row["TYSHXYDM"] for row in csv.DictReader(f) if row["ZTLX"] == "自然人")
    runtime = NodeRuntime(NodeHome(fed.home(HUZHOU)))
    await runtime.start()
    try:
        yield fed, person
    finally:
        await runtime.stop()


async def _query(fed: Federation, person: str, purpose: str, *extra: str) -> tuple[int, str]:
    """Hangzhou's `creditnode query` in a child process (this loop keeps Huzhou serving)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", "query", "--home", str(fed.home(HANGZHOU)),
        "--peer", HUZHOU, "--zone", ZONE, "--purpose", purpose, "--subject", person,
        "--resident-id", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


def _allow_show_personal(fed: Federation) -> None:
    with NodeHome(fed.home(HANGZHOU)).config_file.open("a", encoding="utf-8") as f:
        f.write("\n[privacy]\noperator_may_show_personal = true\n")


async def test_query_masks_a_resident_id_unless_shown_and_allowed(
    huzhou_serving: tuple[Federation, str],
) -> None:
    """issue 9 §6: `creditnode query` prints a person as 330522********1234 (text, JSON, a
    refusal); --show-personal is refused until node.toml allows it, and then shows the id."""
    fed, person = huzhou_serving
    masked = mask_resident_id(person)

    code, out = await _query(fed, person, "xinyi-xing")
    assert code == 0, out
    assert out.startswith(f"GRANTED (signature, binding and log receipt verified): {masked} ")
    assert person not in out

    code, out = await _query(fed, person, "xinyi-xing", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["subject"] == masked and doc["decision"] == "GRANTED"
    assert doc["envelope"] is None  # its payload holds the id in clear
    assert person not in out

    code, out = await _query(fed, person, "xinyi-dai")  # persons are not asked about for loans
    assert code == 3  # REFUSED (issue 14 §8)
    assert out.startswith(f"REFUSED: {masked} ")
    assert person not in out

    code, out = await _query(fed, person, "xinyi-xing", "--show-personal")
    assert code == 1
    assert "--show-personal is not allowed on this node" in out
    assert "[privacy]" in out and "operator_may_show_personal" in out
    assert person not in out and "GRANTED" not in out  # refused before asking

    _allow_show_personal(fed)
    code, out = await _query(fed, person, "xinyi-xing", "--show-personal", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["subject"] == person
    assert doc["envelope"]["payload"]
    code, out = await _query(fed, person, "xinyi-xing", "--show-personal")
    assert code == 0, out
    assert f": {person} in {ZONE} " in out
