import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from rqgmm import RQKMeans
from rqgmm.ctr.features import FeatureEncoder, Vocabulary, user_histories
from rqgmm.ctr.metrics import auc, gauc, log_loss
from rqgmm.ctr.models import MODELS
from rqgmm.ctr.run import RunConfig, evaluate_run, load_run, train_run
from rqgmm.ctr.splits import cold_item_split, time_split
from rqgmm.ctr.training import predict
from rqgmm.data.interactions import CTRDataset, ParquetDatasetConfig, load_parquet_dataset
from rqgmm.errors import InvalidInputError

FAST = {"max_epochs": 3, "batch_size": 256, "patience": 3, "learning_rate": 1e-2}
SMALL_MODEL = {"embed_dim": 8, "hidden_dims": [32]}


def synthetic_tables(n_users=80, n_items=240, n_clusters=4, rows_per_user=120, dim=16, seed=0):
    """Items in content clusters; each user clicks the items of the clusters they like (10% noise)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 3
    cluster = rng.integers(0, n_clusters, n_items)
    content = (centers[cluster] + rng.normal(size=(n_items, dim)) * 0.3).astype(np.float32)
    likes = rng.random((n_users, n_clusters)) < 0.4
    users = np.repeat(np.arange(n_users), rows_per_user)
    items = rng.integers(0, n_items, len(users))
    label = likes[users, cluster[items]].astype(int)
    flip = rng.random(len(label)) < 0.1
    label[flip] = 1 - label[flip]
    interactions = pd.DataFrame({"uid": users, "sku": items, "clicked": label,
                                 "ts": rng.integers(0, 10**6, len(users)),
                                 "device": rng.choice(["ios", "android", "web"], len(users)),
                                 "price": rng.gamma(2.0, 10.0, len(users))})
    item_table = pd.DataFrame({"sku": np.arange(n_items), "embedding": list(content)})
    return interactions, item_table, content


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("ctr")
    interactions, items, content = synthetic_tables()
    interactions.to_parquet(root / "interactions.parquet")
    items.to_parquet(root / "items.parquet")
    config = root / "data.yaml"
    config.write_text(
        "name: synthetic\ninteractions: interactions.parquet\nitems: items.parquet\n"
        "columns: {user_id: uid, item_id: sku, label: clicked, timestamp: ts}\n"
        "categorical: [device]\nnumeric: [price]\nembedding_column: embedding\n")
    tokenizer = RQKMeans(n_levels=2, codebook_size=[4, 4], random_state=0, progress=False).fit(content)
    tokenizer.save(root / "tokenizer")
    return {"root": root, "config": str(config), "tokenizer": str(root / "tokenizer"), "content": content}


# ---------------------------------------------------------------- metrics
def test_auc_and_log_loss_equal_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = np.round(rng.random(5000), 2)  # many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert log_loss(labels, scores) == pytest.approx(sk_log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7)), rel=1e-12)


def test_gauc_equals_a_slow_per_user_reference():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 50, 4000)
    labels = rng.integers(0, 2, 4000)
    scores = np.round(rng.random(4000) + 0.3 * labels, 1)
    total, weight = 0.0, 0
    for user in np.unique(users):
        mask = users == user
        if 0 < labels[mask].sum() < mask.sum():
            total += roc_auc_score(labels[mask], scores[mask]) * mask.sum()
            weight += mask.sum()
    assert gauc(labels, scores, users) == pytest.approx(total / weight, abs=1e-12)


# ---------------------------------------------------------------- data, splits, features
def test_parquet_config_loads_and_renames(synthetic):
    dataset = load_parquet_dataset(ParquetDatasetConfig.from_yaml(synthetic["config"]))
    assert list(dataset.interactions.columns[:4]) == ["user_id", "item_id", "label", "timestamp"]
    assert dataset.categorical == ("device",) and dataset.numeric == ("price",)
    np.testing.assert_array_equal(dataset.item_embeddings, synthetic["content"])


def test_cold_item_split_keeps_held_out_items_out_of_training(synthetic):
    dataset = load_parquet_dataset(ParquetDatasetConfig.from_yaml(synthetic["config"]))
    split = cold_item_split(dataset.interactions, seed=3)
    items = dataset.interactions["item_id"].to_numpy()
    cold = set(split.cold_items)
    assert len(cold) == round(0.2 * len(np.unique(items)))
    assert not cold & set(items[split.train])
    validation_cold = set(items[split.validation]) & cold
    test_cold = set(items[split.test]) & cold
    assert validation_cold and test_cold and not validation_cold & test_cold
    assert sum(split.sizes().values()) == len(items)


def test_time_split_orders_by_timestamp(synthetic):
    dataset = load_parquet_dataset(ParquetDatasetConfig.from_yaml(synthetic["config"]))
    split = time_split(dataset.interactions)
    ts = dataset.interactions["timestamp"].to_numpy()
    assert ts[split.train].max() <= ts[split.validation].min()
    assert ts[split.validation].max() <= ts[split.test].min()
    assert split.sizes()["train"] == round(0.8 * len(ts))


def test_vocabulary_has_an_out_of_vocabulary_bucket_and_min_count():
    vocab = Vocabulary.fit(pd.Series(["a", "b", "b", "c", "c", "c"]), min_count=2)
    assert vocab.values == ["b", "c"] and len(vocab) == 3
    np.testing.assert_array_equal(vocab.transform(np.array(["a", "b", "c", "zzz"])), [0, 1, 2, 0])


def test_histories_match_a_slow_reference():
    frame = pd.DataFrame({"user_id": ["u1", "u2", "u1", "u1", "u2", "u1"], "item_id": ["a", "b", "c", "a", "c", "b"],
                          "label": [1, 1, 0, 1, 1, 1], "timestamp": [5, 1, 6, 7, 2, 9]})
    item_ids = pd.Index(["a", "b", "c"])
    history = user_histories(frame, item_ids, 2)
    # u1 in time order: a(5,+) c(6,-) a(7,+) b(9,+); u2: b(1,+) c(2,+)
    expected = {0: [0, 0], 2: [0, 1], 3: [0, 1], 5: [1, 1], 1: [0, 0], 4: [0, 2]}
    for row, items in expected.items():
        assert history[row].tolist() == items, row


# ---------------------------------------------------------------- models
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_saves_loads_and_predicts_identically(synthetic, tmp_path, model):
    config = RunConfig(dataset=synthetic["config"], model=model, features="sid+emb", tokenizer=synthetic["tokenizer"],
                       model_params=SMALL_MODEL, training=FAST, history_length=5)
    summary = train_run(config, tmp_path / "run", progress=False)
    assert summary["metrics"]["test"]["auc"] > 0.6
    _, encoder, loaded = load_run(tmp_path / "run")
    assert evaluate_run(tmp_path / "run", progress=False) == summary["metrics"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["metrics"]["test"]["auc"] == summary["metrics"]["test"]["auc"]
    assert isinstance(loaded, torch.nn.Module) and encoder.feature_set == "sid+emb"


def test_semantic_ids_beat_plain_ids_on_new_items(synthetic):
    results = {}
    for features in ("id", "sid"):
        config = RunConfig(dataset=synthetic["config"], split="cold-item", model="fnn", features=features,
                           tokenizer=synthetic["tokenizer"], model_params=SMALL_MODEL,
                           training={"max_epochs": 10, "batch_size": 256, "patience": 3, "learning_rate": 1e-2})
        results[features] = train_run(config, progress=False)["metrics"]["test"]
    assert results["sid"]["cold_rows"] > 100
    assert results["sid"]["cold_auc"] > results["id"]["cold_auc"] + 0.05
    assert results["sid"]["auc"] > results["id"]["auc"]


def test_same_seed_same_predictions(synthetic):
    config = RunConfig(dataset=synthetic["config"], model="deepfm", features="emb", model_params=SMALL_MODEL,
                       training=FAST)
    first = train_run(config, progress=False)["metrics"]
    assert train_run(config, progress=False)["metrics"] == first


# ---------------------------------------------------------------- bad input
def tiny_dataset(**changes):
    frame = pd.DataFrame({"user_id": [1, 2, 1, 2], "item_id": [1, 1, 2, 3], "label": [0, 1, 1, 0],
                          "timestamp": [1, 2, 3, 4]})
    return CTRDataset("tiny", frame.assign(**changes), pd.DataFrame({"item_id": ["1", "2", "3"]}))


def test_missing_columns_are_named():
    frame = pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]})
    with pytest.raises(InvalidInputError, match=r"lacks column\(s\) \['label'\]"):
        CTRDataset("tiny", frame, pd.DataFrame({"item_id": ["1"]}))


def test_labels_outside_zero_one_are_refused_with_the_row():
    with pytest.raises(InvalidInputError, match="row 3 has 5"):
        tiny_dataset(label=[0, 1, 1, 5])


def test_items_without_content_fail_or_fall_back_with_a_count():
    dataset = tiny_dataset()
    dataset.items = pd.DataFrame({"item_id": ["1", "2"]})
    content = np.ones((2, 4), np.float32)
    with pytest.raises(InvalidInputError, match=r"1 interaction\(s\) name items without content .*'3'"):
        FeatureEncoder("emb").fit(dataset, np.arange(4), content=content)
    encoder = FeatureEncoder("emb", missing_items="zero").fit(dataset, np.arange(4), content=content)
    assert encoder.n_missing_items == 1
    assert encoder.transform(dataset, np.arange(4))["item"].tolist() == [1, 1, 2, 0]


def test_an_empty_split_is_named():
    with pytest.raises(InvalidInputError, match="leaves no rows in validation"):
        time_split(tiny_dataset().interactions)


def test_tokenizer_of_another_dimension_is_refused(synthetic, tmp_path):
    RQKMeans(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(
        np.random.default_rng(0).normal(size=(100, 5))).save(tmp_path / "tok5")
    config = RunConfig(dataset=synthetic["config"], features="sid", tokenizer=str(tmp_path / "tok5"), training=FAST)
    with pytest.raises(InvalidInputError, match="fitted on 5-d embeddings, but the item embeddings are 16-d"):
        train_run(config, progress=False)


def test_sid_features_without_a_tokenizer_are_refused(synthetic):
    with pytest.raises(InvalidInputError, match="need semantic IDs: pass a tokenizer"):
        train_run(RunConfig(dataset=synthetic["config"], features="sid", training=FAST), progress=False)


def test_predictions_are_probabilities(synthetic, tmp_path):
    config = RunConfig(dataset=synthetic["config"], model="fnn", features="id", model_params=SMALL_MODEL,
                       training=FAST)
    train_run(config, tmp_path / "run", progress=False)
    _, encoder, model = load_run(tmp_path / "run")
    dataset = load_parquet_dataset(ParquetDatasetConfig.from_yaml(synthetic["config"]))
    inputs = encoder.transform(dataset, np.arange(50))
    p = predict(model, inputs)
    import torch

    with torch.inference_mode():  # the probability of the model's own logit, row by row
        logits = model({k: torch.from_numpy(v) for k, v in inputs.items() if k != "label"})["logit"]
    np.testing.assert_allclose(p, torch.sigmoid(logits).double().numpy(), rtol=1e-6)
    assert p.std() > 0  # the rows are told apart


# ---------------------------------------------------------------- command line
def test_cli_trains_and_evaluates_a_run(synthetic, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rqgmm.cli import main

    run_dir = tmp_path / "run"
    monkeypatch.chdir(synthetic["root"])  # relative data set and tokenizer paths
    result = CliRunner().invoke(main, ["ctr", "train", "--dataset", "data.yaml", "--model", "dcnv2",
                                       "--features", "sid+emb", "--tokenizer", "tokenizer",
                                       "--epochs", "2", "--embed-dim", "8", "-o", str(run_dir), "-q"])
    assert result.exit_code == 0, result.output
    assert "training samples/s" in result.output
    test_line = next(line for line in result.output.splitlines() if line.startswith("test"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a run evaluates from any working directory
    result = CliRunner().invoke(main, ["ctr", "evaluate", str(run_dir), "-q"])
    assert result.exit_code == 0, result.output
    assert test_line in result.output.splitlines()
    result = CliRunner().invoke(main, ["ctr", "train", "--dataset", synthetic["config"], "--features", "sid",
                                       "-o", str(tmp_path / "other"), "-q"])
    assert result.exit_code == 1
    assert "need semantic IDs: pass a tokenizer" in result.output
    assert not (tmp_path / "other").exists()


def test_a_nan_item_embedding_or_a_diverging_loss_stops_training_and_writes_nothing(tmp_path):
    """One NaN item embedding used to train to NaN weights and still report AUC 0.52."""
    interactions, items, content = synthetic_tables(n_users=20, rows_per_user=40)
    bad = content.copy()
    bad[7, 3] = np.nan
    interactions.to_parquet(tmp_path / "interactions.parquet")
    items.assign(embedding=list(bad)).to_parquet(tmp_path / "items.parquet")
    (tmp_path / "data.yaml").write_text(
        "name: nan\ninteractions: interactions.parquet\nitems: items.parquet\n"
        "columns: {user_id: uid, item_id: sku, label: clicked, timestamp: ts}\nembedding_column: embedding\n")
    config = RunConfig(dataset=str(tmp_path / "data.yaml"), features="emb", model_params=SMALL_MODEL, training=FAST)
    with pytest.raises(InvalidInputError, match="content embedding of item '7'.*NaN or Inf"):
        train_run(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    interactions["price"] = 1e30  # a numeric feature that makes the loss overflow
    interactions.to_parquet(tmp_path / "interactions.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    (tmp_path / "data.yaml").write_text(
        "name: huge\ninteractions: interactions.parquet\nitems: items.parquet\nnumeric: [price]\n"
        "columns: {user_id: uid, item_id: sku, label: clicked, timestamp: ts}\nembedding_column: embedding\n")
    diverging = RunConfig(dataset=str(tmp_path / "data.yaml"), features="id", model_params=SMALL_MODEL,
                          training={**FAST, "learning_rate": 1e12})
    with pytest.raises(InvalidInputError, match="training diverged: the loss is"):
        train_run(diverging, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_unusable_training_data_is_named_before_training(tmp_path):
    from click.testing import CliRunner

    from rqgmm.cli import main

    interactions, items, _ = synthetic_tables(n_users=10, rows_per_user=20)
    items.to_parquet(tmp_path / "items.parquet")
    yaml = ("name: t\ninteractions: {file}\nitems: items.parquet\nembedding_column: embedding\n"
            "columns: {{user_id: uid, item_id: sku, label: clicked, timestamp: ts}}\n")
    cases = [("one-class.parquet", interactions.assign(clicked=1), "every training row has label 1"),
             ("stamps.parquet", interactions.assign(ts=["yesterday"] * len(interactions)),
              "column timestamp must hold numbers.*row 0 has 'yesterday'"),
             ("csv.parquet", None, "the interactions file is not readable Parquet")]
    for file, frame, message in cases:
        if frame is None:
            interactions.to_csv(tmp_path / file)  # a CSV given as the interactions file
        else:
            frame.to_parquet(tmp_path / file)
        (tmp_path / "d.yaml").write_text(yaml.format(file=file))
        config = RunConfig(dataset=str(tmp_path / "d.yaml"), features="id", model_params=SMALL_MODEL, training=FAST)
        with pytest.raises(InvalidInputError, match=message):
            train_run(config, progress=False)
    result = CliRunner().invoke(main, ["ctr", "train", "--dataset", str(tmp_path / "d.yaml"), "--embed-dim", "0",
                                       "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "0 is not in the range 1<=x<=4096" in result.output
