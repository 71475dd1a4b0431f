"""Probe suite: what a careless user or a tampered file can do ends in a named error, never a
traceback, silent garbage or lost data. One section per class of problem."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rqgmm import RQGMM, RQKMeans, load
from rqgmm.cli import main
from rqgmm.errors import ArtifactError, InvalidInputError, OutputExistsError
from rqgmm.io.atomic import atomic_path, check_output


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def data(tmp_path):
    X = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    return X


def fitted(tmp_path, X, name="tok", **params):
    tokenizer = RQKMeans(n_levels=2, codebook_size=4, random_state=0, progress=False, **params).fit(X)
    tokenizer.save(tmp_path / name)
    return tmp_path / name


# ------------------------------------------------------------ 1. --overwrite replaces only our own outputs
def test_overwrite_refuses_a_folder_of_other_files(tmp_path, data):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    result = cli("fit", tmp_path / "X.npy", "-o", folder, "--method", "rq-kmeans", "--levels", "1",
                 "--codebook-size", "4", "--overwrite", "-q")
    assert result.exit_code == 1 and "does not hold a artifact written by rqgmm" in result.output
    assert (folder / "thesis.tex").read_text() == "years of work"
    # a tokenizer directory is replaced
    tokenizer = fitted(tmp_path, data)
    result = cli("fit", tmp_path / "X.npy", "-o", tokenizer, "--method", "rq-kmeans", "--levels", "1",
                 "--codebook-size", "4", "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert load(tokenizer).n_levels == 1


def test_encode_overwrite_refuses_a_file_of_another_kind(tmp_path, data):
    tokenizer = fitted(tmp_path, data)
    (tmp_path / "codes.parquet").write_text("not parquet")
    result = cli("encode", tokenizer, tmp_path / "X.npy", "-o", tmp_path / "codes.parquet", "--overwrite")
    assert result.exit_code == 1 and "is not a .parquet file" in result.output
    assert (tmp_path / "codes.parquet").read_text() == "not parquet"


def test_report_needs_overwrite(tmp_path, data):
    tokenizer = fitted(tmp_path, data)
    assert cli("report", tokenizer, tmp_path / "X.npy", "-o", tmp_path / "r", "-q").exit_code == 0
    again = cli("report", tokenizer, tmp_path / "X.npy", "-o", tmp_path / "r", "-q")
    assert again.exit_code == 1 and "already exists" in again.output
    assert cli("report", tokenizer, tmp_path / "X.npy", "-o", tmp_path / "r", "-q", "--overwrite").exit_code == 0


# ------------------------------------------------------------ 2. replacing a tokenizer is one step
def test_a_crash_between_renames_is_recovered_and_temporaries_cleaned(tmp_path, data):
    target = fitted(tmp_path, data)
    # the state a kill between the two renames of the fallback leaves: the old one at its backup name
    from rqgmm.io.atomic import WRITER_MARK

    dead_pid = 2**22 + 12345
    backup = tmp_path / f".tok.old-{dead_pid}"
    (target / WRITER_MARK).touch()  # what atomic_path leaves in a directory it moves aside
    os.replace(target, backup)
    stale = tmp_path / f".tok.{dead_pid}.abcd.tmp"
    stale.mkdir()
    (stale / WRITER_MARK).touch()
    assert not target.exists()
    with atomic_path(tmp_path / "tok", overwrite=True, directory=True) as tmp:
        # recovered before the new one is written: the old tokenizer is back at its path
        assert load(target).n_levels == 2 and not (target / WRITER_MARK).exists()
        (tmp / "manifest.json").write_text(json.dumps({"format": "rqgmm-artifact"}))
    assert not backup.exists() and not stale.exists()
    assert json.loads((target / "manifest.json").read_text()) == {"format": "rqgmm-artifact"}
    assert not (target / WRITER_MARK).exists()


def test_leftovers_rqgmm_cannot_prove_it_wrote_are_never_touched(tmp_path, data):
    """A user's own `.NAME.<pid>.tmp` file and `.NAME.old-<pid>` directory (no writer mark) stay
    where they are: writing NAME neither deletes the one nor moves the other into NAME."""
    dead_pid = 2**22 + 54321
    own_file = tmp_path / f".tok.{dead_pid}.notes.tmp"
    own_file.write_text("mine")
    own_dir = tmp_path / f".tok.old-{dead_pid}"
    own_dir.mkdir()
    (own_dir / "data.txt").write_text("also mine")
    fitted(tmp_path, data)
    assert own_file.read_text() == "mine" and (own_dir / "data.txt").read_text() == "also mine"
    assert (tmp_path / "tok" / "manifest.json").is_file()


def test_a_failed_write_leaves_the_previous_tokenizer(tmp_path, data):
    target = fitted(tmp_path, data)
    before = (target / "arrays.safetensors").read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target, overwrite=True, directory=True) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert (target / "arrays.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tok")] == []


def test_a_kill_during_save_keeps_the_old_tokenizer(tmp_path, data):
    target = fitted(tmp_path, data)
    before = load(target).codebooks_[0].copy()
    script = textwrap.dedent(f"""
        import os, numpy as np
        from rqgmm import RQKMeans
        import rqgmm.io.atomic as atomic
        X = np.load({str(tmp_path / 'X.npy')!r})
        t = RQKMeans(n_levels=1, codebook_size=3, random_state=1, progress=False).fit(X)
        real = atomic._fsync_tree
        def die(root):
            real(root)
            os._exit(9)  # killed after writing, before the swap
        atomic._fsync_tree = die
        t.save({str(target)!r}, overwrite=True)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert np.array_equal(load(target).codebooks_[0], before)


def test_outputs_follow_the_umask(tmp_path, data):
    old = os.umask(0o022)
    try:
        target = fitted(tmp_path, data)
    finally:
        os.umask(old)
    assert oct(target.stat().st_mode & 0o777) == oct(0o755)
    assert oct((target / "arrays.safetensors").stat().st_mode & 0o777) == oct(0o644)


# ------------------------------------------------------------ 3. load trusts nothing in the manifest
def _edit(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("params"), "needs 'params' and 'attributes'"),
    (lambda m: m.update(params=[1, 2]), "needs 'params' and 'attributes'"),
    (lambda m: m["params"].update(n_levels=3), "arrays do not fit the hyperparameters"),
    (lambda m: m["params"].update(codebook_size=5), "arrays do not fit the hyperparameters"),
    (lambda m: m["attributes"].update(n_features_in_=9), "arrays do not fit the hyperparameters"),
    (lambda m: m["attributes"].update(n_features_in_="8"), "n_features_in_ must be an int"),
    (lambda m: m["params"].update(device="bogus"), "device must be"),
    (lambda m: m["params"].update(surprise=1), "does not have"),
    (lambda m: m["attributes"].pop("converged_"), r"fitted attribute\(s\) \['converged_'\] are missing"),
    (lambda m: m.update(arrays={"x": 1}), "'arrays' must map each array"),
    (lambda m: m.update(kind="RQVAE", params={"n_levels": 2, "codebook_size": 4, "hidden_dims": [50000000]}),
     "hidden_dims must be a list"),
])
def test_an_edited_manifest_is_refused_before_anything_is_built(tmp_path, data, change, message):
    target = fitted(tmp_path, data)
    _edit(target, change)
    with pytest.raises(ArtifactError, match=message):
        load(target)
    result = cli("info", target)  # the same verdict
    assert result.exit_code == 1 and "Traceback" not in result.output and re.search(message, result.output), result.output


def test_deeply_nested_manifest_is_refused(tmp_path, data):
    target = fitted(tmp_path, data)
    (target / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ArtifactError, match="nested too deeply|not an rqgmm artifact"):
        load(target)


def test_rewritten_arrays_with_matching_checksums_are_checked_for_values(tmp_path, data):
    from safetensors.numpy import load_file, save_file

    from rqgmm.io.artifacts import array_sha256

    model = RQGMM(n_levels=1, codebook_size=4, random_state=0, progress=False, max_iter=5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data)
    model.save(tmp_path / "gmm")
    cases = [  # (array, rewrite, what the refusal names); the checksums are recomputed each time
        ("level_0.variances", lambda a: np.full_like(a, -1.0), "variances below 1e-30"),
        ("level_0.variances", lambda a: np.full_like(a, 1e-45), "variances below 1e-30"),
        ("level_0.means", lambda a: np.full_like(a, np.nan), "NaN or Inf"),
        ("level_0.codebook", lambda a: np.full_like(a, 1e38), "beyond the 1e\\+12"),
        ("level_0.codebook", lambda a: a.astype(np.int32), "is int32; rqgmm writes float32 or float64"),
        ("level_0.codebook", lambda a: a > 0, "is bool"),
    ]
    for name, rewrite, message in cases:
        arrays = load_file(str(tmp_path / "gmm" / "arrays.safetensors"))
        arrays[name] = np.ascontiguousarray(rewrite(arrays[name]))
        save_file(arrays, str(tmp_path / "gmm" / "arrays.safetensors"))
        _edit(tmp_path / "gmm", lambda m: m["arrays"][name].update(sha256=array_sha256(arrays[name]),
                                                                    dtype=str(arrays[name].dtype)))
        with pytest.raises(ArtifactError, match=message):
            load(tmp_path / "gmm")
        model.save(tmp_path / "gmm", overwrite=True)
    # covariance_type switched to tied while the variances stay one diagonal per component
    _edit(tmp_path / "gmm", lambda m: m["params"].update(covariance_type="tied"))
    with pytest.raises(ArtifactError, match="covariance_type='tied' but the components' variances differ"):
        load(tmp_path / "gmm")


# ------------------------------------------------------------ 4. magnitudes
@pytest.mark.parametrize("klass, scale, message", [
    (RQGMM, 1e18, "Divide the embeddings by a constant"),
    (RQKMeans, 1e20, "Divide the embeddings by a constant"),
    (RQKMeans, 1e-15, "Multiply the embeddings by a constant"),
    (RQGMM, 1e-3, "reg_covar_mode='relative'"),
])
def test_unworkable_magnitudes_are_refused_not_collapsed(data, klass, scale, message):
    with pytest.raises(InvalidInputError, match=message):
        klass(n_levels=2, codebook_size=8, seed=0, progress=False).fit(data * scale)


def test_rq_gmm_with_a_relative_floor_handles_tiny_values(data):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = RQGMM(n_levels=1, codebook_size=8, random_state=0, progress=False, reg_covar_mode="relative",
                      reg_covar=1e-3).fit_encode(data * 1e-3)
    assert len(np.unique(codes)) >= 6


# ------------------------------------------------------------ 5. environment parameters
@pytest.mark.parametrize("params, message", [
    ({"device": "bogus"}, "device must be"), ({"device": "tpu:0"}, "device must be"),
    ({"random_state": 2**70}, r"random_state must be None \(fresh entropy\), an int in \[0, 2\*\*63\)"),
    ({"seed": -1}, "seed must be"),
])
def test_environment_parameters_are_checked_up_front(data, params, message):
    with pytest.raises(InvalidInputError, match=message):
        RQKMeans(n_levels=1, codebook_size=4, progress=False, **params).fit(data)


# ------------------------------------------------------------ 6. Parquet edge cases
def test_an_all_null_embedding_column_is_named(tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "embedding": pa.array([None, None], pa.list_(pa.float32()))}),
                   tmp_path / "e.parquet")
    result = cli("fit", tmp_path / "e.parquet", "-o", tmp_path / "t")
    assert result.exit_code == 1 and "holds no embeddings (all 2 rows are null)" in result.output


def test_the_id_column_is_never_guessed_among_several(tmp_path, data):
    table = pa.table({"category": ["a"] * 400, "embedding": list(data), "sku": np.arange(400)})
    pq.write_table(table, tmp_path / "e.parquet")
    tokenizer = fitted(tmp_path, data)
    result = cli("encode", tokenizer, tmp_path / "e.parquet", "-o", tmp_path / "c.parquet")
    assert result.exit_code == 1 and "cannot tell which column identifies the rows" in result.output
    assert cli("encode", tokenizer, tmp_path / "e.parquet", "-o", tmp_path / "c.parquet", "--id-column",
               "sku").exit_code == 0
    assert pq.read_table(tmp_path / "c.parquet").column_names[0] == "sku"


def test_codes_files_honour_their_extension(tmp_path, data):
    tokenizer = fitted(tmp_path, data)
    assert cli("encode", tokenizer, tmp_path / "X.npy", "-o", tmp_path / "c.npy").exit_code == 0
    codes = np.load(tmp_path / "c.npy")
    assert codes.dtype == np.int64 and np.array_equal(codes, load(tokenizer).encode(data))
    result = cli("encode", tokenizer, tmp_path / "X.npy", "-o", tmp_path / "c.txt")
    assert result.exit_code == 1 and "codes are written as .parquet, .npy or .csv" in result.output


# ------------------------------------------------------------ 7. output paths are checked before the work
@pytest.mark.parametrize("where, message", [
    ("afile/sub", "is a file, not a directory"),
    ("/proc/rqgmm-test", "cannot write in /proc"),
])
def test_bad_output_places_fail_before_fitting(tmp_path, data, where, message):
    (tmp_path / "afile").write_text("x")
    output = where if where.startswith("/") else tmp_path / where
    result = cli("fit", tmp_path / "X.npy", "-o", output, "--method", "rq-kmeans", "--max-iter", "1")
    assert result.exit_code == 1 and message in result.output, result.output


def test_dot_and_symlinks_are_not_replaced(tmp_path, data):
    with pytest.raises(InvalidInputError, match="does not hold"):
        check_output(tmp_path, True, "artifact")
    (tmp_path / "link").symlink_to(fitted(tmp_path, data))
    with pytest.raises(InvalidInputError, match="symbolic link"):
        check_output(tmp_path / "link", True, "artifact")
    with pytest.raises(OutputExistsError):
        check_output(tmp_path / "tok", False, "artifact")


# ------------------------------------------------------------ 8. streaming
@pytest.mark.parametrize("rate", ["inf", "nan", "-1", "0"])
def test_stream_learning_rate_is_checked(rate):
    result = cli("stream", "--dataset", "drifting", "--events", "2000", "--learning-rate", rate)
    assert result.exit_code == 2 and "--learning-rate" in result.output and "Traceback" not in result.output


def test_stream_data_converts_or_names_bad_columns():
    from rqgmm.stream.data import StreamData

    base = dict(name="s", categorical=np.zeros((4, 1), dtype=np.int32), cardinalities=(2,), categorical_names=("c",),
                numeric=np.arange(4).reshape(4, 1), numeric_names=("n",), labels=[0, 1, 0, 1],
                timestamps=np.arange(4))
    data = StreamData(**base)  # integer numerics and list labels convert
    assert data.numeric.dtype == np.float32 and data.labels.dtype == np.int8
    with pytest.raises(InvalidInputError, match="labels hold NaN at row 2"):
        StreamData(**{**base, "labels": [0, 1, np.nan, 1]})
    with pytest.raises(InvalidInputError, match="numeric must hold numbers"):
        StreamData(**{**base, "numeric": np.array([["a"], ["b"], ["c"], ["d"]], dtype=object)})
    with pytest.raises(InvalidInputError, match="row 3 has index 5, outside"):
        StreamData(**{**base, "categorical": np.array([[0], [1], [0], [5]])})


# ------------------------------------------------------------ 9. experiment configs
def test_a_study_without_ctr_models_reports_quality_only(tmp_path):
    config = tmp_path / "q.yaml"
    config.write_text("name: q\nseeds: [0]\ntokenizers: [{method: rq-kmeans, levels: 2, codebook_size: 8}]\n"
                      "models: {}\n")
    result = cli("experiment", config, "-o", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "runs" / "q" / "report.md").read_text()
    assert "RQKMeans" in report or "rq-kmeans" in report  # the tokenizer's quality table is there ...
    assert "## CTR" not in report and "RQ-GMM against RQ-KMeans" not in report  # ... and no empty CTR section
    assert not (tmp_path / "runs" / "q" / "ctr").exists()


def test_empty_seeds_and_escaping_names_are_refused(tmp_path):
    for text, message in (("name: q\nseeds: []\n", "seeds is empty"),
                          ("name: ../x\nseeds: [0]\n", "plain directory name")):
        (tmp_path / "c.yaml").write_text(text)
        result = cli("experiment", tmp_path / "c.yaml", "-o", tmp_path / "runs")
        assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


# ------------------------------------------------------------ 10. decode and CTR run directories
def test_decoding_no_rows_gives_no_rows(tmp_path, data):
    tokenizer = load(fitted(tmp_path, data))
    assert tokenizer.decode(np.zeros((0, 2), dtype=np.int64)).shape == (0, 8)


def test_a_run_directory_with_a_bad_config_is_named(tmp_path):
    from rqgmm.ctr.run import load_run

    (tmp_path / "run").mkdir()
    for text in ("{not json", json.dumps({"dataset": "ml-100k", "colour": "red"})):
        (tmp_path / "run" / "config.json").write_text(text)
        with pytest.raises(ArtifactError, match="not a run config written by rqgmm"):
            load_run(tmp_path / "run")


def test_unexpected_errors_are_one_line_unless_debug(tmp_path, monkeypatch):
    import rqgmm.cli.tokenize as tokenize

    def boom(*args, **kwargs):
        raise ZeroDivisionError("surprise")

    monkeypatch.setattr(tokenize, "show_warnings", boom)
    result = cli("fit", tmp_path / "X.npy", "-o", tmp_path / "t")
    assert result.exit_code == 1 and "unexpected ZeroDivisionError: surprise (run with --debug" in result.output
    result = CliRunner().invoke(main, ["--debug", "fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "t")])
    assert isinstance(result.exception, ZeroDivisionError)


def test_a_full_disk_is_one_line_and_keeps_the_previous_tokenizer(tmp_path, data, monkeypatch):
    import errno

    import rqgmm.io.artifacts as artifacts

    target = fitted(tmp_path, data)
    before = (target / "arrays.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(artifacts, "save_file", full)
    result = cli("fit", tmp_path / "X.npy", "-o", target, "--method", "rq-kmeans", "--levels", "1",
                 "--codebook-size", "3", "--overwrite", "-q")
    assert result.exit_code == 1 and "No space left on device (nothing was replaced)" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (target / "arrays.safetensors").read_bytes() == before


def test_describe_lists_every_setting():
    result = cli("experiment", "--describe", "paper")
    assert result.exit_code == 0
    for key in ("training.learning_rate", "features.prefix_buckets", "item_id_dropouts", "tail_threshold"):
        assert key in result.output


# ---------------------------------------------------------------- third round
def test_an_output_that_is_one_of_the_inputs_is_refused_even_with_overwrite(tmp_path):
    X = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "link.npy").symlink_to(tmp_path / "x.npy")
    assert cli("fit", tmp_path / "x.npy", "-o", tmp_path / "tok", "--method", "rq-kmeans", "--levels", 1,
               "--codebook-size", 4, "-q").exit_code == 0
    for target in ("x.npy", "link.npy"):  # the same file, also through a link
        result = cli("encode", tmp_path / "tok", tmp_path / "x.npy", "-o", tmp_path / target, "--overwrite")
        assert result.exit_code == 1 and "is also an input of this command" in result.output
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), X)  # the input is untouched
    items = pa.table({"id": [f"i{k}" for k in range(500)],
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 8)})
    pq.write_table(items, tmp_path / "items.parquet")
    assert cli("registry", "assign", tmp_path / "ids.db", tmp_path / "tok", tmp_path / "items.parquet").exit_code == 0
    for target in ("ids.db", "ids.db-wal"):
        result = cli("registry", "export", tmp_path / "ids.db", "-o", tmp_path / target, "--overwrite")
        assert result.exit_code == 1 and "is also an input" in result.output
    assert "consistent: 500" in cli("registry", "check", tmp_path / "ids.db").output


def test_odd_input_files_are_named_not_unexpected(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 4)
    pq.write_table(pa.table({"id": [str(i) for i in range(100)], "embedding": vectors}), tmp_path / "items[v2].parquet")
    fitted = cli("fit", tmp_path / "items[v2].parquet", "-o", tmp_path / "tok", "--method", "rq-kmeans",
                 "--levels", 1, "--codebook-size", 4, "-q")
    assert fitted.exit_code == 0, fitted.output  # a file named like a glob is that file
    (tmp_path / "empty.npy").write_bytes(b"")
    empty = cli("fit", tmp_path / "empty.npy", "-o", tmp_path / "t2", "-q")
    assert empty.exit_code == 1 and "empty.npy: not a readable .npy matrix" in empty.output
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "embedding": pa.array([], pa.list_(pa.float32()))}),
                   tmp_path / "zero.parquet")
    zero = cli("fit", tmp_path / "zero.parquet", "-o", tmp_path / "t3", "-q")
    assert zero.exit_code == 1 and "zero.parquet: holds no rows" in zero.output and "feature(s)" not in zero.output


def test_experiment_check_runs_the_checks_the_run_would_run(tmp_path):
    """--check used to call `name: ../x` and a codebook of 10^9 valid; both failed only later."""
    for text, message in (("name: ../x\nseeds: [0]\nmodels: {}\n", "name: must be a plain directory name"),
                          ("name: big\nseeds: [0]\nmodels: {}\ntokenizers: [{method: rq-kmeans, levels: 2,"
                           " codebook_size: 1000000000}]\n", "codebook_size must be a positive int up to 1048576"),
                          ("name: deep\nseeds: [0]\nmodels: {}\ntokenizers: [{method: rq-kmeans, levels: 1000000000,"
                           " codebook_size: 8}]\n", "n_levels must be an int in \\[1, 64\\]"),
                          ("name: nd\nseeds: [0]\ndataset: nowhere.yaml\n", "nowhere.yaml: no such data set config"),
                          ("name: nd\nseeds: [0]\ndataset: ml-10m\n", "dataset: expected one of")):
        (tmp_path / "c.yaml").write_text(text)
        result = cli("experiment", tmp_path / "c.yaml", "--check")
        assert result.exit_code == 1 and re.search(message, result.output), result.output
    assert not (tmp_path / "runs").exists()


def test_a_manifest_asking_for_unbounded_work_is_refused_before_allocating(tmp_path, data):
    """n_levels and codebook sizes are outside the checksums: a manifest claiming 10^9 levels
    once made `rqgmm info` and a reload grow past 12 GB; the declared bounds refuse it first."""
    target = fitted(tmp_path, data)
    for change, message in (({"n_levels": 10**9}, r"n_levels must be an int in \[1, 64\]"),
                            ({"codebook_size": [10**9, 4]}, "codebook_size must be a positive int up to")):
        _edit(target, lambda m: m["params"].update(change))
        result = cli("info", target)
        assert result.exit_code == 1 and re.search(message, result.output), result.output
        target = fitted(tmp_path, data, name=f"tok{len(message)}")
