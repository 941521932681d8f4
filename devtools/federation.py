"""Set up a federation of node homes on one machine (demo and tests): each node initialised,
given the example zone policy, a loopback port and synthetic data; each zone's coordinator key
created, its trust list signed, pinned and installed on every member.

Everything goes through the same `creditnode` commands an operator and a zone coordinator run.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence

from click.testing import CliRunner

from devtools.ports import free_port
from node.cli import main as cli
from node.home import NodeHome
from node.serving_config import example_zones_toml

# The first deployment's cities and who is in which zone (DESIGN.md §1), for the demo.
CITIES: Mapping[str, str] = {
    "cn-330500": "湖州",
    "cn-330400": "嘉兴",
    "cn-330100": "杭州",
    "cn-330200": "宁波",
    "cn-310000": "上海",
}
ZONES: Mapping[str, Sequence[str]] = {
    "yrd": ("cn-310000", "cn-330100", "cn-330500"),
    "hz-metro": ("cn-330100", "cn-330500", "cn-330400"),
    "hjjw": ("cn-330500", "cn-330400"),
    "hyzt": ("cn-330500", "cn-330200"),
}


def run_cli(*args: object) -> str:
    """Run one creditnode command in-process; raise with its output when it fails."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"creditnode {' '.join(map(str, args))} failed:\n{result.output}")
    return str(result.output)


@dataclasses.dataclass
class Federation:
    root: pathlib.Path
    ports: dict[str, int]

    def home(self, node_id: str) -> pathlib.Path:
        return self.root / node_id

    def endpoint(self, node_id: str) -> str:
        return f"127.0.0.1:{self.ports[node_id]}"

    def coordinator_dir(self) -> pathlib.Path:
        return self.root / "coordinators"

    def sign_zone(self, zone: str, version_name: str = "current") -> pathlib.Path:
        out = self.coordinator_dir() / f"{zone}.{version_name}.trustlist.json"
        run_cli("zone", "sign", "--zone", zone, "--out", out, "--dir", self.coordinator_dir())
        return out

    def install(self, zone: str, trust_list: pathlib.Path, members: Sequence[str]) -> None:
        for node_id in members:
            run_cli("zone", "install", "--zone", zone, trust_list, "--home", self.home(node_id))


def build(
    root: pathlib.Path,
    cities: Mapping[str, str] = CITIES,
    zones: Mapping[str, Sequence[str]] = ZONES,
    *,
    subjects: int = 300,
    seed: int = 7,
    witnesses: Mapping[str, Sequence[str]] | None = None,
    roles: Mapping[str, str] | None = None,
) -> Federation:
    """Create every home under `root` and every zone's signed trust list. `roles`: a member's
    roles on every list, comma-separated, when not "node"; a member with roles of its own
    (e.g. the Green Loan Link's `green-loan-sync`) gets no data of its own."""
    roles = roles or {}
    fed = Federation(root, {node_id: free_port() for node_id in cities})
    policy = example_zones_toml()
    for node_id, name in cities.items():
        home = fed.home(node_id)
        run_cli("init", "--node-id", node_id, "--name", name, "--home", home)
        node_home = NodeHome(home)
        config = node_home.load_config()
        node_home.write_config(dataclasses.replace(config, listen=fed.endpoint(node_id)))
        with node_home.config_file.open("a", encoding="utf-8") as f:
            f.write("\n" + policy)
            peers = (witnesses or {}).get(node_id, ())
            if peers:
                f.write(f"\n[witness]\npeers = {list(peers)!r}\n".replace("'", '"'))
        if node_id not in roles:
            export = root / f"{node_id}-export.csv"
            run_cli(
                "gen-data",
                *("--city", node_id, "--subjects", subjects, "--seed", seed, "--out", export),
            )
            run_cli("ingest", "--format", "huzhou-csv", export, "--home", home)
        (root / f"{node_id}.identity.json").write_text(
            run_cli("identity", "export", "--home", home), encoding="utf-8"
        )
    coord = fed.coordinator_dir()
    for zone, members in zones.items():
        run_cli("zone", "init", "--zone", zone, "--dir", coord)
        for node_id in members:
            run_cli(
                "zone",
                "add-member",
                "--zone",
                zone,
                "--identity",
                root / f"{node_id}.identity.json",
                "--endpoint",
                fed.endpoint(node_id),
                "--roles",
                roles.get(node_id, "node"),
                "--dir",
                coord,
            )
        signed = fed.sign_zone(zone)
        for node_id in members:
            run_cli(
                "zone",
                "pin",
                "--zone",
                zone,
                "--coordinator-key",
                coord / f"{zone}.coordinator.pub.pem",
                "--home",
                fed.home(node_id),
            )
        fed.install(zone, signed, members)
    _add_witness_logs(fed, witnesses or {})
    return fed


def _add_witness_logs(fed: Federation, witnesses: Mapping[str, Sequence[str]]) -> None:
    """Each witness pins the log key of every node it witnesses ([witness.logs])."""
    logs: dict[str, dict[str, str]] = {}
    for logged, peers in witnesses.items():
        identity = json.loads((fed.root / f"{logged}.identity.json").read_text())
        for peer in peers:
            logs.setdefault(peer, {})[identity["log_origin"]] = identity["log_verifier_key"]
    for witness, known in logs.items():
        with NodeHome(fed.home(witness)).config_file.open("a", encoding="utf-8") as f:
            f.write("\n[witness.logs]\n")
            for origin, vkey in known.items():
                f.write(f'"{origin}" = "{vkey}"\n')
