"""Aligned refits and ID churn."""

import warnings

import numpy as np
import pytest

from rqgmm import RQGMM, RQKMeans, load
from rqgmm.errors import InvalidInputError
from rqgmm.metrics import id_churn
from rqgmm.quantize import RQVAE
from tests.conftest import mixture_sample


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def test_id_churn_by_prefix_and_full_id():
    old = np.array([[0, 0], [0, 1], [1, 2], [2, 3]])
    new = np.array([[0, 0], [0, 2], [3, 2], [2, 3]])
    churn = id_churn(old, new)
    assert churn.prefix_changed == (0.25, 0.5) and churn.full_id_changed == 0.5 and churn.n_items == 4
    deeper = id_churn(old, np.concatenate([old, np.zeros((4, 1), int)], axis=1))
    assert deeper.prefix_changed == (0.0, 0.0) and deeper.full_id_changed == 1.0
    with pytest.raises(InvalidInputError, match="describe 4 and 3 items"):
        id_churn(old, new[:3])


@pytest.mark.parametrize("klass", [RQKMeans, RQGMM])
def test_aligning_to_itself_is_the_identity_and_a_permuted_copy_is_recovered(klass):
    X, _ = mixture_sample(n=3000, dim=6, n_components=8, separation=4.0, seed=1)
    X = X.astype(np.float32)
    first = quietly(klass(n_levels=2, codebook_size=8, seed=0, progress=False, max_iter=30).fit, X)
    same = load_copy(first)
    for level in range(2):  # aligning a tokenizer to itself permutes nothing
        same._align_level(level, first)
    assert all(np.array_equal(a, b) for a, b in zip(same.codebooks_, first.codebooks_))
    # a copy with its level-0 components shuffled aligns back to the original order exactly
    shuffled = load_copy(first)
    permutation = np.random.default_rng(3).permutation(8)
    shuffled._permute_level(0, permutation)
    shuffled._device_codebooks = []
    assert id_churn(first.encode(X), shuffled.encode(X)).prefix_changed[0] > 0.5
    shuffled._align_level(0, first)
    shuffled._device_codebooks = []
    assert np.array_equal(shuffled.codebooks_[0], first.codebooks_[0])
    assert np.array_equal(shuffled.encode(X), first.encode(X))


def load_copy(tokenizer):
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save(f"{directory}/t")
        return load(f"{directory}/t")


@pytest.mark.parametrize("klass", [RQKMeans, RQGMM])
def test_a_refit_on_a_grown_catalogue_keeps_ids_at_fresh_quality(klass):
    X, _ = mixture_sample(n=6000, dim=8, n_components=16, separation=3.0, seed=2)
    X = X.astype(np.float32)
    old_part, grown = X[:5000], X
    params = dict(n_levels=2, codebook_size=16, progress=False, max_iter=40)
    v1 = quietly(klass(seed=0, **params).fit, old_part)
    naive = quietly(klass(seed=1, **params).fit, grown)
    aligned = quietly(klass(seed=1, **params).fit, grown, previous=v1)
    before = v1.encode(old_part)
    naive_churn = id_churn(before, naive.encode(old_part))
    aligned_churn = id_churn(before, aligned.encode(old_part))
    assert aligned_churn.prefix_changed[0] <= 0.10 < naive_churn.prefix_changed[0]
    assert naive_churn.full_id_changed > 1.5 * aligned_churn.full_id_changed

    def rmse(tokenizer):
        return float(np.sqrt(np.mean((grown - tokenizer.decode(tokenizer.encode(grown))) ** 2)))
    assert rmse(aligned) <= 1.01 * rmse(naive)


def test_a_previous_of_another_kind_is_named():
    X, _ = mixture_sample(n=500, dim=4, n_components=4, seed=0)
    X = X.astype(np.float32)
    kmeans = quietly(RQKMeans(n_levels=2, codebook_size=4, progress=False).fit, X)
    with pytest.raises(InvalidInputError, match="method differs"):
        RQGMM(n_levels=2, codebook_size=4, progress=False).fit(X, previous=kmeans)
    with pytest.raises(InvalidInputError, match="n_levels differs"):
        RQKMeans(n_levels=3, codebook_size=4, progress=False).fit(X, previous=kmeans)
    with pytest.raises(InvalidInputError, match="codebook_size differs"):
        RQKMeans(n_levels=2, codebook_size=5, progress=False).fit(X, previous=kmeans)
    with pytest.raises(InvalidInputError, match="dimension differs"):
        RQKMeans(n_levels=2, codebook_size=4, progress=False).fit(np.hstack([X, X]), previous=kmeans)
    with pytest.raises(TypeError, match="previous"):  # RQ-VAE trains its levels jointly: no aligned refits
        RQVAE(n_levels=2, codebook_size=4, progress=False).fit(X, previous=kmeans)


def test_the_quality_report_measures_churn_against_a_previous_version(tmp_path):
    from click.testing import CliRunner

    from rqgmm.cli import main
    from rqgmm.metrics import quality_report

    X, _ = mixture_sample(n=2000, dim=6, n_components=8, separation=3.0, seed=4)
    X = X.astype(np.float32)
    v1 = quietly(RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False, max_iter=30).fit, X)
    v2 = quietly(RQKMeans(n_levels=2, codebook_size=8, random_state=1, progress=False, max_iter=30).fit, X[:1500])
    report = quality_report(v2, X, previous=v1)
    expected = id_churn(v1.encode(X), v2.encode(X))
    assert report.churn == expected and report.headline()["full_id_churn"] == expected.full_id_changed
    np.save(tmp_path / "X.npy", X)
    v1.save(tmp_path / "v1")
    v2.save(tmp_path / "v2")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "v2"), str(tmp_path / "X.npy"), "--previous",
                                       str(tmp_path / "v1"), "-o", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0 and f"{expected.full_id_changed:.1%}" in result.output, result.output


@pytest.mark.parametrize("klass", [RQKMeans, RQGMM])
def test_sample_based_fitting(klass):
    X, _ = mixture_sample(n=4000, dim=6, n_components=8, separation=3.0, seed=6)
    X = X.astype(np.float32)
    params = dict(n_levels=2, codebook_size=8, random_state=0, progress=False, max_iter=20)
    full = quietly(klass(**params).fit, X)
    enough = quietly(klass(max_samples=4000, **params).fit, X)  # a sample of every row is the full fit
    assert all(np.array_equal(a, b) for a, b in zip(full.codebooks_, enough.codebooks_))
    sampled = quietly(klass(max_samples=800, **params).fit, X)
    codes = sampled.encode(X)
    assert codes.shape == (4000, 2) and len(np.unique(codes[:, 0])) == 8  # every row encoded

    def rmse(tokenizer):
        return float(np.sqrt(np.mean((X - tokenizer.decode(tokenizer.encode(X))) ** 2)))
    assert rmse(sampled) < 1.1 * rmse(full)
    assert not all(np.array_equal(a, b) for a, b in zip(full.codebooks_, sampled.codebooks_))
    with pytest.raises(InvalidInputError, match="max_samples=4 is below the largest codebook_size=8"):
        klass(max_samples=4, **params).fit(X)


@pytest.mark.parametrize("klass", [RQKMeans, RQGMM])
def test_co_assignment_keeps_at_least_as_many_codes_as_codeword_alignment(klass):
    X, _ = mixture_sample(n=4000, dim=6, n_components=8, separation=3.0, seed=1)
    X = X.astype(np.float32)
    params = dict(n_levels=2, codebook_size=8, progress=False, max_iter=30)
    first = quietly(klass(seed=0, **params).fit, X[:3000])
    old = first.encode(X)
    by_codewords = quietly(klass(seed=1, **params).fit, X, previous=first)
    codes = quietly(klass(seed=1, **params).fit_encode, X, previous=first, alignment="co-assignment")
    by_rows = quietly(klass(seed=1, **params).fit, X, previous=first, alignment="co-assignment")
    np.testing.assert_array_equal(codes, by_rows.encode(X))  # the renumbered training codes are encode's
    # both fits find the same components (same warm start, seed and data) and differ only in their
    # numbering; numbering by co-assignment maximizes the rows keeping their code at every level
    kept_by_rows = (old == codes).mean(0)
    kept_by_codewords = (old == by_codewords.encode(X)).mean(0)
    assert (kept_by_rows >= kept_by_codewords - 1e-12).all(), (kept_by_rows, kept_by_codewords)


def test_co_assignment_recovers_a_shuffled_level_exactly():
    from types import SimpleNamespace

    X, _ = mixture_sample(n=3000, dim=6, n_components=8, separation=4.0, seed=1)
    X = X.astype(np.float32)
    first = quietly(RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False, max_iter=30).fit, X)
    shuffled = load_copy(first)
    shuffled._permute_level(0, np.random.default_rng(3).permutation(8))
    shuffled._device_codebooks = []
    stream = SimpleNamespace(codes=shuffled.encode(X))
    shuffled.check_fitted()
    shuffled._align_level_by_rows(0, first.encode(X)[:, 0], stream)
    shuffled._device_codebooks = []
    assert np.array_equal(shuffled.codebooks_[0], first.codebooks_[0])
    assert np.array_equal(stream.codes, first.encode(X)) and np.array_equal(shuffled.encode(X), first.encode(X))


def test_alignment_none_is_the_warm_start_alone_and_bad_names_are_refused():
    X, _ = mixture_sample(n=2000, dim=6, n_components=8, separation=4.0, seed=2)
    X = X.astype(np.float32)
    params = dict(n_levels=2, codebook_size=8, random_state=0, progress=False, max_iter=30)
    first = quietly(RQKMeans(**params).fit, X)
    warm = quietly(RQKMeans(**{**params, "seed": 9}).fit, X, previous=first, alignment="none")
    # started from v1's codewords on v1's data, Lloyd stays near v1's fixed point, in v1's order
    assert id_churn(first.encode(X), warm.encode(X)).full_id_changed < 0.05
    with pytest.raises(InvalidInputError, match="alignment must be one of"):
        RQKMeans(**params).fit(X, previous=first, alignment="hungarian")


@pytest.mark.parametrize("klass", [RQKMeans, RQGMM])
def test_a_fresh_fit_renumbered_to_match_keeps_the_fresh_quality(klass):
    X, _ = mixture_sample(n=3000, dim=6, n_components=8, separation=3.0, seed=5)
    X = X.astype(np.float32)
    params = dict(n_levels=2, codebook_size=8, progress=False, max_iter=30)
    first = quietly(klass(seed=0, **params).fit, X[:2400])
    fresh = quietly(klass(seed=1, **params).fit, X)
    renumbered = quietly(klass(seed=1, **params).fit, X, previous=first, alignment="co-assignment",
                         warm_start=False)
    fresh_codes, renumbered_codes = fresh.encode(X), renumbered.encode(X)
    for level in range(2):  # the same fit: every level's codes are a relabelling of the fresh fit's
        pairs = np.unique(np.stack([fresh_codes[:, level], renumbered_codes[:, level]], 1), axis=0)
        assert len(pairs) == len(np.unique(fresh_codes[:, level]))
        assert len(np.unique(pairs[:, 1])) == len(pairs)
    np.testing.assert_allclose(fresh.decode(fresh_codes), renumbered.decode(renumbered_codes), atol=1e-6)
    old = first.encode(X)
    assert id_churn(old, renumbered_codes).prefix_changed[0] <= id_churn(old, fresh_codes).prefix_changed[0]
    with pytest.raises(InvalidInputError, match="warm_start=False is a fresh fit"):
        klass(seed=1, **params).fit(X, previous=first, alignment="none", warm_start=False)


def test_cli_fit_with_previous_and_alignment(tmp_path):
    from click.testing import CliRunner

    from rqgmm.cli import main

    X, _ = mixture_sample(n=2000, dim=6, n_components=8, separation=3.0, seed=4)
    X = X.astype(np.float32)
    np.save(tmp_path / "old.npy", X[:1500])
    np.save(tmp_path / "all.npy", X)
    common = ["--method", "rq-kmeans", "--levels", "2", "--codebook-size", "8", "-q"]
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args])  # noqa: E731
    assert run("fit", tmp_path / "old.npy", "-o", tmp_path / "v1", *common).exit_code == 0
    result = run("fit", tmp_path / "all.npy", "-o", tmp_path / "v2", "--previous", tmp_path / "v1",
                 "--alignment", "co-assignment", "--seed", "1", *common)
    assert result.exit_code == 0, result.output
    expected = quietly(RQKMeans(n_levels=2, codebook_size=8, random_state=1, progress=False).fit, X,
                       previous=load(tmp_path / "v1"), alignment="co-assignment")
    np.testing.assert_array_equal(load(tmp_path / "v2").encode(X), expected.encode(X))
    refused = run("fit", tmp_path / "all.npy", "-o", tmp_path / "v3", "--alignment", "none", *common)
    assert refused.exit_code == 2 and "--alignment" in refused.output and "--previous" in refused.output
    fresh = run("fit", tmp_path / "all.npy", "-o", tmp_path / "v4", "--previous", tmp_path / "v1",
                "--alignment", "co-assignment", "--no-warm-start", "--seed", "1", *common)
    assert fresh.exit_code == 0, fresh.output
    expected = quietly(RQKMeans(n_levels=2, codebook_size=8, random_state=1, progress=False).fit, X,
                       previous=load(tmp_path / "v1"), alignment="co-assignment", warm_start=False)
    np.testing.assert_array_equal(load(tmp_path / "v4").encode(X), expected.encode(X))
    refused = run("fit", tmp_path / "all.npy", "-o", tmp_path / "v5", "--no-warm-start", *common)
    assert refused.exit_code == 2 and "--no-warm-start" in refused.output
