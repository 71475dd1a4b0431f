import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from rqgmm import RQGMM, RQKMeans, load
from rqgmm.errors import ComponentReseedWarning, InvalidInputError
from rqgmm.quantize.kmeans import CentroidScorer, kmeans_plusplus


def lloyd_step_reference(X, centroids):
    """One Lloyd step, obviously correct: (new centroids, labels, inertia)."""
    distances = ((X[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    labels = distances.argmin(1)
    new = np.stack([X[labels == k].mean(0) for k in range(len(centroids))])
    return new, labels, distances.min(1).sum()


def test_chunked_statistics_match_a_numpy_lloyd_step(blobs):
    X = blobs.astype(np.float64)
    centroids = X[:12].copy()
    stats = None
    scorer = CentroidScorer(torch.from_numpy(centroids), dtype=torch.float64)
    for start in range(0, len(X), 999):
        part = scorer.accumulate(torch.from_numpy(X[start:start + 999]))
        stats = part if stats is None else stats + part
    new, labels, inertia = lloyd_step_reference(X, centroids)
    np.testing.assert_allclose((stats.sums / stats.counts[:, None]).numpy(), new, rtol=1e-10)
    np.testing.assert_array_equal(stats.counts.numpy(), np.bincount(labels, minlength=12))
    assert stats.inertia == pytest.approx(inertia, rel=1e-9)


def test_inertia_is_close_to_scikit_learn(blobs):
    ours = RQKMeans(n_levels=1, codebook_size=12, random_state=0, progress=False).fit(blobs)
    reference = KMeans(12, n_init=1, random_state=0).fit(blobs)
    ours_inertia = ours.inertia_[0] * len(blobs)
    assert ours_inertia <= reference.inertia_ * 1.05


def test_kmeans_plusplus_picks_distinct_rows_of_the_sample(blobs):
    sample = torch.from_numpy(blobs).double()
    centers = kmeans_plusplus(sample, 12, torch.Generator().manual_seed(0))
    assert len({tuple(row) for row in centers.numpy().round(6)}) == 12
    assert all((sample == c).all(1).any() for c in centers)


def test_decode_encode_and_roundtrip(tmp_path, blobs):
    model = RQKMeans(n_levels=3, codebook_size=[10, 7, 3], random_state=0, progress=False)
    codes = model.fit_encode(blobs)
    np.testing.assert_array_equal(codes, model.encode(blobs))
    expected = sum(model.codebooks_[level][codes[:, level]] for level in range(3))
    np.testing.assert_allclose(model.decode(codes), expected, rtol=1e-6)
    model.save(tmp_path / "tok")
    restored = load(tmp_path / "tok")
    assert isinstance(restored, RQKMeans)
    np.testing.assert_array_equal(restored.encode(blobs), codes)


@pytest.mark.parametrize("klass", [RQGMM, RQKMeans])
def test_each_residual_level_reduces_error(klass, blobs):
    errors = []
    for levels in (1, 2, 3):
        model = klass(n_levels=levels, codebook_size=8, seed=0, progress=False)
        errors.append(np.mean((model.decode(model.fit_encode(blobs)) - blobs) ** 2))
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("klass, params", [
    (RQKMeans, {}), (RQGMM, {"covariance_type": "diag"}), (RQGMM, {"residual": "soft", "init": "kmeans"})])
def test_a_prefix_of_the_levels_is_the_fit_with_fewer_levels(klass, params, blobs):
    full = klass(n_levels=3, codebook_size=[8, 4, 4], seed=1, max_iter=5, progress=False, **params).fit(blobs)
    fewer = klass(n_levels=2, codebook_size=[8, 4], seed=1, max_iter=5, progress=False, **params).fit(blobs)
    prefix = full.prefix(2)
    assert prefix.n_levels == 2 and prefix.codebook_sizes == [8, 4] and len(prefix.level_fit_seconds_) == 2
    np.testing.assert_array_equal(prefix.encode(blobs), fewer.encode(blobs))
    np.testing.assert_allclose(prefix.decode(prefix.encode(blobs)), fewer.decode(fewer.encode(blobs)), atol=1e-6)
    np.testing.assert_array_equal(full.encode(blobs)[:, :2], prefix.encode(blobs))
    with pytest.raises(InvalidInputError, match=r"n_levels must be an int in \[1, 3\]"):
        full.prefix(4)


def test_jointly_trained_levels_have_no_prefix(blobs):
    from rqgmm import RQVAE
    from rqgmm.quantize.levelwise import LevelwiseTokenizer

    model = RQVAE(n_levels=2, codebook_size=4, latent_dim=4, hidden_dims=[8], max_epochs=1, progress=False)
    assert not isinstance(model, LevelwiseTokenizer) and not hasattr(model, "prefix")  # not its contract
    with pytest.raises(TypeError, match="previous"):
        model.fit(blobs, previous=model)


def test_empty_clusters_are_reseeded():
    points = np.random.default_rng(0).normal(size=(5, 4)) * 10
    X = np.repeat(points, 40, axis=0).astype(np.float32)
    with pytest.warns(ComponentReseedWarning):
        model = RQKMeans(n_levels=1, codebook_size=8, max_iter=5, random_state=0, progress=False).fit(X)
    assert np.isfinite(model.codebooks_[0]).all()


def test_kept_residuals_give_the_bit_identical_fit_and_respect_the_budget(monkeypatch):
    from rqgmm.quantize import kmeans

    X = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    params = dict(n_levels=3, codebook_size=16, max_iter=8, tol=0.0, random_state=0, progress=False, batch_size=512)
    reads = {"kept": 0, "streamed": 0}
    original = kmeans.ResidualCache.reduce

    def counting(self, function):
        reads["kept" if self.caches else "streamed"] += 1
        return original(self, function)

    monkeypatch.setattr(kmeans.ResidualCache, "reduce", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = RQKMeans(cache_mib=1024, **params).fit(X)
        assert reads == {"kept": 24, "streamed": 0}
        streamed = RQKMeans(cache_mib=0, **params).fit(X)  # 0: every pass re-reads the rows
        assert reads["streamed"] == 24
    for a, b in zip(kept.codebooks_, streamed.codebooks_):
        np.testing.assert_array_equal(a, b)


def test_tiled_encoding_equals_a_float64_greedy_reference_near_ties_included():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(9000, 16)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = RQKMeans(n_levels=3, codebook_size=32, max_iter=5, random_state=0, progress=False).fit(X)
    first = tokenizer.codebooks_[0].astype(np.float64)
    # rows a hair closer to one of two first-level codewords than to the other (margin 2e-3 of
    # their distance: far above float32 rounding, far below the usual gaps)
    a, b = rng.integers(0, 32, 3000), rng.integers(0, 32, 3000)
    a, b = a[a != b], b[a != b]
    direction = (first[a] - first[b]) / np.linalg.norm(first[a] - first[b], axis=1, keepdims=True)
    near = (first[a] + first[b]) / 2 + 1e-3 * np.linalg.norm(first[a] - first[b], axis=1, keepdims=True) * direction
    to_first = ((near[:, None, :] - first[None]) ** 2).sum(2)
    two_nearest = np.argsort(to_first, axis=1)[:, :2]
    tie = (two_nearest[:, 0] == a) & (two_nearest[:, 1] == b)  # a and b are its two nearest codewords
    near, a = near[tie], a[tie]
    assert len(near) > 100
    rows = np.vstack([X, near]).astype(np.float32)
    residual = rows.astype(np.float64)
    expected = []
    for codebook in tokenizer.codebooks_:  # greedy residual encoding in float64
        codebook = codebook.astype(np.float64)
        distances = (residual**2).sum(1)[:, None] - 2 * residual @ codebook.T + (codebook**2).sum(1)[None, :]
        expected.append(distances.argmin(1))
        residual = residual - codebook[expected[-1]]
    expected = np.stack(expected, 1)
    assert (expected[len(X):, 0] == a).all()  # the constructed rows sit on the side of code a
    for batch_size in (16384, 5000, 1000):  # one chunk of several tiles, uneven chunks, sub-tile chunks
        np.testing.assert_array_equal(tokenizer.set_params(batch_size=batch_size).encode(rows), expected)
