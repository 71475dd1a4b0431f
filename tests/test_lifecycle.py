"""The semantic-ID lifecycle as one system: one tokenizer identity everywhere, parts that refuse
to disagree, and a week in production end to end (tools/week_in_production.py)."""

import shutil
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rqgmm import RQGMM, RQVAE, VQVAE, RQKMeans, load
from rqgmm.cli import main
from rqgmm.io.artifacts import artifact_version
from rqgmm.io.tables import write_matrix
from tests.conftest import mixture_sample

SMALL_VAE = dict(latent_dim=4, hidden_dims=(16,), max_epochs=3)


@pytest.fixture(scope="module")
def catalogue():
    X, _ = mixture_sample(n=1200, dim=8, n_components=10, separation=4.0, seed=3)
    return X


@pytest.mark.parametrize("make", [
    lambda: RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False),
    lambda: RQGMM(n_levels=2, codebook_size=8, random_state=0, progress=False),
    lambda: RQVAE(n_levels=2, codebook_size=8, random_state=0, progress=False, **SMALL_VAE),
    lambda: VQVAE(codebook_size=8, random_state=0, progress=False, **SMALL_VAE),
], ids=["rq-kmeans", "rq-gmm", "rq-vae", "vq-vae"])
def test_fitting_an_object_twice_equals_fitting_a_fresh_one(make, catalogue):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reused = make().fit(catalogue[:900])
        aligned = isinstance(reused, (RQKMeans, RQGMM))
        if aligned:  # a refit with explicit options must not leak them into the next fit
            anchor = make().fit(catalogue[:900])
            reused.fit(catalogue, previous=anchor, warm_start=False)
            codes = reused.fit_encode(catalogue, previous=anchor)
            np.testing.assert_array_equal(codes, make().fit_encode(catalogue, previous=anchor))
        reused.fit(catalogue)
        assert reused.version == make().fit(catalogue).version


def test_the_version_is_the_content_not_the_place(tmp_path, catalogue):
    tokenizer = RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False).fit(catalogue)
    tokenizer.save(tmp_path / "deploy-a")
    shutil.copytree(tmp_path / "deploy-a", tmp_path / "renamed")
    loaded = load(tmp_path / "renamed")
    loaded.device, loaded.progress, loaded.batch_size = "cpu", True, 7  # how it runs, not what it is
    assert tokenizer.version == artifact_version(tmp_path / "deploy-a") == loaded.version
    other = RQKMeans(n_levels=2, codebook_size=8, random_state=1, progress=False).fit(catalogue)
    assert other.version != tokenizer.version
    info = CliRunner().invoke(main, ["info", str(tmp_path / "renamed"), "--json"])
    assert f'"version": "{tokenizer.version}"' in info.output


def test_codes_files_carry_the_tokenizer_version_and_decode_checks_it(tmp_path, catalogue):
    np.save(tmp_path / "X.npy", catalogue)
    runner = CliRunner()
    for name, seed in (("tok", 0), ("other", 1)):
        assert runner.invoke(main, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / name), "--method",
                                    "rq-kmeans", "--levels", "2", "--codebook-size", "8", "--seed", str(seed),
                                    "-q"]).exit_code == 0
    version = load(tmp_path / "tok").version
    for suffix in (".npy", ".parquet"):
        codes = tmp_path / f"codes{suffix}"
        assert runner.invoke(main, ["encode", str(tmp_path / "tok"), str(tmp_path / "X.npy"), "-o", str(codes),
                                    "-q"]).exit_code == 0
        decoded = runner.invoke(main, ["decode", str(tmp_path / "tok"), str(codes), "-o",
                                       str(tmp_path / f"back{suffix}.npy"), "-q"])
        assert decoded.exit_code == 0, decoded.output  # .npy codes are read back (they were refused before)
        np.testing.assert_allclose(np.load(tmp_path / f"back{suffix}.npy"),
                                   load(tmp_path / "tok").decode(load(tmp_path / "tok").encode(catalogue)))
        wrong = runner.invoke(main, ["decode", str(tmp_path / "other"), str(codes), "-o",
                                     str(tmp_path / f"wrong{suffix}.npy")])
        assert wrong.exit_code == 1 and version in wrong.output and load(tmp_path / "other").version in wrong.output
        assert not (tmp_path / f"wrong{suffix}.npy").exists()
        forced = runner.invoke(main, ["decode", str(tmp_path / "other"), str(codes), "-o",
                                      str(tmp_path / f"forced{suffix}.npy"), "--ignore-version", "-q"])
        assert forced.exit_code == 0
    assert pq.read_schema(tmp_path / "codes.parquet").metadata[b"rqgmm.tokenizer_version"] == version.encode()


def test_dropped_rows_are_reported_and_never_misalign(tmp_path, catalogue):
    X = catalogue.copy()
    X[[4, 9]] = np.nan
    write_matrix(tmp_path / "X.parquet", X, np.array([f"item{i}" for i in range(len(X))], dtype=object), "id")
    RQKMeans(n_levels=2, codebook_size=8, random_state=0, progress=False).fit(catalogue).save(tmp_path / "tok")
    runner = CliRunner()
    refused = runner.invoke(main, ["encode", str(tmp_path / "tok"), str(tmp_path / "X.parquet"), "-o",
                                   str(tmp_path / "codes.npy"), "--drop-invalid"])
    assert refused.exit_code == 2 and "no id column" in refused.output
    done = runner.invoke(main, ["encode", str(tmp_path / "tok"), str(tmp_path / "X.parquet"), "-o",
                                str(tmp_path / "codes.parquet"), "--drop-invalid", "-q"])
    assert done.exit_code == 0 and "dropped 2 row(s)" in done.output and "id='item4'" in done.output
    table = pq.read_table(tmp_path / "codes.parquet")
    ids = table.column("id").to_pylist()
    assert len(ids) == len(X) - 2 and "item4" not in ids and "item9" not in ids
    expected = load(tmp_path / "tok").encode(np.delete(X, [4, 9], axis=0))
    np.testing.assert_array_equal(np.stack([table.column(f"level_{j}").to_numpy() for j in range(2)], 1), expected)


def test_a_week_in_production(tmp_path):
    """Fit, assign, train, serve, new items online, aligned refit, migrate + switch under load,
    remap the run, restart: zero failed requests, every acknowledged ID kept or moved as the
    mapping says, unchanged items keep their exact scores, moved items are scored with their
    migrated rows (a restarted service on the remapped run agrees), stale parts refuse to start."""
    pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    pytest.importorskip("sentence_transformers")
    from tools.week_in_production import run_week

    figures = run_week(tmp_path, epochs=1, window_seconds=2.0, progress=lambda _: None)
    assert figures["failed"] == [] and figures["requests"] > 20
    assert figures["arrived_during_window"] > 0 and min(figures["by_kind"].values()) > 0
    assert figures["lost"] == [] and figures["wrong_ids"] == [] and figures["acknowledged"] > 300
    assert figures["migrate"]["changed"] > 0 and figures["probe"]["moved"] > 0 and figures["probe"]["unchanged"] > 0
    assert figures["unchanged_max_score_change"] <= 1e-6
    assert figures["moved_mean_score_change"] > 0  # moved items are scored with other rows now ...
    assert figures["restart_max_difference"] <= 1e-6  # ... exactly the rows `rqgmm ctr remap` writes
    assert all(refused for refused, _ in figures["stale_starts_refused"])
    assert "ctr remap" in figures["stale_starts_refused"][0][1]
    assert figures["registry_check_ok"] and figures["ready_after"]["ready"]
