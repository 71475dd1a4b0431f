"""The HTML reports in a real headless browser (skipped where no Chromium is installed)."""

import pytest

from rqgmm.experiment.pages import write_pages
from tools.browser_check import check_report, find_browser

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no Chromium on this machine (apt install chromium)")


def wide_table():
    header = [f"column {i} with a long name" for i in range(14)]
    return header, [[f"{row * col:.6f}" for col in range(14)] for row in range(5)]


def test_a_generated_report_renders_offline_and_reads_at_420_px(tmp_path):
    import matplotlib.figure

    from rqgmm.experiment.pages import save_figure

    figure = matplotlib.figure.Figure(figsize=(8, 3))
    figure.subplots().plot([0, 1, 2], [1, 0, 2])
    save_figure(figure, tmp_path / "plot.png")
    write_pages(tmp_path, [("h", 1, "report"), ("table", *wide_table()), ("img", "plot.png", "a plot")], "t")
    assert check_report(tmp_path / "report.html") == []


def test_the_check_catches_overflow_external_urls_and_broken_images(tmp_path):
    header, rows = wide_table()
    cells = "".join(f"<tr>{''.join(f'<td>{c}</td>' for c in row)}</tr>" for row in rows)
    (tmp_path / "bad.html").write_text(
        "<!doctype html><html><head><script src='https://cdn.example.com/x.js'></script></head><body>"
        f"<table><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>{cells}</table>"
        "<img src='data:image/png;base64,AAAA'></body></html>")
    problems = check_report(tmp_path / "bad.html")
    assert any("external reference" in p for p in problems)
    assert any("scrolls sideways" in p for p in problems)
    assert any("did not render" in p for p in problems)
