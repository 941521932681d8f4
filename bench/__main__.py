"""`python -m bench` (`make bench`): run every `bench/*_bench.py` module's main(), in name order."""

from __future__ import annotations

import importlib
import pathlib


def main() -> None:
    for path in sorted(pathlib.Path(__file__).parent.glob("*_bench.py")):
        print(f"== bench.{path.stem}", flush=True)
        importlib.import_module(f"bench.{path.stem}").main()
        print(flush=True)


if __name__ == "__main__":
    main()
