"""The RQ-GMM variants study: its config checks, the selection rule, and the --quick run end to end."""

import json
import time

import pytest
import yaml
from click.testing import CliRunner

from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import load_config, parse_config
from rqgmm.experiment.variants_report import aggregate_fits, select_default

CONFIG = "experiments/variants.yaml"


def _config(**changes):
    raw = yaml.safe_load(open(CONFIG))
    raw.update(changes)
    return raw


@pytest.mark.parametrize("changes, message", [
    (dict(variants={"bad": {"balance": 2.0}}), "variants.bad: .*balance must be a number in"),
    (dict(variants={"bad": {"no_such": 1}}), r"variants.bad: rq-gmm has no parameter\(s\) \['no_such'\]"),
    (dict(variants={}), "variants is empty"),
    (dict(shapes=[[2]]), r"shapes\[0\]: expected \[levels, codebook_size\]"),
    (dict(datasets=["imagenet"]), "datasets: must be among"),
    (dict(baseline={"reg_covar": 1.0}), r"baseline: rq-kmeans has no parameter\(s\) \['reg_covar'\]"),
    (dict(ctr={"shape": [9, 9]}), r"ctr.shape: \[9, 9\] is not among the shapes"),
    (dict(ctr={"shape": [2, 128], "training": {"patience": "x"}}), r"ctr.training.patience: expected an integer"),
    (dict(ctr={"modles": ["fnn"]}), r"ctr: unknown setting 'modles'"),
    (dict(kmeans_variants={"paper": {"balance": "hard"}}), "kmeans_variants.paper: the name is also an RQ-GMM"),
    (dict(kmeans_variants={"even": {"balance": "medium"}}), "kmeans_variants.even: .*balance must be None or one of"),
    (dict(embedding="raw"), "ctr: the CTR stage reads MovieLens' normalized item embeddings"),
    (dict(embedding="whitened", ctr=None), "embedding: must be one of"),
])
def test_config_errors_name_the_problem(changes, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_config(_config(**changes), "variants.yaml")


def _fit(dataset, method, seed, rmse, unique, lift):
    return {"dataset": dataset, "shape": [2, 8], "method": method, "seed": seed, "rmse": rmse,
            "perplexity": [7.0], "gini": [0.1], "unique_id_rate": unique, "effective_capacity": [5.0],
            "overlap": [0.2], "level1_lift": lift, "full_id_lift": 2.0, "fit_seconds": 1.0}


def test_selection_rule_skips_variants_worse_on_uniqueness_and_keeps_the_paper_when_none_is_better():
    fits = []
    for seed, noise in enumerate((0.0, 0.001, -0.001)):
        fits += [_fit("a", "rq-kmeans", seed, 1.0 + noise, 0.90 + noise, 2.0),
                 _fit("a", "paper", seed, 0.99 + noise, 0.90 + noise, 2.0),
                 # lowest RMSE, but clearly fewer unique IDs: disqualified
                 _fit("a", "greedy", seed, 0.90 + noise, 0.80 + noise, 2.0),
                 # better than the paper and not worse on uniqueness or lift: chosen
                 _fit("a", "good", seed, 0.95 + noise, 0.91 + noise, 2.1)]
    selection = select_default(aggregate_fits(fits))
    assert not selection["verdicts"]["greedy"]["qualifies"]
    assert "unique_id_rate" in selection["verdicts"]["greedy"]["worse"][0]
    assert selection["chosen"] == "good"
    # without "good", nothing qualifying beats the paper variant: defaults stay the paper's
    selection = select_default(aggregate_fits([f for f in fits if f["method"] != "good"]))
    assert selection["chosen"] is None


def test_quick_study_runs_end_to_end_and_resumes(tmp_path):
    runner = CliRunner()
    started = time.perf_counter()
    result = runner.invoke(main, ["experiment", CONFIG, "--quick", "-o", str(tmp_path), "--workers", "2", "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert time.perf_counter() - started < 600  # documented target: under 3 minutes on 2 cores
    directory = tmp_path / "variants-quick"
    results = json.loads((directory / "results.json").read_text())
    config = load_config(CONFIG, quick=True)
    assert len(results["fits"]) == len(config.methods()) * len(config.seeds) * len(config.shapes)
    assert {f["method"] for f in results["fits"]} == set(config.methods())
    assert all(0 < f["unique_id_rate"] <= 1 and f["rmse"] > 0 for f in results["fits"])
    # shapes of one codebook size share a fit: the 2 x 32 record, measured on the 3 x 32 fit's prefix,
    # must be what a fresh 2 x 32 fit of the same method and seed gives
    from rqgmm.data.catalogue import load_catalogue
    from rqgmm.metrics import quality_report

    catalogue = load_catalogue("ml-100k", progress=False)
    by_key = {(f["method"], tuple(f["shape"])): f for f in results["fits"]}
    for method in ("rq-kmeans", "paper"):
        fresh = config.tokenizer(method, [2, 32], config.seeds[0]).fit(catalogue.embeddings)
        report = quality_report(fresh, catalogue.embeddings, catalogue.labels, seed=config.seeds[0], method=method)
        assert by_key[method, (2, 32)]["rmse"] == pytest.approx(report.headline()["rmse"], rel=1e-6)
        assert by_key[method, (2, 32)]["unique_id_rate"] == report.headline()["unique_id_rate"]
        assert by_key[method, (2, 32)]["converged"] == list(fresh.converged_)
    assert len(results["ctr_runs"]) == len(config.methods()) * len(config.seeds) * len(config.ctr.models)
    assert all(0.5 < run["test"]["auc"] < 1 for run in results["ctr_runs"])
    assert set(results["summary"]["selection"]["verdicts"]) == set(config.variants)
    report = (directory / "report.md").read_text()
    assert "Selection rule" in report and "variants_ml-100k.png" in report
    assert (directory / "variants_ml-100k.png").stat().st_size > 0
    # a rerun loads every finished stage instead of fitting again
    again = runner.invoke(main, ["experiment", CONFIG, "--quick", "--root", str(tmp_path), "--workers", "1"])
    # (--root is kept as an alias of --output)
    assert again.exit_code == 0, again.output
    assert "seed 0: RMSE" not in again.output and "0 tokenizer(s) to train with" in again.output
