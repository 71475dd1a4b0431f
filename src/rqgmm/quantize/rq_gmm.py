"""RQ-GMM: residual quantization with a Gaussian mixture fitted by EM at every level.

After arXiv 2602.12593: at each level a K-component Gaussian mixture with diagonal covariance
is fitted by EM to the current residuals; an item's code is the component of highest posterior,
and the residual passed on is the input minus that component's mean (``residual="hard"``, the
paper's) or minus the posterior-weighted mean of all components (``residual="soft"``).
The default is the paper's model (``covariance_type="diag"``); the variants study's findings on
the other options are in ``RQGMM``'s docstring and README "Which tokenizer should I use?".
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch

from rqgmm.errors import ComponentReseedWarning, InvalidInputError, convergence_warning
from rqgmm.progress import progress_bar
from rqgmm.quantize.declarations import GMM_INITS, RESIDUAL_MODES, RQGMM_PARAMETERS  # noqa: F401 - re-exported
from rqgmm.quantize.gaussian_mixture import (
    FeatureCache,
    MixtureParams,
    MixtureScorer,
    empty_stats,
    hard_assignment_stats,
    m_step,
)
from rqgmm.quantize.kmeans import CentroidScorer, init_sample_size, lloyd, seed_centers
from rqgmm.quantize.levelwise import LevelwiseTokenizer
from rqgmm.quantize.reseed import split_heaviest
from rqgmm.validation import check_embeddings

# reg_covar_mode="relative": a dimension's variance counts as at least this share of the mean one
RELATIVE_FLOOR_MIN = 1e-6


def nearest_center_stats(chunk: torch.Tensor, *, scorer: CentroidScorer, n_codes: int,
                         shift: torch.Tensor):
    """Mixture statistics of a chunk (m, dim) hard-assigned to its nearest center (EM's start)."""
    codes, _ = scorer.assign(chunk)
    return hard_assignment_stats(chunk, codes, n_codes, shift)
# A component holding less than one row's worth of responsibility has no usable estimate.
EMPTY_COMPONENT_MASS = 1.0
# Lloyd iterations of init="kmeans" before EM takes over.
KMEANS_INIT_MAX_ITER = 20


class RQGMM(LevelwiseTokenizer):
    """Residual Gaussian-mixture tokenizer (RQ-GMM).

    Attributes
    ----------
    weights_: list of L arrays (K_l,) float64 mixture weights.
    means_: list of L arrays (K_l, dim) float64; ``codebooks_`` holds them as float32.
    variances_: list of L arrays (K_l, dim) float64 (spherical: equal columns).
    lower_bound_: per level, mean log-likelihood per row at the last EM iteration.
    log_likelihood_history_: per level, the mean log-likelihood before each M-step.
    n_iter_, converged_, n_reseeded_: per level.

    Example::

        tokenizer = RQGMM(n_levels=2, codebook_size=128, random_state=0)
        codes = tokenizer.fit_encode(X)            # (n, 2) int64
        posterior = tokenizer.predict_proba(X, 0)  # (n, 128) float32
    """

    parameters = RQGMM_PARAMETERS

    level_records = (*LevelwiseTokenizer.level_records, "lower_bound_", "log_likelihood_history_")

    def _reset_fit_state(self) -> None:
        super()._reset_fit_state()
        self.weights_: list[np.ndarray] = []
        self.means_: list[np.ndarray] = []
        self.variances_: list[np.ndarray] = []

    # ------------------------------------------------------------------ fitting one level
    def _initial_params(self, level, residuals, generator, rng, start) -> tuple[MixtureParams, int]:
        """Start of EM: centers by ``init``, weights and variances of their hard assignment.
        Returns ``(params, number of empty components re-seeded)``; sets the level's floor."""
        n_codes = self.codebook_sizes[level]
        sample = residuals.sample(init_sample_size(n_codes), rng)
        spread = sample.double().std(0)
        if self.reg_covar_mode == "relative":
            # a (near-)constant dimension would get a ~0 floor and an overflowing precision: each
            # dimension's variance counts as at least 1e-6 of the mean variance
            variance = spread.square()
            self._floor = self.reg_covar * variance.clamp_min(RELATIVE_FLOOR_MIN * float(variance.mean()) + 1e-30)
        else:
            self._floor = self.reg_covar
        centers = start  # an aligned refit starts from the previous version's means
        if centers is None:
            centers = seed_centers(sample, n_codes, "random" if self.init == "random" else "kmeans++", generator)
        if self.init == "kmeans" and start is None:
            centers = lloyd(residuals, centers, max_iter=KMEANS_INIT_MAX_ITER, tol=1e-4, dtype=self._dtype,
                            generator=generator, spread=spread, progress=self.progress,
                            desc=f"k-means init level {level}", cache_bytes=int(self.cache_mib * 2**20)).centroids
        shift = sample.double().mean(0)
        assignment = functools.partial(nearest_center_stats, scorer=CentroidScorer(centers, self._dtype),
                                       n_codes=n_codes, shift=shift)
        with torch.inference_mode():
            stats = residuals.reduce(assignment)
        params = m_step(stats, self._floor, self.covariance_type, self.weight_prior)
        return params, self._reseed(params, stats.counts, generator, level)

    def _temperature(self, iteration: int) -> float:
        """The E-step temperature of EM iteration ``iteration`` (0-based)."""
        if self.anneal_temperature == 1 or iteration >= self.anneal_iter:
            return 1.0
        return float(self.anneal_temperature) ** (1.0 - iteration / self.anneal_iter)

    def _balanced(self, params: MixtureParams, previous: MixtureParams, counts: torch.Tensor) -> MixtureParams:
        """Weights after a Sinkhorn column step (see ``balance``): the E-step's weights times
        ``target / soft count``, geometrically blended with the maximum-likelihood weights
        (exponent ``balance``)."""
        if not self.balance:
            return params
        target = counts.sum() / counts.numel()
        log_sinkhorn = previous.weights.log() + (target / counts.clamp_min(1e-12)).log()
        log_weights = (1 - self.balance) * params.weights.log() + self.balance * log_sinkhorn
        weights = torch.softmax(log_weights, dim=0)
        return MixtureParams(weights, params.means, params.variances)

    def _reseed(self, params: MixtureParams, counts: torch.Tensor, generator, level: int) -> int:
        """Split the heaviest component into each empty one (in place); return how many."""
        dead = counts < EMPTY_COMPONENT_MASS
        if not bool(dead.any()):
            return 0
        pairs = split_heaviest(counts, dead, params.means, params.variances.sqrt(), generator)
        for dead_index, donor in pairs:
            params.variances[dead_index] = params.variances[donor]
            half = params.weights[donor] / 2
            params.weights[donor] = half
            params.weights[dead_index] = half
        params.weights /= params.weights.sum()
        return len(pairs)

    def _fit_level(self, level, residuals, generator, rng, start) -> None:
        params, n_reseeded = self._initial_params(level, residuals, generator, rng, start)
        # one origin for the whole level (the start's mean, which every M-step keeps as the
        # mixture mean up to sampling), so the features [x^2, x] can be computed once
        shift = (params.weights[:, None] * params.means).sum(0)
        chunks = residuals.local_chunks()
        features = None if chunks is None else FeatureCache(chunks, shift, self._dtype, residuals.n_rows,
                                                             residuals.dim, int(self.cache_mib * 2**20))
        history: list[float] = []
        converged = False
        iterations = progress_bar(range(self.max_iter), enabled=self.progress, desc=f"EM level {level}")
        for iteration in iterations:
            temperature = self._temperature(iteration)
            scorer = MixtureScorer(params, self._dtype, shift=shift, temperature=temperature,
                                    covariance_type=self.covariance_type)
            with torch.inference_mode():
                if features is None:  # rows held elsewhere: the source maps the E-step over them
                    stats = residuals.reduce(scorer.accumulate)
                else:
                    stats = empty_stats(params.n_components, residuals.dim, scorer.shift)
                    for chunk_features in features:
                        stats = stats + scorer.accumulate_features(chunk_features)
            mean_log_likelihood = stats.log_likelihood / stats.n_rows
            history.append(mean_log_likelihood)
            params = self._balanced(m_step(stats, self._floor, self.covariance_type, self.weight_prior),
                                    params, stats.counts)
            reseeded = self._reseed(params, stats.counts, generator, level)
            n_reseeded += reseeded
            iterations.set_postfix(loglik=f"{mean_log_likelihood:.6g}")
            annealed = temperature == 1.0 and self._temperature(iteration - 1) == 1.0
            if len(history) > 1 and annealed and not reseeded and abs(history[-1] - history[-2]) < self.tol:
                converged = True
                break
        if not converged:
            change = abs(history[-1] - history[-2]) if len(history) > 1 else float("nan")
            warnings.warn(
                f"RQGMM level {level}: EM did not converge in max_iter={self.max_iter} iterations (last change"
                f" of the mean log-likelihood {change:.3g} > tol={self.tol}); raise max_iter, raise tol,"
                " or raise reg_covar if components keep collapsing", convergence_warning(), stacklevel=3)
        if n_reseeded:
            warnings.warn(
                f"RQGMM level {level}: re-seeded {n_reseeded} empty component(s) (less than"
                f" {EMPTY_COMPONENT_MASS:g} row of responsibility) by splitting the heaviest; consider a smaller"
                " codebook_size for this level or a larger reg_covar", ComponentReseedWarning, stacklevel=3)
        self.weights_.append(params.weights.cpu().numpy())
        self.means_.append(params.means.cpu().numpy())
        self.variances_.append(params.variances.cpu().numpy())
        self.codebooks_.append(params.means.float().cpu().numpy())
        self.lower_bound_.append(history[-1])
        self.log_likelihood_history_.append(history)
        self.n_iter_.append(len(history))
        self.converged_.append(converged)
        self.n_reseeded_.append(n_reseeded)

    # ------------------------------------------------------------------ scoring
    def _scorer(self, level: int, device: torch.device) -> MixtureScorer:
        scorers = self.__dict__.setdefault("_scorers", {})
        scorer = scorers.get(level)
        if scorer is None or scorer.shift.device != device:
            params = MixtureParams(*(torch.tensor(np.asarray(a), dtype=torch.float64, device=device) for a in
                                     (self.weights_[level], self.means_[level], self.variances_[level])))
            scorer = MixtureScorer(params, self._dtype, covariance_type=self.covariance_type)
            scorers[level] = scorer
        return scorer

    def level_scores(self, level, residual):
        return self._scorer(level, residual.device).joint_log_prob(residual)

    def level_reconstruction(self, level, residual, codes):
        if self.residual == "soft":
            posterior = self._scorer(level, residual.device).predict_proba(residual)
            return posterior @ self._device_codebooks[level].to(posterior.dtype)
        return self._device_codebooks[level][codes]

    def _level_passes(self, X):
        """Yield ``(level, residual chunk)`` for every chunk and level of X (inference)."""
        self.check_fitted()
        matrix, _ = check_embeddings(X, expected_dim=self.n_features_in_, owner=type(self).__name__, chunk_size=self.batch_size)
        with torch.inference_mode():
            for _, chunk in matrix.chunks(self.batch_size, self.device_):
                residual = chunk
                for level in range(self.n_levels):
                    yield level, residual
                    if level + 1 < self.n_levels:
                        residual = self.residual_chain(residual, 1, offset=level)[1]

    def predict_proba(self, X, level: int = 0, temperature: float = 1.0) -> np.ndarray:
        """Posterior over the components of ``level`` for the residuals of X at that level:
        (n_items, codebook_sizes[level]) float32, rows summing to 1. ``temperature`` > 1 softens
        it (softmax of the joint log-density divided by the temperature): in hundreds of
        dimensions the posterior is nearly one-hot, the top two components often tens of nats
        apart."""
        self.check_fitted()
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be in [0, {self.n_levels}), got {level}")
        if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0
                and np.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        parts = [self._scorer(level, residual.device).predict_proba(residual, float(temperature)).float().cpu().numpy()
                 for at, residual in self._level_passes(X) if at == level]
        return np.concatenate(parts)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row of X under the residual chain of mixtures (the sum over
        levels of :meth:`score_levels`), in nats: higher is better (scikit-learn's convention)."""
        return float(np.sum(self.score_levels(X)))

    def score_levels(self, X) -> np.ndarray:
        """Mean log-likelihood per row of X's residuals under each level's mixture: (n_levels,)
        float64, in nats (a density: higher is better, can exceed 0)."""
        totals = np.zeros(self.n_levels)
        n_rows = 0
        for level, residual in self._level_passes(X):
            _, log_norm = self._scorer(level, residual.device).log_responsibilities(residual)
            totals[level] += float(log_norm.double().sum())
            if level == 0:
                n_rows += residual.shape[0]
        return totals / n_rows

    def n_parameters(self) -> list[int]:
        """Free parameters of each level's mixture (means, variances, weights)."""
        dim = self.n_features_in_
        variances = {"diag": lambda k: k * dim, "spherical": lambda k: k, "tied": lambda k: dim}[self.covariance_type]
        return [k * dim + variances(k) + k - 1 for k in self.codebook_sizes]

    def bic(self, X) -> float:
        """Bayesian information criterion of the whole tokenizer on X (the sum of
        :meth:`bic_levels`), lower is better."""
        return float(np.sum(self.bic_levels(X)))

    def bic_levels(self, X) -> np.ndarray:
        """BIC of each level on X: (n_levels,), lower is better (for one level, scikit-learn's
        ``GaussianMixture.bic`` of the same mixture)."""
        n_rows = check_embeddings(X, expected_dim=self.n_features_in_, owner=type(self).__name__)[0].n_rows
        return self.bic_from_log_likelihood(self.score_levels(X) * n_rows, n_rows)

    def bic_from_log_likelihood(self, total_log_likelihood: np.ndarray, n_rows: int) -> np.ndarray:
        """BIC per level from each level's total log-likelihood over ``n_rows`` rows: (n_levels,)."""
        return -2.0 * np.asarray(total_log_likelihood, dtype=np.float64) + \
            np.array(self.n_parameters(), dtype=np.float64) * math.log(n_rows)

    # ------------------------------------------------------------------ artifacts
    def _fitted_arrays(self):
        arrays = super()._fitted_arrays()
        for level in range(self.n_levels):
            arrays[f"level_{level}.weights"] = self.weights_[level]
            arrays[f"level_{level}.means"] = self.means_[level]
            arrays[f"level_{level}.variances"] = self.variances_[level]
        return arrays

    def _check_scale(self, moments, name):
        super()._check_scale(moments, name)
        mean_variance = float(np.mean(moments.variance))
        if self.reg_covar_mode == "absolute" and mean_variance < 10 * self.reg_covar:
            raise InvalidInputError(
                f"{name}: the data's mean variance per dimension ({mean_variance:.2e}) is within 10x of"
                f" reg_covar={self.reg_covar:g}: the variance floor would swamp the clusters and EM would"
                " collapse to a few codes. Use reg_covar_mode='relative', a smaller reg_covar, or scale the"
                " embeddings up")

    def _permute_level(self, level, order):
        super()._permute_level(level, order)
        self.weights_[level] = self.weights_[level][order]
        self.means_[level] = self.means_[level][order]
        self.variances_[level] = self.variances_[level][order]

    def _restore(self, arrays, attributes):
        super()._restore(arrays, attributes)
        self.weights_ = [arrays[f"level_{level}.weights"] for level in range(self.n_levels)]
        self.means_ = [arrays[f"level_{level}.means"] for level in range(self.n_levels)]
        self.variances_ = [arrays[f"level_{level}.variances"] for level in range(self.n_levels)]
