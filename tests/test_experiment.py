import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import TokenizerEntry, load_config, parse_config
from rqgmm.experiment.paper import PaperStudy
from rqgmm.experiment.paper_report import aggregate_ctr, rq_gmm_verdict

DEFAULT_CONFIG = Path(__file__).parents[1] / "experiments" / "ml-100k.yaml"


def test_quick_experiment_writes_the_report_and_resumes(tmp_path):
    args = ["experiment", str(DEFAULT_CONFIG), "--quick", "--output", str(tmp_path)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    run = tmp_path / "ml-100k-quick"
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html and "src='auc_" not in html
    markdown = (run / "report.md").read_text()
    assert "| fnn | sid:rq-gmm-2x32 |" in markdown and "The paper's figures" in markdown
    results = json.loads((run / "results.json").read_text())
    assert set(results["tokenizers"]) == {"vq-vae-1x32", "rq-vae-2x32", "rq-kmeans-2x32", "rq-gmm-2x32"}
    assert len(results["ctr_runs"]) == 4
    assert all(0.5 < r["test"]["auc"] < 1 and r["test"]["cold_rows"] > 1000 for r in results["ctr_runs"])
    assert (run / "tokenizers" / "rq-gmm-2x32" / "manifest.json").is_file()
    assert (run / "models" / "cold-item" / "fnn" / "sid__rq-gmm-2x32" / "model" / "manifest.json").is_file()
    assert "ctr_cold-item" in first.output and "report:" in first.output
    from tools.browser_check import check_report, find_browser

    if find_browser() is not None:  # the real report, in a real browser, at phone width
        assert check_report(run / "report.html") == []

    # a finished run resumes: nothing is refitted or retrained, the figures are identical
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert second.stderr.count("done before, loaded") == 5  # 4 tokenizers + quality
    again = json.loads((run / "results.json").read_text())
    assert again["ctr_runs"] == results["ctr_runs"]
    assert again["tokenizers"] == results["tokenizers"]


def test_an_interrupted_grid_redoes_only_missing_runs(tmp_path):
    config = load_config(DEFAULT_CONFIG, quick=True)
    config.models = {"fnn": config.models["fnn"]}
    config.models["fnn"].features = ["id"]
    config.tokenizers = [t for t in config.tokenizers if t.method in ("rq-kmeans", "rq-gmm")]
    lines = []
    PaperStudy(config, tmp_path, progress=False, log=lines.append).run()
    seed_file = tmp_path / "ml-100k-quick" / "ctr" / "cold-item" / "fnn" / "id" / "seed0.json"
    before = json.loads(seed_file.read_text())
    seed_file.unlink()  # as if the run had been killed before this job finished
    results = PaperStudy(config, tmp_path, progress=False, log=lines.append).run()
    after = json.loads(seed_file.read_text())
    assert (after["test"], after["validation"], after["epochs"]) == (before["test"], before["validation"],
                                                                     before["epochs"])
    assert results["ctr_runs"] == [after]
    assert any("1 runs, 0 done before; 1 to train" in line for line in lines)


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    config = load_config(DEFAULT_CONFIG, quick=True)
    (tmp_path / config.name).mkdir()
    (tmp_path / config.name / "config.json").write_text(json.dumps({"name": "other"}))
    with pytest.raises(InvalidInputError, match="holds a run of a different config"):
        PaperStudy(config, tmp_path, progress=False, log=lambda _: None).run()


@pytest.mark.parametrize("change, message", [
    ({"colour": "blue"}, r"x.yaml: unknown setting 'colour'"),
    ({"training": {"learning_rat": 0.1}}, r"x.yaml: training: unknown setting 'learning_rat'"),
    ({"training": {"batch_size": "big"}}, r"x.yaml: training.batch_size: expected an integer, got 'big'"),
    ({"features": {"histroy_length": 3}}, r"x.yaml: features: unknown setting 'histroy_length'"),
    ({"models": {"fnn": {"params": {"embed_dimm": 8}}}}, r"models.fnn.params: fnn has no parameter 'embed_dimm'"),
    ({"models": {"fnn": {"featrues": "all"}}}, r"x.yaml: models.fnn: unknown setting 'featrues'"),
    ({"models": {"xgboost": {}}}, r"models.xgboost.params: model must be one of"),
    ({"quick": {"seedz": [0]}}, r"x.yaml: quick: unknown setting 'seedz'"),
    ({"quick": {"training": {"max_epoch": 1}}}, r"x.yaml \(quick\): training: unknown setting 'max_epoch'"),
    ({"seeds": []}, "seeds is empty"),
    ({"name": "../outside"}, "name: must be a plain directory name"),  # with the config, before any write
    ({"ctr_tokenizers": ["rq-gmm-9x9"]}, "ctr_tokenizers: 'rq-gmm-9x9' is not among the tokenizers"),
    ({"models": {"fnn": {"features": ["sid:rq-gmm-3x256"]}}}, "features: 'sid:rq-gmm-3x256' must be id, emb"),
    ({"tokenizers": [{"method": "pq", "levels": 1, "codebook_size": 4}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: method must be one of"),
    ({"tokenizers": [{"method": "vq-vae", "levels": 2, "codebook_size": 8}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: vq-vae has one level; levels must be 1, got 2"),
    ({"tokenizers": [{"method": "rq-gmm", "levels": 2, "codebook_size": 8, "params": {"max_epochs": 3}}],
      "ctr_tokenizers": []}, r"tokenizers\[0\]: rq-gmm has no parameter\(s\) \['max_epochs'\]"),
    ({"tokenizers": [{"method": "rq-kmeans", "levels": 2, "codebook_size": 0}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: RQKMeans: parameter codebook_size must be"),
    ({"tokenizers": [{"method": "rq-kmeans", "levels": 2, "codebok_size": 8}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: unknown setting 'codebok_size'"),
])
def test_bad_configs_are_named(change, message):
    import yaml

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw.update(change)
    if message is None:
        parse_config(raw, "x.yaml")
        return
    with pytest.raises(InvalidInputError, match=message):
        parse_config(raw, "x.yaml")


@pytest.mark.parametrize("section, text", [
    ("training", "training: {batch_size: 2048, learning_rat: 0.002}"),
    ("models", "models: {fnn: {features: all, params: {hiden_dims: [8]}}}"),
    ("quick", "quick: {splits: [cold-item], trainig: {max_epochs: 1}}"),
])
def test_a_misspelt_key_fails_fast_with_one_line_and_writes_nothing(tmp_path, section, text):
    import re
    import time

    config = DEFAULT_CONFIG.read_text()
    key = {"training": "training:", "models": "models:", "quick": "quick:"}[section]
    # replace the section's block (up to the next top-level key or comment) by the misspelt one
    config = re.sub(rf"^{key}.*?(?=^[a-z#]|\Z)", text + "\n", config, flags=re.S | re.M)
    path = tmp_path / "typo.yaml"
    path.write_text(config)
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["experiment", str(path), "-o", str(tmp_path / "runs")])
    assert time.perf_counter() - started < 10
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "typo.yaml" in lines[0], result.stderr
    assert re.search(r"learning_rat|hiden_dims|trainig", lines[0])
    assert not (tmp_path / "runs").exists()


def test_a_study_name_with_a_path_is_refused(tmp_path):
    config = load_config(DEFAULT_CONFIG, quick=True)
    config.name = "../escape"
    with pytest.raises(InvalidInputError, match="plain directory name"):
        PaperStudy(config, tmp_path / "root", progress=False, log=lambda _: None)
    assert not (tmp_path / "escape").exists()


def test_tokenizer_entry_builds_with_its_params_above_the_extras():
    entry = TokenizerEntry("rq-gmm", 2, 8, {"max_iter": 7, "seed": 5})
    tokenizer = entry.build(random_state=1, progress=False)
    assert (tokenizer.n_levels, tokenizer.codebook_size, tokenizer.max_iter, tokenizer.seed) == (2, 8, 7, 5)
    assert entry.name == "rq-gmm-2x8"


def _run(split, model, features, seed, auc):
    return {"split": split, "model": model, "features": features, "seed": seed, "samples_per_second": 1.0,
            "test": {"auc": auc, "logloss": 0.6, "gauc": auc, "cold_auc": None, "cold_rows": 0}}


def test_paired_differences_flag_only_what_the_corrected_test_finds():
    runs = []
    for seed, base in enumerate([0.70, 0.71, 0.72, 0.69, 0.705]):
        runs += [_run("time", "fnn", "id", seed, base),
                 _run("time", "fnn", "sid:rq-kmeans-2x128", seed, base + 0.001 * (seed - 1)),   # noise
                 _run("time", "fnn", "sid:rq-gmm-2x128", seed, base + 0.010 + 0.0005 * seed)]    # clear gain
    rows = {r["features"]: r for r in aggregate_ctr(runs)}
    gmm = rows["sid:rq-gmm-2x128"]
    assert gmm["auc"][0] == pytest.approx(0.716)
    assert gmm["vs_id"]["auc"]["significant"] and gmm["vs_id"]["auc"]["mean"] == pytest.approx(0.011)
    assert not rows["sid:rq-kmeans-2x128"]["vs_id"]["auc"]["significant"]
    assert gmm["vs_rq_kmeans"]["auc"]["significant"]
    verdict = rq_gmm_verdict(list(rows.values()))
    assert len(verdict["wins"]) == 1 and not verdict["losses"]


def test_a_setting_added_later_with_a_default_does_not_block_resuming(tmp_path):
    from rqgmm.experiment.config import PaperStudyConfig
    from rqgmm.experiment.engine import RunDirectory

    config = load_config(DEFAULT_CONFIG, quick=True)
    directory = RunDirectory(tmp_path, config.name)
    stored = config.to_json()
    del stored["training"]["device"]  # as written before that setting existed
    del stored["tail_threshold"]
    (tmp_path / config.name).mkdir()
    (tmp_path / config.name / "config.json").write_text(json.dumps(stored))
    directory.claim(config.to_json(), PaperStudyConfig)  # the same study: accepted
    stored["seeds"] = [7]
    (tmp_path / config.name / "config.json").write_text(json.dumps(stored))
    with pytest.raises(InvalidInputError, match="different config"):
        directory.claim(config.to_json(), PaperStudyConfig)


def test_the_headline_selects_settings_on_validation_not_on_test():
    from rqgmm.experiment.paper_report import headline

    runs = []
    for seed in range(5):
        for features, validation, test in (("id", 0.60, 0.70), ("sid:a level", 0.65, 0.70 + 0.001 * seed),
                                           ("sid:b level", 0.62, 0.80)):  # b: best on test, worse on validation
            runs.append({"split": "cold-item", "model": "fnn", "features": features, "seed": seed,
                         "validation": {"auc": validation, "cold_auc": validation + 0.01 * (seed % 2)},
                         "test": {"auc": test, "cold_auc": test, "tail_auc": test}})
    row = headline(runs, "cold-item")["rows"][0]
    assert row["chosen"]["sid"] == "sid:a level"
    assert row["sid_vs_id"]["cold_auc"]["mean"] == pytest.approx(0.002)


@pytest.mark.parametrize("name", ["ml-100k", "variants"])
def test_device_option_overrides_the_training_device_and_is_checked(name, tmp_path):
    from rqgmm.cli.study import with_training_device

    config = with_training_device(load_config(name), "auto")
    training = config.ctr.training if config.kind == "variants" else config.training
    assert training.device == "auto"
    result = CliRunner().invoke(main, ["experiment", name, "--check", "--device", "gpu", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--device" in result.output and "'gpu'" in result.output
    assert not any(tmp_path.iterdir())
