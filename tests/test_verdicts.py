"""The sentences that interpret a generated headline table come from the table and cannot
contradict it; README and docs hold exactly those sentences."""

from pathlib import Path

import pytest

from rqgmm.experiment.verdicts import check_document, fill_document, parse_difference, verdicts

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["model", "cold AUC: id", "emb", "sid", "sid+emb", "Δ sid vs id", "Δ sid+emb vs emb", "recommended (validation)"]
ROWS = [["fnn", "", "", "", "", "+0.0137 *", "-0.0218 *", "emb"],
        ["ipnn", "", "", "", "", "+0.0021", "+0.0040 *", "sid+emb"]]


def test_a_difference_is_above_or_below_only_when_significant():
    assert parse_difference("+0.0137 *") == (0.0137, True)
    assert parse_difference("-0.0021") == (-0.0021, False)
    assert parse_difference("") is None and parse_difference("-") is None
    sid, sid_emb, recommended = verdicts(HEADER, ROWS)
    assert "above for fnn (+0.0137) (significant); within noise for ipnn (+0.0021)" in sid
    assert "below for fnn (-0.0218) (significant)" in sid_emb and "above for ipnn (+0.0040)" in sid_emb
    assert recommended == "Feature set best on validation (the recommendation): fnn: emb; ipnn: sid+emb."


def _document(rows, sentences=""):
    table = "\n".join(["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
                       *("| " + " | ".join(row) + " |" for row in rows)])
    return f"intro\n\n<!-- generated: study -->\n{table}\n\n*stamp*\n{sentences}<!-- end generated: study -->\n"


def test_a_hand_edited_verdict_is_caught(tmp_path):
    filled = fill_document(_document(ROWS))
    assert "<!-- verdicts -->" in filled and fill_document(filled) == filled  # idempotent
    path = tmp_path / "doc.md"
    path.write_text(filled)
    assert check_document(path) == []
    path.write_text(filled.replace("below for fnn (-0.0218) (significant)", "above for fnn (-0.0218) (significant)"))
    assert check_document(path) and "block 'study'" in check_document(path)[0]
    # a table edited without its sentences is caught too
    path.write_text(filled.replace("-0.0218 *", "-0.0218"))
    assert check_document(path)


@pytest.mark.parametrize("document", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_published_documents_state_what_their_tables_say(document):
    path = ROOT / document if document == "README.md" else ROOT / "docs" / document
    assert check_document(path) == []


def test_family_rows_of_one_neural_fit_are_left_out_of_the_sentences():
    header = ["model", "tokenizer family", "cold AUC: sid", "Δ sid vs id", "setting chosen on validation", "note"]
    rows = [["fnn", "rq-kmeans", "", "+0.0100 *", "", ""], ["fnn", "vq-vae", "", "+0.0073 *", "",
                                                              "one neural fit: differs across machines"]]
    first, last = verdicts(header, rows)
    assert "above for fnn rq-kmeans (+0.0100) (significant)" in first and "vq-vae" not in first
    assert last.startswith("Not stated for vq-vae")
    # the sentences stay the same whatever the neural row says on another machine
    rows[1][3] = "-0.0077 *"
    assert verdicts(header, rows) == [first, last]
