"""The stable-IDs study end to end (its quick form), resumption, and config errors."""

import json

import pytest
from click.testing import CliRunner

from rqgmm.cli import main
from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import load_config, parse_config


def test_quick_stable_ids_study_measures_every_strategy_and_resumes(tmp_path):
    args = ["experiment", "stable-ids", "--quick", "-o", str(tmp_path), "-q"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    results = json.loads((tmp_path / "stable-ids-quick" / "results.json").read_text())
    fits = results["fits"]
    assert {f["tokenizer"] for f in fits} == {"rq-kmeans-2x16", "rq-gmm-2x16"} and len(fits) == 4
    for record in fits:
        strategies = record["strategies"]
        assert strategies["frozen"]["full_id_churn"] == 0.0  # v1 encodes the old items as before
        assert strategies["naive"]["full_id_churn"] > 0.5  # a fresh fit renumbers nearly everything
        assert strategies["aligned"]["prefix_churn"][0] < strategies["naive"]["prefix_churn"][0]
        assert record["n_v1_items"] == round(0.8 * record["n_items"])
    for run in results["ctr_runs"]:
        assert run["served"]["frozen"] == run["served"]["v1"]  # the same IDs, the same scores
    report = (tmp_path / "stable-ids-quick" / "report.md").read_text()
    assert "## headline" in report and "co-assignment" in report
    second = CliRunner().invoke(main, args)  # every stage is reused
    assert second.exit_code == 0 and json.loads((tmp_path / "stable-ids-quick" / "results.json").read_text())[
        "fits"] == fits


@pytest.mark.parametrize("change, message", [
    ({"strategies": ["aligned"]}, "include 'naive'"),
    ({"strategies": ["naive", "aligned@0"]}, r"strategy 'aligned@0'"),
    ({"strategies": ["naive", "frozen@2"]}, r"strategy 'frozen@2'"),
    ({"catalogues": {"ml-100k": 1.0}}, r"must be in \(0, 1\)"),
    ({"tokenizers": [{"method": "rq-vae", "levels": 2, "codebook_size": 8}]}, "aligned refits are for"),
    ({"ctr": {"model": "fnn", "features": "id"}}, "ctr.features"),
])
def test_bad_stable_ids_configs_are_named(change, message):
    import yaml

    from rqgmm.experiment.config import resolve_config

    raw = yaml.safe_load(resolve_config("stable-ids").read_text())
    raw.update(change)
    raw.pop("quick")
    with pytest.raises(InvalidInputError, match=message):
        parse_config(raw, "stable.yaml")


def test_the_packaged_stable_ids_config_parses():
    config = load_config("stable-ids")
    assert config.kind == "stable-ids" and "ml-100k" in config.catalogues


def test_capped_refits_parse():
    from rqgmm.experiment.stable_ids import parse_strategy

    assert parse_strategy("aligned@3") == ("aligned", 3) and parse_strategy("naive") == ("naive", None)
