"""Semantic-ID fields inside a model rqgmm did not write.

``rqgmm features TOK ITEMS -o sid.parquet`` writes, per item, the integer fields ``rqgmm ctr
train`` embeds (per level and/or per prefix; 0 = unknown) and a JSON sidecar with their names,
vocabulary sizes and hashing. :class:`SemanticIDEmbedding` embeds those columns in any PyTorch
model::

    spec = json.load(open("sid.parquet.json"))
    sid = SemanticIDEmbedding(spec["cardinalities"], embed_dim=16)        # (B, F) -> (B, F * 16)
    item_vector = sid(torch.from_numpy(fields))

``combine``: "concat" (B, F * d), "sum" (B, d) or "stack" (B, F, d). ``codewords`` (per level
field, (K_l, D) arrays: the tokenizer's ``codebooks_``) adds each code's codeword through a
learned projection, so a new item's fields start where its content is (what ``--sid-init
codewords`` does in rqgmm's own models).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

COMBINE = ("concat", "sum", "stack")


class SemanticIDEmbedding(nn.Module):
    """Fields (..., F) int64 (each in ``[0, cardinalities[f])``) -> field embeddings.

    cardinalities: values per field, the unknown 0 included (the sidecar's ``cardinalities``);
    embed_dim: width d of each field's vector; combine: see the module text; codewords: None, or
    one (K, D) array per *level* field, in field order (level fields first, as written)."""

    def __init__(self, cardinalities: list[int], embed_dim: int = 16, *, combine: str = "concat",
                 codewords: list[np.ndarray] | None = None):
        super().__init__()
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
        cards = [int(c) for c in cardinalities]
        if not cards or min(cards) < 2:
            raise ValueError(f"cardinalities must be a non-empty list of sizes >= 2, got {cardinalities}")
        self.cardinalities = cards
        self.embed_dim = embed_dim
        self.combine = combine
        offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.from_numpy(offsets))
        self.table = nn.Embedding(int(sum(cards)), embed_dim)
        nn.init.normal_(self.table.weight, std=0.01)
        self.projection = None
        if codewords is not None:
            if len(codewords) > len(cards):
                raise ValueError(f"{len(codewords)} codebooks for {len(cards)} fields")
            width = np.asarray(codewords[0]).shape[1]
            for index, codebook in enumerate(codewords):
                codebook = np.asarray(codebook, np.float32)
                if codebook.shape != (cards[index] - 1, width):
                    raise ValueError(f"codebook {index}: expected ({cards[index] - 1}, {width}) for field {index},"
                                     f" got {codebook.shape}")
                padded = np.concatenate([np.zeros((1, width), np.float32), codebook])  # row 0: unknown code
                self.register_buffer(f"codewords_{index}", torch.from_numpy(padded))
            self.projection = nn.Linear(width, embed_dim, bias=False)
        self.n_codeword_fields = 0 if codewords is None else len(codewords)

    @property
    def output_dim(self) -> int:
        """Width of the output's last axis (F * d for concat, d otherwise)."""
        return self.embed_dim * len(self.cardinalities) if self.combine == "concat" else self.embed_dim

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        if fields.shape[-1] != len(self.cardinalities):
            raise ValueError(f"expected (..., {len(self.cardinalities)}) fields, got {tuple(fields.shape)}")
        vectors = self.table(fields + self.offsets)                               # (..., F, d)
        if self.projection is not None:
            parts = [getattr(self, f"codewords_{i}")[fields[..., i]] for i in range(self.n_codeword_fields)]
            projected = self.projection(torch.stack(parts, dim=-2))               # (..., F_c, d)
            vectors = torch.cat([vectors[..., :self.n_codeword_fields, :] + projected,
                                 vectors[..., self.n_codeword_fields:, :]], dim=-2)
        if self.combine == "stack":
            return vectors
        if self.combine == "sum":
            return vectors.sum(-2)
        return vectors.flatten(-2)
