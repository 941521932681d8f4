"""The import layering of `node/` (DESIGN.md §2): `python -m tests.layering` lists import
cycles, imports that go up a floor, and tables imported past their owner; it exits non-zero
when there is any.

Each module's floor is below (FLOORS); a module not listed is reported, so that a new one is
placed on purpose. Imports under `if TYPE_CHECKING:` count too: a type is a dependency.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from collections.abc import Iterator, Mapping

ROOT = pathlib.Path(__file__).resolve().parents[1] / "node"

# DESIGN.md §2's floors, with this codebase's modules placed on them. A package's entry
# covers its modules unless a module has its own.
FLOORS: Mapping[str, int] = {
    # 1: the pure core
    "node.b64": 1,
    "node.clock": 1,
    "node.config": 1,
    "node.divisions": 1,
    "node.errors": 1,
    "node.identifiers": 1,
    "node.log.merkle": 1,
    "node.metrics": 1,
    "node.signing": 1,
    "node.sealed_secret": 1,
    "node.process": 1,
    "node.log_output": 1,  # log lines as text or JSON
    # 2: the model and signed notes
    "node.model": 2,
    "node.log.notes": 2,
    "node.privacy": 2,
    "node.repair": 2,  # the repair rules: pure
    "node.public_records": 2,  # penalties and list entries that flag results: pure
    "node.trust_model": 2,
    # 3: store, wire, policy (generated code below the wire layer), files of the home
    "node._pb": 3,
    "node.store": 3,
    "node.wire": 3,
    "node.policy": 3,
    "node.home": 3,
    "node.home_lock": 3,
    "node.disclosure": 3,
    "node.tls": 3,
    "node.keys": 3,
    "node.gendata": 3,
    "node.error_status": 3,
    "node.serving_config": 3,
    "node.legacy_uscc": 3,  # reads its file: floors 1-2 do no I/O
    "node.policy_file": 3,  # node.toml's zone policy, re-read while serving
    "node.tls_probe": 3,  # asks a peer whether it accepts our TLS certificate
    "node.greenloan_sink": 3,  # the sync job's own database
    "node.admin_http": 3,  # /metrics, /healthz, /readyz over plain HTTP
    "node.recognition": 3,  # a peer's result on our scheme (adapters' crosswalks)
    # 4: the log, trust, the answer path
    "node.log": 4,
    "node.trust": 4,
    "node.trust_files": 4,
    "node.trust_fetch": 4,  # lists polled from the coordinator's URL
    "node.trust_publish": 4,  # the coordinator's HTTP endpoint for them
    "node.key_rollout": 4,  # whether the lists in force carry a staged signing key
    "node.tls_rollout": 4,  # which TLS certificate to present while a reissue is on its way
    "node.answer": 4,
    "node.changefeed": 4,
    "node.revocation": 4,
    "node.audit": 4,  # the auditor service: its API, index, tokens and page
    "node.credit_repair": 4,
    "node.scrape_gauges": 4,  # gauges /metrics reads from the store and the clock
    # 5: services, the peer client, the answer worker's two sides, asking a peer, its log
    "node.services": 5,
    "node.peer_client": 5,
    "node.answer.worker_client": 5,
    "node.asking": 5,
    "node.log_client": 5,
    "node.greenloan_sync": 5,
    "node.revocation_watch": 5,
    "node.received_check": 5,  # a kept peer result verified again, offline
    "node.split_reading": 5,  # reader processes for the parts of a large CSV export
    "node.reader_process": 5,  # what one of them runs
    "node.staged_rows": 3,  # a record as a staged row, made without the store
    # 6: wiring, the server, the command line, processes' mains
    "node.server": 6,
    "node.runtime": 6,
    "node.audit_serving": 6,  # the auditor service wired to a running node
    "node.readiness": 6,  # what /readyz checks of a running node
    "node.cli": 6,
    "node.answer.worker": 6,
    "node": 6,
}
GENERATED = "node._pb"
WIRE = "node.wire"
# A concept's storage has one owner: these modules alone import these tables.
OWNERS: Mapping[str, frozenset[str]] = {
    "node.store.log_tables": frozenset({"node.log.store", "node.store.migrations.env"}),
    "node.store.audit": frozenset(
        {
            "node.audit.index",
            "node.audit.query",
            "node.audit.records",
            "node.audit.web",
            "node.store.migrations.env",
        }
    ),
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> int | None:
    name = module
    while name:
        if name in FLOORS:
            return FLOORS[name]
        name = name.rpartition(".")[0]
    return None


def imports(path: pathlib.Path, module: str) -> Iterator[str]:
    """The node modules `path` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from node import model`: the submodule, where there is one.
            names = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        else:
            continue
        yield from (n for n in names if n == "node" or n.startswith("node."))


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        if module.startswith(GENERATED):
            continue
        edges[module] = {m for m in imports(path, module) if m != module}
    return edges


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def violations(edges: Mapping[str, set[str]]) -> list[str]:
    problems: list[str] = []
    for module, imported in sorted(edges.items()):
        floor = floor_of(module)
        if floor is None:
            problems.append(f"{module}: no floor (place it in tests/layering.py FLOORS)")
            continue
        for target in sorted(imported):
            if target.startswith(GENERATED) and module != WIRE:
                problems.append(f"{module} imports generated code {target}: only {WIRE} may")
                continue
            if target in OWNERS and module not in OWNERS[target] and target != module:
                owner = ", ".join(sorted(OWNERS[target]))
                problems.append(f"{module} imports {target}, which only {owner} may")
            target_floor = floor_of(target)
            # A package's __init__ may name its own modules; anything else goes down or level.
            if (
                target_floor is not None
                and target_floor > floor
                and not target.startswith(module + ".")
            ):
                problems.append(f"{module} (floor {floor}) imports {target} (floor {target_floor})")
    for component in cycles(edges):
        problems.append("import cycle: " + " <-> ".join(component))
    return problems


def main() -> int:
    problems = violations(graph())
    for problem in problems:
        print(problem)
    print(
        f"{len(problems)} layering problem(s) in node/"
        if problems
        else "node/: no import cycle, every import goes down or level"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
