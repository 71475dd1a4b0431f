"""Arrow tables and arrays, and pandas columns of arrays, are accepted wherever NumPy is."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rqgmm import RQKMeans
from rqgmm.errors import InvalidInputError


@pytest.fixture(scope="module")
def fitted(blobs_module):
    return RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False).fit(blobs_module), blobs_module


@pytest.fixture(scope="module")
def blobs_module():
    from tests.conftest import mixture_sample

    return mixture_sample(n=600, dim=8, n_components=6, seed=3)[0]


def _variants(X):
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
    return {
        "fixed-size list array": fixed,
        "chunked list array": pa.chunked_array([pa.array(X[:200].tolist()), pa.array(X[200:].tolist())]),
        "table with one list column": pa.table({"id": np.arange(len(X)), "embedding": fixed}),
        "table of numeric columns": pa.table({f"f{j}": X[:, j] for j in range(X.shape[1])}),
        "pandas series of arrays": pd.Series(list(X)),
        "pandas frame of one array column": pd.DataFrame({"embedding": list(X)}),
        "pandas frame of numbers": pd.DataFrame(X),
        "sliced fixed-size list": fixed.slice(0),
    }


def test_every_columnar_layout_encodes_like_numpy(fitted):
    tokenizer, X = fitted
    expected = tokenizer.encode(X)
    for name, data in _variants(X).items():
        assert np.array_equal(tokenizer.encode(data), expected), name
    sliced = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1]).slice(100, 50)
    assert np.array_equal(tokenizer.encode(sliced), expected[100:150])


@pytest.mark.parametrize("data, message", [
    (pa.array([[1.0, 2.0], None]), "row 1 has no embedding"),
    (pa.array([[1.0, 2.0], [1.0]]), "row 1 has 1 values, row 0 has 2"),
    (pd.Series([np.zeros(2), None]), "row 1 has no embedding"),
    (pa.table({"a": [[1.0]], "b": [[2.0]]}), "several list columns"),
])
def test_bad_columnar_input_is_named(fitted, data, message):
    tokenizer, _ = fitted
    with pytest.raises(InvalidInputError, match=message):
        tokenizer.encode(data)


def test_pandas_output_in_a_scikit_learn_pipeline(blobs_module):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame(blobs_module, index=[f"item-{k}" for k in range(len(blobs_module))])
    pipeline = make_pipeline(StandardScaler(), RQKMeans(n_levels=2, codebook_size=8, random_state=0,
                                                       progress=False)).set_output(transform="pandas")
    codes = pipeline.fit_transform(X)
    assert list(codes.columns) == ["level_0", "level_1"] and list(codes.index) == list(X.index)
    assert list(pipeline.get_feature_names_out()) == ["level_0", "level_1"]
    plain = make_pipeline(StandardScaler(), RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False))
    assert np.array_equal(plain.fit_transform(blobs_module), codes.to_numpy())
    from sklearn.base import clone

    assert clone(pipeline[-1])._sklearn_output_config == {"transform": "pandas"}
