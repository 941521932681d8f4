"""issue 14 §9: docs/deploy.md's recipe. Its backup and restore blocks, run as they stand
against a real PostgreSQL server, bring a home back on a new path whose log verifies; the
container image and the systemd unit are checked for what can be checked without Docker or
systemd here (the lock installed with hashes, a non-root user, ExecReload by SIGHUP)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import psycopg

from devtools.federation import build
from node import model
from node.home import NodeHome
from node.runtime import NodeRuntime
from tests.federation_helpers import HUZHOU, JIAXING, company, started
from tests.pg import SERVER_USER, PostgresServer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def deploy_block(heading: str, index: int = 0) -> list[str]:
    """The `index`th sh block after `heading` in docs/deploy.md, as its command lines."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    rest = text[text.index(heading) :]
    for _ in range(index + 1):
        rest = rest[rest.index("```sh\n") + 6 :]
    return [line for line in rest[: rest.index("```")].splitlines() if line.strip()]


def run_block(lines: list[str], subs: dict[str, str], env: dict[str, str]) -> str:
    script = "set -e\n" + "\n".join(lines)
    for old, new in subs.items():
        script = script.replace(old, new)
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


async def test_a_backup_restores_into_a_new_home_whose_log_verifies(
    tmp_path: pathlib.Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    fed = build(
        tmp_path / "fed", {HUZHOU: "湖州", JIAXING: "嘉兴"}, {"hjjw": (HUZHOU, JIAXING)}, subjects=8
    )
    jx = NodeHome(fed.home(JIAXING))  # on PostgreSQL: its log is what the backup carries
    jx.write_config(dataclasses.replace(jx.load_config(), db_url=postgres_url))
    nodes = {n: NodeRuntime(NodeHome(fed.home(n))) for n in fed.ports}
    async with started(nodes):
        for i in range(3):
            outcome = await nodes[JIAXING].ask(HUZHOU, "hjjw", "xinyi-dai", company(fed, i))
            assert outcome.decision is model.Decision.GRANTED
        size = nodes[JIAXING].sequencer.tree.size

    database = postgres_url.rsplit("/", 1)[1]
    server = f"--host=127.0.0.1 --port={postgres_server.port} --username={SERVER_USER}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "creditnode").write_text(f'#!/bin/sh\nexec {sys.executable} -m node.cli "$@"\n')
    (bin_dir / "creditnode").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITNODE_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    backup = tmp_path / "backup"
    backup.mkdir()
    subs = {
        "/backup": str(backup),
        "--host=db.huzhou.example --port=5432 --username=creditnode": server,
        "--role=creditnode": f"--role={SERVER_USER}",
        "--dbname=creditnode": f"--dbname={database}",
    }
    run_block(deploy_block("## Backup and restore"), {"/srv/creditnode": str(jx.path), **subs}, env)
    # The database is lost with the host; an empty one of the same name takes its place.
    with psycopg.connect(
        host="127.0.0.1", port=postgres_server.port, user=SERVER_USER, autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    restored = tmp_path / "new-host" / "creditnode"
    out = run_block(
        deploy_block("## Backup and restore", 1), {"/srv/creditnode": str(restored), **subs}, env
    )
    assert f"OK: {size} entries, " in out, out  # `log verify` on the restored home
    assert (restored / "keys").stat().st_mode & 0o077 == 0  # still private after the restore


def test_the_image_installs_the_lock_with_hashes_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    runs = [line.split(None, 1)[1] for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert any(
        "pip install --require-hashes" in run and "-r requirements.lock" in run for run in runs
    ), "the runtime set comes from the lock, hash-checked"
    assert any("pip install --no-deps ." in run for run in runs), "the package adds nothing"
    assert "COPY requirements.lock" in dockerfile
    [user] = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user.split(":")[0] not in ("0", "root")
    # Every pin in the lock is exact and hashed, as --require-hashes demands of each line.
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2].strip())
    assert len(pins) > 10
    for pin in pins:
        assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[^ ]+", pin) and "--hash=sha256:" in pin, pin


def test_the_systemd_unit_reloads_by_sighup() -> None:
    unit = (ROOT / "docs" / "deploy" / "creditnode.service").read_text(encoding="utf-8")
    keys = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#")
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert keys["ExecStart"].split()[1:2] == ["serve"] and keys["User"] != "root"
