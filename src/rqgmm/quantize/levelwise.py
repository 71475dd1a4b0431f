"""The level-wise engine: fit level ``l`` on what levels ``0..l-1`` left, in order, from one
seeded generator. RQ-KMeans and RQ-GMM are its per-level models (``_fit_level``); the engine owns
the level loop, sampling (``max_samples``), prefixes, ``fit_source`` and aligned refits.

An aligned refit is described by a :class:`Refit` passed down as an argument (never left on the
tokenizer): which earlier version to stay aligned with, how components are matched to its
components, and whether levels start from its codewords.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rqgmm.errors import InvalidInputError
from rqgmm.progress import progress_bar
from rqgmm.quantize.base import ResidualTokenizer
from rqgmm.quantize.params import positive_int
from rqgmm.quantize.residuals import MatrixResiduals, ResidualSource
from rqgmm.quantize.rowops import resolve_device

# how an aligned refit matches a level's components to the previous version's (see ``fit``)
ALIGNMENTS = ("codewords", "co-assignment", "none")


@dataclass(frozen=True)
class Refit:
    """The refit options of one fit. ``previous``: the fitted version to stay aligned with (None:
    a fresh fit); ``alignment``: one of :data:`ALIGNMENTS`; ``warm_start``: levels start from the
    previous codewords (else from the tokenizer's own seeding)."""

    previous: "LevelwiseTokenizer | None" = None
    alignment: str = "none"
    warm_start: bool = False

    @classmethod
    def of(cls, tokenizer: "LevelwiseTokenizer", previous, alignment: str, warm_start: bool) -> "Refit":
        """The checked options of a refit of ``tokenizer`` (a named error when they cannot be)."""
        if alignment not in ALIGNMENTS:
            raise InvalidInputError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        if previous is None:
            return cls()
        if not warm_start and alignment == "none":
            raise InvalidInputError("alignment='none' with warm_start=False is a fresh fit: pass previous=None,"
                                    " or choose alignment='codewords' or 'co-assignment'")
        if type(previous) is not type(tokenizer):
            raise InvalidInputError(f"previous tokenizer is a {type(previous).__name__}, this is a"
                                    f" {type(tokenizer).__name__}: method differs")
        previous.check_fitted()
        tokenizer.validate_params()
        for field, mine, theirs in (("n_levels", tokenizer.n_levels, previous.n_levels),
                                    ("codebook_size", tokenizer.codebook_sizes, previous.codebook_sizes)):
            if mine != theirs:
                raise InvalidInputError(f"previous tokenizer has {field}={theirs}, this one {mine}: {field} differs")
        return cls(previous, alignment, bool(warm_start))

    def start(self, level: int, device: torch.device) -> torch.Tensor | None:
        """The previous version's codewords of ``level`` (K, dim) float64 to start from, or None."""
        if self.previous is None or not self.warm_start:
            return None
        return torch.as_tensor(self.previous.codebooks_[level], dtype=torch.float64, device=device)


class LevelwiseTokenizer(ResidualTokenizer):
    """A residual tokenizer whose levels are fitted one after the other (RQ-KMeans, RQ-GMM).

    ``level_records`` names the fitted per-level lists (one entry appended per level) that the
    engine resets before a fit and saves and restores with the artifact."""

    level_records: ClassVar[tuple[str, ...]] = ("n_iter_", "converged_", "n_reseeded_")
    optional_records: ClassVar[tuple[str, ...]] = ()

    @property
    def _dtype(self) -> torch.dtype:
        """The compute dtype of distance products (``precision``)."""
        return torch.float64 if self.precision == "float64" else torch.float32

    def _reset_fit_state(self) -> None:
        """Clear the per-level records and cached scorers before a new fit (subclasses extend)."""
        self.__dict__.pop("_scorers", None)
        for name in self.level_records:
            setattr(self, name, [])

    def _fitted_attributes(self) -> dict:
        return {**super()._fitted_attributes(), **{name: getattr(self, name) for name in self.level_records}}

    def _restore(self, arrays, attributes) -> None:
        super()._restore(arrays, attributes)
        for name in self.level_records:  # a record added later (optional_records) is absent from older artifacts
            values = attributes.get(name, []) if name in self.optional_records else attributes[name]
            setattr(self, name, [list(v) if isinstance(v, list) else v for v in values])

    # ------------------------------------------------------------------ per-level model
    def _fit_level(self, level: int, residuals: ResidualSource, generator: torch.Generator,
                   rng: np.random.Generator, start: torch.Tensor | None) -> None:
        """Fit level ``level`` on the residual source and append its parameters; ``start``: the
        codewords (K, dim) float64 to start from in an aligned refit (None: the model's seeding)."""
        raise NotImplementedError

    def _permute_level(self, level: int, order: np.ndarray) -> None:
        """Reorder level ``level``'s components: new code j is old component ``order[j]``."""
        self.codebooks_[level] = self.codebooks_[level][order]
        self.__dict__.get("_scorers", {}).pop(level, None)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, drop_invalid: bool = False, previous: "LevelwiseTokenizer | None" = None,
            alignment: str = "codewords", warm_start: bool = True) -> "LevelwiseTokenizer":
        """Fit the codebooks level by level.

        X: (n_items, dim) array or ``np.memmap`` of real numbers; read in chunks of
        ``batch_size`` rows, never copied whole. Rows with NaN/Inf raise an error naming them,
        or are skipped with ``drop_invalid=True``. Returns ``self``.

        previous: an earlier fitted version (same class, levels, codebook sizes and dimension)
        to stay aligned with: each level starts from the previous version's codewords (warm
        start) and, once fitted, its components are permuted to best match the previous ones
        (an optimal assignment), so items that did not move keep their IDs.
        alignment: how a refit level's components are matched to the previous ones:
        "codewords" (Hungarian assignment on squared codeword distance), "co-assignment"
        (Hungarian assignment maximizing the training rows that both versions put in the same
        pair of components; the previous version encodes the rows once more) or "none" (warm
        start only, components in the order the fit leaves them).
        warm_start: start each level from the previous codewords (True) or from this
        tokenizer's own seeding, as a fresh fit (False): the fresh fit's quality with its
        components renumbered to match the previous version's (more churn than a warm start).
        """
        self._fit(X, drop_invalid, Refit.of(self, previous, alignment, warm_start))
        return self

    def fit_encode(self, X, y=None, *, drop_invalid: bool = False, previous: "LevelwiseTokenizer | None" = None,
                   alignment: str = "codewords", warm_start: bool = True):
        """``fit(X)`` (same options) then the codes of ``X``: (n_items, n_levels) int64, from the
        fit's final assignment pass (equal to ``fit(X).encode(X)``). With ``drop_invalid=True``
        returns ``(codes, kept)``: ``kept`` (n_kept,) int64 are the rows the codes belong to."""
        return self._fit_encode(X, drop_invalid, Refit.of(self, previous, alignment, warm_start))

    def _fit(self, X, drop_invalid: bool, refit: Refit = Refit()) -> np.ndarray:
        """Fit; return the training codes of the final assignment passes, (n, n_levels) int64."""
        matrix = self._check_fit_input(X, drop_invalid)
        source = MatrixResiduals(self, matrix)
        self._fit_levels(source, refit)
        return source.codes

    def fit_source(self, source: ResidualSource) -> "LevelwiseTokenizer":
        """Fit every level from a :class:`~rqgmm.quantize.residuals.ResidualSource` (rows held
        elsewhere: a Ray Dataset, a custom reader). Checks the parameters and the source's size;
        the source is responsible for refusing NaN/Inf and constant data. Returns ``self``."""
        self.validate_params()
        sizes = self.codebook_sizes
        if source.n_rows < max(sizes):
            raise InvalidInputError(f"{source.n_rows} row(s) but a level has codebook_size={max(sizes)};"
                                    " a codebook needs at least as many rows as codes (use a smaller codebook_size)")
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = int(source.dim)
        self._fit_levels(source, Refit())
        return self

    def _fit_levels(self, stream: ResidualSource, refit: Refit) -> None:
        previous = refit.previous
        if previous is not None and previous.n_features_in_ != self.n_features_in_:
            raise InvalidInputError(f"previous tokenizer has n_features_in_={previous.n_features_in_}, the data"
                                    f" {self.n_features_in_}: dimension differs")
        alignment = "none" if previous is None else refit.alignment
        previous_codes = self._codes_of(previous, stream) if alignment == "co-assignment" else None
        self.codebooks_: list[np.ndarray] = []
        self._device_codebooks: list[torch.Tensor] = []
        self._reset_fit_state()
        self.seed_ = self._draw_seed()
        generator = torch.Generator().manual_seed(self.seed_)
        rng = np.random.default_rng(self.seed_)
        self.level_fit_seconds_: list[float] = []
        levels = progress_bar(range(self.n_levels), enabled=self.progress, desc=f"{type(self).__name__} levels")
        for level in levels:
            started = time.perf_counter()
            stream.level = level
            self._fit_level(level, self._level_source(stream, level), generator, rng,
                            refit.start(level, self.device_))
            if alignment == "codewords":
                self._align_level(level, previous)
            self._device_codebooks.append(torch.as_tensor(self.codebooks_[level], device=self.device_))
            stream.store_codes(level)
            if alignment == "co-assignment":
                self._align_level_by_rows(level, previous_codes[:, level], stream)
            self.level_fit_seconds_.append(time.perf_counter() - started)

    def _level_source(self, stream: ResidualSource, level: int) -> ResidualSource:
        """What level ``level`` is fitted on: every row, or with ``max_samples`` a seeded sample of
        the current residuals (drawn from a generator of its own, so with ``max_samples >= n``
        the fit is exactly the full one); all rows are encoded afterwards either way."""
        max_samples = self.max_samples
        if max_samples is None or max_samples >= stream.n_rows:
            return stream
        return stream.sample_source(int(max_samples), np.random.default_rng([self.seed_, level, 1]))

    # ------------------------------------------------------------------ alignment
    def _align_level(self, level: int, previous: "LevelwiseTokenizer") -> None:
        """Permute level ``level``'s fitted components to best match the previous version's
        (Hungarian assignment on squared codeword distance; scipy's linear_sum_assignment)."""
        from scipy.optimize import linear_sum_assignment

        old = np.asarray(previous.codebooks_[level], dtype=np.float64)
        new = np.asarray(self.codebooks_[level], dtype=np.float64)
        cost = (old**2).sum(1)[:, None] - 2 * old @ new.T + (new**2).sum(1)[None, :]
        _, order = linear_sum_assignment(cost)  # order[j]: the new component that takes old code j
        self._permute_level(level, order)

    def _codes_of(self, previous: "LevelwiseTokenizer", stream: ResidualSource) -> np.ndarray:
        """The previous version's codes (n, n_levels) int64 of the training rows."""
        matrix = stream.training_rows()
        if matrix is None:
            raise InvalidInputError("alignment='co-assignment' needs the training rows in this process; use"
                                    " alignment='codewords' with a distributed source")
        codes = np.empty((matrix.n_rows, previous.n_levels), dtype=np.int64)
        with torch.inference_mode():
            for start, chunk in matrix.chunks(self.batch_size, previous.device_):
                codes[start:start + chunk.shape[0]] = previous._encode_chunk(chunk).cpu().numpy()
        return codes

    def _align_level_by_rows(self, level: int, old_codes: np.ndarray, stream: ResidualSource) -> None:
        """Permute level ``level`` so that its codes agree with ``old_codes`` (n,) on as many
        training rows as possible (Hungarian assignment on the contingency table), and renumber
        the codes ``stream`` holds for that level accordingly."""
        from scipy.optimize import linear_sum_assignment

        size = self.codebook_sizes[level]
        new_codes = stream.codes[:, level]
        table = np.zeros((size, size), dtype=np.int64)
        np.add.at(table, (old_codes, new_codes), 1)
        _, order = linear_sum_assignment(table, maximize=True)  # order[j]: new component taking old code j
        self._permute_level(level, order)
        self._device_codebooks[level] = torch.as_tensor(self.codebooks_[level], device=self.device_)
        renumber = np.empty(size, dtype=np.int64)
        renumber[order] = np.arange(size)
        stream.codes[:, level] = renumber[new_codes]

    # ------------------------------------------------------------------ prefixes
    def prefix(self, n_levels: int) -> "LevelwiseTokenizer":
        """A new fitted tokenizer made of this one's first ``n_levels`` levels.

        Levels are fitted in order from one seeded generator, so the prefix equals what ``fit``
        with ``n_levels`` levels (same data, parameters and seed) returns: a study of 3 x 256 and
        4 x 256 fits only the latter. ``level_fit_seconds_`` is kept for the levels kept.
        """
        self.check_fitted()
        if not (positive_int(n_levels) and n_levels <= self.n_levels):
            raise InvalidInputError(f"prefix: n_levels must be an int in [1, {self.n_levels}], got {n_levels!r}")
        params = self._json_params()
        params["n_levels"] = n_levels
        if isinstance(params["codebook_size"], list):
            params["codebook_size"] = params["codebook_size"][:n_levels]
        attributes = {name: value[:n_levels] if isinstance(value, list) and len(value) == self.n_levels else value
                      for name, value in self._fitted_attributes().items()}
        truncated = type(self)(**params)
        truncated._restore(self._fitted_arrays(), attributes)
        truncated.level_fit_seconds_ = list(self.__dict__.get("level_fit_seconds_", [])[:n_levels])
        return truncated
