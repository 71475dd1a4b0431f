"""The tokenizers are real scikit-learn estimators: clone, Pipeline, GridSearchCV and
scikit-learn's own estimator checks (skips listed with their reasons)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from rqgmm import RQGMM, RQKMeans
from rqgmm.errors import ConvergenceWarning, NotFittedError
from rqgmm.quantize import RQVAE

# Checks that do not apply to a tokenizer, each with the reason. Everything else must pass.
EXPECTED_FAILURES = {
    "check_transformer_n_iter": "n_iter_ is a list with one iteration count per level (a residual"
                                " tokenizer fits one model per level); scikit-learn expects one number",
    "check_dtype_object": "object arrays of numbers are converted and fitted; object arrays of strings raise"
                          " our own named error ('expected real numbers, got objects that are not numbers'),"
                          " not the message of numpy's float() the check looks for",
}


def _estimators():
    return [RQKMeans(n_levels=2, codebook_size=3, max_iter=5, progress=False),
            RQGMM(n_levels=2, codebook_size=3, max_iter=5, progress=False, reg_covar_mode="relative",
                  reg_covar=1e-3)]


@parametrize_with_checks(_estimators(), expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


@pytest.fixture()
def X():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(600, 6)) + rng.integers(0, 4, size=(600, 1)) * 3).astype(np.float32)


@pytest.mark.parametrize("estimator", [RQKMeans(n_levels=2, codebook_size=4, progress=False),
                                       RQGMM(n_levels=2, codebook_size=4, progress=False, max_iter=10),
                                       RQVAE(n_levels=2, codebook_size=4, hidden_dims=(8,), max_epochs=2,
                                             progress=False)])
def test_clone_get_set_params_transform_and_fitted_checks(estimator, X):
    import warnings

    copy = clone(estimator)
    assert copy.get_params(deep=True) == estimator.get_params(deep=False)
    assert copy is not estimator
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = copy.fit_transform(X)
    check_is_fitted(copy)
    assert np.array_equal(codes, copy.transform(X)) and codes.dtype == np.int64
    assert isinstance(copy.score(X), float)
    assert copy.set_params(seed=3) is copy and copy.seed == 3


def test_pipeline_and_grid_search_over_codebook_size(X):
    pipeline = Pipeline([("scale", StandardScaler()), ("tokenize", RQKMeans(n_levels=1, progress=False))])
    pipeline.set_params(tokenize__codebook_size=4)
    assert pipeline.fit(X).transform(X).shape == (600, 1)
    search = GridSearchCV(RQKMeans(n_levels=1, progress=False), {"codebook_size": [2, 4, 8]}, cv=3)
    search.fit(X)
    # score = -MSE: more codes reconstruct better, so the search picks the largest
    assert search.best_params_ == {"codebook_size": 8}
    assert search.cv_results_["mean_test_score"][0] < search.cv_results_["mean_test_score"][2]


def test_random_state_and_seed(X):
    by_seed = RQKMeans(n_levels=2, codebook_size=4, seed=5, progress=False).fit_encode(X)
    by_state = RQKMeans(n_levels=2, codebook_size=4, seed=0, random_state=5, progress=False).fit_encode(X)
    assert np.array_equal(by_seed, by_state)  # an int random_state is the seed
    generator = RQKMeans(n_levels=2, codebook_size=4, random_state=np.random.RandomState(1), progress=False)
    generator.fit(X)
    assert isinstance(generator.seed_, int)
    fresh = RQKMeans(n_levels=2, codebook_size=4, seed=None, progress=False).fit(X)
    assert isinstance(fresh.seed_, int)


def test_our_errors_are_scikit_learns():
    assert issubclass(NotFittedError, SklearnNotFittedError)
    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)
