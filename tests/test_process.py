"""node.process: how a serving process runs its event loop."""

from __future__ import annotations

import asyncio
import sys

import pytest

from node.process import run_serving_loop, serving_loop_name


async def running_loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_serve_runs_on_uvloop_where_it_is_installed() -> None:
    # uvloop is a dependency on this platform (pyproject.toml): `creditnode serve` and the
    # bench's bare baseline server both run on it.
    assert serving_loop_name() == "uvloop"
    assert run_serving_loop(running_loop_module()).startswith("uvloop")
