import warnings

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from rqgmm import RQGMM, ConvergenceWarning, load
from rqgmm.errors import ComponentReseedWarning
from rqgmm.metrics import quality_report
from tests.conftest import mixture_sample


def _fit_recording_init(model, X):
    """Fit ``model`` and return the initial parameters EM started from (level 0)."""
    recorded = []
    original = model._initial_params

    def recording(*args, **kwargs):
        params, n_reseeded = original(*args, **kwargs)
        assert n_reseeded == 0
        recorded.append([t.clone().cpu().numpy() for t in (params.weights, params.means, params.variances)])
        return params, n_reseeded

    model._initial_params = recording
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    return recorded[0]


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_one_level_matches_scikit_learn_from_the_same_start(covariance_type):
    X, _ = mixture_sample(n=2000, dim=5, n_components=6, separation=3.0, seed=3)
    X = X.astype(np.float64)
    n_iter = 15
    ours = RQGMM(n_levels=1, codebook_size=6, max_iter=n_iter, tol=0.0, covariance_type=covariance_type,
                 precision="float64", batch_size=512, seed=0, progress=False)
    weights0, means0, variances0 = _fit_recording_init(ours, X)
    precisions0 = 1.0 / (variances0 if covariance_type == "diag" else variances0[:, 0])
    reference = GaussianMixture(6, covariance_type=covariance_type, weights_init=weights0, means_init=means0,
                                precisions_init=precisions0, max_iter=n_iter, tol=0.0, reg_covar=ours.reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(X)
    assert ours.n_iter_[0] == reference.n_iter_ == n_iter
    np.testing.assert_allclose(ours.weights_[0], reference.weights_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.means_[0], reference.means_, rtol=1e-9, atol=1e-10)
    variances = ours.variances_[0] if covariance_type == "diag" else ours.variances_[0][:, 0]
    np.testing.assert_allclose(variances, reference.covariances_, rtol=1e-8)
    assert ours.lower_bound_[0] == pytest.approx(reference.lower_bound_, rel=1e-10)
    np.testing.assert_array_equal(ours.encode(X)[:, 0], reference.predict(X))
    assert ours.score_levels(X)[0] == pytest.approx(reference.score(X), rel=1e-9)


def test_float32_compute_stays_close_to_float64():
    X, _ = mixture_sample(n=3000, dim=16, n_components=8, seed=4)
    common = dict(n_levels=2, codebook_size=8, max_iter=200, random_state=0, progress=False)
    low = RQGMM(precision="float32", **common).fit(X)
    high = RQGMM(precision="float64", **common).fit(X)
    np.testing.assert_allclose(low.lower_bound_, high.lower_bound_, rtol=1e-4)
    assert np.mean(low.encode(X) == high.encode(X)) > 0.99


def test_log_likelihood_never_decreases_during_em(blobs):
    model = RQGMM(n_levels=3, codebook_size=[12, 8, 5], max_iter=40, tol=1e-8, random_state=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ComponentReseedWarning)  # a re-seed would break monotonicity
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(blobs)
    for level, history in enumerate(model.log_likelihood_history_):
        steps = np.diff(history)
        assert len(history) >= 2
        assert steps.min() >= -1e-5 * max(1.0, abs(history[0])), (level, steps.min())


def test_recovers_a_known_mixture():
    X, truth = mixture_sample(n=20000, dim=4, n_components=4, separation=8.0, seed=7)
    model = RQGMM(n_levels=1, codebook_size=4, covariance_type="diag", random_state=0, progress=False).fit(X)
    order = [int(np.argmin(np.linalg.norm(model.means_[0] - mean, axis=1))) for mean in truth["means"]]
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(model.means_[0][order], truth["means"], atol=0.05)
    np.testing.assert_allclose(model.variances_[0][order], truth["variances"], rtol=0.08)
    np.testing.assert_allclose(model.weights_[0][order], truth["weights"], atol=0.015)


def test_decode_of_encode_is_the_sum_of_selected_means(blobs):
    model = RQGMM(n_levels=3, codebook_size=[10, 7, 5], random_state=1, progress=False).fit(blobs)
    codes = model.encode(blobs)
    expected = sum(model.means_[level][codes[:, level]] for level in range(3))
    np.testing.assert_allclose(model.decode(codes), expected, rtol=1e-5, atol=1e-5)
    assert codes.dtype == np.int64 and codes.shape == (len(blobs), 3)
    assert model.decode(codes).dtype == np.float32


def test_fit_encode_equals_encode_and_posterior_argmax(blobs):
    model = RQGMM(n_levels=2, codebook_size=9, random_state=0, batch_size=700, progress=False)
    codes = model.fit_encode(blobs)
    np.testing.assert_array_equal(codes, model.encode(blobs))
    for level in range(2):
        posterior = model.predict_proba(blobs, level)
        np.testing.assert_allclose(posterior.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(posterior.argmax(1), codes[:, level])


def test_same_seed_same_tokenizer_other_seed_differs(blobs):
    first = RQGMM(n_levels=2, codebook_size=16, random_state=5, progress=False).fit(blobs)
    second = RQGMM(n_levels=2, codebook_size=16, random_state=5, progress=False).fit(blobs)
    third = RQGMM(n_levels=2, codebook_size=16, random_state=6, progress=False).fit(blobs)
    for level in range(2):
        np.testing.assert_array_equal(first.means_[level], second.means_[level])
    assert not np.array_equal(first.means_[0], third.means_[0])


def test_out_of_core_memmap_fit_equals_in_memory_fit(tmp_path, blobs):
    path = tmp_path / "X.npy"
    np.save(path, blobs)
    mapped = np.load(path, mmap_mode="r")
    params = dict(n_levels=2, codebook_size=[11, 6], random_state=3, batch_size=512, progress=False)
    in_memory = RQGMM(**params).fit(blobs)
    out_of_core = RQGMM(**params).fit(mapped)
    for level in range(2):
        np.testing.assert_array_equal(in_memory.means_[level], out_of_core.means_[level])
        np.testing.assert_array_equal(in_memory.variances_[level], out_of_core.variances_[level])
    np.testing.assert_array_equal(in_memory.encode(blobs), out_of_core.encode(mapped))


def test_feature_cache_gives_the_same_tokenizer_as_rereading_every_iteration(blobs):
    params = dict(n_levels=2, codebook_size=[9, 5], random_state=1, batch_size=300, progress=False)
    cached = RQGMM(cache_mib=1024, **params).fit(blobs)
    streamed = RQGMM(cache_mib=0, **params).fit(blobs)
    for level in range(2):
        np.testing.assert_array_equal(cached.means_[level], streamed.means_[level])
        np.testing.assert_array_equal(cached.variances_[level], streamed.variances_[level])
    assert cached.lower_bound_ == streamed.lower_bound_


def test_feature_cache_keeps_features_only_within_its_budget():
    from rqgmm.quantize.gaussian_mixture import FeatureCache

    chunks = [torch.randn(10, 3) for _ in range(4)]
    reads = []

    def read():
        reads.append(1)
        return iter(chunks)

    small = FeatureCache(read, torch.zeros(3, dtype=torch.float64), torch.float32, n_rows=40, dim=3,
                         max_bytes=40 * 6 * 4 - 1)
    large = FeatureCache(read, torch.zeros(3, dtype=torch.float64), torch.float32, n_rows=40, dim=3,
                         max_bytes=40 * 6 * 4)
    assert (small.caches, large.caches) == (False, True)
    for cache in (small, large):
        first, second = list(cache), list(cache)
        assert all(torch.equal(a, b) for a, b in zip(first, second))
        torch.testing.assert_close(first[0], torch.cat([chunks[0].square(), chunks[0]], dim=1))
    assert len(reads) == 3  # twice by the uncached, once by the cached


def test_chunk_size_changes_only_summation_order(blobs):
    params = dict(n_levels=2, codebook_size=8, random_state=0, precision="float64", progress=False)
    small = RQGMM(batch_size=256, **params).fit(blobs)
    large = RQGMM(batch_size=100000, **params).fit(blobs)
    np.testing.assert_allclose(small.means_[0], large.means_[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(small.encode(blobs), large.encode(blobs))


def test_save_load_gives_identical_codes(tmp_path, blobs):
    model = RQGMM(n_levels=2, codebook_size=[13, 5], covariance_type="spherical", random_state=2, progress=False).fit(blobs)
    model.save(tmp_path / "tok")
    restored = load(tmp_path / "tok")
    assert isinstance(restored, RQGMM)
    assert restored.get_params() == model.get_params()
    np.testing.assert_array_equal(restored.encode(blobs), model.encode(blobs))
    np.testing.assert_array_equal(restored.score_levels(blobs), model.score_levels(blobs))
    assert restored.log_likelihood_history_ == model.log_likelihood_history_


def test_soft_residuals_encode_consistently_and_decode_selected_means(blobs):
    model = RQGMM(n_levels=2, codebook_size=8, residual="soft", random_state=0, progress=False)
    codes = model.fit_encode(blobs)
    np.testing.assert_array_equal(codes, model.encode(blobs))
    expected = model.means_[0][codes[:, 0]] + model.means_[1][codes[:, 1]]
    np.testing.assert_allclose(model.decode(codes), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("init", ["kmeans++", "random", "kmeans"])
def test_every_init_fits(init, blobs):
    model = RQGMM(n_levels=2, codebook_size=7, init=init, random_state=0, progress=False).fit(blobs)
    assert np.isfinite(model.lower_bound_).all()
    assert len(np.unique(model.encode(blobs)[:, 0])) == 7


def test_empty_components_are_reseeded_with_a_warning():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(6, 3)) * 10
    X = np.repeat(points, 50, axis=0)  # 6 distinct rows for 9 components: 3 start empty
    with pytest.warns(ComponentReseedWarning, match="re-seeded"):
        model = RQGMM(n_levels=1, codebook_size=9, max_iter=5, random_state=0, progress=False).fit(X)
    assert np.isfinite(model.means_[0]).all() and np.all(model.weights_[0] > 0)
    assert model.n_reseeded_[0] > 0


def test_convergence_warning_names_the_fix(blobs):
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        RQGMM(n_levels=1, codebook_size=12, max_iter=2, tol=0.0, random_state=0, progress=False).fit(blobs)


def test_score_is_a_log_likelihood_that_ranks_the_data_it_was_fitted_on_above_other_data(blobs):
    """RQGMM.score is the mean log-likelihood per row (higher is better), not a negative MSE: a
    mixture scores its own data above the same data shifted away from it, and the second level's
    score is that of the residuals, against scikit-learn's mixture built from the same parameters."""
    model = RQGMM(n_levels=2, codebook_size=6, random_state=0, progress=False).fit(blobs)
    assert model.score(blobs) > model.score(blobs + 5.0 * blobs.std())
    assert model.score_levels(blobs)[0] == pytest.approx(model.lower_bound_[0], abs=0.05)
    residual = blobs.astype(np.float64) - model.means_[0][model.encode(blobs)[:, 0]]
    reference = GaussianMixture(n_components=6, covariance_type="diag")
    reference.weights_, reference.means_ = model.weights_[1], model.means_[1]
    reference.covariances_ = model.variances_[1]
    reference.precisions_cholesky_ = 1.0 / np.sqrt(model.variances_[1])
    assert model.score_levels(blobs)[1] == pytest.approx(reference.score(residual), rel=1e-4)
    assert model.bic_levels(blobs)[1] == pytest.approx(reference.bic(residual), rel=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_fit_matches_cpu(blobs):
    params = dict(n_levels=2, codebook_size=8, random_state=0, precision="float64", progress=False)
    cpu = RQGMM(device="cpu", **params).fit(blobs)
    gpu = RQGMM(device="cuda", **params).fit(blobs)
    np.testing.assert_allclose(cpu.means_[0], gpu.means_[0], rtol=1e-6, atol=1e-8)
    assert np.mean(cpu.encode(blobs) == gpu.encode(blobs)) > 0.999


def test_bic_of_one_level_equals_scikit_learn_for_the_same_mixture(blobs):
    model = RQGMM(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(blobs)
    reference = GaussianMixture(n_components=4, covariance_type="diag")
    reference.weights_ = np.asarray(model.weights_[0], dtype=np.float64)
    reference.means_ = np.asarray(model.means_[0], dtype=np.float64)
    reference.covariances_ = np.asarray(model.variances_[0], dtype=np.float64)
    reference.precisions_cholesky_ = 1.0 / np.sqrt(reference.covariances_)
    X = blobs.astype(np.float64)
    assert model.bic_levels(blobs)[0] == pytest.approx(reference.bic(X), rel=1e-5)
    assert model.score_levels(blobs)[0] == pytest.approx(reference.score(X), rel=1e-5)
    report = quality_report(model, blobs)
    assert report.bic[0] == pytest.approx(reference.bic(X), rel=1e-5)
