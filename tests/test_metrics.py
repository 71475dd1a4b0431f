import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from rqgmm import RQGMM, RQKMeans
from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.metrics import QualityAccumulator, compare, quality_report, usage_stats
from rqgmm.metrics.quality import gini, mutual_information


def test_usage_of_hand_computed_counts():
    usage = usage_stats(np.array([2, 2, 0, 0]))
    assert usage.used_codes == 2 and usage.dead_codes == 2 and usage.utilization == 0.5
    assert usage.entropy == pytest.approx(math.log(2))
    assert usage.perplexity == pytest.approx(2.0)
    assert usage.entropy_ratio == pytest.approx(0.5)
    assert usage.max_share == 0.5
    assert usage.gini == pytest.approx(0.5)  # half the codes hold everything, evenly


def test_gini_extremes():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 12])) == pytest.approx(0.75)  # (K - 1) / K
    assert usage_stats(np.array([1, 1, 1, 1])).perplexity == pytest.approx(4.0)


def test_mutual_information_of_ideal_and_useless_codes():
    info, keep = mutual_information(np.eye(8) * 10)
    assert math.exp(info) == pytest.approx(8.0) and keep == 1.0
    info, keep = mutual_information(np.ones((4, 4)))
    assert info == pytest.approx(0.0) and keep == pytest.approx(0.25)


class _Fixed:
    """A stand-in tokenizer with one level and a fixed codebook (nearest-centroid encode)."""

    def __init__(self, centroids):
        self.codebooks_ = [np.asarray(centroids, dtype=np.float32)]
        self.codebook_sizes = [len(centroids)]
        self.n_features_in_ = self.codebooks_[0].shape[1]

    def encode(self, X):
        distances = ((np.asarray(X)[:, None, :] - self.codebooks_[0][None]) ** 2).sum(-1)
        return distances.argmin(1)[:, None]

    def decode_prefix(self, codes, n_levels):
        return self.codebooks_[0][np.asarray(codes)[:, 0]]

    decode = lambda self, codes: self.decode_prefix(codes, 1)  # noqa: E731


def test_overlap_is_one_code_when_all_items_share_a_code():
    tokenizer = _Fixed([[0.0, 0.0], [100.0, 100.0]])
    X = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    report = quality_report(tokenizer, X, noise_scale=0.5)
    assert report.overlap.effective_capacity[0] == pytest.approx(1.0)
    assert report.overlap.overlap[0] == pytest.approx(1.0)
    assert report.usage[0].utilization == 0.5


def test_overlap_approaches_k_for_separated_uniform_codes():
    k = 16
    centroids = np.eye(k) * 50.0 + 100.0  # far apart relative to the noise
    X = np.repeat(centroids, 60, axis=0).astype(np.float32)
    X += np.random.default_rng(0).normal(size=X.shape).astype(np.float32) * 0.1
    report = quality_report(_Fixed(centroids), X, noise_scale=0.01, overlap_draws=8)
    assert report.overlap.effective_capacity[0] == pytest.approx(k, rel=0.02)
    assert report.overlap.keep_rate[0] == 1.0
    noisy = quality_report(_Fixed(centroids), X, noise_scale=2.0, overlap_draws=8)
    assert noisy.overlap.effective_capacity[0] < k / 2  # geometric confusion lowers K_eff


def test_streaming_accumulator_equals_one_shot(blobs):
    model = RQGMM(n_levels=2, codebook_size=[8, 6], random_state=0, progress=False).fit(blobs)
    labels = [int(v) for v in (blobs[:, 0] > 0)]
    one_shot = quality_report(model, blobs, labels, chunk_size=len(blobs), overlap_items=1500, purity_items=800)
    chunked = quality_report(model, blobs, labels, chunk_size=333, overlap_items=1500, purity_items=800)
    a, b = one_shot.to_dict(), chunked.to_dict()
    for key in ("usage", "collisions", "overlap", "semantic", "usage_counts"):
        assert a[key] == b[key], key
    np.testing.assert_allclose(a["reconstruction"]["mse"], b["reconstruction"]["mse"], rtol=1e-9)
    np.testing.assert_allclose(a["log_likelihood"], b["log_likelihood"], rtol=1e-6)


def test_reconstruction_is_cumulative_and_matches_decode(blobs):
    model = RQKMeans(n_levels=3, codebook_size=8, random_state=0, progress=False).fit(blobs)
    report = quality_report(model, blobs)
    mse = report.reconstruction.mse
    assert mse[0] > mse[1] > mse[2]
    expected = np.mean((model.decode(model.encode(blobs)) - blobs).astype(np.float64) ** 2)
    assert mse[-1] == pytest.approx(expected, rel=1e-6)
    codes = model.encode(blobs)
    assert report.collisions.n_distinct_ids == len(np.unique(codes, axis=0))


def test_label_lift_finds_codes_that_follow_labels():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 5)) * 10
    labels = rng.integers(0, 6, 1200)
    X = (centers[labels] + rng.normal(size=(1200, 5))).astype(np.float32)
    model = RQKMeans(n_levels=1, codebook_size=6, random_state=0, progress=False).fit(X)
    report = quality_report(model, X, labels.tolist())
    assert report.semantic.level1_lift > 4.0  # chance is ~1/6, same code nearly always same label
    assert report.semantic.knn_purity > 0.9
    shuffled = quality_report(model, X, rng.permutation(labels).tolist())
    assert shuffled.semantic.level1_lift == pytest.approx(1.0, abs=0.1)


def test_compare_reports_differences(blobs):
    first = quality_report(RQKMeans(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(blobs), blobs)
    second = quality_report(RQKMeans(n_levels=2, codebook_size=4, random_state=0, progress=False).fit(blobs), blobs)
    result = compare(first, second)
    a, b = first.headline(), second.headline()
    assert result["difference"]["rmse"] == b["rmse"] - a["rmse"]
    assert result["difference"]["unique_id_rate"] == b["unique_id_rate"] - a["unique_id_rate"]
    # lists are compared level by level, as far as both reports go
    assert result["difference"]["perplexity"] == [b["perplexity"][0] - a["perplexity"][0]]
    swapped = compare(second, first)["difference"]  # the difference is signed: after minus before
    assert swapped["rmse"] == -result["difference"]["rmse"] and swapped["rmse"] > 0


def test_accumulator_rejects_mismatched_chunks(blobs):
    model = RQKMeans(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(blobs)
    accumulator = QualityAccumulator(model)
    with pytest.raises(ValueError, match="do not describe the same items"):
        accumulator.update(np.zeros((3, 1), dtype=np.int64), blobs[:5])
    with pytest.raises(ValueError, match="no items"):
        accumulator.finalize()


# ---------------------------------------------------------------------------- collisions
def _distinct_rows(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(5, 6)) * 4
    return (centers[rng.integers(0, 5, n)] + rng.normal(size=(n, 6)) * 0.3).astype(np.float32)


@pytest.mark.parametrize("klass", [RQGMM, RQKMeans])
def test_suffix_makes_every_id_unique_independent_of_order(klass):
    X = _distinct_rows()
    model = klass(n_levels=2, codebook_size=4, seed=0, progress=False).fit(X)
    plain = model.encode(X)
    assert len(np.unique(plain, axis=0)) < len(X)
    codes = model.encode(X, collisions="suffix")
    assert codes.shape == (len(X), 3)
    assert len(np.unique(codes, axis=0)) == len(X)
    np.testing.assert_array_equal(codes[:, :2], plain)
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_array_equal(model.encode(X[perm], collisions="suffix"), codes[perm])


@pytest.mark.parametrize("klass", [RQGMM, RQKMeans])
def test_relocate_with_enough_capacity_makes_ids_unique(klass):
    X = _distinct_rows(n=400)
    model = klass(n_levels=2, codebook_size=[4, 250], seed=0, progress=False).fit(X)  # room for any prefix
    plain = model.encode(X)
    codes = model.encode(X, collisions="relocate")
    assert len(np.unique(plain, axis=0)) < len(X)
    assert len(np.unique(codes, axis=0)) == len(X)
    np.testing.assert_array_equal(codes[:, 0], plain[:, 0])  # earlier levels untouched
    moved = (codes != plain).any(1)
    _, inverse, counts = np.unique(plain, axis=0, return_inverse=True, return_counts=True)
    assert not moved[counts[inverse.ravel()] == 1].any()  # items alone in their bucket stay
    perm = np.random.default_rng(2).permutation(len(X))
    np.testing.assert_array_equal(model.encode(X[perm], collisions="relocate"), codes[perm])
    relaxed = model.encode(X, collisions="relocate", capacity=3)
    assert np.bincount(np.unique(relaxed, axis=0, return_counts=True)[1]).nonzero()[0].max() <= 3


def test_relocate_warns_when_capacity_is_too_small():
    X = _distinct_rows(n=300)
    model = RQKMeans(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(X)
    with pytest.warns(UserWarning, match="found no free last-level code"):
        model.encode(X, collisions="relocate")


def test_bad_collision_options(blobs):
    model = RQKMeans(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(blobs)
    with pytest.raises(ValueError, match="collisions must be one of"):
        model.encode(blobs, collisions="drop")
    with pytest.raises(ValueError, match="capacity must be an int >= 1"):
        model.encode(blobs, collisions="relocate", capacity=0)


# ---------------------------------------------------------------------------- report command
def test_report_command_writes_json_and_pngs(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    labels = tmp_path / "labels.csv"
    labels.write_text("tag\n" + "\n".join("a|b" if v > 0 else "c" for v in blobs[:, 0]))
    runner = CliRunner()
    for method in ("rq-gmm", "rq-kmeans"):
        result = runner.invoke(main, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / method), "--levels", "2",
                                      "--codebook-size", "6", "--method", method, "-q"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["report", str(tmp_path / "rq-gmm"), str(tmp_path / "X.npy"), "--labels",
                                  str(labels), "--label-column", "tag", "--compare", str(tmp_path / "rq-kmeans"),
                                  "-o", str(tmp_path / "report"), "-q"])
    assert result.exit_code == 0, result.output
    assert "unique-ID rate" in result.output and "RQKMeans (rq-kmeans)" in result.output
    payload = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["method"] for r in payload["reports"]] == ["RQGMM (rq-gmm)", "RQKMeans (rq-kmeans)"]
    assert payload["reports"][0]["semantic"]["level1_lift"] > 0
    for name in ("code_usage.png", "reconstruction.png", "collisions.png"):
        image = imread(tmp_path / "report" / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_report_command_rejects_misaligned_labels(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    (tmp_path / "labels.csv").write_text("tag\na\nb\n")
    runner = CliRunner()
    runner.invoke(main, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "tok"), "--levels", "1",
                         "--codebook-size", "3", "-q"])
    result = runner.invoke(main, ["report", str(tmp_path / "tok"), str(tmp_path / "X.npy"), "--labels",
                                  str(tmp_path / "labels.csv"), "--label-column", "tag", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1 and "2 label rows for 4000 embeddings" in result.output


def test_k_smallest_selects_what_a_stable_argsort_selects_ties_included():
    from rqgmm.metrics.quality import k_smallest

    rng = np.random.default_rng(0)
    for _ in range(50):
        distances = rng.integers(0, 6, size=(20, 30)).astype(float)  # many ties, as for shared codes
        distances[rng.random(distances.shape) < 0.1] = np.inf
        expected = np.sort(np.argsort(distances, axis=1, kind="stable")[:, :5], axis=1)
        np.testing.assert_array_equal(k_smallest(distances, 5), expected)


@pytest.mark.parametrize("klass", [RQGMM, RQKMeans])
def test_sinkhorn_repair_makes_ids_unique_moves_only_colliding_items_and_ignores_order(klass):
    X = _distinct_rows(n=400)
    model = klass(n_levels=2, codebook_size=[4, 250], seed=0, progress=False).fit(X)
    plain = model.encode(X)
    codes = model.encode(X, collisions="sinkhorn")
    assert len(np.unique(plain, axis=0)) < len(X) and len(np.unique(codes, axis=0)) == len(X)
    np.testing.assert_array_equal(codes[:, 0], plain[:, 0])  # earlier levels untouched
    _, inverse, counts = np.unique(plain, axis=0, return_inverse=True, return_counts=True)
    alone = counts[inverse.ravel()] == 1
    np.testing.assert_array_equal(codes[alone], plain[alone])  # non-colliding items stay
    perm = np.random.default_rng(3).permutation(len(X))
    np.testing.assert_array_equal(model.encode(X[perm], collisions="sinkhorn"), codes[perm])
    # a balanced assignment costs little: the moved items mostly land on likely codes
    scores = model.last_level_scores(X.astype(np.float32))
    chosen = scores[np.arange(len(X)), codes[:, -1]]
    best = scores.max(axis=1)
    moved = (codes != plain).any(1)
    assert np.median((best - chosen)[moved]) < np.median(best - np.median(scores, axis=1))


def test_sinkhorn_on_one_level_without_room_is_named():
    X = _distinct_rows(n=300)
    model = RQKMeans(n_levels=1, codebook_size=4, random_state=0, progress=False).fit(X)
    with pytest.raises(InvalidInputError, match="raise capacity to at least 75"):
        model.encode(X, collisions="sinkhorn")
    codes = model.encode(X, collisions="sinkhorn", capacity=75)
    assert np.bincount(codes[:, 0]).max() <= 75
