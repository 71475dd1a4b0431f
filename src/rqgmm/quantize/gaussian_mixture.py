"""One level of a diagonal (spherical or tied) Gaussian mixture as chunked sufficient statistics.

The E-step of a chunk never materializes an ``(n, K, dim)`` tensor: with precisions
``P = 1 / var`` the component log-density is expanded as

    log N(x | mu_k, diag(var_k)) = -1/2 [dim log 2pi + sum_j log var_kj
                                         + sum_j P_kj x_j^2 - 2 sum_j P_kj mu_kj x_j + sum_j P_kj mu_kj^2]

so the whole chunk costs one matrix product ``[x^2, x] @ W`` of shape (m, 2 dim) x (2 dim, K), and
the statistics of the M-step another one, ``R^T @ [x^2, x]``. A tied or spherical mixture needs half
of that: with one variance vector shared by the components the ``x^2`` term is the same for every
component (a per-row constant), with one variance per component it is ``|x|^2`` times a per-component
number, so both products run on ``x`` alone (dim, not 2 dim, wide). Both run in the data's compute
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

# Responsibilities below e^-40 (4e-18) of the row's best component change no statistic in float32
# or float64 and are set to exactly 0. Two CPU slow paths make this matter: exp() of inputs deep in
# float32's subnormal range is 10-20x slower, and so is the M-step product R^T @ [x^2, x] when tiny
# responsibilities times small features give subnormal products (measured 186 ms -> 52 ms for
# (256 x 11k) @ (11k x 768) on one core with MiniLM residuals).
_LOG_RESP_FLOOR = -40.0

from rqgmm.quantize.declarations import COVARIANCE_TYPES  # noqa: E402,F401 - declared with the parameters


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

    The M-step of a tied mixture reads only the column sums of ``square_sums`` and that of a
    spherical one only its row sums, so their scorers compute just those (row 0, column 0).
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
    ``covariance_type`` "tied" or "spherical" says the variances have that structure (rows equal,
    or columns equal); the products then skip the ``x^2`` half (see the module docstring).
    """

    def __init__(self, params: MixtureParams, dtype: torch.dtype = torch.float32,
                 shift: torch.Tensor | None = None, temperature: float = 1.0, covariance_type: str = "diag"):
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
        self.params = params
        self.dtype = dtype
        self.temperature = float(temperature)
        self.covariance_type = covariance_type
        weights, means, variances = params.weights, params.means, params.variances
        self.shift = (weights[:, None] * means).sum(0) if shift is None else shift.to(means)  # (dim,)
        centered_means = means - self.shift
        precisions = 1.0 / variances
        dim = means.shape[1]
        if covariance_type == "diag":  # (2 dim, K): rows for x^2 then for x
            matrix = torch.cat([-0.5 * precisions, centered_means * precisions], dim=1).T
        else:  # (dim, K): rows for x; the x^2 term is carried by square_weights
            matrix = (centered_means * precisions).T
        # tied: (dim,) weights of x^2, one per-row constant; spherical: (K,) weights of |x|^2
        square_weights = -0.5 * (precisions[0] if covariance_type == "tied" else precisions[:, 0])
        self.weight_matrix = matrix.contiguous().to(dtype)
        self.bias = (
            torch.log(weights)
            - 0.5 * (dim * math.log(2.0 * math.pi) + torch.log(variances).sum(1)
                     + (centered_means.square() * precisions).sum(1))
        )
        # the tempered E-step's operands: (log w_k + log N(x | k)) / T. A tied mixture's per-row x^2
        # term cancels in the responsibilities and enters the free energy untempered.
        self._tempered_matrix = (matrix / self.temperature).contiguous().to(dtype)
        self._tempered_bias = (self.bias / self.temperature).to(dtype)
        self.square_weights = square_weights.to(dtype)
        self._tempered_square_weights = self.square_weights if covariance_type == "tied" \
            else (square_weights / self.temperature).to(dtype)
        self.bias = self.bias.to(dtype)
        self._shift_compute = self.shift.to(dtype)

    def _joint(self, features: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor,
               square_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(scores (m, K), row term (m,) or None)`` from features (m, 2 dim); the full
        (tempered) joint log-probability is ``scores + row term[:, None]``."""
        if self.covariance_type == "diag":
            return torch.addmm(bias, features, matrix), None
        dim = features.shape[1] // 2
        squares, shifted = features[:, :dim], features[:, dim:]
        scores = torch.addmm(bias, shifted, matrix)
        if self.covariance_type == "tied":
            return scores, squares @ square_weights
        return scores.addr_(squares.sum(1), square_weights), None

    def features(self, chunk: torch.Tensor) -> torch.Tensor:
        """``[x^2, x]`` of the shifted chunk: (m, 2 dim) in the compute dtype."""
        return expansion_features(chunk, self._shift_compute)

    def joint_log_prob(self, chunk: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """log w_k + log N(x | k) for every row and component: (m, K)."""
        if features is None:
            features = self.features(chunk)
        scores, row_term = self._joint(features, self.weight_matrix, self.bias, self.square_weights)
        return scores if row_term is None else scores.add_(row_term[:, None])

    def log_responsibilities(self, chunk: torch.Tensor, temperature: float = 1.0):
        """Return ``(log_resp (m, K), log_prob_norm (m,))``; log_prob_norm is log p(x). With
        ``temperature`` T != 1 the responsibilities are those of ``log p(x, k) / T`` (and the norm
        is that tempered sum's)."""
        joint = self.joint_log_prob(chunk)
        if temperature != 1.0:
            joint = joint / temperature
        log_norm = torch.logsumexp(joint, dim=1)
        return joint - log_norm[:, None], log_norm

    def predict_proba(self, chunk: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Posterior responsibilities (m, K), rows summing to 1 (of the tempered joint
        ``log p(x, k) / temperature`` when ``temperature`` != 1)."""
        log_resp, _ = self.log_responsibilities(chunk, temperature)
        return torch.exp(log_resp)

    def accumulate(self, chunk: torch.Tensor) -> MixtureStats:
        """E-step of one chunk (m, dim): its sufficient statistics and log-likelihood."""
        return self.accumulate_features(self.features(chunk))

    def accumulate_features(self, features: torch.Tensor) -> MixtureStats:
        """E-step from the chunk's ``features`` (m, 2 dim), taken around ``self.shift``."""
        joint, row_term = self._joint(features, self._tempered_matrix, self._tempered_bias,
                                      self._tempered_square_weights)
        # one exp of clamped values instead of logsumexp's unclamped exp plus a second one; what
        # falls below the floor becomes 0 (see _LOG_RESP_FLOOR)
        peak = joint.amax(dim=1, keepdim=True)
        negligible = joint.sub_(peak) < _LOG_RESP_FLOOR
        resp = joint.clamp_(min=_LOG_RESP_FLOOR).exp_().masked_fill_(negligible, 0.0)
        total = resp.sum(dim=1, keepdim=True)
        resp.div_(total)
        log_norm = (peak.squeeze(1) + total.squeeze(1).log()) * self.temperature
        if row_term is not None:
            log_norm = log_norm + row_term
        dim = features.shape[1] // 2
        if self.covariance_type == "diag":
            weighted = (resp.T @ features).double()  # (K, 2 dim)
            sums, square_sums = weighted[:, dim:], weighted[:, :dim]
        else:
            squares = features[:, :dim]
            sums = (resp.T @ features[:, dim:]).double()  # (K, dim)
            square_sums = torch.zeros_like(sums)
            if self.covariance_type == "tied":
                square_sums[0] = squares.sum(0).double()
            else:
                square_sums[:, 0] = (resp.T @ squares.sum(1)).double()
        return MixtureStats(
            counts=resp.sum(0).double(),
            sums=sums,
            square_sums=square_sums,
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
    dim = centered_means.shape[1]
    if covariance_type == "diag":
        variances = (stats.square_sums / counts[:, None] - centered_means.square()).clamp_min(0.0)
    elif covariance_type == "spherical":  # reads only the row sums of square_sums
        per_component = stats.square_sums.sum(1) / counts - centered_means.square().sum(1)
        variances = (per_component / dim).clamp_min(0.0)[:, None].expand_as(centered_means).clone()
    elif covariance_type == "tied":  # reads only the column sums: the pooled within-component variance
        within = stats.square_sums.sum(0) - (counts[:, None] * centered_means.square()).sum(0)
        variances = (within / stats.counts.sum()).clamp_min(0.0).expand_as(centered_means).clone()
    else:
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
