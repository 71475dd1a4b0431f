"""Semantic IDs as CTR features: prefix fields, item-ID dropout, tail AUC, bad options."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from rqgmm import RQKMeans
from rqgmm.cli import main
from rqgmm.ctr.features import FeatureEncoder, prefix_cardinalities, prefix_fields
from rqgmm.ctr.item_tables import SemanticIDs
from rqgmm.ctr.metrics import auc
from rqgmm.ctr.run import RunConfig, fit_and_evaluate, prepare
from rqgmm.ctr.splits import make_split
from rqgmm.ctr.training import TrainingConfig
from rqgmm.data.interactions import CTRDataset
from rqgmm.errors import InvalidInputError

SMALL_MODEL = {"embed_dim": 8, "hidden_dims": [32]}


def test_prefix_fields_of_a_hand_made_code_table():
    codes = np.array([[0, 0, 0], [0, 1, 2], [1, 0, 3], [2, 3, 1]])
    sizes = [3, 4, 5]
    exact = prefix_fields(codes, sizes, buckets=10**6)
    # level 1: c1; level 2: c1 * 4 + c2; level 3: (c1 * 4 + c2) * 5 + c3
    expected = np.array([[0, 0, 0], [0, 1, 7], [1, 4, 23], [2, 11, 56]])
    assert (exact == expected).all()
    assert prefix_cardinalities(sizes, 10**6) == [3, 12, 60]
    # equal prefixes share a value, different prefixes do not (exact vocabularies)
    assert exact[0, 0] == exact[1, 0] and exact[0, 1] != exact[1, 1]
    # above the bucket count, levels are hashed: deterministic, in range, and level 1 stays exact
    hashed = prefix_fields(codes, sizes, buckets=7)
    assert (hashed == prefix_fields(codes.copy(), sizes, buckets=7)).all()
    assert (hashed[:, 0] == exact[:, 0]).all() and ((hashed >= 0) & (hashed < 7)).all()
    assert prefix_cardinalities(sizes, 7) == [3, 7, 7]
    # a hashed prefix depends on the whole prefix: the same last code under different parents differs
    many = np.array([[a, b, 0] for a in range(3) for b in range(4)])
    assert len(set(prefix_fields(many, sizes, buckets=50)[:, 2].tolist())) > 6


def _clustered_catalogue(seed=0, n_items=600, n_clusters=6, n_sub=4, n_users=150, rows_per_user=80):
    """Items in clusters with sub-clusters whose offsets differ per cluster; the click probability
    depends on the (cluster, sub-cluster) pair, so a level-2 code means nothing without its parent."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, 16)) * 4
    offsets = rng.normal(size=(n_clusters, n_sub, 16)) * 1.0
    cluster = rng.integers(0, n_clusters, n_items)
    sub = rng.integers(0, n_sub, n_items)
    content = (centres[cluster] + offsets[cluster, sub] + rng.normal(size=(n_items, 16)) * 0.1).astype(np.float32)
    score = rng.normal(size=(n_clusters, n_sub)) * 2.5
    users = np.repeat(np.arange(n_users), rows_per_user)
    items = rng.integers(0, n_items, len(users))
    label = (rng.random(len(users)) < 1 / (1 + np.exp(-score[cluster[items], sub[items]]))).astype(int)
    frame = pd.DataFrame({"user_id": users, "item_id": items, "label": label,
                          "timestamp": rng.integers(0, 10**6, len(users))})
    return CTRDataset("clusters", frame, pd.DataFrame({"item_id": np.arange(n_items)}), (), (), content), content


def test_prefix_beats_level_on_new_items_when_the_label_needs_the_parent():
    dataset, content = _clustered_catalogue()
    tokenizer = RQKMeans(n_levels=2, codebook_size=[6, 4], random_state=0, progress=False).fit(content)
    codes = tokenizer.encode(content)
    split = make_split(dataset.interactions, "cold-item", seed=0)
    cold = {}
    for representation in ("level", "prefix"):
        aucs = []
        for seed in (0, 1):
            encoder = FeatureEncoder("sid", history_length=0, sid_representation=representation)
            data = prepare(dataset, split, encoder, semantic=SemanticIDs(codes, tokenizer.codebook_sizes))
            training = TrainingConfig(max_epochs=8, batch_size=512, learning_rate=1e-2, patience=3, seed=seed)
            _, _, metrics = fit_and_evaluate(data, "fnn", SMALL_MODEL, training, progress=False)
            aucs.append(metrics["test"]["cold_auc"])
        cold[representation] = float(np.mean(aucs))
    # a level-2 code alone is shared by unrelated sub-clusters of different parents; the prefix is not
    assert cold["prefix"] > cold["level"] + 0.04, cold


def test_item_id_dropout_trains_the_unknown_row_and_leaves_evaluation_alone():
    from rqgmm.ctr.run import new_model
    from rqgmm.ctr.training import predict

    dataset, content = _clustered_catalogue(n_items=200, n_users=60, rows_per_user=40)
    split = make_split(dataset.interactions, "cold-item", seed=0)
    data = prepare(dataset, split, FeatureEncoder("id", history_length=0))
    fresh = new_model("fnn", data.encoder, SMALL_MODEL, seed=0)
    oov = int(fresh.embedding.item_offsets[0])  # row of item-id index 0, the unknown item
    for rate in (0.0, 0.3):
        training = TrainingConfig(max_epochs=2, batch_size=256, learning_rate=1e-2, patience=2, seed=0,
                                  item_id_dropout=rate)
        model, _, _ = fit_and_evaluate(data, "fnn", SMALL_MODEL, training, progress=False)
        moved = not torch.equal(model.embedding.table.weight[oov], fresh.embedding.table.weight[oov])
        # every training item is in the vocabulary: only dropout ever feeds the unknown row
        assert moved == (rate > 0)
        # evaluation never drops: scoring is deterministic and ignores the training-only mask
        first = predict(model, data.inputs["test"])
        assert np.array_equal(first, predict(model, data.inputs["test"]))


def test_tail_auc_equals_a_slow_reference():
    dataset, content = _clustered_catalogue(n_items=900, n_users=80, rows_per_user=50)
    split = make_split(dataset.interactions, "time", seed=0)
    data = prepare(dataset, split, FeatureEncoder("id", history_length=0), tail_threshold=3)
    model, _, metrics = fit_and_evaluate(data, "fnn", SMALL_MODEL, TrainingConfig(max_epochs=1, seed=0),
                                         progress=False)
    frame = dataset.interactions
    train_items = frame["item_id"].iloc[split.train].tolist()
    test_items = frame["item_id"].iloc[split.test].tolist()
    mask = np.array([train_items.count(item) <= 3 for item in test_items])
    from rqgmm.ctr.training import predict

    scores = predict(model, data.inputs["test"])
    assert metrics["test"]["tail_rows"] == int(mask.sum()) > 0
    assert metrics["test"]["tail_auc"] == pytest.approx(auc(data.inputs["test"]["label"][mask], scores[mask]))


@pytest.mark.parametrize("options, message", [
    (["--prefix-buckets", "0"], "prefix_buckets must be an int >= 1"),
    (["--item-id-dropout", "1.0"], r"item_id_dropout must be a number in \[0, 1\)"),
    (["--item-id-dropout", "-0.1"], r"item_id_dropout must be a number in \[0, 1\)"),
    (["--tail-threshold", "-1"], "must be an int >= 0"),
    (["--sid-representation", "ngram"], "'ngram' is not one of"),
])
def test_bad_ctr_options_are_named_before_training(tmp_path, options, message):
    result = CliRunner().invoke(main, ["ctr", "train", "--features", "id", "-o", str(tmp_path / "run"), "-q",
                                       *options])
    import re

    assert result.exit_code != 0 and "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and re.search(message, error[0]), result.output
    assert not (tmp_path / "run").exists()


def test_a_saved_run_keeps_its_representation(tmp_path):
    dataset, content = _clustered_catalogue(n_items=120, n_users=40, rows_per_user=30)
    tokenizer = RQKMeans(n_levels=2, codebook_size=[4, 3], random_state=0, progress=False).fit(content)
    encoder = FeatureEncoder("sid", history_length=0, sid_representation="level+prefix", prefix_buckets=5)
    encoder.fit(dataset, np.arange(100), item_codes=tokenizer.encode(content),
                codebook_sizes=tokenizer.codebook_sizes)
    layout = encoder.layout
    assert layout.item_fields == ("item_id", "sid_0", "sid_1", "sid_prefix_0", "sid_prefix_1")
    assert layout.item_cardinalities[1:] == (5, 4, 5, 6)
    restored = FeatureEncoder.from_state(*encoder.state())
    assert restored.layout == layout and (restored.item_fields == encoder.item_fields).all()


def test_run_config_rejects_a_bad_tail_threshold():
    with pytest.raises(InvalidInputError, match="tail_threshold must be an int >= 0"):
        dataset, _ = _clustered_catalogue(n_items=60, n_users=10, rows_per_user=20)
        prepare(dataset, make_split(dataset.interactions, "time"), FeatureEncoder("id", history_length=0),
                tail_threshold=-2)
    tail_option = next(p for p in main.commands["ctr"].commands["train"].params if p.name == "tail_threshold")
    assert tail_option.default == RunConfig().tail_threshold == 5  # the CLI default is the library's


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_training_on_cuda_gives_the_cpu_figures():
    dataset, content = _clustered_catalogue(n_items=200, n_users=60, rows_per_user=40)
    split = make_split(dataset.interactions, "time", seed=0)
    data = prepare(dataset, split, FeatureEncoder("id", history_length=0))
    figures = {}
    for device in ("cpu", "cuda"):
        training = TrainingConfig(max_epochs=2, batch_size=256, seed=0, device=device)
        _, _, metrics = fit_and_evaluate(data, "fnn", SMALL_MODEL, training, progress=False)
        figures[device] = metrics["test"]["auc"]
    assert figures["cuda"] == pytest.approx(figures["cpu"], abs=5e-3)


def test_a_bad_training_device_is_named():
    with pytest.raises(InvalidInputError, match="training.device must be"):
        TrainingConfig(device="tpu")
