"""Quality plots that cannot mislead (read back from the figures), the table as text beside the
JSON, and a warning when a level collapses."""

import numpy as np

from rqgmm import RQKMeans
from rqgmm.metrics import quality_report
from rqgmm.metrics.report import collapse_warnings, collisions_figure, format_table, reconstruction_figure, write_report
from tests.conftest import mixture_sample


def _reports():
    X, _ = mixture_sample(n=1500, dim=6, n_components=8, seed=2)
    fine = RQKMeans(n_levels=2, codebook_size=[8, 8], random_state=0, progress=False).fit(X)
    coarse = RQKMeans(n_levels=2, codebook_size=[4, 2], random_state=0, progress=False).fit(X)
    # a level where nearly every item sits in one code: the residuals of duplicated rows are 0
    collapsed_X = np.repeat(X[:30], 50, axis=0)
    collapsed = RQKMeans(n_levels=2, codebook_size=[30, 4], random_state=0, progress=False).fit(collapsed_X)
    return ([quality_report(fine, X, method="fine"), quality_report(coarse, X, method="coarse")],
            quality_report(collapsed, collapsed_X, method="collapsed"))


def test_collision_bars_share_an_x_per_bucket_size_and_label_it():
    reports, _ = _reports()
    figure = collisions_figure(reports, {"fine": "C0", "coarse": "C1"})
    axis = figure.axes[0]
    sizes = sorted({int(s) for r in reports for s in np.flatnonzero(np.asarray(r.collisions.bucket_sizes))})
    assert [label.get_text() for label in axis.get_xticklabels()] == [str(s) for s in sizes]
    for container, report in zip(axis.containers, reports):
        counts = np.asarray(report.collisions.bucket_sizes)
        present = np.flatnonzero(counts)
        centres = [bar.get_x() + bar.get_width() / 2 for bar in container]
        # each bar sits at its own bucket size's tick (an offset within the group, never another size)
        assert [round(c) for c in centres] == [sizes.index(int(s)) for s in present]
        assert [bar.get_height() for bar in container] == list(counts[present] * present)


def test_reconstruction_axis_starts_at_zero_and_equal_points_stay_visible():
    reports, _ = _reports()
    twins = [reports[0], reports[0].__class__(**{**reports[0].__dict__, "method": "twin"})]
    axis = reconstruction_figure(twins, {"fine": "C0", "twin": "C1"}).axes[0]
    assert axis.get_ylim()[0] == 0
    first, second = axis.get_lines()
    assert first.get_marker() != second.get_marker()
    assert not np.allclose(first.get_xdata(), second.get_xdata())  # offset: one never hides the other


def test_a_collapsed_level_is_warned_about_in_the_table_the_text_file_and_the_plot(tmp_path):
    reports, collapsed = _reports()
    assert collapse_warnings(reports[:1]) == []  # 8 x 8 on 8 components: every level well used
    warnings = collapse_warnings([collapsed])
    assert len(warnings) == 1 and "collapsed: level 2 collapsed: one code holds" in warnings[0]
    assert "WARNING: collapsed: level 2 collapsed" in format_table([collapsed])
    write_report([collapsed], tmp_path)
    assert (tmp_path / "report.txt").read_text().strip() == format_table([collapsed]).strip()
