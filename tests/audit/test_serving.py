"""The auditor service as an operator runs it: `creditnode auditor add|list|remove`, node.toml's
`[auditor_web]`, and a serving node whose page names the witness keys its trust lists carry and
finds a peer's query by the subject it asked about."""

from __future__ import annotations

import json
import pathlib
import stat

import aiohttp
from click.testing import CliRunner

from devtools.federation import build
from node.audit import access
from node.audit_serving import start_configured
from node.cli import main
from node.home import NodeHome
from node.log import notes
from node.runtime import NodeRuntime
from tests.federation_helpers import HUZHOU, JIAXING, company


async def test_an_operator_adds_an_auditor_who_reads_the_serving_node(
    tmp_path: pathlib.Path,
) -> None:
    fed = build(
        tmp_path, {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)},
        subjects=5, witnesses={HUZHOU: [JIAXING]},
    )  # fmt: skip
    home = fed.home(HUZHOU)
    with (home / "node.toml").open("a", encoding="utf-8") as f:
        f.write('\n[auditor_web]\nenabled = true\nlisten = "127.0.0.1:0"\n')
    cli = CliRunner()
    added = cli.invoke(
        main, ["auditor", "add", "alice", "--zone", "hjjw", "--json", "--home", str(home)]
    )
    assert added.exit_code == 0, added.output
    token = json.loads(added.output)["token"]
    stored = (home / access.FILE_NAME).read_text()
    assert token not in stored and access.token_hash(token) in stored, "kept hashed only"
    assert stat.S_IMODE((home / access.FILE_NAME).stat().st_mode) == 0o600
    listed = cli.invoke(main, ["auditor", "list", "--json", "--home", str(home)])
    assert [(a["name"], a["role"], a["zones"]) for a in json.loads(listed.output)] == [
        ("alice", "auditor", ["hjjw"])
    ]
    bad = cli.invoke(main, ["auditor", "add", "Bob!", "--zone", "hjjw", "--home", str(home)])
    assert bad.exit_code != 0

    huzhou, jiaxing = (NodeRuntime(NodeHome(fed.home(n))) for n in (HUZHOU, JIAXING))
    await huzhou.start()
    await jiaxing.open_log()
    audit = None
    try:
        subject = company(fed)
        asked = await jiaxing.ask(HUZHOU, "hjjw", "xinyi-dai", subject)
        assert asked.decision.name == "GRANTED"
        audit = await start_configured(huzhou)
        assert audit is not None
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{audit.url}api/info") as r:
                info = await r.json()
            assert info["log_verifier_key"] == huzhou.keys.public_identity().log_verifier_key
            assert [w["name"] for w in info["witnesses"]] == [notes.witness_key_name(JIAXING)]
            async with session.get(f"{audit.url}api/entries", params={"subject": subject.id}) as r:
                found = (await r.json())["entries"]
            assert [(e["peer"], e["decision"]) for e in found] == [(JIAXING, "GRANTED")]
            removed = cli.invoke(main, ["auditor", "remove", "alice", "--home", str(home)])
            assert removed.exit_code == 0
            async with session.get(f"{audit.url}api/entries") as r:
                assert (r.status, (await r.json())["error"]["reason"]) == (401, "BAD_TOKEN")
    finally:
        if audit is not None:
            await audit.stop()
        await jiaxing.stop()
        await huzhou.stop()
