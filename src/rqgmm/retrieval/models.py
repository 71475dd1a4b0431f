"""The sequence models: one causal Transformer, over semantic-ID tokens (TIGER-style generative
retrieval) or over item IDs (SASRec).

Decoder-only rather than TIGER's T5 encoder-decoder: one stack reads the history and writes the
next ID, which halves the parameters and the code for the same next-token objective (GRID, the
snap-research reimplementation, offers both and reports them close); sequences are left-aligned
and right-padded, so a token's position is the same in training and in generation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rqgmm.retrieval.tokens import PAD, ItemTokens


class CausalTransformer(nn.Module):
    """tokens (B, T) int64 -> logits (B, T, vocab_size): position t predicts token t + 1."""

    def __init__(self, vocab_size: int, max_len: int, *, dim: int = 64, heads: int = 2, layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.position = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        self.max_len = max_len

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        hidden = self.embed(tokens) + self.position(positions)[None]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        return self.head(self.norm(self.blocks(hidden, mask=mask, is_causal=True)))


def pad_right(rows: list[np.ndarray], length: int) -> np.ndarray:
    out = np.full((len(rows), length), PAD, dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, :len(row)] = row
    return out


@torch.no_grad()
def generate(model: CausalTransformer, item_tokens: ItemTokens, histories: list[np.ndarray], beams: int,
             batch_size: int = 128) -> list[list[int]]:
    """Beam search over semantic IDs, each step restricted by the prefix trie to tokens that
    continue a real item's ID: per history, up to ``beams`` items, best first."""
    model.eval()
    width = item_tokens.width
    results: list[list[int]] = []
    for start in range(0, len(histories), batch_size):
        chunk = [item_tokens.sequence(h) for h in histories[start:start + batch_size]]
        lengths = np.array([len(c) for c in chunk])
        # per history: beams as (score, prefix tuple); start with the empty prefix
        frontier = [[(0.0, ())] for _ in chunk]
        for step in range(width):
            rows, owners = [], []
            for index, beam_list in enumerate(frontier):
                for score, prefix in beam_list:
                    rows.append(np.concatenate([chunk[index], np.array(prefix, dtype=np.int64)]))
                    owners.append((index, score, prefix))
            tokens = torch.from_numpy(pad_right(rows, int(lengths.max()) + step))
            logits = model(tokens)
            last = torch.from_numpy(np.array([lengths[i] + step - 1 for i, _, _ in owners]))
            log_probs = torch.log_softmax(logits[torch.arange(len(rows)), last], dim=-1).numpy()
            candidates: list[list[tuple[float, tuple]]] = [[] for _ in chunk]
            for row, (index, score, prefix) in enumerate(owners):
                allowed = item_tokens.allowed[prefix]
                scores = score + log_probs[row, allowed]
                keep = np.argsort(-scores)[:beams]
                candidates[index] += [(float(scores[k]), (*prefix, int(allowed[k]))) for k in keep]
            frontier = [sorted(c, key=lambda item: -item[0])[:beams] for c in candidates]
        results += [[item_tokens.item_of[prefix] for _, prefix in beam_list] for beam_list in frontier]
    return results


@torch.no_grad()
def rank_items(model: CausalTransformer, histories: list[np.ndarray], k: int, batch_size: int = 256) -> list[list[int]]:
    """SASRec: the ``k`` highest-scoring items after each history (item rows; token = row + 1)."""
    model.eval()
    results = []
    for start in range(0, len(histories), batch_size):
        chunk = [np.asarray(h, dtype=np.int64) + 1 for h in histories[start:start + batch_size]]
        lengths = np.array([len(c) for c in chunk])
        logits = model(torch.from_numpy(pad_right(chunk, int(lengths.max()))))
        last = logits[torch.arange(len(chunk)), torch.from_numpy(lengths - 1)]
        last[:, PAD] = -torch.inf
        results += (torch.topk(last, k, dim=-1).indices - 1).tolist()
    return results
