"""The item-side tables a CTR model reads, and the semantic IDs they are built from.

A model never sees the tokenizer: it reads, per item row (row 0 = an unknown item),
- ``fields`` (n_items + 1, F_i) int64: the item-ID index, then the semantic-ID fields;
- ``content`` (n_items + 1, dim) float32: the raw item embedding (feature sets with ``emb``);
- ``codewords``: per level, (K_l + 1, D) float32, the level's codewords (row 0 zeros, for the
  unknown code), so a code's embedding can start where its content is (``sid_init="codewords"``);
- ``soft_index`` / ``soft_weight`` (n_items + 1, L, k): a probabilistic tokenizer's top-k
  components per level (``code + 1``) and their renormalized posterior weights (soft IDs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rqgmm.errors import InvalidInputError


@dataclass
class ItemTables:
    """Everything item-side a :class:`rqgmm.ctr.models.CTRModel` embeds (see the module text)."""

    fields: np.ndarray
    content: np.ndarray | None = None
    codewords: list[np.ndarray] | None = None
    soft_index: np.ndarray | None = None
    soft_weight: np.ndarray | None = None


@dataclass
class SemanticIDs:
    """A saved tokenizer's view of the items: codes (n_items, L) int64, codebook sizes (L,), the
    tokenizer's version, its codewords (L arrays (K_l, D) float32; RQ-VAE's are latent) and,
    when asked for, soft IDs: top-k components (n_items, L, k) int64 and weights (n_items, L, k)
    float32 (rows sum to 1)."""

    codes: np.ndarray
    sizes: list[int]
    version: str | None = None
    codewords: list[np.ndarray] | None = None
    soft: tuple[np.ndarray, np.ndarray] | None = None


def semantic_ids(tokenizer_dir: str | Path, content: np.ndarray, soft_top_k: int = 0,
                 soft_temperature: float = 1.0) -> SemanticIDs:
    """Encode the items' content (n_items, dim) with a saved tokenizer; ``soft_top_k`` > 0 also
    computes each level's top-k posterior components (a probabilistic tokenizer only), at
    ``soft_temperature``."""
    from rqgmm.quantize import ResidualTokenizer

    tokenizer = ResidualTokenizer.load(tokenizer_dir)
    if tokenizer.n_features_in_ != content.shape[1]:
        raise InvalidInputError(f"tokenizer {tokenizer_dir} was fitted on {tokenizer.n_features_in_}-d embeddings,"
                                f" but the item embeddings are {content.shape[1]}-d; fit it on the same encoder")
    tokenizer.progress = False
    soft = soft_codes(tokenizer, content, soft_top_k, soft_temperature, str(tokenizer_dir)) if soft_top_k else None
    return SemanticIDs(tokenizer.encode(content), list(tokenizer.codebook_sizes), tokenizer.version,
                       [np.asarray(c, np.float32) for c in tokenizer.codebooks_], soft)


def soft_codes(tokenizer, content: np.ndarray, top_k: int, temperature: float = 1.0,
               name: str = "tokenizer") -> tuple[np.ndarray, np.ndarray]:
    """Each level's ``top_k`` most probable components for the item's residual at that level (the
    residual of the hard path, as encoding follows it) and their posteriors (tempered: softmax of
    the joint log-density over ``temperature``) renormalized over the k: ``(index (n, L, k)
    int64, weight (n, L, k) float32)``. Needs ``predict_proba(X, level, temperature)``."""
    if not hasattr(tokenizer, "predict_proba"):
        raise InvalidInputError(f"soft semantic IDs need a probabilistic tokenizer (rq-gmm); {name} is"
                                f" {type(tokenizer).__name__}, which has no posterior over its codes")
    indices, weights = [], []
    for level in range(tokenizer.n_levels):
        posterior = tokenizer.predict_proba(content, level=level, temperature=temperature)
        k = min(top_k, posterior.shape[1])
        top = np.argsort(-posterior, axis=1, kind="stable")[:, :k]
        weight = np.take_along_axis(posterior, top, axis=1).astype(np.float64)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-30)
        if k < top_k:  # a level with fewer components than k: pad with zero weight
            top = np.pad(top, ((0, 0), (0, top_k - k)))
            weight = np.pad(weight, ((0, 0), (0, top_k - k)))
        indices.append(top)
        weights.append(weight)
    return np.stack(indices, axis=1).astype(np.int64), np.stack(weights, axis=1).astype(np.float32)
