"""node.log.merkle against the RFC 9162 vectors, the RFC 6962 test tree, and a literal recursive
reading of RFC 9162 §2.1 (random trees via hypothesis)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.errors import InconsistentLog, InvalidInput
from node.log.merkle import (
    EMPTY_ROOT,
    CompactRange,
    InMemoryTree,
    InvalidProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parents[1].parent / "shared" / "vectors" / "rfc9162"

# RFC 6962's test leaves and the roots of their first n leaves (certificate-transparency tests).
RFC6962_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
RFC6962_TREE = InMemoryTree(leaf_hash(leaf) for leaf in RFC6962_LEAVES)


def _cases(kind: str) -> list[Path]:
    found = sorted((VECTORS / kind).rglob("*.json"))
    # A missing vector folder must fail, not silently run zero cases.
    return found or [VECTORS / kind / "MISSING-vector-folder"]


def _load(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"RFC 9162 vectors not found at {path}"
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _b64_list(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


def _case_id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


# --- a literal reading of RFC 9162 §2.1, independent of node.merkle's algorithms ------------


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    if m == len(leaves):
        return [] if b else [naive_mth(leaves)]
    k = _split(len(leaves))
    if m <= k:
        return [*naive_subproof(m, leaves[:k], b), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40)


# --- RFC 9162 vectors -----------------------------------------------------------------------


def test_vector_folders_are_complete() -> None:
    assert len(list(VECTORS.rglob("*.json"))) == 196, f"expected 196 vector files in {VECTORS}"


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_case_id)
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    args = (
        case["leafIdx"],
        case["treeSize"],
        _b64(case["leafHash"]),
        _b64_list(case["proof"]),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=_case_id)
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        _b64_list(case["proof"]),
    )
    if case["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


@pytest.mark.parametrize(
    "path", [p for p in _cases("inclusion") if p.name == "happy-path.json"], ids=_case_id
)
def test_generated_inclusion_proof_equals_vector(path: Path) -> None:
    case = _load(path)
    proof = inclusion_proof(case["leafIdx"], case["treeSize"], RFC6962_TREE)
    assert proof == _b64_list(case["proof"])
    assert RFC6962_TREE.root(case["treeSize"]) == _b64(case["root"])


@pytest.mark.parametrize(
    "path", [p for p in _cases("consistency") if p.name == "happy-path.json"], ids=_case_id
)
def test_generated_consistency_proof_equals_vector(path: Path) -> None:
    case = _load(path)
    proof = consistency_proof(case["size1"], case["size2"], RFC6962_TREE)
    assert proof == _b64_list(case["proof"])


# --- the RFC 6962 test tree -----------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_roots(size: int) -> None:
    leaves = [leaf_hash(leaf) for leaf in RFC6962_LEAVES[:size]]
    expected = bytes.fromhex(RFC6962_ROOTS[size - 1])
    assert root_from_leaves(leaves) == expected
    assert RFC6962_TREE.root(size) == expected
    assert InMemoryTree.from_leaf_hashes(leaves).root() == expected


def test_empty_tree_root() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT
    assert InMemoryTree().root() == EMPTY_ROOT == RFC6962_TREE.root(0)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert a == hashlib.sha256(b"\x00a").digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    # A node's preimage reused as an entry must not produce the node's hash.
    assert leaf_hash(a + b) != node_hash(a, b)


# --- random trees against the literal RFC reading -------------------------------------------


@given(leaf_lists)
def test_roots_match_naive_mth(leaves: list[bytes]) -> None:
    tree = InMemoryTree(leaves)
    built = InMemoryTree.from_leaf_hashes(leaves)
    assert tree.levels == built.levels
    for size in range(len(leaves) + 1):
        expected = naive_mth(leaves[:size])
        assert tree.root(size) == expected
        assert built.root(size) == expected
        assert root_from_leaves(leaves[:size]) == expected


@given(leaf_lists)
def test_compact_range_root_after_every_append(leaves: list[bytes]) -> None:
    compact = CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    for size, leaf in enumerate(leaves, start=1):
        for node in compact.append(leaf):
            key = (node.level, node.index)
            assert key not in stored, "a node was reported as completed twice"
            start = node.index << node.level
            assert node.hash == naive_mth(leaves[start : start + (1 << node.level)])
            stored[key] = node.hash
        assert compact.size == size
        assert compact.root() == naive_mth(leaves[:size])
        # Resuming from the persisted frontier gives the same state.
        resumed = CompactRange.from_frontier(size, [h for _, h in compact.frontier])
        assert resumed.root() == compact.root()
        assert resumed.frontier == compact.frontier
    # Every complete subtree was reported exactly once.
    n = len(leaves)
    assert len(stored) == sum(n >> level for level in range(n.bit_length()))


@settings(max_examples=30)
@given(leaf_lists)
def test_every_inclusion_proof_matches_rfc_and_verifies(leaves: list[bytes]) -> None:
    tree = InMemoryTree(leaves)
    for size in range(1, len(leaves) + 1):
        root = naive_mth(leaves[:size])
        for index in range(size):
            proof = inclusion_proof(index, size, tree)
            assert proof == naive_path(index, leaves[:size])
            verify_inclusion(index, size, leaves[index], proof, root)
            assert root_from_inclusion_proof(index, size, leaves[index], proof) == root
        # Proofs of several leaves at once share their right-edge hashes, and are the same.
        assert tree.inclusion_proofs(range(size), size) == [
            naive_path(index, leaves[:size]) for index in range(size)
        ]


@settings(max_examples=30)
@given(leaf_lists)
def test_every_consistency_proof_matches_rfc_and_verifies(leaves: list[bytes]) -> None:
    tree = InMemoryTree(leaves)
    roots = [naive_mth(leaves[:size]) for size in range(len(leaves) + 1)]
    for new_size in range(1, len(leaves) + 1):
        for old_size in range(1, new_size + 1):
            proof = consistency_proof(old_size, new_size, tree)
            assert proof == naive_subproof(old_size, leaves[:new_size], True)
            verify_consistency(old_size, new_size, roots[old_size], roots[new_size], proof)


@given(leaf_lists, st.data())
def test_tampered_inclusion_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = InMemoryTree(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="tree_size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, tree)
    root = tree.root(size)
    bit = data.draw(st.integers(0, 255), label="bit")
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")
    leaf = leaves[index]
    if target == -2:
        root = _flip(root, bit)
    elif target == -1:
        leaf = _flip(leaf, bit)
    else:
        proof[target] = _flip(proof[target], bit)
    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, leaf, proof, root)


@given(leaf_lists, st.data())
def test_tampered_consistency_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = InMemoryTree(leaves)
    new_size = data.draw(st.integers(1, len(leaves)), label="new_size")
    old_size = data.draw(st.integers(1, new_size), label="old_size")
    proof = consistency_proof(old_size, new_size, tree)
    old_root, new_root = tree.root(old_size), tree.root(new_size)
    bit = data.draw(st.integers(0, 255), label="bit")
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")
    if target == -2:
        old_root = _flip(old_root, bit)
    elif target == -1:
        new_root = _flip(new_root, bit)
    else:
        proof[target] = _flip(proof[target], bit)
    with pytest.raises(InvalidProof):
        verify_consistency(old_size, new_size, old_root, new_root, proof)


@given(st.data())
def test_proof_for_another_position_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(2, 41), label="tree_size")
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    tree = InMemoryTree(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    claimed = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="claimed")
    proof = inclusion_proof(index, size, tree)
    with pytest.raises(InvalidProof):
        verify_inclusion(claimed, size, leaves[index], proof, tree.root(size))


# --- proof generation cost and refusals -----------------------------------------------------


class CountingHashes:
    """A TreeHashes over a huge virtual tree: each node's hash is derived from its range."""

    def __init__(self) -> None:
        self.lookups = 0

    def leaf(self, index: int) -> bytes:
        self.lookups += 1
        return hashlib.sha256(b"leaf %d" % index).digest()

    def subtree_hash(self, start: int, end: int) -> bytes:
        width = end - start
        assert width > 0 and width & (width - 1) == 0 and start % width == 0, (start, end)
        self.lookups += 1
        return hashlib.sha256(b"node %d %d" % (start, end)).digest()


@given(st.integers(1, 2**48), st.data())
def test_proof_generation_does_logarithmic_lookups(size: int, data: st.DataObject) -> None:
    height = (size - 1).bit_length()
    hashes = CountingHashes()
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, hashes)
    assert len(proof) <= height
    assert hashes.lookups <= 2 * height + 1

    hashes = CountingHashes()
    old_size = data.draw(st.integers(1, size), label="old_size")
    proof = consistency_proof(old_size, size, hashes)
    assert len(proof) <= 2 * height
    assert hashes.lookups <= 2 * height + 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: inclusion_proof(8, 8, RFC6962_TREE), "leaf index 8 is not in a tree of size 8"),
        (lambda: inclusion_proof(0, 0, RFC6962_TREE), "not in a tree of size 0"),
        (lambda: consistency_proof(0, 8, RFC6962_TREE), "need 0 < old size <= new size"),
        (lambda: consistency_proof(5, 4, RFC6962_TREE), "need 0 < old size <= new size"),
        (lambda: inclusion_proof(0, 9, RFC6962_TREE), "outside the tree of size 8"),
        (lambda: consistency_proof(3, 9, RFC6962_TREE), "outside the tree of size 8"),
        (lambda: RFC6962_TREE.root(9), "tree size 9 is not in 0..8"),
        (lambda: CompactRange().append(b"short"), "leaf hash must be 32 bytes"),
        (lambda: CompactRange.from_frontier(3, [EMPTY_ROOT]), "has 2 frontier subtrees"),
    ],
)
def test_generation_refuses_bad_requests(call: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()


@pytest.mark.parametrize(
    ("index", "size", "proof_change", "message"),
    [
        (2, 8, lambda p: p[:-1], "too few to reach the root"),
        (2, 8, lambda p: [*p, EMPTY_ROOT], "path to the root ends after 3"),
        (2, 8, lambda p: [p[0][:31], *p[1:]], "inclusion proof hash 0 must be 32 bytes"),
        (2, 8, lambda p: [p[1], p[0], p[2]], "not the claimed"),
    ],
)
def test_inclusion_failure_says_what_failed(
    index: int, size: int, proof_change: Any, message: str
) -> None:
    proof = proof_change(inclusion_proof(index, size, RFC6962_TREE))
    leaf = leaf_hash(RFC6962_LEAVES[index])
    with pytest.raises(InvalidProof, match=message) as raised:
        verify_inclusion(index, size, leaf, proof, RFC6962_TREE.root(size))
    assert isinstance(raised.value, InconsistentLog)
    assert raised.value.reason == "INCONSISTENT_LOG"


@pytest.mark.parametrize(
    ("old", "new", "proof_change", "message"),
    [
        (3, 7, lambda p: p[:-1], "too few to reach the new root"),
        (3, 7, lambda p: [*p, EMPTY_ROOT], "more than the path to the new root needs"),
        (3, 7, lambda p: [], "is empty"),
        (3, 7, lambda p: [p[1], p[0], *p[2:]], "leads to old root"),
        (4, 7, lambda p: [_flip(p[0], 0)], "leads to new root"),
        (7, 7, lambda p: [EMPTY_ROOT], "equal sizes 7 must be empty"),
    ],
)
def test_consistency_failure_says_what_failed(
    old: int, new: int, proof_change: Any, message: str
) -> None:
    proof = proof_change(consistency_proof(old, new, RFC6962_TREE))
    with pytest.raises(InvalidProof, match=message):
        verify_consistency(old, new, RFC6962_TREE.root(old), RFC6962_TREE.root(new), proof)


def test_same_size_different_roots_is_a_split_view() -> None:
    with pytest.raises(InvalidProof, match="two different roots for the same tree size 5"):
        verify_consistency(5, 5, RFC6962_TREE.root(5), RFC6962_TREE.root(6), [])


@pytest.mark.parametrize(("before", "added"), [(0, 1), (0, 7), (5, 3), (8, 8), (13, 21)])
def test_adopt_equals_extend(before: int, added: int) -> None:
    """The sequencer hands the tree the nodes its compact range already hashed."""
    leaves = [leaf_hash(bytes([i])) for i in range(before + added)]
    extended = InMemoryTree(leaves[:before])
    extended.extend(leaves[before:])
    adopted = InMemoryTree(leaves[:before])
    compact = CompactRange.from_frontier(before, [h for _, h in adopted._compact.frontier])
    completed = [node for leaf in leaves[before:] for node in compact.append(leaf)]
    adopted.adopt(completed, compact)
    assert adopted.levels == extended.levels
    assert adopted.root() == extended.root()
    with pytest.raises(InvalidInput, match="does not extend this tree"):
        adopted.adopt(completed, compact)
