"""Merkle proof cost on a 1,000,000-entry log: proof generation and verification against stored
complete subtrees, as ratios to a baseline measured in the same run (one SHA-256 node hash per
tree level, the least work any verifier must do).
"""

from __future__ import annotations

import random
import statistics
import time

from node.log.merkle import (
    CompactRange,
    InMemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

TREE_SIZE = 1_000_000
SAMPLES = 1_000


def _elapsed_us(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1_000


def _row(name: str, samples: list[float], baseline: float) -> str:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"{name:<44} {median:>10.1f} {p99:>10.1f} {median / baseline:>9.2f}x"


def run(tree_size: int = TREE_SIZE, samples: int = SAMPLES, seed: int = 9162) -> list[str]:
    """Build the tree, time each operation `samples` times, return the table's lines."""
    rng = random.Random(seed)
    started = time.perf_counter()
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(tree_size)]
    tree = InMemoryTree.from_leaf_hashes(leaves)
    build_s = time.perf_counter() - started
    root = tree.root()
    height = (tree_size - 1).bit_length()

    left, right = leaves[0], leaves[1]
    baseline = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        for _ in range(height):
            node_hash(left, right)
        baseline.append(_elapsed_us(start))
    base = statistics.median(baseline)

    generate, verify, both = [], [], []
    for _ in range(samples):
        index = rng.randrange(tree_size)
        start = time.perf_counter_ns()
        proof = inclusion_proof(index, tree_size, tree)
        generate.append(_elapsed_us(start))
        start = time.perf_counter_ns()
        verify_inclusion(index, tree_size, leaves[index], proof, root)
        verify.append(_elapsed_us(start))
        both.append(generate[-1] + verify[-1])

    consistency_generate, consistency_verify, past_root = [], [], []
    for _ in range(samples):
        old_size = rng.randrange(1, tree_size)
        start = time.perf_counter_ns()
        old_root = tree.root(old_size)
        past_root.append(_elapsed_us(start))
        start = time.perf_counter_ns()
        proof = consistency_proof(old_size, tree_size, tree)
        consistency_generate.append(_elapsed_us(start))
        start = time.perf_counter_ns()
        verify_consistency(old_size, tree_size, old_root, root, proof)
        consistency_verify.append(_elapsed_us(start))

    compact = CompactRange()
    appends = []
    for leaf in leaves[: samples * 10]:
        start = time.perf_counter_ns()
        compact.append(leaf)
        appends.append(_elapsed_us(start))

    return [
        f"Merkle proofs, tree of {tree_size:,} leaves (height {height}), "
        f"{samples:,} random samples; tree built in {build_s:.2f} s",
        f"{'operation':<44} {'median µs':>10} {'p99 µs':>10} {'/ baseline':>10}",
        _row(f"baseline: {height} node hashes", baseline, base),
        _row("inclusion proof: generate", generate, base),
        _row("inclusion proof: verify", verify, base),
        _row("inclusion proof: generate + verify", both, base),
        _row("consistency proof (random old size): generate", consistency_generate, base),
        _row("consistency proof: verify", consistency_verify, base),
        _row("root at a random past size", past_root, base),
        _row("CompactRange.append (one leaf)", appends, base),
    ]


def main() -> None:
    for line in run():
        print(line)


if __name__ == "__main__":
    main()
