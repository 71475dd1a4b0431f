"""Generative retrieval: IDs as tokens, trie-constrained beam search, item-level metrics, and a
model that learns a sequential pattern and recommends items it never saw as targets."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rqgmm import RQKMeans
from rqgmm.cli import main
from rqgmm.retrieval.data import leave_last_out
from rqgmm.retrieval.study import id_quality
from rqgmm.retrieval.tokens import ItemTokens
from rqgmm.retrieval.train import RetrievalTraining, fit_sasrec, fit_tiger, item_metrics, popularity


def test_metrics_count_items_and_rank_positions():
    ranked = [[3, 1, 2], [5, 6, 7], [9, 8, 0]]
    targets = np.array([1, 4, 9])
    cold = np.zeros(10, bool)
    cold[9] = True
    m = item_metrics(ranked, targets, cold)
    assert m["recall@5"] == pytest.approx(2 / 3) and m["cold_recall@5"] == 1.0 and m["cold_users"] == 1
    assert m["ndcg@5"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(2)) / 3)


def test_tokens_are_unique_per_item_and_the_trie_allows_only_real_ids():
    ids = np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0]])
    tokens = ItemTokens(ids)
    assert tokens.vocab_size == 2 + 3 + 2 + 2 and tokens.width == 3
    first = tuple(tokens.allowed[()].tolist())
    assert first == (2, 4)  # level-0 codes 0 and 2
    assert tokens.item_of[tuple(tokens.tokens[1].tolist())] == 1
    with pytest.raises(ValueError, match="share a full ID"):
        ItemTokens(np.array([[0, 1], [0, 1]]))
    quality = id_quality(np.array([[0, 1], [0, 1], [2, 0]]), [3, 2])
    assert quality["independent_code_ratio"] == pytest.approx(1 / 3)
    assert quality["prefix_utilization"] == pytest.approx([2 / 3, 2 / 3])


def _clustered_sequences(seed=0, n_clusters=6, per_cluster=10, n_users=150, length=30):
    """Users walk inside one cluster of items: the next item is any item of the current cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, 8)) * 5
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    content = (centres[cluster] + rng.normal(size=(len(cluster), 8)) * 0.3).astype(np.float32)
    rows = []
    for user in range(n_users):
        c = rng.integers(n_clusters)
        items = rng.choice(np.flatnonzero(cluster == c), length)
        rows += [(str(user), str(item), t) for t, item in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return frame, content, pd.Index([str(i) for i in range(len(content))])


def test_generation_learns_the_pattern_and_reaches_cold_items():
    frame, content, ids = _clustered_sequences()
    sequences = leave_last_out(frame, ids, cold_share=0.2, seed=0)
    assert sequences.cold.sum() == 12 and len(sequences.train) == 150
    tokenizer = RQKMeans(n_levels=2, codebook_size=[6, 4], random_state=0, progress=False).fit(content)
    item_tokens = ItemTokens(tokenizer.encode(content, collisions="suffix"))
    training = RetrievalTraining(history=8, dim=32, layers=1, max_epochs=12, patience=12, beams=10,
                                 sasrec_max_epochs=12, sasrec_patience=12,
                                 learning_rate=5e-3, validation_users=60)
    _, tiger = fit_tiger(sequences, item_tokens, training)
    _, sasrec = fit_sasrec(sequences, training)
    ranking = popularity(sequences)
    popular = item_metrics([ranking] * len(sequences.test), sequences.test, sequences.cold)
    # ten items per cluster: knowing the cluster puts the target in the top 10 most of the time
    assert tiger.metrics["recall@10"] > popular["recall@10"] + 0.3, (tiger.metrics, popular)
    assert sasrec.metrics["recall@10"] > popular["recall@10"] + 0.3, (sasrec.metrics, popular)
    # cold items were never a target: generation reaches them through their content's codes
    assert tiger.metrics["cold_recall@10"] > 0.2 and popular["cold_recall@10"] == 0.0
    assert sasrec.metrics["cold_recall@10"] < tiger.metrics["cold_recall@10"]


def test_the_study_command_names_a_bad_tokenizer():
    result = CliRunner().invoke(main, ["retrieval", "study", "--tokenizers", "rq-kmeans-3xabc", "-q"])
    assert result.exit_code != 0 and "rq-kmeans-3xabc" in result.output and "Traceback" not in result.output
