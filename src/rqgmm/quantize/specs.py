"""What a saved tokenizer must hold, checked without building it (and without torch).

From a manifest's kind, hyperparameters and attributes follow the arrays it must store (names
and shapes), the values no fit writes, and the fitted attributes it must carry. ``load`` runs
these checks before building anything, and ``rqgmm info`` runs the same ones alone, so both
give the same verdict on any artifact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rqgmm.errors import InvalidInputError
from rqgmm.quantize.declarations import METHOD_PARAMETERS
from rqgmm.quantize.params import MAX_SCALE, check_sizes, check_values, codebook_sizes, positive_int

# largest embedding width a saved tokenizer may declare (bounds allocation before any check)
MAX_FEATURES = 1 << 20
# Smallest variance a loaded RQ-GMM may hold: far below any floor a fit applies, far above what
# underflows float32 precisions (a tampered 1e-45 would make every score infinite).
MIN_VARIANCE = 1e-30
_LEVEL_RECORDS = ("n_iter_", "converged_", "n_reseeded_")
REQUIRED_ATTRIBUTES = {
    "RQKMeans": ("n_features_in_", *_LEVEL_RECORDS, "inertia_"),
    "RQGMM": ("n_features_in_", *_LEVEL_RECORDS, "lower_bound_", "log_likelihood_history_"),
    "RQVAE": ("n_features_in_", "scale_", "loss_history_", "validation_history_", "best_epoch_", "n_epochs_",
              "n_reseeded_"),
}
REQUIRED_ATTRIBUTES["VQVAE"] = REQUIRED_ATTRIBUTES["RQVAE"]
PARAMETERS = {class_name: parameters for class_name, parameters in METHOD_PARAMETERS.values()}


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Every hyperparameter against its declaration, then the checks that span several."""
    check_values(PARAMETERS[kind], params, kind)
    check_sizes(params, kind)


def expected_shapes(kind: str, params: dict[str, Any], n_features: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every array a fitted tokenizer of ``kind`` with ``params`` stores."""
    vae = kind in ("RQVAE", "VQVAE")
    latent = int(params["latent_dim"]) if vae else n_features
    shapes = {f"level_{level}.codebook": (size, latent) for level, size in enumerate(codebook_sizes(params))}
    if kind == "RQGMM":
        for level, size in enumerate(codebook_sizes(params)):
            shapes.update({f"level_{level}.weights": (size,), f"level_{level}.means": (size, n_features),
                           f"level_{level}.variances": (size, n_features)})
    if vae:
        shapes["input.mean"] = (n_features,)
        widths = [n_features, *params["hidden_dims"], latent]
        for prefix, sequence in (("encoder", widths), ("decoder", widths[::-1])):
            for index in range(len(sequence) - 1):
                shapes[f"{prefix}.{2 * index}.weight"] = (sequence[index + 1], sequence[index])
                shapes[f"{prefix}.{2 * index}.bias"] = (sequence[index + 1],)
    return shapes


def check_fitted_values(kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Refuse stored values no fit writes: other dtypes, NaN/Inf, absurd magnitudes; for RQ-GMM,
    variances that underflow, tied / spherical variances that are not, weights off the simplex."""
    for name, array in arrays.items():
        if array.dtype not in (np.float32, np.float64):
            raise InvalidInputError(f"array {name} is {array.dtype}; rqgmm writes float32 or float64")
        if not np.isfinite(array).all():
            raise InvalidInputError(f"array {name} holds NaN or Inf")
        if array.size and float(np.abs(array).max()) > MAX_SCALE:
            raise InvalidInputError(f"array {name} holds values up to {float(np.abs(array).max()):.1e}, beyond"
                                    f" the {MAX_SCALE:.0e} float32 products handle")
    if kind != "RQGMM":
        return
    for level in range(len(codebook_sizes(params))):
        variances = arrays[f"level_{level}.variances"]
        if (variances < MIN_VARIANCE).any():
            raise InvalidInputError(f"level {level} holds variances below {MIN_VARIANCE:g} (down to"
                                    f" {float(variances.min()):.1e}); no fit with a variance floor writes them")
        if params["covariance_type"] == "tied" and not (variances == variances[:1]).all():
            raise InvalidInputError(f"level {level}: covariance_type='tied' but the components' variances differ")
        if params["covariance_type"] == "spherical" and not (variances == variances[:, :1]).all():
            raise InvalidInputError(f"level {level}: covariance_type='spherical' but a component's variances"
                                    " differ across dimensions")
        weights = arrays[f"level_{level}.weights"]
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-3:
            raise InvalidInputError(f"level {level} weights are not a probability vector")


def verify(manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Every check of a tokenizer artifact that needs no tokenizer object (see the module doc).
    ``manifest`` is known to hold a supported ``kind`` and ``params`` / ``attributes`` mappings."""
    kind, params, attributes = manifest["kind"], manifest["params"], manifest["attributes"]
    check_params(kind, params)
    n_features = attributes.get("n_features_in_")
    if not positive_int(n_features) or n_features > MAX_FEATURES:
        raise InvalidInputError(f"n_features_in_ must be an int in [1, {MAX_FEATURES}], got {n_features!r}")
    missing = [name for name in REQUIRED_ATTRIBUTES[kind] if name not in attributes]
    if missing:
        raise InvalidInputError(f"fitted attribute(s) {missing} are missing")
    expected = expected_shapes(kind, params, int(n_features))
    stored = {name: tuple(array.shape) for name, array in arrays.items()}
    if expected != stored:
        wrong = sorted(set(expected) ^ set(stored)) or sorted(n for n in expected if expected[n] != stored[n])
        raise InvalidInputError(f"the arrays do not fit the hyperparameters (first difference: {wrong[0]}: expected"
                                f" {expected.get(wrong[0])}, stored {stored.get(wrong[0])})")
    check_fitted_values(kind, params, arrays)
