"""Semantic IDs in a CTR model you wrote yourself.

    rqgmm fit rq-kmeans items.parquet -o tok/ --levels 2 --codebook-size 64
    rqgmm features tok/ items.parquet -o sid.parquet          # + sid.parquet.json
    python examples/own_ctr_model.py sid.parquet clicks.parquet

``clicks.parquet``: user_id, item_id, label (0/1). The model below is ordinary PyTorch: a user
embedding, the item's semantic-ID fields through :class:`SemanticIDEmbedding`, an MLP. Nothing
else of rqgmm is used: the feature file and its JSON sidecar are the whole interface.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import torch
from torch import nn

from rqgmm.ctr.sid_embedding import SemanticIDEmbedding


class ClickModel(nn.Module):
    def __init__(self, n_users: int, cardinalities: list[int], dim: int = 8):
        super().__init__()
        self.users = nn.Embedding(n_users + 1, dim)
        self.items = SemanticIDEmbedding(cardinalities, dim, combine="concat")
        self.mlp = nn.Sequential(nn.Linear(dim + self.items.output_dim, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, users: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.users(users), self.items(fields)], dim=1)).squeeze(1)


def load(features_path: str, clicks: pd.DataFrame, users: pd.Index) -> tuple[np.ndarray, np.ndarray, dict]:
    """(user index (n,), item fields (n, F), the sidecar) of every click; an unknown user is 0, an
    item without features gets the unknown fields (all 0)."""
    with open(features_path + ".json") as handle:
        spec = json.load(handle)
    table = pd.read_parquet(features_path)
    by_item = dict(zip(table[spec["id_column"]].astype(str), table[spec["fields"]].to_numpy(np.int64)))
    unknown = np.zeros(len(spec["fields"]), np.int64)
    fields = np.stack([by_item.get(item, unknown) for item in clicks["item_id"].astype(str)])
    return users.get_indexer(clicks["user_id"].astype(str)) + 1, fields, spec


def train(features_path: str, clicks: pd.DataFrame, epochs: int = 5, seed: int = 0):
    """A :class:`ClickModel` fitted on ``clicks``; returns (model, sidecar, user index)."""
    torch.manual_seed(seed)
    user_index = pd.Index(clicks["user_id"].astype(str).unique())
    users, fields, spec = load(features_path, clicks, user_index)
    model = ClickModel(len(user_index), spec["cardinalities"])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    u, f = torch.from_numpy(users), torch.from_numpy(fields)
    y = torch.from_numpy(clicks["label"].to_numpy(np.float32))
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(512):
            loss = nn.functional.binary_cross_entropy_with_logits(model(u[batch], f[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, spec, user_index


def predict(model: ClickModel, features_path: str, clicks: pd.DataFrame, user_index: pd.Index) -> np.ndarray:
    """Click probabilities (n,) of ``clicks``' rows, new items included (their IDs come from content)."""
    users, fields, _ = load(features_path, clicks, user_index)
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(users), torch.from_numpy(fields))).numpy()


if __name__ == "__main__":
    features_path, clicks_path = sys.argv[1:3]
    clicks = pd.read_parquet(clicks_path)
    model, spec, _ = train(features_path, clicks)
    print(f"trained on {len(clicks):,} clicks with fields {spec['fields']} (tokenizer {spec['tokenizer_version']})")
