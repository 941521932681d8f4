"""Merkle tree math of the exchange log, RFC 9162 §2.1: hashing, roots, proof generation and
proof verification. Pure: no I/O. Proof generation reads only aligned complete subtrees through
`TreeHashes`, so every proof costs O(log n) lookups of stored nodes and never reads all leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from node.errors import InconsistentLog, InvalidInput

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class InvalidProof(InconsistentLog):
    """An inclusion or consistency proof does not verify against the claimed root(s)."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: HASH(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole tree given its leaf hashes: O(n) hashing, one level at a time.

    Carrying an unpaired last node up a level unchanged gives exactly RFC 9162's split at the
    largest power of two below n, because the left part of every split is a complete subtree.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [
            sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Hash a right edge of complete subtrees (largest first) into their common root."""
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162 §2.1.1's k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# --- proof generation against stored complete subtrees -------------------------------------


class TreeHashes(Protocol):
    """Read access to the stored hashes of a tree (in memory or in a store).

    `subtree_hash(start, end)` is only asked for aligned complete subtrees: `end - start` is a
    power of two and `start` is a multiple of it. `leaf(index)` is the leaf hash at `index`.
    """

    def leaf(self, index: int) -> bytes: ...

    def subtree_hash(self, start: int, end: int) -> bytes: ...


def _complete(start: int, level: int, hashes: TreeHashes) -> bytes:
    if level == 0:
        return hashes.leaf(start)
    return hashes.subtree_hash(start, start + (1 << level))


def range_root(start: int, end: int, hashes: TreeHashes) -> bytes:
    """MTH(D[start:end]) for a node of the tree, from at most log2(n) stored subtrees.

    `start` must be a multiple of the smallest power of two >= end - start, which holds for
    every node of an RFC 9162 tree: the range splits into complete subtrees sized by the bits
    of end - start, largest first.
    """
    size = end - start
    if size <= 0:
        raise InvalidInput(f"range [{start}, {end}) is empty; a Merkle node covers >= 1 leaf")
    if start % (1 << (size - 1).bit_length()):
        raise InvalidInput(f"range [{start}, {end}) is not a node of a Merkle tree")
    parts: list[bytes] = []
    position = start
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            parts.append(_complete(position, level, hashes))
            position += 1 << level
    return _fold_right(parts)


def tree_root(tree_size: int, hashes: TreeHashes) -> bytes:
    """MTH(D[0:tree_size]) from stored complete subtrees; EMPTY_ROOT for size 0."""
    if tree_size == 0:
        return EMPTY_ROOT
    return range_root(0, tree_size, hashes)


def inclusion_proof(index: int, tree_size: int, hashes: TreeHashes) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[tree_size]), leaf-side sibling first.

    Below level `inner` the leaf and the tree's last leaf share their subtree, so siblings come
    from inside it (only the topmost may be cut short by the tree's end); above it, the path
    follows the tree's right edge and needs a left sibling at each level where index has a 1 bit.
    """
    if not 0 <= index < tree_size:
        raise InvalidInput(f"leaf index {index} is not in a tree of size {tree_size}")
    proof: list[bytes] = []
    inner = (index ^ (tree_size - 1)).bit_length()
    for level in range(inner):
        sibling_start = ((index >> level) ^ 1) << level
        sibling_end = min(sibling_start + (1 << level), tree_size)
        if sibling_end - sibling_start == 1 << level:
            proof.append(_complete(sibling_start, level, hashes))
        else:
            proof.append(range_root(sibling_start, sibling_end, hashes))
    for level in range(inner, index.bit_length()):
        if index >> level & 1:
            proof.append(_complete(((index >> level) ^ 1) << level, level, hashes))
    return proof


def consistency_proof(old_size: int, new_size: int, hashes: TreeHashes) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]) = SUBPROOF(old_size, D[new_size], true).

    The recursion is unrolled: each step appends one node after the sub-proof, so nodes are
    collected top-down and reversed. Only the first step that goes left needs a right part
    reaching the tree's end (not complete); every other node is one stored lookup.
    """
    if not 0 < old_size <= new_size:
        raise InvalidInput(
            f"no consistency proof from size {old_size} to size {new_size}: "
            "need 0 < old size <= new size"
        )
    top_down: list[bytes] = []
    start, end, m = 0, new_size, old_size
    old_root_is_a_node = True  # SUBPROOF's b: D[0:m] is itself a node of the new tree
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            top_down.append(range_root(start + k, end, hashes))
            end = start + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            top_down.append(_complete(start, k.bit_length() - 1, hashes))
            start, m = start + k, m - k
            old_root_is_a_node = False
    if not old_root_is_a_node:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        top_down.append(range_root(start, end, hashes))
    return top_down[::-1]


# --- trees kept in memory, and the sequencer's compact range --------------------------------


@dataclass(frozen=True, slots=True)
class CompletedNode:
    """A complete subtree: leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int
    hash: bytes


class CompactRange:
    """The right edge of a tree [0, size): one complete subtree per 1 bit of size.

    Appending a leaf costs O(log n) hashes and reports the nodes it completed, so a caller can
    store them and later serve proofs; the root needs only the frontier, never the leaves.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._frontier: list[bytes] = []  # largest subtree first

    @classmethod
    def from_frontier(cls, size: int, frontier: Sequence[bytes]) -> CompactRange:
        """Resume from a stored size and frontier hashes (largest subtree first)."""
        if size < 0:
            raise InvalidInput(f"tree size must be >= 0, got {size}")
        if len(frontier) != size.bit_count():
            raise InvalidInput(
                f"a tree of size {size} has {size.bit_count()} frontier subtrees, "
                f"got {len(frontier)} hashes"
            )
        for position, value in enumerate(frontier):
            _check_hash_length(value, f"frontier hash {position}", InvalidInput)
        compact = cls()
        compact._size = size
        compact._frontier = list(frontier)
        return compact

    @property
    def size(self) -> int:
        return self._size

    @property
    def frontier(self) -> tuple[tuple[int, bytes], ...]:
        """(level, hash) of each right-edge complete subtree, largest first."""
        levels = [
            level for level in reversed(range(self._size.bit_length())) if self._size >> level & 1
        ]
        return tuple(zip(levels, self._frontier, strict=True))

    def append(self, leaf: bytes) -> list[CompletedNode]:
        """Add one leaf hash; return every node this completes, the leaf itself first."""
        _check_hash_length(leaf, "leaf hash", InvalidInput)
        index = self._size
        completed = [CompletedNode(0, index, leaf)]
        current = leaf
        level = 0
        # Each trailing 1 bit of the old size is a subtree the new node pairs with.
        while index >> level & 1:
            current = node_hash(self._frontier.pop(), current)
            level += 1
            completed.append(CompletedNode(level, index >> level, current))
        self._frontier.append(current)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """MTH of the whole range; EMPTY_ROOT when empty."""
        if not self._frontier:
            return EMPTY_ROOT
        return _fold_right(self._frontier)


class InMemoryTree:
    """Every complete subtree of an append-only tree: levels[h][i] = MTH(D[i*2^h:(i+1)*2^h]).

    Implements TreeHashes, so proofs and roots for any past size come from O(log n) lookups.
    """

    __slots__ = ("_compact", "levels")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        self._compact = CompactRange()
        self.extend(leaf_hashes)

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Sequence[bytes]) -> InMemoryTree:
        """Build all levels at once: the same result as appending, without per-leaf overhead."""
        for position, value in enumerate(leaf_hashes):
            _check_hash_length(value, f"leaf hash {position}", InvalidInput)
        levels = [list(leaf_hashes)]
        sha256 = hashlib.sha256
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append(
                [
                    sha256(_NODE_PREFIX + below[i] + below[i + 1]).digest()
                    for i in range(0, len(below) - 1, 2)
                ]
            )
        tree = cls()
        tree.levels = levels
        frontier = [
            levels[level][(len(leaf_hashes) >> level) - 1]
            for level in reversed(range(len(leaf_hashes).bit_length()))
            if len(leaf_hashes) >> level & 1
        ]
        tree._compact = CompactRange.from_frontier(len(leaf_hashes), frontier)
        return tree

    @property
    def size(self) -> int:
        return self._compact.size

    def append(self, leaf: bytes) -> list[CompletedNode]:
        completed = self._compact.append(leaf)
        for node in completed:
            if node.level == len(self.levels):
                self.levels.append([])
            self.levels[node.level].append(node.hash)
        return completed

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for leaf in leaf_hashes:
            self.append(leaf)

    def adopt(self, completed: Iterable[CompletedNode], compact: CompactRange) -> None:
        """Take the nodes `compact` completed while appending past this tree's size, without
        hashing them again; `compact` must have started from this tree's frontier."""
        completed = list(completed)
        if compact.size != self.size + sum(1 for node in completed if node.level == 0):
            raise InvalidInput(f"compact range of size {compact.size} does not extend this tree")
        levels = self.levels
        for node in completed:
            if node.level == len(levels):
                levels.append([])
            levels[node.level].append(node.hash)
        self._compact = compact

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise InvalidInput(f"leaf {index} is outside the tree of size {self.size}")
        return self.levels[0][index]

    def subtree_hash(self, start: int, end: int) -> bytes:
        width = end - start
        if width <= 0 or width & (width - 1) or start % width:
            raise InvalidInput(f"[{start}, {end}) is not an aligned complete subtree")
        if end > self.size:
            raise InvalidInput(
                f"subtree [{start}, {end}) reaches outside the tree of size {self.size}"
            )
        level = width.bit_length() - 1
        return self.levels[level][start >> level]

    def root(self, tree_size: int | None = None) -> bytes:
        """MTH of the first `tree_size` leaves (default: all of them)."""
        if tree_size is None:
            return self._compact.root()
        if not 0 <= tree_size <= self.size:
            raise InvalidInput(f"tree size {tree_size} is not in 0..{self.size}")
        return tree_root(tree_size, self)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        size = self.size if tree_size is None else tree_size
        return inclusion_proof(index, size, self)

    def inclusion_proofs(self, indices: Iterable[int], tree_size: int) -> list[list[bytes]]:
        """`inclusion_proof` for several leaves of one tree size, reading the stored levels
        directly and hashing the right edge's incomplete subtrees once (every batch's receipts
        are built here; tests pin it to the RFC definition)."""
        if not 0 <= tree_size <= self.size:
            raise InvalidInput(f"tree size {tree_size} is not in 0..{self.size}")
        levels = self.levels
        edges: dict[tuple[int, int], bytes] = {}
        proofs = []
        for index in indices:
            if not 0 <= index < tree_size:
                raise InvalidInput(f"leaf index {index} is not in a tree of size {tree_size}")
            proof: list[bytes] = []
            inner = (index ^ (tree_size - 1)).bit_length()
            for level in range(inner):
                sibling = (index >> level) ^ 1
                start = sibling << level
                if start + (1 << level) <= tree_size:  # a complete subtree: stored
                    proof.append(levels[level][sibling])
                else:  # cut short by the tree's end: hashed from the stored parts, once
                    edge = edges.get((start, tree_size))
                    if edge is None:
                        edge = edges[(start, tree_size)] = range_root(start, tree_size, self)
                    proof.append(edge)
            for level in range(inner, index.bit_length()):
                if index >> level & 1:
                    proof.append(levels[level][(index >> level) ^ 1])
            proofs.append(proof)
        return proofs

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        size = self.size if new_size is None else new_size
        return consistency_proof(old_size, size, self)


# --- verification ---------------------------------------------------------------------------


def _check_hash_length(
    value: bytes, what: str, error: type[InconsistentLog] | type[InvalidInput] = InvalidProof
) -> None:
    if len(value) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes (SHA-256), got {len(value)}")


def root_from_inclusion_proof(
    index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that `proof` implies for `leaf_hash` at `index` (RFC 9162 §2.1.3.2 steps 1-4).

    Raises InvalidProof if the proof cannot belong to a tree of `tree_size` at all.
    """
    # Step 1: the leaf must be inside the tree.
    if not 0 <= index < tree_size:
        raise InvalidProof(f"leaf index {index} is not in a tree of size {tree_size}")
    _check_hash_length(leaf_hash, "leaf hash")
    for position, element in enumerate(proof):
        _check_hash_length(element, f"inclusion proof hash {position}")
    # Step 2.
    fn, sn = index, tree_size - 1
    # Step 3.
    r = leaf_hash
    # Step 4.
    for position, p in enumerate(proof):
        # Step 4a: a longer path than the tree is tall.
        if sn == 0:
            raise InvalidProof(
                f"inclusion proof for leaf {index} in a tree of size {tree_size} has "
                f"{len(proof)} hashes, but the path to the root ends after {position}"
            )
        # Step 4b.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # Step 4c.
        fn >>= 1
        sn >>= 1
    # Step 5 (first half): the path must reach the root.
    if sn != 0:
        raise InvalidProof(
            f"inclusion proof for leaf {index} in a tree of size {tree_size} has "
            f"{len(proof)} hashes, too few to reach the root"
        )
    return r


def verify_inclusion(
    index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise InvalidProof unless `proof` shows `leaf_hash` at `index` in
    the tree of `tree_size` leaves whose root is `root`."""
    _check_hash_length(root, "root hash")
    computed = root_from_inclusion_proof(index, tree_size, leaf_hash, proof)
    # Step 5 (second half).
    if computed != root:
        raise InvalidProof(
            f"inclusion proof for leaf {index} in a tree of size {tree_size} leads to root "
            f"{computed.hex()}, not the claimed {root.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise InvalidProof unless `proof` shows that the tree of `new_size`
    leaves with `new_root` extends the tree of `old_size` leaves with `old_root`.

    A proof from size 0 is refused: it proves nothing (the RFC requires 0 < first), so a caller
    that accepts any tree after the empty one must decide that itself.
    """
    if old_size > new_size:
        raise InvalidProof(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0:
        raise InvalidProof("a consistency proof from the empty tree (size 0) proves nothing")
    if old_size == new_size:
        # Same size: consistent exactly when the roots are the same, with nothing to prove.
        if proof:
            raise InvalidProof(
                f"consistency proof between equal sizes {old_size} must be empty, "
                f"got {len(proof)} hashes"
            )
        if old_root != new_root:
            raise InvalidProof(
                f"two different roots for the same tree size {old_size}: "
                f"{old_root.hex()} and {new_root.hex()}"
            )
        return
    _check_hash_length(old_root, "old root hash")
    _check_hash_length(new_root, "new root hash")
    for position, element in enumerate(proof):
        _check_hash_length(element, f"consistency proof hash {position}")
    # Step 1.
    if not proof:
        raise InvalidProof(f"consistency proof from size {old_size} to size {new_size} is empty")
    path = list(proof)
    # Step 2: when the old tree is a complete subtree, its root is the proof's first node.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Step 3.
    fn, sn = old_size - 1, new_size - 1
    # Step 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        # Step 6a: a longer path than the new tree is tall.
        if sn == 0:
            raise InvalidProof(
                f"consistency proof from size {old_size} to size {new_size} has "
                f"{len(proof)} hashes, more than the path to the new root needs"
            )
        # Step 6b.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        # Step 6c.
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise InvalidProof(
            f"consistency proof from size {old_size} to size {new_size} has "
            f"{len(proof)} hashes, too few to reach the new root"
        )
    if fr != old_root:
        raise InvalidProof(
            f"consistency proof leads to old root {fr.hex()} for size {old_size}, "
            f"not the claimed {old_root.hex()}"
        )
    if sr != new_root:
        raise InvalidProof(
            f"consistency proof leads to new root {sr.hex()} for size {new_size}, "
            f"not the claimed {new_root.hex()}"
        )
