"""Balanced RQ-KMeans: the hard capacity bound, Sinkhorn balance, and the in-memory placement."""

import warnings

import numpy as np
import pytest

from rqgmm import RQKMeans, load
from rqgmm.errors import InvalidInputError
from rqgmm.quantize.balanced import capacity_rounds


def skewed(rng, n, dim):
    """A dense core holding ~75% of the rows inside a wide halo (k-means makes uneven clusters)."""
    core = int(0.75 * n)
    return np.concatenate([rng.normal(0, 0.5, (core, dim)), rng.normal(0, 3, (n - core, dim))]).astype(np.float32)


def fit_quietly(tokenizer, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tokenizer.fit(X)


@pytest.mark.parametrize("case", range(12))
def test_hard_balance_never_exceeds_the_capacity(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(40, 2500))
    n_levels = int(rng.integers(1, 3))
    sizes = [int(rng.integers(2, min(80, n // 2)) + 1) for _ in range(n_levels)]
    X = skewed(rng, n, int(rng.integers(2, 12)))
    tokenizer = fit_quietly(RQKMeans(n_levels, sizes, balance_mode="hard", random_state=case, max_iter=8, progress=False), X)
    for level, k in enumerate(sizes):
        fit_sizes = np.array(tokenizer.fit_cluster_sizes_[level])
        assert fit_sizes.shape == (k,) and fit_sizes.sum() == n
        assert fit_sizes.max() <= -(-n // k), (n, k, fit_sizes.max())


def test_capacity_rounds_respect_room_and_place_rows_on_their_nearest_free_candidate():
    rng = np.random.default_rng(0)
    m, k, j = 500, 40, 6
    costs = np.sort(rng.random((m, j)).astype(np.float32), axis=1)
    clusters = np.stack([rng.permutation(k)[:j] for _ in range(m)])
    room = rng.integers(0, 30, k)
    start = room.copy()
    codes = capacity_rounds(clusters, costs, room)
    placed = codes >= 0
    assert (np.bincount(codes[placed], minlength=k) <= start).all()
    assert (room == start - np.bincount(codes[placed], minlength=k)).all()
    # an unplaced row found every candidate full at the end
    for row in np.flatnonzero(~placed):
        assert (room[clusters[row]] == 0).all()
    # a placed row never skipped a candidate that still has room (it was rejected only while full)
    for row in np.flatnonzero(placed):
        rank = list(clusters[row]).index(codes[row])
        assert (room[clusters[row, :rank]] == 0).all()


def test_capacity_rounds_give_a_contested_place_to_the_nearest_row():
    clusters = np.array([[0, 1], [0, 1], [0, 1]])
    costs = np.array([[0.5, 0.9], [0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    codes = capacity_rounds(clusters, costs, np.array([1, 2]))
    assert codes.tolist() == [1, 0, 1]


def test_soft_balance_lowers_the_largest_cluster_against_plain_kmeans():
    X = skewed(np.random.default_rng(1), 8000, 8)
    plain = fit_quietly(RQKMeans(1, 32, random_state=0, progress=False), X)
    largest_plain = np.bincount(plain.encode(X)[:, 0], minlength=32).max()
    soft = fit_quietly(RQKMeans(1, 32, balance_mode="soft", random_state=0, progress=False), X)
    assert max(soft.fit_cluster_sizes_[0]) < 0.5 * largest_plain
    # balancing costs some distortion but stays a sensible quantizer
    rmse = lambda t: np.sqrt(((t.decode(t.encode(X)) - X) ** 2).mean())  # noqa: E731
    assert rmse(plain) <= rmse(soft) < 1.25 * rmse(plain)


def test_balanced_fit_from_a_memmap_equals_the_in_memory_fit_and_survives_save_load(tmp_path):
    X = skewed(np.random.default_rng(2), 3000, 6)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    params = dict(n_levels=2, codebook_size=16, balance="hard", random_state=0, batch_size=512, progress=False)
    in_memory = fit_quietly(RQKMeans(**params), X)
    from_disk = fit_quietly(RQKMeans(**params), mapped)
    for a, b in zip(in_memory.codebooks_, from_disk.codebooks_):
        np.testing.assert_array_equal(a, b)
    in_memory.save(tmp_path / "tok")
    loaded = load(tmp_path / "tok")
    assert loaded.balance == "hard" and loaded.fit_cluster_sizes_ == in_memory.fit_cluster_sizes_
    np.testing.assert_array_equal(loaded.encode(X), in_memory.encode(X))


@pytest.mark.parametrize("params, message", [
    ({"balance": "medium"}, "balance must be None or one of"),
    ({"balance_mode": "soft", "balance_temperature": 0.0}, "balance_temperature must be a number > 0"),
    ({"balance": "soft", "balance_temperature": float("nan")}, "balance_temperature"),
])
def test_bad_balance_settings_are_named(params, message):
    with pytest.raises(InvalidInputError, match=message):
        RQKMeans(1, 4, **params).fit(np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))
