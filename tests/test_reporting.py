"""`keras_vid.reporting`: the grid runner's resume and the accuracy plot."""

import json

import matplotlib
import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from keras_vid import reporting

matplotlib.use("Agg")


def test_run_grid_keeps_finished_cells_and_reruns_only_the_rest(tmp_path):
    cells = reporting.grid_cells(
        samples_per_class=[5], seed=[0, 1], method=["student", "kd"]
    )
    calls = []

    def killed_at_the_third(cell):
        calls.append(cell)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return {"test_accuracy": 0.5}

    with pytest.raises(RuntimeError, match="killed"):
        reporting.run_grid(cells, killed_at_the_third, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    # The cell's fields are recorded with its result.
    assert saved == [
        {"test_accuracy": 0.5, "method": "student", "samples_per_class": 5, "seed": 0},
        {"test_accuracy": 0.5, "method": "kd", "samples_per_class": 5, "seed": 0},
    ]
    assert "| kd | 50.00 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 0

    calls.clear()

    def steady(cell):
        calls.append(cell)
        return {"test_accuracy": 0.6}

    results = reporting.run_grid(cells, steady, str(tmp_path))
    assert calls == cells[2:]
    assert results[:2] == saved and len(results) == 4
    assert json.loads((tmp_path / "results.json").read_text()) == results
    # No temporary file is left beside the reports.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accuracy.png",
        "results.csv",
        "results.json",
        "results.md",
    ]


def _plotted_axes(monkeypatch, results, path):
    figures = []
    savefig = Figure.savefig

    def spy(self, *args, **kwargs):
        figures.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    reporting.plot_accuracy(results, str(path))
    (figure,) = figures
    assert path.stat().st_size > 0
    return figure.axes[0]


def _runs(sizes):
    # Two seeds per cell: accuracy a and a + 1 point.
    return [
        {"method": m, "samples_per_class": n, "seed": s, "test_accuracy": a + s / 100}
        for m, a in (("student", 0.80), ("vid_i", 0.85))
        for n in sizes
        for s in (0, 1)
    ]


def test_plot_with_one_n_is_a_bar_per_method(monkeypatch, tmp_path):
    ax = _plotted_axes(monkeypatch, _runs([100]), tmp_path / "one.png")
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    std = np.std([80.0, 81.0], ddof=1)
    np.testing.assert_allclose([b.get_height() for b in bars], [80.5, 85.5])
    (error_lines,) = bars.errorbar.lines[2]
    np.testing.assert_allclose(
        [seg[:, 1] for seg in error_lines.get_segments()],
        [[80.5 - std, 80.5 + std], [85.5 - std, 85.5 + std]],
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["student", "vid_i"]
    # No line joins the points: the bars' error bars draw none.
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert all(c.lines[0] is None for c in errorbars)


def test_plot_with_several_n_is_a_line_per_method(monkeypatch, tmp_path):
    ax = _plotted_axes(monkeypatch, _runs([100, 500]), tmp_path / "two.png")
    assert len(ax.patches) == 0
    lines = {
        c.get_label(): c.lines[0]
        for c in ax.containers
        if isinstance(c, ErrorbarContainer)
    }
    assert list(lines) == ["student", "vid_i"]
    xs, ys = lines["vid_i"].get_data()
    assert [float(x) for x in xs] == [100.0, 500.0]
    assert [float(y) for y in ys] == pytest.approx([85.5, 85.5])
