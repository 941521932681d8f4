"""Small helpers for tests that need a real node home."""

from __future__ import annotations

import pathlib

from devtools.federation import run_cli


def init_home(root: pathlib.Path, node_id: str, name: str) -> pathlib.Path:
    home = root / node_id
    run_cli("init", "--node-id", node_id, "--name", name, "--home", home)
    return home
