"""The contract every residual tokenizer of rqgmm shares: fit / encode / decode / save / load
and scikit-learn's estimator protocol.

A residual tokenizer has ``n_levels`` codebooks; encoding walks them as a residual chain
(:mod:`rqgmm.quantize.chain`). Hyperparameters are declared (:mod:`rqgmm.quantize.params`),
levels fitted one after the other come from the engine (:mod:`rqgmm.quantize.levelwise`),
artifacts are read and written by :mod:`rqgmm.quantize.artifact`, collision repair is a step
on codes (:mod:`rqgmm.quantize.collisions`). RQ-VAE implements this contract directly.

Shapes: embeddings ``X`` are ``(n_items, dim)`` real numbers (any float dtype, read as float32);
codes are ``(n_items, n_levels)`` int64, code ``c`` at level ``l`` in ``[0, codebook_size[l])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rqgmm.errors import InvalidInputError, not_fitted
from rqgmm.quantize.chain import ResidualChain
from rqgmm.quantize.params import Declared, check_sizes, codebook_sizes, draw_seed
from rqgmm.quantize.rowops import resolve_device
from rqgmm.validation import EmbeddingMatrix, check_embeddings, check_scale


class ResidualTokenizer(Declared, ResidualChain):
    """Base class: fit / encode / decode / fit_encode / save / load for residual tokenizers.

    Subclasses declare their hyperparameters in ``parameters`` (:mod:`rqgmm.quantize.params`:
    ``__init__``, ``get_params``, validation, CLI options and docs come from there) and
    implement the level hooks below.
    """

    _registry: ClassVar[dict[str, type["ResidualTokenizer"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ResidualTokenizer._registry[cls.__name__] = cls

    def _json_params(self) -> dict[str, Any]:
        """:meth:`get_params` as the manifest's JSON values (:func:`~rqgmm.quantize.artifact.json_params`)."""
        from rqgmm.quantize.artifact import json_params

        return json_params(self)

    def validate_params(self, *, warn: bool = True) -> None:
        """Check every hyperparameter (raises :class:`InvalidInputError` naming the first bad one)."""
        super().validate_params(warn=warn)
        check_sizes(self.get_params(), type(self).__name__)

    def _draw_seed(self) -> int:
        """The seed of one fit (drawn once, kept in ``seed_``): see :func:`~rqgmm.quantize.params.draw_seed`."""
        return draw_seed(self._param("random_state"))

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (read by ``check_is_fitted``, ``clone`` and the estimator
        checks): an unsupervised transformer of dense float arrays that refuses NaN."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=[]),
                    input_tags=InputTags(allow_nan=False, two_d_array=True), requires_fit=True)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "codebooks_")

    def transform(self, X):
        """scikit-learn's name for :meth:`encode`: the codes of X, (n_items, n_levels) int64 (a
        DataFrame of ``level_0..`` columns after ``set_output(transform="pandas")``)."""
        return self._output(self.encode(X), X)

    def fit_transform(self, X, y=None, **fit_params):
        """scikit-learn's name for :meth:`fit_encode`."""
        return self._output(self.fit_encode(X, y, **fit_params), X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the columns :meth:`transform` returns: ``level_0 .. level_{L-1}`` (object array)."""
        return np.array([f"level_{level}" for level in range(self.n_levels)], dtype=object)

    def set_output(self, *, transform: str | None = None):
        """scikit-learn's output API: ``"pandas"`` makes transform return a DataFrame (columns
        from :meth:`get_feature_names_out`, the input's index kept), ``"default"`` NumPy."""
        if transform not in (None, "default", "pandas"):
            raise ValueError(f"transform must be 'default' or 'pandas', got {transform!r}")
        if transform is not None:
            self._sklearn_output_config = {"transform": transform}
        return self

    def _output(self, codes: np.ndarray, X):
        if getattr(self, "_sklearn_output_config", {}).get("transform") != "pandas":
            return codes
        import pandas as pd

        index = X.index if isinstance(X, (pd.DataFrame, pd.Series)) else None
        return pd.DataFrame(codes, columns=list(self.get_feature_names_out()), index=index)

    def score(self, X, y=None) -> float:
        """Negative mean squared reconstruction error per coordinate of X (higher is better, as
        scikit-learn's ``score`` convention wants; ``GridSearchCV`` maximizes it)."""
        reconstruction = self.decode(self.encode(X))
        matrix, _ = check_embeddings(X, expected_dim=self.n_features_in_, owner=type(self).__name__)
        return -float(np.mean(np.square(matrix.read(0, matrix.n_rows) - reconstruction)))

    @property
    def codebook_sizes(self) -> list[int]:
        """Codebook size of each level, a list of ``n_levels`` ints."""
        return codebook_sizes({"codebook_size": self.codebook_size, "n_levels": self.n_levels})

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        return {f"level_{level}.codebook": codebook for level, codebook in enumerate(self.codebooks_)}

    def _fitted_attributes(self) -> dict[str, Any]:
        return {"n_features_in_": self.n_features_in_}

    def _restore(self, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> None:
        self.n_features_in_ = int(attributes["n_features_in_"])
        self.codebooks_ = [arrays[f"level_{level}.codebook"] for level in range(self.n_levels)]

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, *, drop_invalid: bool = False) -> "ResidualTokenizer":
        """Fit on X: (n_items, dim) real numbers (array or ``np.memmap``, read in chunks). Rows with
        NaN/Inf raise an error naming them, or are skipped with ``drop_invalid=True``. Returns ``self``."""
        self._fit(X, drop_invalid)
        return self

    def fit_encode(self, X, y=None, *, drop_invalid: bool = False):
        """``fit(X)`` then the codes of ``X``: (n_items, n_levels) int64. With ``drop_invalid=True``
        returns ``(codes, kept)``: ``kept`` (n_kept,) int64 are the rows the codes belong to."""
        return self._fit_encode(X, drop_invalid)

    def _fit_encode(self, X, drop_invalid: bool, *fit_options):
        kept = None
        if drop_invalid:
            X, dropped = check_embeddings(X, drop_invalid=True, chunk_size=self.batch_size)
            kept = np.setdiff1d(np.arange(X.n_rows + dropped.size, dtype=np.int64), dropped)
        codes = self._fit(X, False, *fit_options)
        return codes if kept is None else (codes, kept)

    def _fit(self, X, drop_invalid: bool) -> np.ndarray:
        """Fit (subclasses); return the codes of the training rows, (n, n_levels) int64."""
        raise NotImplementedError

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
        """Refuse data whose magnitude float32 arithmetic cannot handle (subclasses add limits)."""
        check_scale(moments, name)

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
        codes = self._encode_matrix(matrix)
        if collisions != "none":
            from rqgmm.quantize.collisions import repair_collisions

            codes = repair_collisions(codes, matrix, self.last_level_scores, collisions, capacity,
                                      self.codebook_sizes)
        if not drop_invalid:
            return codes
        return codes, np.setdiff1d(np.arange(matrix.n_rows + dropped.size, dtype=np.int64), dropped)

    def decode(self, codes) -> np.ndarray:
        """Reconstruction from codes, (n_items, dim) float32: the sum of the selected codewords
        (neural tokenizers: the decoder output of that sum).

        codes: (n_items, n_levels) integers with code ``c`` of level ``l`` in
        ``[0, codebook_sizes[l])``; an out-of-range code raises an error naming its row and level.
        """
        return self.decode_prefix(codes, self.n_levels, exact_width=True)

    # ------------------------------------------------------------------ artifacts
    @property
    def version(self) -> str:
        """This fitted tokenizer's identity: 16 hex digits of a hash of its kind, hyperparameters,
        fitted attributes and arrays (:func:`rqgmm.io.artifacts.content_version`). Equal before
        :meth:`save` and after :meth:`load`; the registry, the service, codes files and CTR runs
        name tokenizers by it."""
        from rqgmm.quantize.artifact import tokenizer_version

        return tokenizer_version(self)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted tokenizer to directory ``path`` atomically (safetensors + manifest).
        Refuses an existing ``path`` unless ``overwrite``; a failed save leaves it untouched."""
        from rqgmm.quantize.artifact import save_tokenizer

        return save_tokenizer(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> "ResidualTokenizer":
        """Load a tokenizer saved by :meth:`save`, verifying everything before building anything
        (:func:`rqgmm.quantize.artifact.load_tokenizer`); called on the base class, returns an
        instance of the saved class. Anything wrong raises :class:`ArtifactError` naming it."""
        from rqgmm.quantize.artifact import load_tokenizer

        return load_tokenizer(path, cls)

