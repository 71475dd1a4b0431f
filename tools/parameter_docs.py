"""Write docs/parameters.md: every tokenizer's hyperparameters, from their declarations.

    python -m tools.parameter_docs [--check]

``--check`` exits 1 when the page differs from what the declarations give (the tests run it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"


def render() -> str:
    from rqgmm.quantize.declarations import METHOD_PARAMETERS
    from rqgmm.quantize.params import parameter_table

    parts = ["# Tokenizer hyperparameters", "",
             "Generated from the declarations in `src/rqgmm/quantize/declarations.py` by"
             " `python -m tools.parameter_docs`; the same declarations build each class's `__init__`, its"
             " validation and the options of `rqgmm fit` (`--max-iter` for `max_iter`). A deprecated spelling"
             " still works for one release and warns.", ""]
    for method, (class_name, parameters) in METHOD_PARAMETERS.items():
        parts += [f"## `{class_name}` (`--method {method}`)", "", parameter_table(parameters), ""]
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 when the page is stale.")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        return 0 if PAGE.is_file() and PAGE.read_text() == text else 1
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
