"""Regenerate (or check) the verdict sentences of every generated headline block in README.md
and docs/*.md from the block's own table.

    python -m tools.verdicts            # rewrite the documents
    python -m tools.verdicts --check    # list the blocks whose sentences differ; exit 1 if any
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rqgmm.experiment.verdicts import check_document, fill_document

ROOT = Path(__file__).resolve().parent.parent


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report blocks whose sentences differ")
    args = parser.parse_args()
    if args.check:
        problems = [problem for path in documents() for problem in check_document(path)]
        print("\n".join(problems) or "every generated block's verdicts match its table")
        return 1 if problems else 0
    for path in documents():
        text = path.read_text()
        filled = fill_document(text)
        if filled != text:
            path.write_text(filled)
            print(f"rewrote the verdicts of {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
