"""Connected components of a graph whose edges arrive in chunks: an array-backed union-find.

The forest is one int64 array over dense node indices ``0..n-1``, so memory is 8 bytes a
node however many edges there are; each chunk of edges is merged with vectorised numpy
(hook roots onto roots, then compress paths), never one edge at a time in Python.

A root only ever hooks under a smaller root, so every tree's root is its smallest index:
with nodes numbered in ascending id order, a component's root names its smallest id, the
segment id of ``engine.segment.agglomerate.segment_lut``. That makes the result independent of
the order and chunking of the edges.
"""

from __future__ import annotations

import numpy as np

from engine.errors import InputError


class UnionFind:
    """Disjoint sets of ``0..size-1``; every set's representative is its smallest member."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise InputError(f"a union-find needs a size >= 0, not {size}")
        self._parent = np.arange(size, dtype=np.int64)

    @property
    def size(self) -> int:
        return int(self._parent.size)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Join the sets of ``a[k]`` and ``b[k]`` for every k (index arrays of one shape)."""
        a = np.asarray(a, dtype=np.int64).ravel()
        b = np.asarray(b, dtype=np.int64).ravel()
        if a.shape != b.shape:
            raise InputError(f"edge ends differ in shape: {a.shape} and {b.shape}")
        if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= self.size):
            raise InputError(f"edge ends must be node indices in 0..{self.size - 1}")
        while a.size:
            root_a, root_b = self._find(a), self._find(b)
            apart = root_a != root_b
            a, b, root_a, root_b = a[apart], b[apart], root_a[apart], root_b[apart]
            # Each round hooks every larger root under the smallest root it meets; edges
            # whose larger root went elsewhere this round are joined in a later one. Every
            # round removes at least one root, and parent[x] <= x keeps the forest acyclic.
            np.minimum.at(self._parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
        self._compress()

    def roots(self) -> np.ndarray:
        """Each node's representative (the smallest index of its set): read-only, valid
        until the next :meth:`union`."""
        self._compress()
        view = self._parent.view()
        view.flags.writeable = False
        return view

    def count(self) -> int:
        """The number of sets."""
        return int(np.count_nonzero(self._parent == np.arange(self.size, dtype=np.int64)))

    def _find(self, x: np.ndarray) -> np.ndarray:
        """Roots of ``x``, with the paths of ``x`` compressed."""
        root: np.ndarray = self._parent[x]
        while True:
            up = self._parent[root]
            if np.array_equal(up, root):
                break
            root = up
        self._parent[x] = root
        return root

    def _compress(self) -> None:
        """Point every node at its root (pointer jumping): later finds take one step."""
        while True:
            up = self._parent[self._parent]
            if np.array_equal(up, self._parent):
                return
            self._parent = up
