"""Training and evaluation of the retrieval models, and the item-level metrics.

Training: each user's training sequence is cut into windows of ``history + 1`` items (stride
``history``); every next-token (TIGER) or next-item (SASRec) prediction in a window is a loss
term, except targets that are cold items. Adam, early stopping on validation Recall@10 (TIGER:
on a seeded sample of validation users, beam search being the costly part); the best epoch's
weights are kept.

Metrics are computed on items: a generated ID carries its collision suffix, so it names exactly
one item. Recall@K: share of users whose target is among the first K; NDCG@K: 1 / log2(rank + 2)
at the target's rank (0-based), 0 beyond K. Cold: the same over users whose target is cold.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from rqgmm.progress import progress_bar
from rqgmm.retrieval.data import Sequences
from rqgmm.retrieval.models import CausalTransformer, generate, pad_right, rank_items
from rqgmm.retrieval.tokens import PAD, ItemTokens

KS = (5, 10)


@dataclass(frozen=True)
class RetrievalTraining:
    history: int = 20           # items a model reads
    dim: int = 64
    heads: int = 2
    layers: int = 2
    dropout: float = 0.1
    learning_rate: float = 2e-3
    batch_size: int = 128
    max_epochs: int = 30
    patience: int = 3
    sasrec_max_epochs: int = 200  # SASRec's epochs are cheap (no beam search to validate): let it converge
    sasrec_patience: int = 10
    beams: int = 10
    validation_users: int = 300  # TIGER: validation users sampled for early stopping
    seed: int = 0


@dataclass
class RetrievalResult:
    metrics: dict = field(default_factory=dict)
    epochs: list = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


def item_metrics(ranked: list[list[int]], targets: np.ndarray, cold: np.ndarray) -> dict[str, float | int | None]:
    """Recall@K and NDCG@K (K in 5, 10) over all users and over users whose target is cold."""
    out: dict = {}
    ranks = np.array([ranking.index(t) if t in ranking else 10**9 for ranking, t in zip(ranked, targets.tolist())])
    is_cold = cold[targets]
    for k in KS:
        hit = ranks < k
        gain = np.where(hit, 1.0 / np.log2(ranks.clip(max=10**6) + 2.0), 0.0)
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(gain.mean())
        out[f"cold_recall@{k}"] = float(hit[is_cold].mean()) if is_cold.any() else None
    out["users"] = int(len(targets))
    out["cold_users"] = int(is_cold.sum())
    return out


def popularity(sequences: Sequences, k: int = max(KS)) -> list[int]:
    """The ``k`` items most often a training target (cold items never are)."""
    counts = np.bincount(np.concatenate(sequences.train), minlength=sequences.n_items).astype(float)
    counts[sequences.cold] = -1
    return np.argsort(-counts, kind="stable")[:k].tolist()


def windows(sequences: Sequences, length: int) -> list[np.ndarray]:
    """Windows of ``length`` items (the last one of each user shorter), stride ``length - 1``."""
    out = []
    for items in sequences.train:
        if len(items) < 2:
            continue
        for start in range(0, max(len(items) - 1, 1), length - 1):
            window = items[start:start + length]
            if len(window) >= 2:
                out.append(window)
    return out


def _batches(examples: list[np.ndarray], batch_size: int, generator: torch.Generator):
    order = torch.randperm(len(examples), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start:start + batch_size]]


def fit_tiger(sequences: Sequences, item_tokens: ItemTokens, config: RetrievalTraining,
              progress: bool | None = False) -> tuple[CausalTransformer, RetrievalResult]:
    """Train a generative retriever over ``item_tokens``; returns it and its record (test metrics
    included)."""
    width = item_tokens.width
    torch.manual_seed(config.seed)
    model = CausalTransformer(item_tokens.vocab_size, (config.history + 1) * width, dim=config.dim,
                              heads=config.heads, layers=config.layers, dropout=config.dropout)
    examples = []
    for window in windows(sequences, config.history + 1):
        tokens = item_tokens.sequence(window)
        target_is_cold = np.repeat(sequences.cold[window], width)
        examples.append((tokens, target_is_cold))

    def loss_of(batch) -> torch.Tensor:
        length = max(len(tokens) for tokens, _ in batch)
        tokens = torch.from_numpy(pad_right([t for t, _ in batch], length))
        skip = torch.from_numpy(pad_right([c.astype(np.int64) for _, c in batch], length)).bool()
        targets = tokens[:, 1:].masked_fill(skip[:, 1:], PAD)  # cold items' tokens are never targets
        logits = model(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)

    rng = np.random.default_rng(config.seed)
    users = np.arange(len(sequences.train))
    sample = users if len(users) <= config.validation_users else rng.choice(users, config.validation_users, False)

    def validate() -> float:
        ranked = generate(model, item_tokens, [sequences.history("validation", u)[-config.history:] for u in sample],
                          config.beams)
        return item_metrics(ranked, sequences.validation[sample], sequences.cold)["recall@10"]

    model, result = _train(model, examples, loss_of, validate, config, progress, "tiger")
    ranked = generate(model, item_tokens, [sequences.history("test", u)[-config.history:] for u in users],
                      config.beams)
    result.metrics = item_metrics(ranked, sequences.test, sequences.cold)
    return model, result


def fit_sasrec(sequences: Sequences, config: RetrievalTraining,
               progress: bool | None = False) -> tuple[CausalTransformer, RetrievalResult]:
    """SASRec (Kang & McAuley 2018) as a causal Transformer over item IDs with a full softmax over
    the catalogue; cold items are never a target, so their output rows stay untrained."""
    torch.manual_seed(config.seed)
    model = CausalTransformer(sequences.n_items + 1, config.history + 1, dim=config.dim, heads=config.heads,
                              layers=config.layers, dropout=config.dropout)
    examples = [window + 1 for window in windows(sequences, config.history + 1)]
    cold = torch.from_numpy(np.r_[False, sequences.cold])

    def loss_of(batch) -> torch.Tensor:
        tokens = torch.from_numpy(pad_right(batch, max(len(b) for b in batch)))
        targets = tokens[:, 1:]
        targets = targets.masked_fill(cold[targets], PAD)
        logits = model(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)

    users = np.arange(len(sequences.train))

    def validate() -> float:
        ranked = rank_items(model, [sequences.history("validation", u)[-config.history:] for u in users], 10)
        return item_metrics(ranked, sequences.validation, sequences.cold)["recall@10"]

    sasrec = replace(config, max_epochs=config.sasrec_max_epochs, patience=config.sasrec_patience)
    model, result = _train(model, examples, loss_of, validate, sasrec, progress, "sasrec")
    ranked = rank_items(model, [sequences.history("test", u)[-config.history:] for u in users], max(KS))
    result.metrics = item_metrics(ranked, sequences.test, sequences.cold)
    return model, result


def _train(model, examples, loss_of, validate, config: RetrievalTraining, progress, name: str):
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    result = RetrievalResult()
    best, best_state, stale = -math.inf, None, 0
    started = time.perf_counter()
    bar = progress_bar(range(config.max_epochs), enabled=progress, desc=name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in bar:
            model.train()
            total, count = 0.0, 0
            for batch in _batches(examples, config.batch_size, generator):
                loss = loss_of(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + float(loss.detach()) * len(batch), count + len(batch)
            score = validate()
            result.epochs.append({"epoch": epoch, "train_loss": total / max(count, 1), "validation_recall@10": score})
            bar.set_postfix(loss=f"{total / max(count, 1):.3f}", val_recall10=f"{score:.4f}")
            if score > best:
                best, best_state, stale, result.best_epoch = score, copy.deepcopy(model.state_dict()), 0, epoch
            else:
                stale += 1
                if stale >= config.patience:
                    break
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return model, result
