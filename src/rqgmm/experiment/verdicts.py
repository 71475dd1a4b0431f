"""Sentences that interpret a generated CTR headline table, derived from the table alone.

A headline table (``rqgmm publish`` puts one in README / docs blocks) holds paired differences
such as ``+0.0137 *`` (``*``: significant after Holm's correction). The verdict of a column is
read from those cells only, so a sentence can never say more than its table: "above" or "below"
only where the difference is significant, "within noise" otherwise. ``rqgmm publish`` writes the
sentences into the block with the table; :func:`check_document` re-derives them from every
block's table and reports a block whose sentences differ (a test runs it on README and docs).
"""

from __future__ import annotations

import re
from pathlib import Path

# the headline columns a verdict is stated for: column -> (what, against what)
COMPARISONS = {
    "Δ sid vs id": ("semantic IDs (sid)", "plain item IDs (id)"),
    "Δ sid+emb vs emb": ("semantic IDs beside the raw embedding (sid+emb)", "the embedding alone (emb)"),
}
BEGIN, END = "<!-- verdicts -->", "<!-- end verdicts -->"
_CELL = re.compile(r"^\s*([+-]\d+\.\d+)\s*(\*)?\s*$")


def parse_difference(cell: str) -> tuple[float, bool] | None:
    """``"+0.0137 *"`` -> (0.0137, True); an empty or other cell -> None."""
    match = _CELL.match(cell or "")
    return None if match is None else (float(match.group(1)), match.group(2) is not None)


def verdicts(header: list[str], rows: list[list[str]], metric: str = "cold AUC") -> list[str]:
    """One sentence per comparison column of a headline table (rows start with the model name,
    then the tokenizer family where the table has one), plus the validation recommendation when
    the table has that column. Rows noted "one neural fit" are left out of the sentences (their
    figures change from machine to machine), and a last sentence says so."""
    sentences = []
    family = header.index("tokenizer family") if "tokenizer family" in header else None
    note = header.index("note") if "note" in header else None
    unstable = [row for row in rows if note is not None and "one neural fit" in row[note]]
    rows = [row for row in rows if not any(row is other for other in unstable)]
    for column, (what, against) in COMPARISONS.items():
        if column not in header:
            continue
        j = header.index(column)
        groups: dict[str, list[str]] = {"above": [], "below": [], "within noise of": []}
        for row in rows:
            parsed = parse_difference(row[j]) if j < len(row) else None
            if parsed is None:
                continue
            value, significant = parsed
            side = "within noise of" if not significant else "above" if value > 0 else "below"
            label = row[0] if family is None else f"{row[0]} {row[family]}"
            groups[side].append(f"{label} ({value:+.4f})")
        parts = [f"{side.replace(' of', '')} for {', '.join(models)}" + (" (significant)" if side != "within noise of" else "")
                 for side, models in groups.items() if models]
        if parts:
            sentences.append(f"{metric}, {what} against {against}: {'; '.join(parts)}.")
    if unstable:
        names = sorted({row[family] if family is not None else row[0] for row in unstable})
        sentences.append(f"Not stated for {', '.join(names)}: fitted once, a neural tokenizer's IDs (and so these"
                         " rows) differ across processors and thread counts.")
    if "recommended (validation)" in header:
        j = header.index("recommended (validation)")
        picks = [f"{row[0]}: {row[j]}" for row in rows if j < len(row) and row[j] not in ("", "-")]
        if picks:
            sentences.append("Feature set best on validation (the recommendation): " + "; ".join(picks) + ".")
    return sentences


def verdict_block(header: list[str], rows: list[list[str]]) -> str:
    """The markdown of the sentences, between their markers ("" when the table has none)."""
    sentences = verdicts(header, rows)
    if not sentences:
        return ""
    return "\n".join([BEGIN, *(f"- {sentence}" for sentence in sentences), END])


def _table(block: str) -> tuple[list[str], list[list[str]]] | None:
    lines = [line for line in block.splitlines() if line.startswith("|")]
    if len(lines) < 3:
        return None
    split = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return split[0], split[2:]


def fill_document(text: str) -> str:
    """``text`` with each generated block's verdict sentences (re)derived from its table."""
    def fill(match: re.Match) -> str:
        block = match.group(0)
        table = _table(block)
        if table is None:
            return block
        stripped = re.sub(rf"\n?{re.escape(BEGIN)}.*?{re.escape(END)}", "", block, flags=re.S)
        sentences = verdict_block(*table)
        if not sentences:
            return stripped
        end = stripped.rindex("<!-- end generated:")
        return stripped[:end] + sentences + "\n" + stripped[end:]

    return re.sub(r"<!-- generated: [^>]*? -->.*?<!-- end generated: [^>]*? -->", fill, text, flags=re.S)


def check_document(path: str | Path) -> list[str]:
    """Blocks of ``path`` whose verdict sentences are not the ones their table gives."""
    text = Path(path).read_text()
    problems = []
    expected = fill_document(text)
    if expected != text:
        for name in re.findall(r"<!-- generated: ([^>]*?) -->", text):
            pattern = re.compile(rf"<!-- generated: {re.escape(name)} -->.*?<!-- end generated: {re.escape(name)} -->",
                                 re.S)
            if pattern.search(text).group(0) != pattern.search(expected).group(0):
                problems.append(f"{path}: block {name!r}: its verdict sentences are not what its table says"
                                " (run `python -m tools.verdicts` to regenerate them)")
    return problems
