"""Semantic IDs as tokens, and the prefix trie that keeps generation on real IDs.

An item's ID is its codes plus a collision suffix (``encode(..., collisions="suffix")``), so every
item has its own ID and a generated ID stands for exactly one item. Token ids: 0 padding, 1 the
separator before a generated ID, then one block per position (level 0 .. L-1, then the suffix),
so the same code at two levels is two tokens.
"""

from __future__ import annotations

import numpy as np

PAD, SEP = 0, 1


class ItemTokens:
    """ids: (n_items, P) int64 (codes then suffix). ``tokens[i]`` is item i's P tokens."""

    def __init__(self, ids: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        self.ids = ids
        self.width = ids.shape[1]
        sizes = ids.max(axis=0) + 1
        self.offsets = 2 + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.vocab_size = int(2 + sizes.sum())
        self.tokens = ids + self.offsets[None, :]
        self.item_of = {tuple(row): index for index, row in enumerate(self.tokens.tolist())}
        if len(self.item_of) != len(ids):
            raise ValueError("two items share a full ID: encode with collisions='suffix'")
        # trie: prefix (tuple of tokens) -> allowed next tokens
        children: dict[tuple, set] = {}
        for row in self.tokens.tolist():
            for depth in range(self.width):
                children.setdefault(tuple(row[:depth]), set()).add(row[depth])
        self.allowed = {prefix: np.array(sorted(tokens), dtype=np.int64) for prefix, tokens in children.items()}

    def sequence(self, items: np.ndarray) -> np.ndarray:
        """Tokens of a history: (len(items) * P,)."""
        return self.tokens[np.asarray(items, dtype=np.int64)].reshape(-1)
