"""How semantic-ID fields are embedded: codeword initialization, soft IDs from RQ-GMM posteriors,
semantic-ID dropout; saved and reloaded runs keep them; the service refuses what it cannot serve."""

import numpy as np
import pytest
import torch

from rqgmm import RQGMM, RQKMeans
from rqgmm.ctr.features import FeatureEncoder
from rqgmm.ctr.item_tables import SemanticIDs, soft_codes
from rqgmm.ctr.run import RunConfig, fit_and_evaluate, load_run, new_model, prepare, save_run
from rqgmm.ctr.splits import make_split
from rqgmm.ctr.training import TrainingConfig, predict
from rqgmm.errors import InvalidInputError
from tests.test_sid_features import SMALL_MODEL, _clustered_catalogue


@pytest.fixture(scope="module")
def catalogue():
    dataset, content = _clustered_catalogue(n_items=240, n_users=60, rows_per_user=40)
    split = make_split(dataset.interactions, "cold-item", seed=0)
    gmm = RQGMM(n_levels=2, codebook_size=[6, 4], random_state=0, progress=False, max_iter=20).fit(content)
    return dataset, content, split, gmm


def _semantic(tokenizer, content, top_k=0):
    soft = soft_codes(tokenizer, content, top_k) if top_k else None
    return SemanticIDs(tokenizer.encode(content), tokenizer.codebook_sizes, tokenizer.version,
                       [np.asarray(c, np.float32) for c in tokenizer.codebooks_], soft)


def test_codeword_init_starts_each_code_at_its_projected_codeword(catalogue):
    dataset, content, split, gmm = catalogue
    encoder = FeatureEncoder("sid+emb", history_length=0, sid_init="codewords")
    data = prepare(dataset, split, encoder, content=content, semantic=_semantic(gmm, content))
    model = new_model("fnn", data.encoder, SMALL_MODEL, seed=0)
    embedding = model.embedding
    assert embedding.shared_projection  # the codewords have the content's width: the emb projection
    projection = embedding.content.weight
    for level, codebook in enumerate(gmm.codebooks_):
        vectors = embedding.code_vectors(level).detach()
        offset = int(embedding.item_offsets[1 + level])
        rows = embedding.table.weight[offset:offset + len(codebook) + 1].detach()
        expected = rows[1:] + torch.from_numpy(np.asarray(codebook, np.float32)) @ projection.detach().T
        assert torch.allclose(vectors[1:], expected, atol=1e-6)
        assert torch.equal(vectors[0], rows[0])  # the unknown code has no codeword
    # linear: the levels' codeword parts sum to the projection of the item's reconstruction
    item_rows = torch.arange(1, 11)
    fields = embedding.items(item_rows).detach()
    tables = [embedding.table(embedding.item_fields[item_rows, 1 + level] + embedding.item_offsets[1 + level]).detach()
              for level in range(2)]
    codeword_part = sum(fields[:, 1 + level] - tables[level] for level in range(2))
    reconstruction = torch.from_numpy(gmm.decode(gmm.encode(content[:10])).astype(np.float32))
    assert torch.allclose(codeword_part, reconstruction @ projection.detach().T, atol=1e-5)


def test_codeword_init_without_emb_learns_its_own_projection(catalogue):
    dataset, content, split, gmm = catalogue
    data = prepare(dataset, split, FeatureEncoder("sid", history_length=0, sid_init="codewords"),
                   semantic=_semantic(gmm, content))
    model = new_model("fnn", data.encoder, SMALL_MODEL, seed=0)
    assert not model.embedding.shared_projection
    assert model.embedding.codewords_projection.weight.shape == (8, content.shape[1])
    random_init = new_model("fnn", prepare(dataset, split, FeatureEncoder("sid", history_length=0),
                                           semantic=_semantic(gmm, content)).encoder, SMALL_MODEL, seed=0)
    item_rows = torch.arange(1, 6)
    assert not torch.allclose(model.embedding.items(item_rows), random_init.embedding.items(item_rows))


def test_soft_ids_are_renormalized_top_k_posteriors_led_by_the_hard_code(catalogue):
    dataset, content, split, gmm = catalogue
    index, weight = soft_codes(gmm, content, 3)
    assert index.shape == weight.shape == (len(content), 2, 3)
    assert np.allclose(weight.sum(-1), 1, atol=1e-5) and (np.diff(weight, axis=-1) <= 1e-7).all()
    assert np.array_equal(index[:, :, 0], gmm.encode(content))  # the hard code is the most probable component
    posterior = gmm.predict_proba(content, level=1)
    top = np.sort(posterior, axis=1)[:, ::-1][:, :3]
    assert np.allclose(weight[:, 1], top / top.sum(1, keepdims=True), atol=1e-5)
    with pytest.raises(InvalidInputError, match="probabilistic tokenizer"):
        soft_codes(RQKMeans(n_levels=2, codebook_size=4, random_state=0, progress=False).fit(content), content, 2)


def test_soft_ids_with_all_weight_on_the_hard_code_equal_hard_ids(catalogue):
    dataset, content, split, gmm = catalogue
    index, weight = soft_codes(gmm, content, 2)
    one_hot = np.zeros_like(weight)
    one_hot[..., 0] = 1.0
    semantic = _semantic(gmm, content)
    hard = prepare(dataset, split, FeatureEncoder("sid", history_length=0), semantic=semantic)
    semantic.soft = (index, one_hot)
    soft = prepare(dataset, split, FeatureEncoder("sid", history_length=0, soft_top_k=2), semantic=semantic)
    hard_model = new_model("fnn", hard.encoder, SMALL_MODEL, seed=0)
    soft_model = new_model("fnn", soft.encoder, SMALL_MODEL, seed=0)
    assert np.allclose(predict(hard_model, hard.inputs["test"]), predict(soft_model, soft.inputs["test"]), atol=1e-6)
    # real posteriors move the fields of items whose second component has weight
    semantic.soft = (index, weight)
    real = prepare(dataset, split, FeatureEncoder("sid", history_length=0, soft_top_k=2), semantic=semantic)
    real_model = new_model("fnn", real.encoder, SMALL_MODEL, seed=0)
    mixed = np.flatnonzero((weight[:, :, 1] > 1e-3).any(axis=1))
    rows = torch.from_numpy(mixed[:20] + 1)
    if len(rows):
        assert not torch.allclose(real_model.embedding.items(rows), hard_model.embedding.items(rows))


def test_sid_dropout_trains_the_unknown_codes_only_when_asked(catalogue):
    dataset, content, split, gmm = catalogue
    data = prepare(dataset, split, FeatureEncoder("sid+emb", history_length=0), content=content,
                   semantic=_semantic(gmm, content))
    fresh = new_model("fnn", data.encoder, SMALL_MODEL, seed=0)
    unknown = [int(fresh.embedding.item_offsets[1 + level]) for level in range(2)]
    for rate in (0.0, 0.3):
        training = TrainingConfig(max_epochs=2, batch_size=256, learning_rate=1e-2, patience=2, seed=0,
                                  sid_dropout=rate)
        model, _, _ = fit_and_evaluate(data, "fnn", SMALL_MODEL, training, progress=False)
        moved = any(not torch.equal(model.embedding.table.weight[row], fresh.embedding.table.weight[row])
                    for row in unknown)
        assert moved == (rate > 0)  # every item has codes: only dropout feeds the unknown code rows
    # soft IDs: a dropped row puts all its weight on the unknown code
    soft = prepare(dataset, split, FeatureEncoder("sid", history_length=0, soft_top_k=3),
                   semantic=_semantic(gmm, content, 3))
    model, _, _ = fit_and_evaluate(soft, "fnn", SMALL_MODEL, TrainingConfig(max_epochs=1, batch_size=256, seed=0,
                                                                          sid_dropout=0.3), progress=False)
    start = new_model("fnn", soft.encoder, SMALL_MODEL, seed=0)
    assert all(not torch.equal(model.embedding.table.weight[row], start.embedding.table.weight[row]) for row in unknown)
    with pytest.raises(InvalidInputError, match=r"sid_dropout must be a number in \[0, 1\)"):
        TrainingConfig(sid_dropout=1.0)


@pytest.mark.parametrize("options", [{"sid_init": "codewords"}, {"soft_top_k": 3}])
def test_a_saved_run_scores_the_same_after_reloading(tmp_path, catalogue, options):
    dataset, content, split, gmm = catalogue
    encoder = FeatureEncoder("sid+emb", history_length=0, **options)
    data = prepare(dataset, split, encoder, content=content, semantic=_semantic(gmm, content, options.get("soft_top_k", 0)))
    model, _, _ = fit_and_evaluate(data, "ipnn", SMALL_MODEL, TrainingConfig(max_epochs=1, seed=0), progress=False)
    config = RunConfig(dataset="clusters", split="cold-item", model="ipnn", features="sid+emb",
                       model_params=SMALL_MODEL, **options)
    save_run(tmp_path / "run", config, encoder, model, {})
    _, restored, reloaded = load_run(tmp_path / "run")
    assert restored.sid_init == encoder.sid_init and restored.soft_top_k == encoder.soft_top_k
    assert np.array_equal(predict(model, data.inputs["test"]), predict(reloaded, data.inputs["test"]))
    if options.get("soft_top_k"):
        from rqgmm.serve.scoring import CTRScorer

        with pytest.raises(InvalidInputError, match="soft-ID run"):
            CTRScorer(tmp_path / "run")


@pytest.mark.parametrize("options, message", [
    ({"sid_init": "pca"}, "sid_init must be one of"),
    ({"soft_top_k": -1}, "soft_top_k must be an int >= 0"),
    ({"sid_init": "codewords", "sid_representation": "prefix"}, "need sid_representation 'level'"),
])
def test_bad_sid_embedding_options_are_named(options, message):
    with pytest.raises(InvalidInputError, match=message):
        FeatureEncoder("sid", **options)


def test_codeword_init_needs_the_codebooks(catalogue):
    dataset, content, split, gmm = catalogue
    semantic = SemanticIDs(gmm.encode(content), gmm.codebook_sizes)
    with pytest.raises(InvalidInputError, match="needs the tokenizer's 2 codebooks"):
        prepare(dataset, split, FeatureEncoder("sid", history_length=0, sid_init="codewords"), semantic=semantic)
    with pytest.raises(InvalidInputError, match="soft_top_k=2 needs soft semantic IDs"):
        prepare(dataset, split, FeatureEncoder("sid", history_length=0, soft_top_k=2), semantic=semantic)


def test_a_temperature_softens_the_posterior_and_keeps_its_order(catalogue):
    dataset, content, split, gmm = catalogue
    sharp_index, sharp = soft_codes(gmm, content, 3)
    soft_index, soft = soft_codes(gmm, content, 3, temperature=50.0)
    assert np.array_equal(sharp_index[:, :, 0], soft_index[:, :, 0])  # the hard code still leads
    assert soft[:, :, 0].mean() < sharp[:, :, 0].mean() - 0.05
    # tempering divides the joint log-density: the ratio of two posteriors is the 1/T-th power
    full = gmm.predict_proba(content[:50], level=0, temperature=20.0)
    tempered = gmm.predict_proba(content[:50], level=0, temperature=40.0)
    top2 = np.sort(full, axis=1)[:, ::-1][:, :2].astype(np.float64)
    top2_tempered = np.sort(tempered, axis=1)[:, ::-1][:, :2].astype(np.float64)
    usable = top2[:, 1] > 1e-6
    assert usable.sum() >= 5
    assert np.allclose(np.log(top2_tempered[usable, 0] / top2_tempered[usable, 1]),
                       0.5 * np.log(top2[usable, 0] / top2[usable, 1]), atol=1e-3)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        gmm.predict_proba(content, level=0, temperature=0)
