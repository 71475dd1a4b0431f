import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import ExperimentConfig
from rqgmm.experiment.report import aggregate_ctr, rq_gmm_verdict

DEFAULT_CONFIG = Path(__file__).parents[1] / "experiments" / "ml-100k.yaml"


def test_quick_experiment_writes_the_report_and_resumes(tmp_path):
    args = ["experiment", str(DEFAULT_CONFIG), "--quick", "--root", str(tmp_path)]
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
    assert "CTR, cold-item split" in first.output and "report:" in first.output

    # a finished run resumes: nothing is refitted or retrained, the figures are identical
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert second.output.count("done before, loaded") == 5  # 4 tokenizers + quality
    again = json.loads((run / "results.json").read_text())
    assert again["ctr_runs"] == results["ctr_runs"]
    assert again["tokenizers"] == results["tokenizers"]


def test_an_interrupted_grid_redoes_only_missing_runs(tmp_path):
    config = ExperimentConfig.from_yaml(DEFAULT_CONFIG, quick=True)
    config.models = {"fnn": {"features": ["id"]}}
    config.tokenizers = [t for t in config.tokenizers if t["method"] in ("rq-kmeans", "rq-gmm")]
    from rqgmm.experiment.runner import Experiment

    lines = []
    Experiment(config, tmp_path, progress=False, log=lines.append).run()
    seed_file = tmp_path / "ml-100k-quick" / "ctr" / "cold-item" / "fnn" / "id" / "seed0.json"
    before = json.loads(seed_file.read_text())
    seed_file.unlink()  # as if the run had been killed before this job finished
    results = Experiment(config, tmp_path, progress=False, log=lines.append).run()
    after = json.loads(seed_file.read_text())
    assert (after["test"], after["validation"], after["epochs"]) == (before["test"], before["validation"],
                                                                     before["epochs"])
    assert results["ctr_runs"] == [after]
    assert any("1 runs, 0 done before; 1 to train" in line for line in lines)


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    from rqgmm.experiment.runner import Experiment

    config = ExperimentConfig.from_yaml(DEFAULT_CONFIG, quick=True)
    (tmp_path / config.name).mkdir()
    (tmp_path / config.name / "config.json").write_text(json.dumps({"name": "other"}))
    with pytest.raises(InvalidInputError, match="holds a run of a different config"):
        Experiment(config, tmp_path, progress=False, log=lambda _: None).run()


@pytest.mark.parametrize("change, message", [
    ({"colour": "blue"}, r"unknown setting\(s\) \['colour'\]"),
    ({"ctr_tokenizers": ["rq-gmm-9x9"]}, "ctr_tokenizers names 'rq-gmm-9x9', not among the tokenizers"),
    ({"models": {"fnn": {"features": ["sid:rq-gmm-3x256"]}}}, "feature 'sid:rq-gmm-3x256' must be id, emb"),
    ({"tokenizers": [{"method": "pq", "levels": 1, "codebook_size": 4}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: method must be one of"),
    ({"tokenizers": [{"method": "vq-vae", "levels": 2, "codebook_size": 8}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: vq-vae has one level; levels must be 1, got 2"),
    ({"tokenizers": [{"method": "rq-gmm", "levels": 2, "codebook_size": 8, "params": {"max_epochs": 3}}],
      "ctr_tokenizers": []}, r"tokenizers\[0\]: rq-gmm has no parameter\(s\) \['max_epochs'\]"),
    ({"tokenizers": [{"method": "rq-kmeans", "levels": 2, "codebook_size": 0}], "ctr_tokenizers": []},
     r"tokenizers\[0\]: RQKMeans: parameter codebook_size must be"),
])
def test_bad_configs_are_named(change, message):
    import yaml

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw.update(change)
    with pytest.raises(InvalidInputError, match=message):
        ExperimentConfig.from_dict(raw)


def _run(split, model, features, seed, auc):
    return {"split": split, "model": model, "features": features, "seed": seed, "samples_per_second": 1.0,
            "test": {"auc": auc, "logloss": 0.6, "gauc": auc, "cold_auc": None, "cold_rows": 0}}


def test_paired_differences_flag_only_what_exceeds_seed_noise():
    runs = []
    for seed, base in enumerate([0.70, 0.71, 0.72]):
        runs += [_run("time", "fnn", "id", seed, base),
                 _run("time", "fnn", "sid:rq-kmeans-2x128", seed, base + 0.001 * (seed - 1)),   # noise
                 _run("time", "fnn", "sid:rq-gmm-2x128", seed, base + 0.010 + 0.0005 * seed)]    # clear gain
    rows = {r["features"]: r for r in aggregate_ctr(runs)}
    gmm = rows["sid:rq-gmm-2x128"]
    assert gmm["auc"][0] == pytest.approx(0.7205)
    assert gmm["vs_id"]["auc"]["exceeds_noise"] and gmm["vs_id"]["auc"]["mean"] == pytest.approx(0.0105)
    assert not rows["sid:rq-kmeans-2x128"]["vs_id"]["auc"]["exceeds_noise"]
    assert gmm["vs_rq_kmeans"]["auc"]["exceeds_noise"]
    verdict = rq_gmm_verdict(list(rows.values()))
    assert len(verdict["wins"]) == 1 and not verdict["losses"]
