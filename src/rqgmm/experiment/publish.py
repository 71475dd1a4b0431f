"""Results documents generated from run outputs: ``rqgmm publish RUN_DIR``.

Each finished study's ``results.json`` becomes ``docs/results/<name>.md``: its tables, the
definitions of their columns, and a stamp (the command that produced the run, its date, commit
and machine, and the command that wrote the document). A README block between the markers
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` is replaced by the
document's headline table, so the README never holds a hand-copied figure; the sentences that
interpret a headline table are generated into the block with it (:mod:`rqgmm.experiment.verdicts`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rqgmm.errors import InvalidInputError
from rqgmm.experiment.engine import compute_minutes, produced_by, read_json
from rqgmm.experiment.pages import markdown


def results_blocks(results: dict, run_dir: Path) -> list[tuple]:
    from rqgmm.experiment.paper_report import TOKENIZER_DEFINITIONS, ctr_definitions

    config, stamp = results["config"], results.get("provenance") or {}
    blocks: list[tuple] = [
        ("h", 1, f"Results: {config['name']}"),
        ("p", f"{produced_by(stamp)};"
              f" {compute_minutes(results):.1f} min of fitting and training, summed over jobs (wall time depends"
              f" on the workers and on what else runs). Document written by `rqgmm publish {run_dir}`."),
    ]
    kind = config.get("kind", "paper")
    if kind == "stable-ids":
        from rqgmm.experiment.stable_ids_report import DEFINITIONS

        blocks.append(("p", DEFINITIONS))
    else:
        blocks.append(("p", TOKENIZER_DEFINITIONS))
    if kind == "paper":
        blocks.append(("p", ctr_definitions(len(config.get("seeds", [0, 1])))))
    from rqgmm.experiment.verdicts import verdicts

    for name, (header, rows) in results["summary"]["tables"].items():
        if rows:
            blocks += [("h", 2, name.replace("_", " ")), ("table", header, rows)]
            blocks += [("p", f"- {sentence}") for sentence in verdicts(header, rows)]
    return blocks


def publish(run_dir: str | Path, docs_dir: str | Path = "docs/results", readme: str | Path | None = None,
            headline: str | None = None, block_name: str | None = None) -> Path:
    """Write ``docs_dir/<name>.md`` from ``run_dir/results.json``; with ``readme``, replace the
    block ``block_name`` (default: the run's name) in it by the ``headline`` table (default: the
    first non-empty headline table, else the first non-empty table)."""
    from rqgmm.io.atomic import atomic_path

    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise InvalidInputError(f"{run_dir}: no results.json (run `rqgmm experiment` to the end first)")
    results = read_json(path)
    name = results["config"]["name"]
    target = Path(docs_dir) / f"{name}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text(markdown(results_blocks(results, run_dir)))
    if readme is not None:
        tables = results["summary"]["tables"]
        filled = [k for k, (_, rows) in tables.items() if rows]
        key = headline or next((k for k in filled if k.startswith("headline")), filled[0] if filled else None)
        if key not in tables:
            raise InvalidInputError(f"{run_dir}: no table {key!r}; tables are {sorted(tables)}")
        stamp = results.get("provenance") or {}
        link = Path(os.path.relpath(target, Path(readme).parent)).as_posix()  # from the page that links
        name = block_name or name
        block = (f"<!-- generated: {name} -->\n"
                 + markdown([("table", *tables[key])]).rstrip()
                 + f"\n\n*{key.replace('_', ' ')} of `{stamp.get('command', 'rqgmm experiment')}`,"
                   f" {stamp.get('date', '?')}; every table of the run: [{link}]({link}).*\n"
                 + f"<!-- end generated: {name} -->")
        text = Path(readme).read_text()
        pattern = re.compile(rf"<!-- generated: {re.escape(name)} -->.*?<!-- end generated: {re.escape(name)} -->",
                             re.S)
        if not pattern.search(text):
            raise InvalidInputError(f"{readme}: no block '<!-- generated: {name} -->' ... '<!-- end generated:"
                                    f" {name} -->' to fill")
        from rqgmm.experiment.verdicts import fill_document

        with atomic_path(Path(readme), overwrite=True) as tmp:
            tmp.write_text(fill_document(pattern.sub(lambda _: block, text)))
    return target
