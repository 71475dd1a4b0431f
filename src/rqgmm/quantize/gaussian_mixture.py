"""One level of a diagonal (spherical or tied) Gaussian mixture as chunked sufficient statistics.

The E-step of a chunk never materializes an ``(n, K, dim)`` tensor: with precisions
``P = 1 / var`` the component log-density is expanded as

    log N(x | mu_k, diag(var_k)) = -1/2 [dim log 2pi + sum_j log var_kj
                                         + sum_j P_kj x_j^2 - 2 sum_j P_kj mu_kj x_j + sum_j P_kj mu_kj^2]

so the whole chunk costs one matrix product ``[x^2, x] @ W`` of shape (m, 2 dim) x (2 dim, K), and
the statistics of the M-step another one, ``R^T @ [x^2, x]``. Both run in the data's compute
dtype; the statistics are accumulated over chunks in float64. Coordinates are shifted by the
mixture's mean (or a fixed origin such as the data mean) before the expansion, which keeps float32
cancellation small. With a fixed origin the features ``[x^2, x]`` of a level do not change between
EM iterations, so :class:`FeatureCache` computes them once when they fit in a memory budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

# exp() of inputs deep in float32's subnormal range is 10-20x slower on CPU; responsibilities
# below e^-80 (~1e-35) are irrelevant to every statistic, so log-responsibilities are clamped.
_LOG_RESP_FLOOR = -80.0

COVARIANCE_TYPES = ("diag", "spherical", "tied")


def expansion_features(chunk: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``[(x - shift)^2, x - shift]``: (m, dim) -> (m, 2 dim) in ``shift``'s dtype."""
    shifted = chunk.to(shift.dtype) - shift
    return torch.cat([shifted.square(), shifted], dim=1)


@dataclass
class MixtureParams:
    """Parameters of a K-component mixture in ``dim`` dimensions (float64 tensors).

    weights: (K,) summing to 1; means: (K, dim); variances: (K, dim), all columns equal for a
    spherical mixture, all rows equal for a tied one.
    """

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])


@dataclass
class MixtureStats:
    """Sufficient statistics of a mixture summed over chunks (float64).

    counts: (K,) sum of responsibilities; sums: (K, dim) responsibility-weighted sums of the
    shifted data; square_sums: (K, dim) the same of squares; log_likelihood: sum over rows of
    log p(x); n_rows: rows seen; shift: (dim,) the origin the sums are taken around.
    """

    counts: torch.Tensor
    sums: torch.Tensor
    square_sums: torch.Tensor
    log_likelihood: float
    n_rows: int
    shift: torch.Tensor

    def __add__(self, other: "MixtureStats") -> "MixtureStats":
        if not torch.equal(self.shift, other.shift):
            raise ValueError("statistics taken around different origins cannot be added")
        return MixtureStats(
            self.counts + other.counts,
            self.sums + other.sums,
            self.square_sums + other.square_sums,
            self.log_likelihood + other.log_likelihood,
            self.n_rows + other.n_rows,
            self.shift,
        )


class MixtureScorer:
    """Precomputed E-step operands of fixed parameters, for chunks of shape (m, dim).

    ``dtype`` is the compute dtype of the matrix products (float32 by default); ``shift`` (dim,)
    float64 is the origin of the expansion, by default the mixture's mean. ``temperature`` T > 1
    softens the E-step (deterministic annealing): responsibilities are proportional to
    ``(w_k N(x | k))^(1/T)`` and the statistics' ``log_likelihood`` is the free energy
    ``T log sum_k (w_k N(x | k))^(1/T)``, which is the log-likelihood at T = 1.
    """

    def __init__(self, params: MixtureParams, dtype: torch.dtype = torch.float32,
                 shift: torch.Tensor | None = None, temperature: float = 1.0):
        self.params = params
        self.dtype = dtype
        self.temperature = float(temperature)
        weights, means, variances = params.weights, params.means, params.variances
        self.shift = (weights[:, None] * means).sum(0) if shift is None else shift.to(means)  # (dim,)
        centered_means = means - self.shift
        precisions = 1.0 / variances
        dim = means.shape[1]
        # (2 dim, K): rows for x^2 then for x
        self.weight_matrix = torch.cat([-0.5 * precisions, centered_means * precisions], dim=1).T.to(dtype)
        self.bias = (
            torch.log(weights)
            - 0.5 * (dim * math.log(2.0 * math.pi) + torch.log(variances).sum(1)
                     + (centered_means.square() * precisions).sum(1))
        )
        # the tempered E-step's operands: (log w_k + log N(x | k)) / T
        self._tempered_matrix = (self.weight_matrix.double() / self.temperature).to(dtype) \
            if self.temperature != 1.0 else self.weight_matrix
        self._tempered_bias = (self.bias / self.temperature).to(dtype)
        self.bias = self.bias.to(dtype)
        self._shift_compute = self.shift.to(dtype)

    def features(self, chunk: torch.Tensor) -> torch.Tensor:
        """``[x^2, x]`` of the shifted chunk: (m, 2 dim) in the compute dtype."""
        return expansion_features(chunk, self._shift_compute)

    def joint_log_prob(self, chunk: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k + log N(x | k) for every row and component: (m, K)."""
        if features is None:
            features = self.features(chunk)
        return torch.addmm(self.bias, features, self.weight_matrix)

    def log_responsibilities(self, chunk: torch.Tensor, temperature: float = 1.0):
        """Return ``(log_resp (m, K), log_prob_norm (m,))``; log_prob_norm is log p(x)."""
        joint = self.joint_log_prob(chunk)
        log_norm = torch.logsumexp(joint, dim=1)
        return joint - log_norm[:, None], log_norm

    def predict_proba(self, chunk: torch.Tensor) -> torch.Tensor:
        """Posterior responsibilities (m, K), rows summing to 1."""
        log_resp, _ = self.log_responsibilities(chunk)
        return torch.exp(log_resp)

    def accumulate(self, chunk: torch.Tensor) -> MixtureStats:
        """E-step of one chunk (m, dim): its sufficient statistics and log-likelihood."""
        return self.accumulate_features(self.features(chunk))

    def accumulate_features(self, features: torch.Tensor) -> MixtureStats:
        """E-step from the chunk's ``features`` (m, 2 dim), taken around ``self.shift``."""
        joint = torch.addmm(self._tempered_bias, features, self._tempered_matrix)
        # one exp of clamped values instead of logsumexp's unclamped exp plus a second one: exp of
        # inputs in float32's subnormal range is what made the E-step slow
        peak = joint.amax(dim=1, keepdim=True)
        resp = joint.sub_(peak).clamp_(min=_LOG_RESP_FLOOR).exp_()
        total = resp.sum(dim=1, keepdim=True)
        resp.div_(total)
        log_norm = (peak.squeeze(1) + total.squeeze(1).log()) * self.temperature
        weighted = (resp.T @ features).double()  # (K, 2 dim)
        dim = features.shape[1] // 2
        return MixtureStats(
            counts=resp.sum(0).double(),
            sums=weighted[:, dim:],
            square_sums=weighted[:, :dim],
            log_likelihood=float(log_norm.double().sum()),
            n_rows=int(features.shape[0]),
            shift=self.shift,
        )


class FeatureCache:
    """The E-step features ``[x^2, x]`` of every chunk of a level around a fixed ``shift``.

    ``chunks`` is called to (re)read the level's residual chunks (m, dim); the first pass keeps
    the features (m, 2 dim) when all of them fit in ``max_bytes``, so later EM iterations skip
    reading, shifting and squaring the data. Above the budget every pass recomputes them, so
    memory stays bounded by one chunk (out-of-core data).
    """

    def __init__(self, chunks: Callable[[], Iterable[torch.Tensor]], shift: torch.Tensor,
                 dtype: torch.dtype, n_rows: int, dim: int, max_bytes: int):
        self._chunks = chunks
        self._shift = shift.to(dtype)
        item_bytes = torch.empty((), dtype=dtype).element_size()
        self.caches = n_rows * 2 * dim * item_bytes <= max_bytes
        self._cached: list[torch.Tensor] | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._cached is not None:
            yield from self._cached
            return
        kept = [] if self.caches else None
        for chunk in self._chunks():
            features = expansion_features(chunk, self._shift)
            if kept is not None:
                kept.append(features)
            yield features
        self._cached = kept


def empty_stats(n_components: int, dim: int, shift: torch.Tensor) -> MixtureStats:
    """Zero statistics around ``shift``, the identity of ``+``."""
    zeros = torch.zeros(n_components, dim, dtype=torch.float64, device=shift.device)
    return MixtureStats(torch.zeros(n_components, dtype=torch.float64, device=shift.device),
                        zeros, zeros.clone(), 0.0, 0, shift)


def m_step(stats: MixtureStats, reg_covar: float | torch.Tensor, covariance_type: str = "diag",
           weight_prior: float = 1.0) -> MixtureParams:
    """Parameters from statistics: maximum likelihood, or MAP for the weights under a symmetric
    Dirichlet prior of concentration ``weight_prior`` (1 = no prior; a > 1 adds a - 1 pseudo-rows
    to every component's count, pulling the weights towards uniform).

    reg_covar: the variance floor added to every variance, a number or a (dim,) tensor (e.g. a
    fraction of the data's per-dimension variance). covariance_type: "diag" (one variance per
    component and dimension), "spherical" (one per component), "tied" (one diagonal shared by all
    components: the pooled within-component variance). Components with no mass keep no
    meaningful estimate; the caller re-seeds them (their means here are 0-safe).
    """
    counts = stats.counts.clamp_min(1e-12)
    centered_means = stats.sums / counts[:, None]
    variances = (stats.square_sums / counts[:, None] - centered_means.square()).clamp_min(0.0)
    if covariance_type == "spherical":
        variances = variances.mean(1, keepdim=True).expand_as(variances).clone()
    elif covariance_type == "tied":
        pooled = (stats.counts[:, None] * variances).sum(0) / stats.counts.sum()
        variances = pooled.expand_as(variances).clone()
    elif covariance_type != "diag":
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    variances = variances + (reg_covar.to(variances) if isinstance(reg_covar, torch.Tensor) else reg_covar)
    weights = (stats.counts + (weight_prior - 1.0)).clamp_min(1e-300)
    return MixtureParams(weights=weights / weights.sum(), means=centered_means + stats.shift, variances=variances)


def hard_assignment_stats(chunk: torch.Tensor, codes: torch.Tensor, n_components: int,
                          shift: torch.Tensor) -> MixtureStats:
    """Statistics of a hard assignment (responsibility 1 for ``codes``), e.g. to start EM
    from k-means centers as scikit-learn does. chunk: (m, dim); codes: (m,) int64."""
    shifted = chunk.double() - shift
    dim = chunk.shape[1]
    sums = torch.zeros(n_components, dim, dtype=torch.float64, device=chunk.device)
    square_sums = torch.zeros_like(sums)
    sums.index_add_(0, codes, shifted)
    square_sums.index_add_(0, codes, shifted.square())
    counts = torch.bincount(codes, minlength=n_components).double()
    return MixtureStats(counts, sums, square_sums, 0.0, int(chunk.shape[0]), shift)
