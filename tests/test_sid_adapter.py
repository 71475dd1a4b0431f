"""Semantic IDs in the user's own stack: `rqgmm features` writes the exact fields `ctr train`
embeds, SemanticIDEmbedding embeds them, and a model written outside rqgmm learns from them."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from examples.own_ctr_model import predict, train
from rqgmm import RQKMeans
from rqgmm.cli import main
from rqgmm.ctr.features import FeatureEncoder
from rqgmm.ctr.metrics import auc
from rqgmm.ctr.sid_embedding import SemanticIDEmbedding
from rqgmm.io.tables import write_matrix
from tests.test_sid_features import _clustered_catalogue


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    dataset, content = _clustered_catalogue(n_items=400, n_users=80, rows_per_user=60)
    tokenizer = RQKMeans(n_levels=2, codebook_size=[6, 4], random_state=0, progress=False).fit(content)
    tokenizer.save(root / "tok")
    ids = np.array([f"m{k}" for k in range(len(content))])
    write_matrix(root / "items.parquet", content, ids, "item_id")
    return root, dataset, content, tokenizer, ids


@pytest.mark.parametrize("representation", ["level", "prefix", "level+prefix"])
def test_features_are_the_fields_ctr_train_embeds(catalogue, representation):
    root, dataset, content, tokenizer, ids = catalogue
    out = root / f"sid-{representation}.parquet"
    result = CliRunner().invoke(main, ["features", str(root / "tok"), str(root / "items.parquet"), "-o", str(out),
                                       "--representation", representation, "--prefix-buckets", "10", "-q"])
    assert result.exit_code == 0, result.output
    spec = json.loads((root / f"sid-{representation}.parquet.json").read_text())
    table = pq.read_table(out)
    assert table.column_names == ["item_id", *spec["fields"]] and spec["tokenizer_version"] == tokenizer.version
    assert json.loads(table.schema.metadata[b"rqgmm.sid_features"]) == spec
    encoder = FeatureEncoder("sid", sid_representation=representation, prefix_buckets=10)
    encoder.sid_sizes = list(tokenizer.codebook_sizes)
    expected = encoder.sid_columns(tokenizer.encode(content))
    written = np.stack([table.column(name).to_numpy() for name in spec["fields"]], axis=1)
    assert np.array_equal(written, expected)
    # K + 1 per level field; per prefix field min(prefix space, buckets) + 1 (0 is the unknown item)
    expected_cards = {"level": [7, 5], "prefix": [7, 11], "level+prefix": [7, 5, 7, 11]}[representation]
    assert spec["cardinalities"] == expected_cards and (written.max(axis=0) < expected_cards).all()
    if "prefix" in representation:  # level 2's prefix space (24) is over 10 buckets: hashed, and said so
        assert spec["hashed"][spec["fields"].index("sid_prefix_1")]
    embedding = SemanticIDEmbedding(spec["cardinalities"], 4, combine="stack")
    assert embedding(torch.from_numpy(written)).shape == (len(ids), len(spec["fields"]), 4)


def test_a_model_written_elsewhere_learns_from_the_fields(catalogue):
    root, dataset, content, tokenizer, ids = catalogue
    out = root / "sid.parquet"
    assert CliRunner().invoke(main, ["features", str(root / "tok"), str(root / "items.parquet"), "-o", str(out),
                                     "-q"]).exit_code == 0
    clicks = dataset.interactions.assign(item_id=lambda f: "m" + f["item_id"].astype(str),
                                         user_id=lambda f: f["user_id"].astype(str))
    new_items = {f"m{k}" for k in range(0, len(ids), 5)}  # a fifth of the items never in training
    held_out = clicks["item_id"].isin(new_items)
    model, spec, users = train(str(out), clicks[~held_out], epochs=6)
    scores = predict(model, str(out), clicks[held_out], users)
    # the labels depend on the (cluster, sub-cluster) of the item: its semantic ID carries that to new items
    assert auc(clicks[held_out]["label"].to_numpy(), scores) > 0.65


def test_embedding_options(catalogue):
    root, dataset, content, tokenizer, ids = catalogue
    fields = torch.tensor([[1, 2], [0, 0]])
    assert SemanticIDEmbedding([7, 5], 3, combine="concat")(fields).shape == (2, 6)
    assert SemanticIDEmbedding([7, 5], 3, combine="sum")(fields).shape == (2, 3)
    with_codewords = SemanticIDEmbedding([7, 5], 3, codewords=tokenizer.codebooks_, combine="stack")
    torch.manual_seed(0)
    plain = with_codewords.table(fields + with_codewords.offsets)
    moved = with_codewords(fields) - plain
    expected = with_codewords.projection(torch.from_numpy(np.asarray(tokenizer.codebooks_[0][0], np.float32)))
    assert torch.allclose(moved[0, 0], expected, atol=1e-6) and torch.equal(moved[1], torch.zeros_like(moved[1]))
    with pytest.raises(ValueError, match="combine must be one of"):
        SemanticIDEmbedding([7, 5], combine="mean")
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2\) fields"):
        SemanticIDEmbedding([7, 5])(torch.zeros((3, 3), dtype=torch.long))
    with pytest.raises(ValueError, match="codebook 0: expected"):
        SemanticIDEmbedding([9, 5], codewords=tokenizer.codebooks_)
    missing = CliRunner().invoke(main, ["features", str(root / "tok"), str(root / "items.parquet"), "-o",
                                        str(root / "x.csv")])
    assert missing.exit_code != 0 and "written as .parquet" in missing.output
    assert not pd.io.common.file_exists(str(root / "x.csv"))

