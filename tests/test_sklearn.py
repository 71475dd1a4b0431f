"""The tokenizers are real scikit-learn estimators: clone, Pipeline, GridSearchCV and
scikit-learn's own estimator checks (skips listed with their reasons)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from rqgmm import RQGMM, RQKMeans
from rqgmm.errors import ConvergenceWarning, InvalidInputError, NotFittedError
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

    copy = clone(estimator.set_params(max_iter=7) if "max_iter" in estimator.get_params() else estimator)
    assert copy is not estimator and copy.get_params() == estimator.get_params()  # a changed parameter carries over
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = copy.fit_transform(X)
    check_is_fitted(copy)
    assert np.array_equal(codes, copy.transform(X)) and codes.dtype == np.int64
    if not isinstance(copy, RQGMM):  # score: the negative MSE of the reconstruction (RQGMM: a log-likelihood)
        assert copy.score(X) == pytest.approx(-np.mean((X - copy.decode(codes)) ** 2), rel=1e-5)
    assert copy.set_params(random_state=3) is copy and copy.random_state == 3
    with pytest.raises(InvalidInputError, match="Invalid parameter"):
        copy.set_params(n_components=3)


def test_pipeline_and_grid_search_over_codebook_size(X):
    pipeline = Pipeline([("scale", StandardScaler()), ("tokenize", RQKMeans(n_levels=1, progress=False))])
    pipeline.set_params(tokenize__codebook_size=4)
    assert pipeline.fit(X).transform(X).shape == (600, 1)
    search = GridSearchCV(RQKMeans(n_levels=1, progress=False), {"codebook_size": [2, 4, 8]}, cv=3)
    search.fit(X)
    # score = -MSE: more codes reconstruct better, so the search picks the largest
    assert search.best_params_ == {"codebook_size": 8}
    assert search.cv_results_["mean_test_score"][0] < search.cv_results_["mean_test_score"][2]


def test_random_state_is_the_seed_and_seed_is_its_deprecated_spelling(X):
    by_state = RQKMeans(n_levels=2, codebook_size=4, random_state=5, progress=False).fit_encode(X)
    with pytest.warns(FutureWarning, match="seed is deprecated.*use random_state"):
        by_seed = RQKMeans(n_levels=2, codebook_size=4, seed=5, progress=False).fit_encode(X)
    assert np.array_equal(by_seed, by_state)
    assert not np.array_equal(by_state, RQKMeans(n_levels=2, codebook_size=4, random_state=6,
                                                 progress=False).fit_encode(X))
    with pytest.raises(InvalidInputError, match="seed=5 and random_state=6 both given"):
        RQKMeans(n_levels=2, codebook_size=4, seed=5, random_state=6, progress=False).fit(X)
    drawn = RQKMeans(n_levels=2, codebook_size=4, random_state=np.random.RandomState(1), progress=False).fit(X)
    assert drawn.seed_ == np.random.RandomState(1).randint(0, 2**31 - 1)  # one draw per fit, as scikit-learn
    fresh = [RQKMeans(n_levels=1, codebook_size=4, random_state=None, progress=False).fit(X).seed_ for _ in range(2)]
    assert fresh[0] != fresh[1]  # None: fresh entropy each fit


def test_with_scikit_learn_loaded_our_errors_are_also_its_own():
    """Where scikit-learn is loaded, what we raise and warn with is also its class (its estimator
    checks and its users' filters see them); without it, rqgmm does not import it."""
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

    with pytest.raises(SklearnNotFittedError) as raised:
        RQKMeans().encode(np.zeros((3, 2), dtype=np.float32))
    assert isinstance(raised.value, NotFittedError) and isinstance(raised.value, ValueError)
    X = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    with pytest.warns(SklearnConvergenceWarning) as caught:
        RQKMeans(n_levels=1, codebook_size=8, max_iter=1, tol=0, progress=False).fit(X)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    import subprocess
    import sys

    fresh = subprocess.run([sys.executable, "-c", "import sys, rqgmm.cli\nimport numpy as np\n"
                            "from rqgmm import RQKMeans\n"
                            "try:\n    RQKMeans().encode(np.zeros((3, 2), dtype=np.float32))\n"
                            "except ValueError as e:\n    print(type(e).__mro__[1].__name__)\n"
                            "print('sklearn' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert fresh.stdout.split() == ["RqgmmError", "False"], fresh.stderr
