"""The RQ-GMM variants of the variants study: initialization, covariance, variance floor,
Dirichlet prior on the weights, Sinkhorn-balanced E-step, annealing, soft residuals."""

import warnings
from dataclasses import astuple

import numpy as np
import pytest
import torch

from rqgmm import RQGMM
from rqgmm.errors import ConvergenceWarning, InvalidInputError
from rqgmm.quantize.gaussian_mixture import MixtureParams, MixtureScorer, m_step
from tests.conftest import mixture_sample

COMMON = dict(seed=0, progress=False)


def skewed_sample(n=6000, dim=6, seed=0):
    """Eight well-separated blobs of very unequal size (about 55%, 20%, ..., 0.4% of the rows)."""
    rng = np.random.default_rng(seed)
    shares = 0.55 ** np.arange(8)
    shares /= shares.sum()
    labels = rng.choice(8, size=n, p=shares)
    centers = rng.normal(size=(8, dim)) * 5
    return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32)


def usage_perplexity(codes: np.ndarray) -> float:
    shares = np.bincount(codes) / len(codes)
    shares = shares[shares > 0]
    return float(np.exp(-(shares * np.log(shares)).sum()))


def fit_quietly(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def test_sinkhorn_balance_spreads_usage_on_a_skewed_set():
    X = skewed_sample()
    plain = fit_quietly(RQGMM(n_levels=1, codebook_size=8, max_iter=60, **COMMON), X)
    balanced = fit_quietly(RQGMM(n_levels=1, codebook_size=8, max_iter=60, balance=1.0, **COMMON), X)
    plain_usage = usage_perplexity(plain.encode(X)[:, 0])
    balanced_usage = usage_perplexity(balanced.encode(X)[:, 0])
    assert balanced_usage > 1.3 * plain_usage, (plain_usage, balanced_usage)
    # the stored weights are the balanced ones: close to uniform soft usage
    soft_usage = balanced.predict_proba(X, 0).mean(0)
    assert soft_usage.max() / soft_usage.min() < 1.5 * (plain.predict_proba(X, 0).mean(0).max()
                                                       / plain.predict_proba(X, 0).mean(0).min())


def test_half_strength_balance_lies_between_plain_and_full():
    X = skewed_sample(seed=1)
    usage = [usage_perplexity(fit_quietly(RQGMM(n_levels=1, codebook_size=8, max_iter=60, balance=b, **COMMON),
                                          X).encode(X)[:, 0]) for b in (0.0, 0.5, 1.0)]
    assert usage[0] < usage[1] < usage[2] + 1e-9, usage


def test_kmeans_then_em_never_ends_below_its_kmeans_start(blobs):
    for seed in (0, 1, 2):
        model = RQGMM(n_levels=2, codebook_size=10, init="kmeans", max_iter=50, random_state=seed, progress=False)
        fit_quietly(model, blobs)
        for history in model.log_likelihood_history_:
            # history[0] is the log-likelihood of the k-means start (hard-assignment parameters)
            assert history[-1] >= history[0] - 1e-9
            assert np.all(np.diff(history) >= -1e-6 * abs(history[0])), np.diff(history).min()


def test_tied_covariance_shares_one_pooled_diagonal(blobs):
    model = RQGMM(n_levels=1, codebook_size=6, covariance_type="tied", max_iter=30, precision="float64",
                  **COMMON)
    fit_quietly(model, blobs)
    variances = model.variances_[0]
    np.testing.assert_allclose(variances, np.broadcast_to(variances[0], variances.shape))
    # the pooled within-component variance of the posterior-weighted data, plus the floor
    X = blobs.astype(np.float64)
    posterior = model.predict_proba(X, 0).astype(np.float64)
    # one more M-step by hand from the final parameters' posterior
    counts = posterior.sum(0)
    means = posterior.T @ X / counts[:, None]
    pooled = sum((posterior[:, k:k + 1] * (X - means[k]) ** 2).sum(0) for k in range(6)) / len(X)
    np.testing.assert_allclose(variances[0], pooled + model.reg_covar, rtol=2e-2)
    assert model.n_parameters() == [6 * 8 + 8 + 5]


@pytest.mark.parametrize("covariance_type", ["tied", "spherical"])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_tied_and_spherical_half_width_e_step_matches_the_full_one(covariance_type, temperature, blobs):
    """Their products skip the x^2 half; statistics, likelihood and M-step must not change."""
    rng = np.random.default_rng(0)
    means = torch.from_numpy(rng.normal(size=(5, blobs.shape[1])) * 3)
    if covariance_type == "tied":
        variances = torch.from_numpy(rng.uniform(0.5, 2.0, size=blobs.shape[1])).expand(5, -1).clone()
    else:
        variances = torch.from_numpy(rng.uniform(0.5, 2.0, size=(5, 1))).expand(-1, blobs.shape[1]).clone()
    params = MixtureParams(torch.full((5,), 0.2, dtype=torch.float64), means, variances)
    chunk = torch.from_numpy(blobs).double()
    full = MixtureScorer(params, torch.float64, temperature=temperature)
    narrow = MixtureScorer(params, torch.float64, temperature=temperature, covariance_type=covariance_type)
    torch.testing.assert_close(narrow.joint_log_prob(chunk), full.joint_log_prob(chunk))
    expected, got = full.accumulate(chunk), narrow.accumulate(chunk)
    torch.testing.assert_close(got.counts, expected.counts)
    torch.testing.assert_close(got.sums, expected.sums)
    assert got.log_likelihood == pytest.approx(expected.log_likelihood, rel=1e-10)
    for new, old in zip(astuple(m_step(got, 1e-3, covariance_type)), astuple(m_step(expected, 1e-3, covariance_type))):
        torch.testing.assert_close(new, old)


def test_relative_variance_floor_makes_codes_scale_free():
    X, _ = mixture_sample(n=3000, dim=6, n_components=8, separation=2.0, seed=5)
    X = X.astype(np.float64)
    common = dict(n_levels=2, codebook_size=6, max_iter=40, precision="float64", reg_covar=1e-2, **COMMON)
    relative = [fit_quietly(RQGMM(reg_covar_mode="relative", **common), X * s).encode(X * s) for s in (1e-3, 1.0)]
    assert np.mean(np.all(relative[0] == relative[1], axis=1)) > 0.999
    # an absolute floor of 1e-2 would swamp data of variance ~1e-6 (EM collapses to a few codes):
    # refused, naming the fix, instead of a silent collapse
    with pytest.raises(InvalidInputError, match="within 10x of reg_covar=0.01.*reg_covar_mode='relative'"):
        RQGMM(reg_covar_mode="absolute", **common).fit(X * 1e-3)


def test_dirichlet_prior_pulls_weights_towards_uniform():
    X = skewed_sample(seed=2)
    plain = fit_quietly(RQGMM(n_levels=1, codebook_size=8, max_iter=40, **COMMON), X)
    prior = 500.0
    shrunk = fit_quietly(RQGMM(n_levels=1, codebook_size=8, max_iter=40, weight_prior=prior, **COMMON), X)
    uniform = np.full(8, 1 / 8)
    assert np.abs(shrunk.weights_[0] - uniform).sum() < np.abs(plain.weights_[0] - uniform).sum()
    # MAP weights: (count + a - 1) / (n + K (a - 1)) >= (a - 1) / (n + K (a - 1))
    assert shrunk.weights_[0].min() >= (prior - 1) / (len(X) + 8 * (prior - 1)) - 1e-12


def test_annealing_schedule_and_tempered_posteriors(blobs):
    model = RQGMM(n_levels=1, codebook_size=6, anneal_temperature=8.0, anneal_iter=4, max_iter=30, **COMMON)
    assert [model._temperature(i) for i in range(6)] == pytest.approx([8.0, 8 ** 0.75, 8 ** 0.5, 8 ** 0.25, 1, 1])
    fit_quietly(model, blobs)
    assert model.n_iter_[0] > 4  # convergence is not declared while the temperature is above 1
    params = MixtureParams(*(torch.as_tensor(a, dtype=torch.float64) for a in
                             (model.weights_[0], model.means_[0], model.variances_[0])))
    chunk = torch.from_numpy(blobs[:500])
    cold, hot = MixtureScorer(params), MixtureScorer(params, temperature=4.0)
    entropy = []
    for scorer in (cold, hot):
        stats_features = scorer.features(chunk)
        joint = torch.addmm(scorer._tempered_bias, stats_features, scorer._tempered_matrix)
        posterior = torch.softmax(joint.double(), dim=1)
        entropy.append(float(-(posterior * posterior.clamp_min(1e-300).log()).sum(1).mean()))
    assert entropy[1] > entropy[0]
    # at T = 1 the free energy of the statistics is the log-likelihood
    _, log_norm = cold.log_responsibilities(chunk)
    assert cold.accumulate(chunk).log_likelihood == pytest.approx(float(log_norm.double().sum()), rel=1e-5)
    assert hot.accumulate(chunk).log_likelihood >= cold.accumulate(chunk).log_likelihood - 1e-3


def test_soft_residual_codes_follow_the_posterior_weighted_residual(blobs):
    model = fit_quietly(RQGMM(n_levels=2, codebook_size=8, residual="soft", precision="float64", **COMMON), blobs)
    X = blobs.astype(np.float64)
    first = model.predict_proba(X, 0) @ model.means_[0]
    second_level = model.predict_proba(X, 1)
    # level-1 posteriors are those of x minus the posterior-weighted level-0 mean
    params = MixtureParams(*(torch.as_tensor(a, dtype=torch.float64) for a in
                             (model.weights_[1], model.means_[1], model.variances_[1])))
    by_hand = MixtureScorer(params, torch.float64).predict_proba(torch.from_numpy(X - first)).numpy()
    np.testing.assert_allclose(second_level, by_hand, atol=1e-4)
    codes = model.encode(X)
    np.testing.assert_allclose(model.decode(codes), model.means_[0][codes[:, 0]] + model.means_[1][codes[:, 1]],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("params, message", [
    (dict(balance=1.5), "balance must be a number in [0, 1]"),
    (dict(weight_prior=0.5), "weight_prior must be a number >= 1"),
    (dict(anneal_temperature=0.5), "anneal_temperature must be a number >= 1"),
    (dict(reg_covar_mode="percent"), "reg_covar_mode must be one of"),
    (dict(covariance_type="full"), "covariance_type must be one of"),
])
def test_variant_parameters_are_checked(params, message, blobs):
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RQGMM(n_levels=1, codebook_size=4, **params, **COMMON).fit(blobs)


def test_variants_survive_save_and_load(tmp_path, blobs):
    model = fit_quietly(RQGMM(n_levels=2, codebook_size=6, covariance_type="tied", reg_covar_mode="relative",
                              weight_prior=3.0, balance=0.5, anneal_temperature=2.0, anneal_iter=3, **COMMON), blobs)
    model.save(tmp_path / "tok")
    restored = RQGMM.load(tmp_path / "tok")
    assert restored.get_params() == model.get_params()
    np.testing.assert_array_equal(restored.encode(blobs), model.encode(blobs))
