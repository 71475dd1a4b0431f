"""The streaming CTR model: categorical and numeric field embeddings into an MLP (FNN-style)."""

from __future__ import annotations

import torch
from torch import nn

from rqgmm.stream.numeric import NumericEmbedding


class StreamingCTR(nn.Module):
    """Inputs (categorical (B, C) int64, numeric (B, F) float with NaN) -> logit (B,).

    Every field is embedded in ``numeric.dim`` dimensions; the (C + F) embeddings are
    concatenated and passed through a ReLU MLP of ``hidden`` widths.
    """

    def __init__(self, cardinalities: tuple[int, ...], numeric: NumericEmbedding,
                 hidden: tuple[int, ...] = (128, 64)):
        super().__init__()
        dim = numeric.dim
        offsets = torch.tensor([0, *cardinalities[:-1]]).cumsum(0) if cardinalities else torch.zeros(0)
        self.register_buffer("offsets", offsets.long())
        self.categorical = nn.Embedding(max(sum(cardinalities), 1), dim)
        nn.init.normal_(self.categorical.weight, std=0.01)
        self.numeric = numeric
        layers: list[nn.Module] = []
        width = (len(cardinalities) + numeric.n_fields) * dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.tower = nn.Sequential(*layers)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        fields = [self.numeric(numeric)]
        if categorical.shape[1]:
            fields.insert(0, self.categorical(categorical + self.offsets))
        return self.tower(torch.cat(fields, dim=1).flatten(1)).squeeze(1)
