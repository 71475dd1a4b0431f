"""Generated results documents: they name a config that still parses, and publish fills README blocks."""

import json
import re
from pathlib import Path

import pytest

from rqgmm.errors import InvalidInputError
from rqgmm.experiment.config import load_config
from rqgmm.experiment.publish import publish

ROOT = Path(__file__).resolve().parents[1]


def test_every_results_document_names_a_config_that_still_parses():
    documents = sorted((ROOT / "docs" / "results").glob("*.md"))
    for document in documents:
        text = document.read_text()
        benchmark = re.search(r"Produced by `python -m (benchmarks|tools)\.(\w+)([^`]*)`", text)
        if benchmark:  # a script's document: the script and every option it was run with still exist
            folder, name, options = benchmark.groups()
            source = (ROOT / folder / f"{name}.py").read_text()
            if "add_markdown_option(parser)" in source:  # the option every benchmark shares
                source += (ROOT / "benchmarks" / "common.py").read_text()
            for option in re.findall(r"--[\w-]+", options):
                assert f'"{option}"' in source, f"{document.name}: {name} has no option {option}"
            continue
        command = re.search(r"Produced by `rqgmm (stream|serve|retrieval study)([^`]*)`", text)
        if command:  # a command's own document: every option it was run with still exists
            from click.testing import CliRunner

            from rqgmm.cli import main

            help_text = CliRunner().invoke(main, [*command.group(1).split(), "--help"]).output
            for option in re.findall(r"--[\w-]+", command.group(2)):
                assert option in help_text, f"{document.name}: rqgmm {command.group(1)} has no option {option}"
            continue
        match = re.search(r"Produced by `rqgmm experiment ([^`]*)`", text)
        assert match, f"{document.name}: no stamp naming the command that produced it"
        words = match.group(1).split()
        config = words[0]
        path = ROOT / config if (ROOT / config).exists() else config  # a file, or a packaged config's name
        load_config(path, quick="--quick" in words)


def _results(tmp_path):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    results = {"config": {"name": "demo", "kind": "paper"}, "seconds": 60.0,
               "provenance": {"command": "rqgmm experiment experiments/ml-100k.yaml", "date": "2026-12-02",
                              "commit": "abc1234", "machine": "x86_64, 2 CPU(s)"},
               "summary": {"tables": {"tokenizers": [["tokenizer", "RMSE"], [["rq-kmeans-2x8", "0.12345"]]],
                                      "empty": [["a"], []]}}}
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_publish_writes_the_document_and_fills_the_readme_block(tmp_path):
    run = _results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- generated: demo -->\nold\n<!-- end generated: demo -->\noutro\n")
    document = publish(run, tmp_path / "docs", readme)
    text = document.read_text()
    assert "Produced by `rqgmm experiment experiments/ml-100k.yaml` on 2026-12-02" in text
    assert "| rq-kmeans-2x8 | 0.12345 |" in text and "abc1234" in text
    filled = readme.read_text()
    assert "old" not in filled and "| rq-kmeans-2x8 | 0.12345 |" in filled
    assert filled.startswith("intro\n") and filled.endswith("outro\n")
    publish(run, tmp_path / "docs", readme)  # idempotent: the block is replaced, not repeated
    assert readme.read_text().count("| rq-kmeans-2x8 | 0.12345 |") == 1


def test_publish_needs_the_block_and_a_finished_run(tmp_path):
    run = _results(tmp_path)
    (tmp_path / "README.md").write_text("no block here\n")
    with pytest.raises(InvalidInputError, match="no block '<!-- generated: demo -->'"):
        publish(run, tmp_path / "docs", tmp_path / "README.md")
    with pytest.raises(InvalidInputError, match="no results.json"):
        publish(tmp_path, tmp_path / "docs")


def test_a_benchmark_records_what_it_prints_as_a_stamped_document(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "bench_fit.py"), "--k", "8"])
    from benchmarks.common import recorded_output

    target = tmp_path / "bench.md"
    with recorded_output(str(target), "A benchmark"):
        print("ratio 1.23x")
    assert "ratio 1.23x" in capsys.readouterr().out  # still printed
    text = target.read_text()
    assert text.startswith("# A benchmark\n") and "Produced by `python -m benchmarks.bench_fit --k 8` on " in text
    assert "```\nratio 1.23x\n```" in text
    failed = tmp_path / "failed.md"
    with pytest.raises(RuntimeError), recorded_output(str(failed), "A benchmark"):
        print("half a table")
        raise RuntimeError("interrupted")
    assert not failed.exists()  # a failed run writes no document
