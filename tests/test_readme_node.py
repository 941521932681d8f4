"""issue 14, must show: README's "Running a node" block, run line by line in one bash as it
stands, on a second address (127.0.0.2), against a coordinator and a peer (Jiaxing, on
127.0.0.3) with real mutual TLS and hostname checks. Then what that node shows an operator:
`status --json` as docs/status.md documents it, and the peer's admin port (`/metrics` only,
`/healthz`, `/readyz`), its JSON exchange lines and its log-batch histogram, which its answer
worker fills (issue 14 §7).

Substituted, and nothing else: the paths and ports the block names (a temporary home, free
ports, 127.0.0.2 for its 10.1.2.3) and the subject (one Jiaxing holds). `make install` is not
run: this interpreter is the install, reached through `.venv/bin/creditnode` as the block's
PATH line expects."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.federation import run_cli
from devtools.ports import free_port
from node.home import NodeHome
from node.serving_config import example_zones_toml
from tests.federation_helpers import HUZHOU, JIAXING

ROOT = pathlib.Path(__file__).resolve().parents[1]
HZ_ADDR, JX_ADDR = "127.0.0.2", "127.0.0.3"


def readme_block() -> list[str]:
    """The first sh block of README's "Running a node", as lines (comments and all)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Running a node") :]
    block = section[section.index("```sh\n") + 6 :]
    return [line for line in block[: block.index("```")].splitlines() if line.strip()]


def http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Shell:
    """One bash fed a line at a time; each line's exit status is read back before the next."""

    def __init__(self, cwd: pathlib.Path, env: dict[str, str], log: pathlib.Path) -> None:
        self._marks = cwd / ".marks"
        self._marks.mkdir()
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            ["bash"], stdin=subprocess.PIPE, stdout=self._out, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, text=True,
        )  # fmt: skip
        self._n = 0

    def run(self, line: str, timeout: float = 90) -> int:
        self._n += 1
        mark = self._marks / str(self._n)
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\necho $? > {mark}\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not (mark.exists() and mark.read_text().endswith("\n")):
            assert self.proc.poll() is None and time.monotonic() < deadline, line
            time.sleep(0.05)
        return int(mark.read_text())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self._out.close()


@pytest.fixture
def jiaxing(tmp_path: pathlib.Path) -> Iterator[dict[str, object]]:
    """The peer, at 127.0.0.3, with its data and the zone's coordinator beside it; serving
    once the block's node is on the zone's list (`start`)."""
    home = tmp_path / "jiaxing"
    run_cli("init", "--node-id", JIAXING, "--name", "嘉兴", "--host", JX_ADDR, "--home", home)
    with NodeHome(home).config_file.open("a", encoding="utf-8") as f:
        f.write("\n" + example_zones_toml())
    export = tmp_path / "jx.csv"
    run_cli("gen-data", "--city", JIAXING, "--subjects", 12, "--out", export)
    run_cli("ingest", "--format", "huzhou-csv", export, "--home", home)
    with export.open(encoding="utf-8") as f:
        subject = next(r["TYSHXYDM"] for r in csv.DictReader(f) if r["ZTLX"] == "企业")
    state: dict[str, object] = {
        "home": home,
        "port": free_port(JX_ADDR),
        "admin": free_port("127.0.0.1"),
        "subject": subject,
        "log": tmp_path / "jiaxing.log",
    }
    yield state
    proc = state.get("proc")
    if isinstance(proc, subprocess.Popen):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def start_jiaxing(state: dict[str, object], env: dict[str, str]) -> None:
    with pathlib.Path(str(state["log"])).open("w") as log:  # the child keeps its own copy
        state["proc"] = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "serve", "--home", str(state["home"]),
             "--listen", f"{JX_ADDR}:{state['port']}",
             "--metrics-listen", f"127.0.0.1:{state['admin']}", "--log-format", "json"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def coordinate(
    root: pathlib.Path, hz_home: pathlib.Path, hz_port: int, jx: dict[str, object]
) -> None:
    """The coordinator's side (README "Joining a zone"): hjjw with both members, signed; its
    public key and list handed to Huzhou's operator (into the home, where the block reads
    them), and installed at Jiaxing."""
    coord = root / "coord"
    run_cli("zone", "init", "--zone", "hjjw", "--dir", coord)
    jx_identity = root / "jiaxing.json"
    jx_identity.write_text(run_cli("identity", "export", "--home", jx["home"]), encoding="utf-8")
    for identity, endpoint in (
        (hz_home / "huzhou.json", f"{HZ_ADDR}:{hz_port}"),
        (jx_identity, f"{JX_ADDR}:{jx['port']}"),
    ):
        run_cli("zone", "add-member", "--zone", "hjjw", "--identity", identity,
                "--endpoint", endpoint, "--dir", coord)  # fmt: skip
    signed = hz_home / "hjjw.trustlist.json"
    run_cli("zone", "sign", "--zone", "hjjw", "--dir", coord, "--out", signed)
    shutil.copy(coord / "hjjw.coordinator.pub.pem", hz_home)
    run_cli("zone", "pin", "--zone", "hjjw", "--coordinator-key",
            coord / "hjjw.coordinator.pub.pem", "--home", jx["home"])  # fmt: skip
    run_cli("zone", "install", "--zone", "hjjw", signed, "--home", jx["home"])


def test_the_readme_runs_a_node_on_a_second_address(
    tmp_path: pathlib.Path, jiaxing: dict[str, object]
) -> None:
    assert shutil.which("curl"), "the README's readiness loop needs curl"
    lines = readme_block()
    assert lines[0].startswith("make install"), lines[0]
    clone = tmp_path / "clone"  # where `export PATH="$PWD/.venv/bin:$PATH"` looks
    (clone / ".venv" / "bin").mkdir(parents=True)
    wrapper = clone / ".venv" / "bin" / "creditnode"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m node.cli "$@"\n')
    wrapper.chmod(0o755)
    home = tmp_path / "srv" / "creditnode"
    hz_port, hz_admin = free_port(HZ_ADDR), free_port("127.0.0.1")
    substitutions = {
        "/srv/creditnode": str(home),
        "10.1.2.3:7443": f"{HZ_ADDR}:{hz_port}",
        "10.1.2.3": HZ_ADDR,
        "127.0.0.1:9464": f"127.0.0.1:{hz_admin}",
        "91330400MA2B8FN3XK": str(jiaxing["subject"]),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITNODE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    shell = Shell(clone, env, tmp_path / "shell.log")
    try:
        for line in lines[1:]:
            if line.lstrip().startswith("#"):
                continue
            for old, new in substitutions.items():
                line = line.replace(old, new)
            if "creditnode ingest" in line:  # the local platform's export, handed over
                run_cli("gen-data", "--city", HUZHOU, "--subjects", 5, "--out", home / "export.csv")
            if "zone pin" in line:  # the coordinator answers the identity sent to it
                coordinate(tmp_path, home, hz_port, jiaxing)
                start_jiaxing(jiaxing, env)
            if "creditnode query" in line:  # the peer is up before it is asked
                wait_ready(int(str(jiaxing["admin"])))
            status = shell.run(line)
            log = (tmp_path / "shell.log").read_text(encoding="utf-8", errors="replace")
            assert status == 0, f"{line}\n{log[-3000:]}"
        out = (tmp_path / "shell.log").read_text(encoding="utf-8")
        assert "GRANTED (signature, binding and log receipt verified)" in out
        assert f"store: SQLite file {home}/data/node.db" in out
        assert f"gRPC, mutual TLS: {HZ_ADDR}:{hz_port}" in out
        assert f"admin: http://127.0.0.1:{hz_admin}/metrics" in out
        doc = status_json(home)
        check_status(doc, hz_port)
        check_documented(doc)
        check_peer_admin(jiaxing)
    finally:
        lock = home / "data" / "serve.lock"
        pid = lock.read_text().strip() if lock.exists() else ""
        if pid.isdigit():
            os.kill(int(pid), signal.SIGTERM)
        shell.close()


def wait_ready(admin: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while http(f"http://127.0.0.1:{admin}/readyz")[0] != 200:
        assert time.monotonic() < deadline, "the peer did not get ready"
        time.sleep(0.2)


def status_json(home: pathlib.Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "status", "--json", "--home", str(home)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def check_status(doc: dict[str, Any], hz_port: int) -> None:
    assert doc["node_id"] == HUZHOU and doc["serving"]["running"] is True
    assert isinstance(doc["serving"]["pid"], int) and doc["serving"]["pid"] > 0
    assert doc["store"]["ok"] is True
    zones = {z["zone"]: z for z in doc["zones"]}
    assert set(zones) == {"hjjw", "hyzt", "hz-metro", "yrd"}  # `policy example`'s, served
    assert all(z["served"] and z["trust_list"] is None for n, z in zones.items() if n != "hjjw")
    zone = zones["hjjw"]
    held = zone["trust_list"]
    assert held["version"] == 1 and held["in_force"] is True and held["members"] == 2
    assert held["lists_this_node"] is True and held["expires_in_s"] > 0
    [peer] = doc["peers"]
    assert peer["node_id"] == JIAXING and peer["reachable"] == "accepted"
    assert peer["zones"] == ["hjjw"] and peer["endpoint"].startswith(JX_ADDR)
    log = doc["log"]
    assert log["size"] == 1 and log["checkpoint"]["size"] == 1


def _shape(value: object) -> Any:
    """A document's keys, recursively (a list by its first element)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def check_documented(doc: dict[str, Any]) -> None:
    """docs/status.md's example has exactly the keys `status --json` prints."""
    text = (ROOT / "docs" / "status.md").read_text(encoding="utf-8")
    example = json.loads(
        text[text.index("```json\n") + 8 : text.index("\n```", text.index("```json"))]
    )
    shown, real = _shape(example), _shape(doc)
    assert isinstance(shown, dict) and isinstance(real, dict)
    assert shown.keys() == real.keys()
    for key in ("serving", "store", "zones", "peers", "log"):
        assert shown[key] == real[key], key
    assert shown["witnesses"].keys() == real["witnesses"].keys()  # no witness here: its keys


def check_peer_admin(jx: dict[str, object]) -> None:
    """The peer's admin port after answering once; its exchange line."""
    base = f"http://127.0.0.1:{jx['admin']}"
    status, body = http(f"{base}/metrics")
    metrics = body.decode()
    assert status == 200 and 'creditnode_build_info{python="' in metrics
    batches = re.search(r"^creditnode_log_batch_entries_count (\S+)$", metrics, re.M)
    assert batches and float(batches.group(1)) >= 1, "the worker's batches reach /metrics"
    assert http(f"{base}/healthz")[0] == 200
    ready_status, ready = http(f"{base}/readyz")
    checks = {c["name"]: c["ok"] for c in json.loads(ready)["checks"]}
    assert ready_status == 200 and checks == dict.fromkeys(
        ("store", "keys", "trust_lists", "sequencer", "witnesses"), True
    )
    for other in ("/", "/metrics/x", "/favicon.ico"):
        assert http(base + other)[0] == 404, other
    rules = (ROOT / "docs" / "alerts.rules.yml").read_text(encoding="utf-8")
    for name in set(re.findall(r"\bcreditnode_[a-z_]+", rules)):
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f"# TYPE {family} " in metrics or f"# TYPE {name} " in metrics, name
    lines = [
        json.loads(line)
        for line in pathlib.Path(str(jx["log"])).read_text(encoding="utf-8").splitlines()
        if line.startswith("{")
    ]
    [exchange] = [line for line in lines if line.get("event") == "exchange"]
    assert {k: exchange[k] for k in ("direction", "caller", "zone", "purpose", "decision")} == {
        "direction": "ANSWERED",
        "caller": HUZHOU,
        "zone": "hjjw",
        "purpose": "xinyi-dai",
        "decision": "GRANTED",
    }
    assert exchange["process"] == "worker" and isinstance(exchange["log_index"], int)
    assert str(jx["subject"]) not in json.dumps(lines, ensure_ascii=False)
