import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rqgmm import load
from rqgmm.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


@pytest.fixture
def parquet_embeddings(tmp_path, blobs):
    path = tmp_path / "items.parquet"
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(blobs.reshape(-1)), blobs.shape[1])
    pq.write_table(pa.table({"item": np.arange(1000, 1000 + len(blobs)), "vec": vectors}), path)
    return path


def test_fit_encode_decode_roundtrip_from_npy(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 2, "--codebook-size", "9,5", "-q")
    assert result.exit_code == 0, result.output
    tokenizer = load(tmp_path / "tok")
    assert tokenizer.codebook_sizes == [9, 5]
    result = run("encode", tmp_path / "tok", tmp_path / "X.npy", "-o", tmp_path / "codes.parquet", "-q")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "codes.parquet")
    assert table.column_names == ["row", "level_0", "level_1"]
    codes = np.stack([table.column("level_0").to_numpy(), table.column("level_1").to_numpy()], axis=1)
    np.testing.assert_array_equal(codes, tokenizer.encode(blobs))
    result = run("decode", tmp_path / "tok", tmp_path / "codes.parquet", "-o", tmp_path / "X_hat.npy", "-q")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "X_hat.npy"), tokenizer.decode(codes))


def test_parquet_input_keeps_ids_and_kmeans_method(tmp_path, parquet_embeddings, blobs):
    result = run("fit", parquet_embeddings, "-o", tmp_path / "tok", "--method", "rq-kmeans", "--levels", 1,
                 "--codebook-size", 7, "-q")
    assert result.exit_code == 0, result.output
    result = run("encode", tmp_path / "tok", parquet_embeddings, "-o", tmp_path / "codes.parquet", "-q")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "codes.parquet")
    assert table.column("item").to_pylist()[:3] == [1000, 1001, 1002]
    np.testing.assert_array_equal(table.column("level_0").to_numpy(), load(tmp_path / "tok").encode(blobs)[:, 0])
    result = run("decode", tmp_path / "tok", tmp_path / "codes.parquet", "-o", tmp_path / "X_hat.parquet", "-q")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "X_hat.parquet").column_names == ["item", "embedding"]


def test_nan_rows_fail_cleanly_or_are_dropped(tmp_path, blobs):
    X = blobs.copy()
    X[7, 1] = np.nan
    np.save(tmp_path / "X.npy", X)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 1, "--codebook-size", 4, "-q")
    assert result.exit_code == 1
    assert "NaN or Inf, first at row(s) 7" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "tok").exists()
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 1, "--codebook-size", 4,
                 "--drop-invalid", "-q")
    assert result.exit_code == 0, result.output
    result = run("encode", tmp_path / "tok", tmp_path / "X.npy", "-o", tmp_path / "c.parquet", "--drop-invalid")
    assert result.exit_code == 0, result.output
    assert "dropped 1 row(s) with NaN/Inf (first: row=7)" in result.output
    rows = pq.read_table(tmp_path / "c.parquet").column("row").to_pylist()
    assert 7 not in rows and len(rows) == len(blobs) - 1


def test_existing_output_needs_overwrite(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    args = ("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 1, "--codebook-size", 3, "-q")
    assert run(*args).exit_code == 0
    result = run(*args)
    assert result.exit_code == 1 and "already exists" in result.output
    assert run(*args, "--overwrite").exit_code == 0


@pytest.mark.parametrize("content, message", [
    ("strings", "has type string, expected a list of numbers"),
    ("ragged", "row 1 has 2 values, expected 3"),
])
def test_bad_parquet_columns(tmp_path, content, message):
    path = tmp_path / "bad.parquet"
    if content == "strings":
        table = pa.table({"id": [1, 2], "vec": ["a", "b"]})
        extra = ["--column", "vec"]
    else:
        table = pa.table({"id": [1, 2, 3], "vec": [[1.0, 2.0, 3.0], [1.0, 2.0], [0.0, 1.0, 2.0]]})
        extra = []
    pq.write_table(table, path)
    result = run("fit", path, "-o", tmp_path / "tok", "--levels", 1, "--codebook-size", 1, "-q", *extra)
    assert result.exit_code == 1
    assert message in result.output


def test_wrong_dimension_and_missing_tokenizer(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    np.save(tmp_path / "small.npy", blobs[:, :3])
    assert run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 1, "--codebook-size", 3,
               "-q").exit_code == 0
    result = run("encode", tmp_path / "tok", tmp_path / "small.npy", "-o", tmp_path / "c.parquet")
    assert result.exit_code == 1 and "has 3 features, but RQGMM is expecting 8" in result.output
    result = run("encode", tmp_path / "nowhere", tmp_path / "X.npy", "-o", tmp_path / "c.parquet")
    assert result.exit_code == 1 and "no tokenizer directory" in result.output
    result = run("encode", tmp_path / "tok", tmp_path / "missing.npy", "-o", tmp_path / "c.parquet")
    assert result.exit_code == 1 and "missing.npy: no such file" in result.output


def test_info_summarizes_and_prints_the_manifest_as_json(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 2, "--codebook-size", "3,5", "-q")
    version = load(tmp_path / "tok").version
    text = run("info", tmp_path / "tok")
    assert text.exit_code == 0 and f"RQGMM, version {version}" in text.output
    assert "levels 2 x codes 3 x 5, input width 8" in text.output and "covariance_type=diag" in text.output
    result = run("info", tmp_path / "tok", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["version"] == version
    assert json.loads(result.output)["arrays"]["level_1.codebook"] == [5, 8]


@pytest.mark.parametrize("method, levels", [("rq-vae", 2), ("vq-vae", 1)])
def test_neural_methods_fit_from_the_cli_with_their_options(tmp_path, blobs, method, levels):
    np.save(tmp_path / "X.npy", blobs)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--method", method, "--levels", levels,
                 "--codebook-size", 8, "--latent-dim", 4, "--hidden-dims", "16", "--max-epochs", 3,
                 "--codebook-update", "ema", "--dead-code-steps", 10, "-q")
    assert result.exit_code == 0, result.output
    tokenizer = load(tmp_path / "tok")
    assert type(tokenizer).__name__ == method.upper().replace("-", "")
    assert tokenizer.latent_dim == 4 and list(tokenizer.hidden_dims) == [16] and tokenizer.n_epochs_ == 3
    assert tokenizer.codebook_update == "ema" and tokenizer.dead_code_steps == 10
    assert tokenizer.encode(blobs).shape == (len(blobs), levels)


@pytest.mark.parametrize("args, message", [
    (("--method", "rq-gmm", "--beta", "0.5"), "--beta applies to --method rq-vae or vq-vae only, not rq-gmm"),
    (("--method", "rq-vae", "--reg-covar", "1e-3"), "--reg-covar applies to --method rq-gmm only, not rq-vae"),
    (("--method", "vq-vae", "--levels", "2"), "vq-vae has one level; levels must be 1, got 2"),
    (("--method", "rq-vae", "--balance", "0.5"), "--balance applies to --method rq-gmm or rq-kmeans only, not rq-vae"),
    (("--method", "rq-kmeans", "--balance", "0.5"), "balance must be None or one of"),
    (("--method", "rq-gmm", "--balance", "hard"), "--balance: expected a number, got 'hard'"),
    (("--method", "rq-vae", "--hidden-dims", "64,x"), "expected comma-separated ints, got '64,x'"),
])
def test_options_of_another_method_are_refused(tmp_path, blobs, args, message):
    np.save(tmp_path / "X.npy", blobs)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", *args, "-q")
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "tok").exists()


def test_rq_gmm_variant_options_reach_the_tokenizer(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--levels", 2, "--codebook-size", 6,
                 "--covariance-type", "tied", "--reg-covar-mode", "relative", "--reg-covar", "0.01",
                 "--weight-prior", "2", "--balance", "0.5", "--anneal-temperature", "3", "-q")
    assert result.exit_code == 0, result.output
    params = load(tmp_path / "tok").get_params()
    assert (params["covariance_type"], params["reg_covar_mode"], params["reg_covar"], params["weight_prior"],
            params["balance"], params["anneal_temperature"]) == ("tied", "relative", 0.01, 2.0, 0.5, 3.0)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "bad", "--balance", "2", "-q")
    assert result.exit_code != 0 and "parameter balance must be a number in [0, 1], got 2.0" in result.output
    assert not (tmp_path / "bad").exists()


def test_the_command_line_lists_are_the_library_lists():
    import inspect

    from rqgmm.cli.options import COMMON_PARAMETERS
    from rqgmm.ctr.models import MODELS
    from rqgmm.quantize import METHODS, TOKENIZERS
    from rqgmm.stream import NUMERIC_METHODS

    def choices(command, name):
        return tuple(next(p for p in command.params if p.name == name).type.choices)

    assert choices(main.commands["fit"], "method") == METHODS
    assert choices(main.commands["ctr"].commands["train"], "model_name") == MODELS
    help_text = CliRunner().invoke(main, ["stream", "--help"]).output
    assert all(method in help_text for method in NUMERIC_METHODS)
    # every keyword parameter of every tokenizer class is an option of `rqgmm fit`
    options = {p.name for p in main.commands["fit"].params}
    for klass in TOKENIZERS.values():
        for parameter in inspect.signature(klass.__init__).parameters:
            if parameter not in ("self", *COMMON_PARAMETERS):
                assert parameter in options, parameter


def test_an_option_of_another_method_is_refused(tmp_path):
    np.save(tmp_path / "X.npy", np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    result = CliRunner().invoke(main, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "t"), "--method",
                                       "rq-kmeans", "--levels", "1", "--codebook-size", "4", "--reg-covar", "1e-3"])
    assert result.exit_code == 2 and "--reg-covar applies to --method rq-gmm only, not rq-kmeans" in result.output
    result = CliRunner().invoke(main, ["fit", str(tmp_path / "X.npy"), "-o", str(tmp_path / "t"), "--method",
                                       "rq-vae", "--levels", "1", "--codebook-size", "4", "--hidden-dims", "16,8",
                                       "--max-epochs", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert list(load(tmp_path / "t").hidden_dims) == [16, 8]


def test_fit_and_encode_read_a_directory_or_glob_of_parquet_in_batches(tmp_path, blobs):
    from rqgmm.io.tables import read_embeddings

    folder = tmp_path / "parts"
    folder.mkdir()
    for part in range(3):
        rows = blobs[part * 100:(part + 1) * 100]
        pq.write_table(pa.table({"id": np.arange(part * 100, part * 100 + len(rows)),
                                 "embedding": list(rows)}), folder / f"part-{part}.parquet")
    whole = read_embeddings(folder)
    assert np.array_equal(whole.embeddings, blobs[:300]) and list(whole.ids) == list(range(300))
    # above the memory limit the matrix is a temporary memmap, filled batch by batch: same values
    spilled = read_embeddings(str(folder / "part-*.parquet"), memory_limit_bytes=1024)
    assert isinstance(spilled.embeddings, np.memmap) and np.array_equal(spilled.embeddings, blobs[:300])
    assert run("fit", folder, "-o", tmp_path / "tok", "--method", "rq-kmeans", "--levels", "1",
               "--codebook-size", "3", "-q").exit_code == 0
    result = run("encode", tmp_path / "tok", str(folder / "*.parquet"), "-o", tmp_path / "codes.parquet")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "codes.parquet").num_rows == 300


def test_rq_kmeans_balance_option_reaches_the_tokenizer(tmp_path, blobs):
    np.save(tmp_path / "X.npy", blobs)
    result = run("fit", tmp_path / "X.npy", "-o", tmp_path / "tok", "--method", "rq-kmeans", "--levels", 2,
                 "--codebook-size", 6, "--balance", "soft", "--balance-temperature", "0.2", "-q")
    assert result.exit_code == 0, result.output
    tokenizer = load(tmp_path / "tok")
    assert (tokenizer.balance, tokenizer.balance_temperature) == ("soft", 0.2)
    assert [sum(sizes) for sizes in tokenizer.fit_cluster_sizes_] == [len(blobs)] * 2


def test_every_option_of_every_command_has_help_text():
    import click

    from rqgmm.cli import main as root

    missing = []

    def walk(command, path):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
            return
        missing.extend(f"{' '.join(path)} {option.opts[0]}" for option in command.params
                       if isinstance(option, click.Option) and not option.help)

    walk(root, ["rqgmm"])
    assert not missing, missing


def test_experiment_without_a_config_is_refused_not_the_demo():
    """It used to start the 16-minute MovieLens study silently while --help showed CONFIG."""
    result = run("experiment")
    assert result.exit_code == 2 and "give CONFIG" in result.output


def test_every_command_takes_quiet():
    import click

    def leaves(command, path=()):
        if isinstance(command, click.Group):
            for name, child in command.commands.items():
                yield from leaves(child, (*path, name))
        else:
            yield " ".join(path), command

    # a server's output is its log (uvicorn's --log-level); info and summarize print what they are for
    exempt = {"serve", "info", "ctr summarize"}
    missing = [name for name, command in leaves(main) if name not in exempt
               and not any("--quiet" in p.opts for p in command.params)]
    assert not missing, f"commands without -q/--quiet: {missing}"
