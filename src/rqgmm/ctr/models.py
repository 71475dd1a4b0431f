"""CTR models over field embeddings: FNN, IPNN, DeepFM, DCNv2 and DIN.

Every model embeds its inputs the same way (:class:`FieldEmbedding`): one ``embed_dim`` vector per
context field (user id, categorical columns), per item field (item id, and one per semantic-ID
level), one for the standardized numeric columns (a linear projection), and, with content, one for
the raw item embedding (a learned linear projection, the paper's "w/ Emb"). A semantic-ID level's
code embedding is a learned row, plus (codeword init) the code's codeword through a learned
projection, and for soft IDs the posterior-weighted sum of the top-k codes' embeddings. Every
model takes ``(layout, items: ItemTables, *, hyperparameters)``. ``forward(batch)``
takes the dict of :class:`rqgmm.ctr.features.FeatureEncoder` tensors and returns
``{"logit": (B,), "y_pred": (B,) probability}``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from rqgmm.ctr.features import FeatureLayout
from rqgmm.ctr.item_tables import ItemTables


def mlp_tower(in_dim: int, hidden_dims: tuple[int, ...], dropout: float) -> tuple[nn.Sequential, int]:
    """ReLU MLP with dropout; returns (module, output width)."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers), in_dim


class FieldEmbedding(nn.Module):
    """Inputs -> (B, n_fields, embed_dim). Item-side fields come from the item tables (buffers), so
    the same item representation serves the target item and DIN's history."""

    def __init__(self, layout: FeatureLayout, items: ItemTables, embed_dim: int):
        super().__init__()
        item_fields, item_content = items.fields, items.content
        cards = [*layout.context_cardinalities, *layout.item_cardinalities]
        offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(np.int64)
        self.n_context = len(layout.context_cardinalities)
        self.register_buffer("context_offsets", torch.from_numpy(offsets[: self.n_context].copy()))
        self.register_buffer("item_offsets", torch.from_numpy(offsets[self.n_context:].copy()))
        self.register_buffer("item_fields", torch.from_numpy(np.ascontiguousarray(item_fields, dtype=np.int64)))
        self.table = nn.Embedding(int(sum(cards)), embed_dim)
        nn.init.normal_(self.table.weight, std=0.01)
        self.numeric = nn.Linear(layout.n_numeric, embed_dim) if layout.n_numeric else None
        self.content = None
        if layout.content_dim:
            self.register_buffer("item_content", torch.from_numpy(np.ascontiguousarray(item_content, np.float32)))
            self.content = nn.Linear(layout.content_dim, embed_dim)
        self.n_item_fields = len(layout.item_cardinalities) + (1 if layout.content_dim else 0)
        self.n_fields = self.n_context + self.n_item_fields + (1 if layout.n_numeric else 0)
        self.embed_dim = embed_dim
        self._code_tables(layout, items, embed_dim)

    def _code_tables(self, layout: FeatureLayout, items: ItemTables, embed_dim: int) -> None:
        """Buffers and the projection of codeword init and soft IDs (per-level fields 1..L)."""
        self.n_levels = len(items.codewords) if items.codewords is not None else \
            (items.soft_index.shape[1] if items.soft_index is not None else 0)
        self.codewords_projection = None
        self.shared_projection = False
        if items.codewords is not None:
            for level, table in enumerate(items.codewords):
                self.register_buffer(f"sid_codewords_{level}", torch.from_numpy(np.ascontiguousarray(table, np.float32)))
            width = items.codewords[0].shape[1]
            # the emb feature's projection when there is one of the same width: a code starts where
            # its codeword's content would be
            self.shared_projection = self.content is not None and width == layout.content_dim
            if not self.shared_projection:
                self.codewords_projection = nn.Linear(width, embed_dim, bias=False)
        soft = items.soft_index is not None  # None buffers: absent from the state dict
        self.register_buffer("sid_soft_index", torch.from_numpy(np.ascontiguousarray(items.soft_index, np.int64))
                             if soft else None)
        self.register_buffer("sid_soft_weight", torch.from_numpy(np.ascontiguousarray(items.soft_weight, np.float32))
                             if soft else None)

    def code_vectors(self, level: int) -> torch.Tensor:
        """Embeddings of level ``level``'s codes, row 0 the unknown code: (K_l + 1, embed_dim)."""
        offset = int(self.item_offsets[1 + level])
        size = int(self.item_offsets[2 + level]) - offset if 2 + level < len(self.item_offsets) else \
            self.table.num_embeddings - offset
        rows = self.table.weight[offset:offset + size]
        codewords = getattr(self, f"sid_codewords_{level}", None)
        if codewords is not None:
            weight = self.content.weight if self.shared_projection else self.codewords_projection.weight
            rows = rows + codewords @ weight.T
        return rows

    def _level_fields(self, item_rows: torch.Tensor, fields: torch.Tensor,
                      drop_sid: torch.Tensor | None) -> torch.Tensor:
        """(..., L, embed_dim) level-field embeddings from code vectors (codeword init, soft IDs)."""
        levels = []
        for level in range(self.n_levels):
            vectors = self.code_vectors(level)
            if self.sid_soft_index is None:
                levels.append(vectors[fields[..., 1 + level]])
                continue
            index, weight = self.sid_soft_index[item_rows, level], self.sid_soft_weight[item_rows, level]
            if drop_sid is not None:  # all weight on the unknown code
                index = index.masked_fill(drop_sid.unsqueeze(-1), 0)
                weight = torch.where(drop_sid.unsqueeze(-1), torch.zeros_like(weight), weight)
                weight[..., 0] = torch.where(drop_sid, torch.ones_like(weight[..., 0]), weight[..., 0])
            levels.append((vectors[index] * weight.unsqueeze(-1)).sum(-2))
        return torch.stack(levels, dim=-2)

    def items(self, item_rows: torch.Tensor, drop_item_id: torch.Tensor | None = None,
              drop_sid: torch.Tensor | None = None) -> torch.Tensor:
        """(..., ) item rows -> (..., n_item_fields, embed_dim). ``drop_item_id`` / ``drop_sid``
        (bool, same shape as ``item_rows``, training only) replace those rows' item ID / every
        semantic-ID field by the out-of-vocabulary 0."""
        fields = self.item_fields[item_rows]
        if drop_item_id is not None or drop_sid is not None:
            fields = fields.clone()
        if drop_item_id is not None:
            fields[..., 0] = fields[..., 0].masked_fill(drop_item_id, 0)
        if drop_sid is not None:
            fields[..., 1:] = fields[..., 1:].masked_fill(drop_sid.unsqueeze(-1), 0)
        embedded = self.table(fields + self.item_offsets)
        if self.n_levels:
            embedded = torch.cat([embedded[..., :1, :], self._level_fields(item_rows, fields, drop_sid),
                                  embedded[..., 1 + self.n_levels:, :]], dim=-2)
        if self.content is not None:
            if item_rows.numel() > self.item_content.shape[0]:  # project the table once, then gather
                projected = self.content(self.item_content)[item_rows]
            else:
                projected = self.content(self.item_content[item_rows])
            embedded = torch.cat([embedded, projected.unsqueeze(-2)], dim=-2)
        return embedded

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [self.table(batch["context"] + self.context_offsets),
                 self.items(batch["item"], batch.get("drop_item_id"), batch.get("drop_sid"))]
        if self.numeric is not None:
            parts.append(self.numeric(batch["numeric"]).unsqueeze(1))
        return torch.cat(parts, dim=1)


class CTRModel(nn.Module):
    """Base: holds the field embedding; subclasses map (B, F, d) field vectors to a logit."""

    name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type["CTRModel"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            CTRModel.registry[cls.name] = cls

    def __init__(self, layout: FeatureLayout, items: ItemTables, embed_dim: int):
        super().__init__()
        self.layout = layout
        self.embedding = FieldEmbedding(layout, items, embed_dim)

    def logit(self, fields: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logit = self.logit(self.embedding(batch), batch)
        return {"logit": logit, "y_pred": torch.sigmoid(logit)}


class FNN(CTRModel):
    """Concatenated field embeddings through an MLP (Zhang et al. 2016)."""

    name = "fnn"

    def __init__(self, layout, items, *, embed_dim: int = 16,
                 hidden_dims: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        super().__init__(layout, items, embed_dim)
        self.tower, width = mlp_tower(self.embedding.n_fields * embed_dim, hidden_dims, dropout)
        self.head = nn.Linear(width, 1)

    def logit(self, fields, batch):
        return self.head(self.tower(fields.flatten(1))).squeeze(1)


class IPNN(CTRModel):
    """Inner-product network (Qu et al. 2016): field embeddings plus all pairwise inner products."""

    name = "ipnn"

    def __init__(self, layout, items, *, embed_dim: int = 16,
                 hidden_dims: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        super().__init__(layout, items, embed_dim)
        n = self.embedding.n_fields
        rows, cols = torch.triu_indices(n, n, offset=1)
        self.register_buffer("pair_rows", rows)
        self.register_buffer("pair_cols", cols)
        self.tower, width = mlp_tower(n * embed_dim + len(rows), hidden_dims, dropout)
        self.head = nn.Linear(width, 1)

    def logit(self, fields, batch):
        products = (fields[:, self.pair_rows] * fields[:, self.pair_cols]).sum(-1)
        return self.head(self.tower(torch.cat([fields.flatten(1), products], dim=1))).squeeze(1)


class DeepFM(CTRModel):
    """Factorization machine (first and second order) plus an MLP on shared embeddings (Guo et al. 2017)."""

    name = "deepfm"

    def __init__(self, layout, items, *, embed_dim: int = 16,
                 hidden_dims: tuple[int, ...] = (256, 128), dropout: float = 0.0):
        super().__init__(layout, items, embed_dim)
        self.first_order = nn.Linear(self.embedding.n_fields * embed_dim, 1)
        self.tower, width = mlp_tower(self.embedding.n_fields * embed_dim, hidden_dims, dropout)
        self.head = nn.Linear(width, 1)

    def logit(self, fields, batch):
        flat = fields.flatten(1)
        second_order = 0.5 * (fields.sum(1).square() - fields.square().sum(1)).sum(1)
        return (self.first_order(flat).squeeze(1) + second_order + self.head(self.tower(flat)).squeeze(1))


class DCNv2(CTRModel):
    """Deep & Cross Network v2 (Wang et al. 2021), parallel form: full-rank cross layers
    ``x_{l+1} = x0 * (W x_l + b) + x_l`` beside an MLP."""

    name = "dcnv2"

    def __init__(self, layout, items, *, embed_dim: int = 16,
                 hidden_dims: tuple[int, ...] = (256, 128), dropout: float = 0.0, cross_layers: int = 3):
        super().__init__(layout, items, embed_dim)
        width_in = self.embedding.n_fields * embed_dim
        self.cross = nn.ModuleList([nn.Linear(width_in, width_in) for _ in range(cross_layers)])
        self.tower, width = mlp_tower(width_in, hidden_dims, dropout)
        self.head = nn.Linear(width_in + width, 1)

    def logit(self, fields, batch):
        x0 = fields.flatten(1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.head(torch.cat([x, self.tower(x0)], dim=1)).squeeze(1)


class DIN(CTRModel):
    """Deep Interest Network (Zhou et al. 2018): attention of the target item over the user's
    recent positive items, each represented like the target (item id + semantic-ID levels
    [+ content]); weights from an MLP on ``[h, t, h - t, h * t]``, unnormalized, padding masked."""

    name = "din"

    def __init__(self, layout, items, *, embed_dim: int = 16,
                 hidden_dims: tuple[int, ...] = (256, 128), dropout: float = 0.0,
                 attention_dims: tuple[int, ...] = (64, 32)):
        super().__init__(layout, items, embed_dim)
        item_width = self.embedding.n_item_fields * embed_dim
        attention, width = mlp_tower(4 * item_width, attention_dims, 0.0)
        self.attention = nn.Sequential(attention, nn.Linear(width, 1))
        self.tower, width = mlp_tower(self.embedding.n_fields * embed_dim + item_width, hidden_dims, dropout)
        self.head = nn.Linear(width, 1)

    def logit(self, fields, batch):
        target = self.embedding.items(batch["item"]).flatten(1)                  # (B, W)
        history_rows = batch["history"]                                         # (B, H)
        history = self.embedding.items(history_rows).flatten(2)                 # (B, H, W)
        expanded = target.unsqueeze(1).expand_as(history)
        scores = self.attention(torch.cat([history, expanded, history - expanded, history * expanded], -1))
        scores = scores.squeeze(-1) * (history_rows > 0)
        interest = (scores.unsqueeze(-1) * history).sum(1)
        return self.head(self.tower(torch.cat([fields.flatten(1), interest], dim=1))).squeeze(1)


MODELS = tuple(CTRModel.registry)


def build_model(name: str, layout: FeatureLayout, items: ItemTables, **params) -> CTRModel:
    from rqgmm.errors import InvalidInputError

    klass = CTRModel.registry.get(name)
    if klass is None:
        raise InvalidInputError(f"model must be one of {MODELS}, got {name!r}")
    if name == "din" and not layout.history_length:
        raise InvalidInputError("din needs user histories (history_length > 0)")
    return klass(layout, items, **params)


def check_model_params(name: str, params: dict, where: str = "model params") -> None:
    """Refuse an unknown model name or keyword hyperparameters its class does not take, before
    anything is trained (``where`` names the place in messages)."""
    import inspect

    from rqgmm.errors import InvalidInputError

    klass = CTRModel.registry.get(name)
    if klass is None:
        raise InvalidInputError(f"{where}: model must be one of {MODELS}, got {name!r}")
    signature = inspect.signature(klass.__init__)
    accepted = {p.name for p in signature.parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InvalidInputError(f"{where}: {name} has no parameter {unknown[0]!r}; it takes {sorted(accepted)}")
