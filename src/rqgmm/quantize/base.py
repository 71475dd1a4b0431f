"""The contract every residual tokenizer of rqgmm shares.

A residual tokenizer has ``n_levels`` codebooks. Level 0 quantizes the embedding, level ``l``
quantizes what levels ``0..l-1`` left (the residual). Subclasses say how one level is fitted
(``_fit_level``) and how a residual chunk is assigned (``level_scores``); this base class owns
validation, chunked iteration, the residual chain, encoding, decoding and artifacts.

Shapes: embeddings ``X`` are ``(n_items, dim)`` real numbers (any float dtype, read as float32);
codes are ``(n_items, n_levels)`` int64, code ``c`` at level ``l`` in ``[0, codebook_size[l])``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rqgmm.errors import InvalidInputError, not_fitted
from rqgmm.progress import progress_bar
from rqgmm.quantize.params import Declared, positive_int
from rqgmm.quantize.residuals import MatrixResiduals, ResidualSource
from rqgmm.quantize.rowops import TILE_ROWS, resolve_device, row_argmax
from rqgmm.validation import EmbeddingMatrix, check_embeddings

# largest embedding width a saved tokenizer may declare (bounds allocation before any check)
MAX_FEATURES = 1 << 20
# how an aligned refit matches a level's components to the previous version's (see ``fit``)
ALIGNMENTS = ("codewords", "co-assignment", "none")
# magnitudes (root mean square of the largest coordinate) float32 distance products handle safely
MAX_SCALE, MIN_SCALE = 1e12, 1e-12


class ResidualTokenizer(Declared):
    """Base class: fit / encode / decode / fit_encode / save / load for residual tokenizers.

    Subclasses declare their hyperparameters in ``parameters`` (:mod:`rqgmm.quantize.params`:
    ``__init__``, ``get_params``, validation, CLI options and docs come from there) and
    implement the level hooks below.
    """

    _registry: ClassVar[dict[str, type["ResidualTokenizer"]]] = {}
    # True when level l is fitted on what levels < l left, in order, from one seeded generator
    _levels_fitted_in_order: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ResidualTokenizer._registry[cls.__name__] = cls

    def _json_params(self) -> dict[str, Any]:
        """:meth:`get_params` as JSON values for the manifest (tuples as lists, a device as its
        name, a numpy random state as the seed it gave)."""
        params = {}
        for name, value in self.get_params().items():
            if isinstance(value, tuple):
                value = [int(v) if isinstance(v, (int, np.integer)) else v for v in value]
            elif isinstance(value, torch.device):
                value = str(value)
            elif isinstance(value, np.integer):
                value = int(value)
            elif name == "random_state" and value is not None and not isinstance(value, int):
                value = int(self.seed_)
            params[name] = value
        return params

    def validate_params(self, *, warn: bool = True) -> None:
        """Check every hyperparameter (raises :class:`InvalidInputError` naming the first bad one)."""
        super().validate_params(warn=warn)
        sizes = self.codebook_sizes
        max_samples = self.get_params().get("max_samples")
        if max_samples is not None and max_samples < max(sizes):
            raise InvalidInputError(f"{type(self).__name__}: max_samples={max_samples} is below the largest"
                                    f" codebook_size={max(sizes)}; a level needs at least one sampled row per code")
        if len(sizes) != self.n_levels:
            raise InvalidInputError(
                f"{type(self).__name__}: codebook_size lists {len(sizes)} sizes but n_levels={self.n_levels}")

    def _draw_seed(self) -> int:
        """The seed of one fit: ``random_state`` (an int, or one draw from a numpy RandomState /
        Generator, as scikit-learn does; None: fresh entropy), or the deprecated ``seed`` when
        given. Each fit draws it once and keeps it in ``seed_``."""
        state = self._param("random_state")
        if isinstance(state, np.random.RandomState):
            return int(state.randint(0, 2**31 - 1))
        if isinstance(state, np.random.Generator):
            return int(state.integers(0, 2**63 - 1))
        if state is not None:
            return int(state)
        return int(np.random.SeedSequence().entropy % (2**63 - 1))

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (read by ``check_is_fitted``, ``clone`` and the estimator
        checks): an unsupervised transformer of dense float arrays that refuses NaN."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=[]),
                    input_tags=InputTags(allow_nan=False, two_d_array=True), requires_fit=True)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "codebooks_")

    def transform(self, X) -> np.ndarray:
        """scikit-learn's name for :meth:`encode`: the codes of X, (n_items, n_levels) int64."""
        return self.encode(X)

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """scikit-learn's name for :meth:`fit_encode`."""
        return self.fit_encode(X, y, **fit_params)

    def score(self, X, y=None) -> float:
        """Negative mean squared reconstruction error per coordinate of X (higher is better, as
        scikit-learn's ``score`` convention wants; ``GridSearchCV`` maximizes it)."""
        reconstruction = self.decode(self.encode(X))
        matrix, _ = check_embeddings(X, expected_dim=self.n_features_in_, owner=type(self).__name__)
        return -float(np.mean(np.square(matrix.read(0, matrix.n_rows) - reconstruction)))

    @property
    def codebook_sizes(self) -> list[int]:
        """Codebook size of each level, a list of ``n_levels`` ints."""
        if isinstance(self.codebook_size, (list, tuple)):
            return [int(k) for k in self.codebook_size]
        return [int(self.codebook_size)] * int(self.n_levels)

    # ------------------------------------------------------------------ level hooks
    def _fit_level(self, level: int, residuals: ResidualSource, generator: torch.Generator,
                   rng: np.random.Generator) -> None:
        """Fit level ``level`` on the residual source and store its parameters."""
        raise NotImplementedError

    def level_scores(self, level: int, residual: torch.Tensor) -> torch.Tensor:
        """Scores (m, K_level) of residual rows (m, latent_dim) at ``level``; the argmax of a row
        is its code (RQ-KMeans: ``2 x.c - |c|^2``; RQ-GMM: joint log-probabilities)."""
        raise NotImplementedError

    def level_reconstruction(self, level: int, residual: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """What level ``level`` subtracts from the residual rows (m, latent_dim) given their
        codes (m,): the chosen codewords (RQ-GMM ``residual="soft"``: posterior-weighted means)."""
        return self._device_codebooks[level][codes]

    def residual_chain(self, residual: torch.Tensor, n_levels: int, *, offset: int = 0,
                       codes: torch.Tensor | None = None,
                       last_residual: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Walk levels ``offset .. offset + n_levels - 1`` of the residual chain.

        The one place where a level's residual is made from the previous one: fitting, encoding,
        diagnostics and the Ray engine all go through it.

        residual: (m, latent_dim) the residual at level ``offset`` (the latent itself when 0);
        codes: (m, n_levels) known codes of those levels (computed by argmax when None).
        Returns (codes (m, n_levels) int64, the residual the last of them leaves (m, latent_dim),
        or None with ``last_residual=False``).
        """
        if codes is None and residual.shape[0] > TILE_ROWS and residual.device.type == "cpu":
            # tile by tile, so each level's score matrix stays in cache (same codes, faster)
            parts = [self.residual_chain(tile, n_levels, offset=offset, last_residual=last_residual)
                     for tile in residual.split(TILE_ROWS)]
            return (torch.cat([codes for codes, _ in parts]),
                    torch.cat([rest for _, rest in parts]) if last_residual else None)
        out = torch.empty(residual.shape[0], n_levels, dtype=torch.int64, device=residual.device)
        for step in range(n_levels):
            level = offset + step
            level_codes = codes[:, step] if codes is not None else row_argmax(self.level_scores(level, residual))
            out[:, step] = level_codes
            if last_residual or step + 1 < n_levels:
                residual = residual - self.level_reconstruction(level, residual, level_codes).to(residual.dtype)
        return out, (residual if last_residual else None)

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        return {f"level_{level}.codebook": codebook for level, codebook in enumerate(self.codebooks_)}

    def _fitted_attributes(self) -> dict[str, Any]:
        return {"n_features_in_": self.n_features_in_}

    def _restore(self, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> None:
        self.n_features_in_ = int(attributes["n_features_in_"])
        self.codebooks_ = [arrays[f"level_{level}.codebook"] for level in range(self.n_levels)]

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, drop_invalid: bool = False, previous: "ResidualTokenizer | None" = None,
            alignment: str = "codewords", warm_start: bool = True) -> "ResidualTokenizer":
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
        with self._refit_against(previous, alignment, warm_start):
            self._fit(X, drop_invalid)
        return self

    @contextlib.contextmanager
    def _refit_against(self, previous, alignment: str, warm_start: bool):
        """The refit options of one fit, held only while it runs: every fit starts from the same
        state, so fitting one object twice equals fitting a fresh clone."""
        if previous is not None and not warm_start and alignment == "none":
            raise InvalidInputError("alignment='none' with warm_start=False is a fresh fit: pass previous=None,"
                                    " or choose alignment='codewords' or 'co-assignment'")
        self._previous = self._check_previous(previous, alignment)
        self._alignment = alignment
        self._warm_start_previous = bool(warm_start)
        try:
            yield
        finally:
            for name in ("_previous", "_alignment", "_warm_start_previous"):
                self.__dict__.pop(name, None)

    def _check_previous(self, previous, alignment: str = "codewords") -> "ResidualTokenizer | None":
        """``previous`` if it can anchor a refit of this tokenizer, else a named error."""
        if alignment not in ALIGNMENTS:
            raise InvalidInputError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        if previous is None:
            return None
        if not self._levels_fitted_in_order:
            raise InvalidInputError(f"{type(self).__name__} trains its levels jointly; aligned refits are for"
                                    " RQKMeans and RQGMM")
        if type(previous) is not type(self):
            raise InvalidInputError(f"previous tokenizer is a {type(previous).__name__}, this is a"
                                    f" {type(self).__name__}: method differs")
        previous.check_fitted()
        self.validate_params()
        for field, mine, theirs in (("n_levels", self.n_levels, previous.n_levels),
                                    ("codebook_size", self.codebook_sizes, previous.codebook_sizes)):
            if mine != theirs:
                raise InvalidInputError(f"previous tokenizer has {field}={theirs}, this one {mine}: {field} differs")
        return previous

    def _warm_start(self, level: int) -> torch.Tensor | None:
        """The previous version's codewords of ``level`` (K, dim) float64 during an aligned refit."""
        previous = getattr(self, "_previous", None)
        if previous is None or not getattr(self, "_warm_start_previous", True):
            return None
        return torch.as_tensor(previous.codebooks_[level], dtype=torch.float64, device=self.device_)

    def _align_level(self, level: int) -> None:
        """Permute level ``level``'s fitted components to best match the previous version's
        (Hungarian assignment on squared codeword distance; scipy's linear_sum_assignment)."""
        from scipy.optimize import linear_sum_assignment

        old = np.asarray(self._previous.codebooks_[level], dtype=np.float64)
        new = np.asarray(self.codebooks_[level], dtype=np.float64)
        cost = (old**2).sum(1)[:, None] - 2 * old @ new.T + (new**2).sum(1)[None, :]
        _, order = linear_sum_assignment(cost)  # order[j]: the new component that takes old code j
        self._permute_level(level, order)

    def _codes_of_previous(self, stream: ResidualSource) -> np.ndarray:
        """The previous version's codes (n, n_levels) int64 of the training rows."""
        matrix = getattr(stream, "matrix", None)
        if matrix is None or not hasattr(stream, "codes"):
            raise InvalidInputError("alignment='co-assignment' needs the training rows in this process; use"
                                    " alignment='codewords' with a distributed source")
        previous = self._previous
        previous.check_fitted()
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

    def _permute_level(self, level: int, order: np.ndarray) -> None:
        """Reorder level ``level``'s components: new code j is old component ``order[j]``."""
        self.codebooks_[level] = self.codebooks_[level][order]
        self.__dict__.get("_scorers", {}).pop(level, None)

    def _check_fit_input(self, X, drop_invalid: bool) -> EmbeddingMatrix:
        """Validate parameters and training rows; set ``device_`` and ``n_features_in_``."""
        self.validate_params()
        matrix, _ = check_embeddings(X, drop_invalid=drop_invalid, chunk_size=self.batch_size)
        sizes = self.codebook_sizes
        if matrix.n_rows < max(sizes):
            level = int(np.argmax(sizes))
            raise InvalidInputError(
                f"{matrix.name}: n_samples={matrix.n_rows} row(s) but level {level} has codebook_size={sizes[level]};"
                " a codebook needs at least as many rows as codes (use a smaller codebook_size)")
        moments = matrix.moments(self.batch_size)
        if not np.any(moments.variance > 0):
            raise InvalidInputError(
                f"{matrix.name}: every row is identical (constant data); there is nothing to quantize")
        self._check_scale(moments, matrix.name)
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = matrix.dim
        return matrix

    def _check_scale(self, moments, name: str) -> None:
        """Refuse data whose magnitude float32 arithmetic cannot handle (squares overflow or
        vanish), saying how to rescale it; subclasses add their own limits."""
        scale = float(np.sqrt(np.max(moments.variance + moments.mean**2)))
        if not np.isfinite(scale) or scale > MAX_SCALE:
            raise InvalidInputError(
                f"{name}: values reach a magnitude of ~{scale:.1e}; float32 products of numbers above ~{MAX_SCALE:.0e}"
                f" overflow. Divide the embeddings by a constant (e.g. {scale:.0e}) before fitting")
        if scale < MIN_SCALE:
            raise InvalidInputError(
                f"{name}: values are all below ~{scale:.1e}; their squares vanish in float32. Multiply the"
                f" embeddings by a constant (e.g. {1 / max(scale, 1e-300):.0e}) before fitting")

    def _fit(self, X, drop_invalid: bool) -> np.ndarray:
        """Fit; return the training codes of the final assignment passes, (n, n_levels) int64."""
        matrix = self._check_fit_input(X, drop_invalid)
        source = MatrixResiduals(self, matrix)
        self._fit_levels(source)
        return source.codes

    def fit_source(self, source: ResidualSource) -> "ResidualTokenizer":
        """Fit every level from a :class:`~rqgmm.quantize.residuals.ResidualSource` (rows held
        elsewhere: a Ray Dataset, a custom reader). Checks the parameters and the source's size;
        the source is responsible for refusing NaN/Inf and constant data. Returns ``self``."""
        if not self._levels_fitted_in_order:
            raise InvalidInputError(f"{type(self).__name__} trains its levels jointly; fit it with fit(X)")
        self.validate_params()
        sizes = self.codebook_sizes
        if source.n_rows < max(sizes):
            raise InvalidInputError(f"{source.n_rows} row(s) but a level has codebook_size={max(sizes)};"
                                    " a codebook needs at least as many rows as codes (use a smaller codebook_size)")
        self.device_ = resolve_device(self.device)
        self.n_features_in_ = int(source.dim)
        self._fit_levels(source)
        return self

    def _fit_levels(self, stream: ResidualSource) -> None:
        previous = getattr(self, "_previous", None)
        if previous is not None and previous.n_features_in_ != self.n_features_in_:
            raise InvalidInputError(f"previous tokenizer has n_features_in_={previous.n_features_in_}, the data"
                                    f" {self.n_features_in_}: dimension differs")
        alignment = "none" if previous is None else getattr(self, "_alignment", "codewords")
        previous_codes = None
        if alignment == "co-assignment":
            previous_codes = self._codes_of_previous(stream)
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
            self._fit_level(level, self._level_source(stream, level), generator, rng)
            if alignment == "codewords":
                self._align_level(level)
            self._device_codebooks.append(torch.as_tensor(self.codebooks_[level], device=self.device_))
            stream.store_codes(level)
            if alignment == "co-assignment":
                self._align_level_by_rows(level, previous_codes[:, level], stream)
            self.level_fit_seconds_.append(time.perf_counter() - started)

    def _level_source(self, stream: ResidualSource, level: int) -> ResidualSource:
        """What level ``level`` is fitted on: every row, or with ``max_samples`` a seeded sample of
        the current residuals (drawn from a generator of its own, so with ``max_samples >= n``
        the fit is exactly the full one); all rows are encoded afterwards either way."""
        max_samples = getattr(self, "max_samples", None)
        if max_samples is None or max_samples >= stream.n_rows:
            return stream
        if not hasattr(stream, "sample_source"):
            raise InvalidInputError(f"max_samples is not supported by a {type(stream).__name__} source; fit on all"
                                    " rows (max_samples=None)")
        return stream.sample_source(int(max_samples), np.random.default_rng([self.seed_, level, 1]))

    def prefix(self, n_levels: int) -> "ResidualTokenizer":
        """A new fitted tokenizer made of this one's first ``n_levels`` levels.

        Levels are fitted in order from one seeded generator, so the prefix equals what ``fit``
        with ``n_levels`` levels (same data, parameters and seed) returns: a study of 3 x 256 and
        4 x 256 fits only the latter. ``level_fit_seconds_`` is kept for the levels kept.
        Tokenizers whose levels are trained jointly (RQ-VAE) have no such prefix and raise.
        """
        if not self._levels_fitted_in_order:
            raise InvalidInputError(f"{type(self).__name__} trains its levels jointly; a prefix of its levels is"
                                    " not the tokenizer a fit with fewer levels would give")
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
        if hasattr(self, "level_fit_seconds_"):
            truncated.level_fit_seconds_ = list(self.level_fit_seconds_[:n_levels])
        return truncated

    def _reset_fit_state(self) -> None:
        """Clear per-level learned lists before a new fit (subclasses extend)."""

    def fit_encode(self, X, y=None, *, drop_invalid: bool = False,
                   previous: "ResidualTokenizer | None" = None, alignment: str = "codewords",
                   warm_start: bool = True):
        """``fit(X)`` (same options) then the codes of ``X``: (n_items, n_levels) int64.

        Equal to ``fit(X).encode(X)``; the codes come from the final assignment pass of the fit.
        With ``drop_invalid=True`` returns ``(codes, kept)``: ``kept`` (n_kept,) int64 are the
        rows of ``X`` the codes belong to, so codes never silently stop lining up with item ids.
        """
        kept = None
        if drop_invalid:
            X, dropped = check_embeddings(X, drop_invalid=True, chunk_size=self.batch_size)
            kept = np.setdiff1d(np.arange(X.n_rows + dropped.size, dtype=np.int64), dropped)
        with self._refit_against(previous, alignment, warm_start):
            codes = self._fit(X, False)
        return codes if kept is None else (codes, kept)

    # ------------------------------------------------------------------ encode / decode
    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless fitted or loaded; place the codebooks on the device."""
        if not hasattr(self, "codebooks_"):
            raise not_fitted(f"this {type(self).__name__} is not fitted yet; call fit(X) or load(path)")
        if not hasattr(self, "_device_codebooks") or len(self._device_codebooks) != len(self.codebooks_):
            self.device_ = resolve_device(self.device)
            self._device_codebooks = [torch.as_tensor(c, device=self.device_) for c in self.codebooks_]

    def encode(self, X, *, drop_invalid: bool = False, collisions: str = "none", capacity: int = 1):
        """Codes of ``X``: (n_items, n_levels) int64. X must have the fitted dimension.

        drop_invalid: skip rows holding NaN/Inf instead of refusing them; then the result is
        ``(codes, kept)`` with ``kept`` (n_kept,) int64 the rows of ``X`` the codes belong to, so
        codes never silently stop lining up with item ids.

        collisions: "none" (codes as they are), "suffix" (one extra column counting the items
        that share an ID, so every ID is unique: (n_items, n_levels + 1)), "relocate" (items
        of a last-level bucket holding more than ``capacity`` items move to their next most
        likely free last-level code; earlier levels untouched) or "sinkhorn" (the colliding items
        of a prefix share its free last-level codes by a Sinkhorn-balanced assignment, LC-Rec's
        way; the others stay). All are deterministic and do not depend on the order of the items.
        """
        from rqgmm.quantize.collisions import COLLISION_MODES

        if collisions not in COLLISION_MODES:
            raise InvalidInputError(f"collisions must be one of {COLLISION_MODES}, got {collisions!r}")
        if not (isinstance(capacity, (int, np.integer)) and capacity >= 1):
            raise InvalidInputError(f"capacity must be an int >= 1, got {capacity!r}")
        self.check_fitted()
        matrix, dropped = check_embeddings(X, drop_invalid=drop_invalid, expected_dim=self.n_features_in_,
                                           owner=type(self).__name__, chunk_size=self.batch_size)
        codes = self._encode_with_collisions(matrix, collisions, capacity)
        if not drop_invalid:
            return codes
        return codes, np.setdiff1d(np.arange(matrix.n_rows + dropped.size, dtype=np.int64), dropped)

    def _encode_with_collisions(self, matrix: EmbeddingMatrix, collisions: str, capacity: int) -> np.ndarray:
        from rqgmm.quantize.collisions import add_suffix, content_keys, relocate, sinkhorn_repair

        codes = self._encode_matrix(matrix)
        if collisions == "none":
            return codes
        keys = np.concatenate([content_keys(matrix.read(s, min(s + 65536, matrix.n_rows)))
                               for s in range(0, matrix.n_rows, 65536)])
        if collisions == "suffix":
            return add_suffix(codes, keys)
        scores = lambda positions: self._last_level_scores(matrix.take(positions))  # noqa: E731
        if collisions == "sinkhorn":
            if self.n_levels == 1:
                largest = int(np.unique(codes[:, 0], return_counts=True)[1].max())
                if matrix.n_rows > self.codebook_sizes[0] * capacity:
                    raise InvalidInputError(
                        f"collisions='sinkhorn' on a one-level tokenizer: {matrix.n_rows} items cannot have unique"
                        f" IDs among {self.codebook_sizes[0]} codes x capacity {capacity} (largest collision group:"
                        f" {largest}); raise capacity to at least {-(-matrix.n_rows // self.codebook_sizes[0])},"
                        " use more levels, or collisions='suffix'")
            return sinkhorn_repair(codes, keys, scores, capacity)
        return relocate(codes, keys, scores, capacity)

    def _encode_matrix(self, matrix: EmbeddingMatrix) -> np.ndarray:
        """Codes of every row of a validated matrix, chunk by chunk: (n_rows, n_levels) int64."""
        codes = np.empty((matrix.n_rows, self.n_levels), dtype=np.int64)
        with torch.inference_mode():
            for start, chunk in progress_bar(matrix.chunks(self.batch_size, self.device_), enabled=self.progress,
                                             total=-(-matrix.n_rows // self.batch_size), desc="encode"):
                codes[start:start + chunk.shape[0]] = self._encode_chunk(chunk).cpu().numpy()
        return codes

    def _to_latent(self, chunk: torch.Tensor) -> torch.Tensor:
        """The space the codebooks quantize: (m, dim) -> (m, latent_dim). Identity here;
        neural tokenizers apply their encoder."""
        return chunk

    def _from_latent(self, latent: np.ndarray) -> np.ndarray:
        """Inverse map of a sum of codewords back to the input space: (m, latent_dim) -> (m, dim)
        float32. Identity here; neural tokenizers apply their decoder."""
        return latent

    def _encode_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        """Codes of a chunk (m, dim) on the device: (m, n_levels) int64."""
        return self.residual_chain(self._to_latent(chunk), self.n_levels, last_residual=False)[0]

    def _last_level_scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores of the last level for raw rows (m, dim): (m, K_last) float64."""
        with torch.inference_mode():
            latent = self._to_latent(torch.from_numpy(rows).to(self.device_))
            residual = self.residual_chain(latent, self.n_levels - 1)[1]
            return self.level_scores(self.n_levels - 1, residual).double().cpu().numpy()

    def decode(self, codes) -> np.ndarray:
        """Reconstruction from codes, (n_items, dim) float32: the sum of the selected codewords
        (neural tokenizers: the decoder output of that sum).

        codes: (n_items, n_levels) integers with code ``c`` of level ``l`` in
        ``[0, codebook_sizes[l])``; an out-of-range code raises an error naming its row and level.
        """
        return self.decode_prefix(codes, self.n_levels, exact_width=True)

    def decode_prefix(self, codes, n_levels: int, *, exact_width: bool = False) -> np.ndarray:
        """Reconstruction from the first ``n_levels`` levels only: (n_items, dim) float32.

        ``decode_prefix(codes, L)`` equals ``decode(codes)``; smaller prefixes show what each
        level adds. codes: (n_items, >= n_levels) integers."""
        self.check_fitted()
        codes = np.asarray(codes)
        width_ok = codes.ndim == 2 and (codes.shape[1] == self.n_levels if exact_width
                                        else n_levels <= codes.shape[1])
        if not width_ok:
            raise InvalidInputError(f"codes: expected shape (n_items, {self.n_levels}), got {codes.shape}")
        if codes.size == 0:
            return np.zeros((codes.shape[0], self.n_features_in_), dtype=np.float32)
        if not np.issubdtype(codes.dtype, np.integer):
            raise InvalidInputError(f"codes: expected integers, got dtype {codes.dtype}")
        out = np.zeros((codes.shape[0], self.codebooks_[0].shape[1]), dtype=np.float32)
        for level in range(n_levels):
            codebook, column = self.codebooks_[level], codes[:, level]
            bad = np.flatnonzero((column < 0) | (column >= codebook.shape[0]))
            if bad.size:
                raise InvalidInputError(
                    f"codes: row {int(bad[0])} has code {int(column[bad[0]])} at level {level},"
                    f" outside [0, {codebook.shape[0]}) ({bad.size} such row(s))")
            out += codebook[column]
        return self._from_latent(out)

    # ------------------------------------------------------------------ artifacts
    @property
    def version(self) -> str:
        """This fitted tokenizer's identity: 16 hex digits of a hash of its kind, hyperparameters,
        fitted attributes and arrays (:func:`rqgmm.io.artifacts.content_version`). Equal before
        :meth:`save` and after :meth:`load`; the registry, the service, codes files and CTR runs
        name tokenizers by it."""
        from rqgmm.io.artifacts import array_sha256, content_version

        self.check_fitted()
        return content_version(type(self).__name__, self._json_params(), self._fitted_attributes(),
                               {name: array_sha256(np.ascontiguousarray(array))
                                for name, array in self._fitted_arrays().items()})

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted tokenizer to directory ``path`` atomically (safetensors + manifest).

        Refuses an existing ``path`` unless ``overwrite``; a failed save leaves it untouched."""
        from rqgmm.io.artifacts import save_artifact

        self.check_fitted()
        return save_artifact(path, kind=type(self).__name__, params=self._json_params(),
                             attributes=self._fitted_attributes(), arrays=self._fitted_arrays(),
                             overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> "ResidualTokenizer":
        """Load a tokenizer saved by :meth:`save`, verifying everything before building anything:
        format version, checksums, the manifest's structure, every hyperparameter, the array
        names and shapes the hyperparameters imply, and finite values (positive variances).

        Called on the base class, returns an instance of the saved class. Anything wrong raises
        :class:`ArtifactError` naming the file and the problem."""
        from rqgmm.io.artifacts import ArtifactError, load_artifact

        manifest, arrays = load_artifact(path)
        kind = manifest.get("kind")
        klass = ResidualTokenizer._registry.get(kind) if isinstance(kind, str) else None
        if klass is None or not issubclass(klass, cls):
            raise ArtifactError(f"{path}: holds a {kind!r}, not a {cls.__name__}")
        params, attributes = manifest.get("params"), manifest.get("attributes")
        if not isinstance(params, dict) or not isinstance(attributes, dict):
            raise ArtifactError(f"{path}: manifest needs 'params' and 'attributes' mappings")
        unknown = sorted(set(params) - set(klass._param_names()))
        if unknown:
            raise ArtifactError(f"{path}: manifest names parameter(s) {unknown} that {kind} does not have")
        try:
            tokenizer = klass(**params)
            tokenizer.validate_params(warn=False)
            n_features = attributes.get("n_features_in_")
            if not positive_int(n_features) or n_features > MAX_FEATURES:
                raise InvalidInputError(f"n_features_in_ must be an int in [1, {MAX_FEATURES}], got {n_features!r}")
            expected = {name: tuple(shape) for name, shape in tokenizer._expected_shapes(int(n_features)).items()}
            stored = {name: tuple(array.shape) for name, array in arrays.items()}
            if expected != stored:
                wrong = sorted(set(expected) ^ set(stored)) or sorted(n for n in expected if expected[n] != stored[n])
                raise InvalidInputError(
                    f"the arrays do not fit the hyperparameters (first difference: {wrong[0]}: expected"
                    f" {expected.get(wrong[0])}, stored {stored.get(wrong[0])})")
            for name, array in arrays.items():
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    raise InvalidInputError(f"array {name} holds NaN or Inf")
            tokenizer._check_fitted_values(arrays)
            tokenizer._restore(arrays, attributes)
        except InvalidInputError as exc:
            raise ArtifactError(f"{path}: not a valid {kind}: {exc}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
            raise ArtifactError(f"{path}: manifest does not describe a valid {kind}: {type(exc).__name__}:"
                                f" {exc}") from None
        return tokenizer

    def _latent_dim(self, n_features: int) -> int:
        """Width of the space the codebooks live in (the input width here)."""
        return n_features

    def _expected_shapes(self, n_features: int) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every fitted array of a tokenizer with these hyperparameters."""
        latent = self._latent_dim(n_features)
        return {f"level_{level}.codebook": (size, latent) for level, size in enumerate(self.codebook_sizes)}

    def _check_fitted_values(self, arrays: dict[str, np.ndarray]) -> None:
        """Raise :class:`InvalidInputError` for stored values no fit can produce (subclasses)."""
