"""The benches that others run by hand still run: each at a tiny size, in its own process.
Nothing here times anything (speed is measured in bench/); a bench that breaks with a change
of the code it measures (a record gaining a column) fails here instead of on the next person
who runs it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench(module: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.volume
def test_the_greenloan_bench_runs() -> None:
    out = _bench("greenloan_bench", "--changes", "1000", "--repeats", "1", "--live", "3")
    assert "feed/baseline speed ratio" in out and "commit -> following job, 3 changes" in out


@pytest.mark.volume
def test_the_penalty_ingest_bench_runs() -> None:
    out = _bench(
        "penalty_ingest_bench", env={"PENALTY_BENCH_ROWS": "500", "PENALTY_BENCH_RUNS": "1"}
    )
    assert "      500 " in out, out
