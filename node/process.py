"""How a long-running node process runs: its event loop (uvloop where installed) and its
garbage collector's settings once started (docs/adr/0005)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_serving_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a serving process's event loop to the end of `main`: uvloop's where it is
    installed, else asyncio's: gRPC's asyncio server costs less CPU per call on uvloop
    (docs/adr/0005)."""
    try:
        import uvloop
    except ImportError:  # not on this platform: asyncio's own loop serves as well
        return asyncio.run(main)
    return uvloop.run(main)


def serving_loop_name() -> str:
    """The event loop run_serving_loop runs on here."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)


def settle_gc() -> None:
    """For a long-running process once started (a server, a file import): what start-up
    loaded lives as long as the process, so keep the collector off it, and let the young
    generation grow, so collections stop pausing answers (docs/adr/0005) and walking the
    start-up heap once per few chunks of an import (docs/adr/0014)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
