"""How corruption results are shown (`lit_vir/robustness/report.py`), against numbers written out by hand: the table
with intervals, the paired table and its CSV, the heat map's values and labels, and the perturbation figure's lines.
The figures are checked through their artists (what each one draws), not their pixels."""

from __future__ import annotations

import csv
import dataclasses

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from lit_vir.analysis.uncertainty import PairedDifference
from lit_vir.robustness.intervals import PairedCells
from lit_vir.robustness.metrics import summarize
from lit_vir.robustness.report import (
    corruption_heatmap,
    corruption_table,
    paired_table,
    perturbation_figure,
    write_corruption_files,
    write_paired_file,
)
from tests.test_robustness import table_cells


def paired(mean: bool = True) -> PairedCells:
    """Three cells of two corruptions, differences of +10, −5 and +2.5 points, and a mean (by hand)."""
    return PairedCells(
        cells=[("fog", 1), ("fog", 2), ("contrast", 1)],
        difference=np.array([0.10, -0.05, 0.025]),
        low=np.array([0.02, -0.12, -0.01]),
        high=np.array([0.18, 0.02, 0.06]),
        p=np.array([0.004, 0.25, 0.5]),
        test="McNemar's exact test",
        mean=PairedDifference(0.0123, 0.005, 0.02, 0.0123, "paired bootstrap", seeds=1) if mean else None,
    )


def test_the_paired_table_shows_each_corruptions_differences_and_the_mean():
    columns, rows, caption = table_cells(paired_table(paired(), "ViT-Small"))
    assert columns == ["corruption", "Δ per severity"]
    assert rows == [["fog", "+10.0 -5.0"], ["contrast", "+2.5"]]
    assert caption == (
        "mean over the benchmark cells: +1.23 [+0.50, +2.00], p = 0.0123 (paired bootstrap); "
        "per cell: McNemar's exact test, corruption_paired.csv"
    )
    assert paired_table(paired(), "ViT-Small").title == (
        "Paired with ViT-Small: difference in accuracy, points [95% interval]"
    )
    assert paired_table(paired(mean=False), "B").caption is None


def test_the_paired_file_holds_every_cell_then_the_mean(tmp_path):
    path = write_paired_file(paired(), "ViT-Small", tmp_path)
    assert path == tmp_path / "corruption_paired.csv"
    with path.open() as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["corruption", "severity", "difference", "difference_low", "difference_high", "p", "test", "vs"]
    test = "McNemar's exact test"
    assert rows[1:] == [
        ["fog", "1", "0.1", "0.02", "0.18", "0.004", test, "ViT-Small"],
        ["fog", "2", "-0.05", "-0.12", "0.02", "0.25", test, "ViT-Small"],
        ["contrast", "1", "0.025", "-0.01", "0.06", "0.5", test, "ViT-Small"],
        ["mean (benchmark cells)", "", "0.0123", "0.005", "0.02", "0.0123", "paired bootstrap", "ViT-Small"],
    ]
    write_paired_file(paired(mean=False), "B", tmp_path)
    with path.open() as stream:
        assert [row[0] for row in csv.reader(stream)] == ["corruption", "fog", "fog", "contrast"]


def test_the_corruption_table_with_intervals_shows_them_and_what_they_resample():
    summary = dataclasses.replace(
        summarize({("clean", 0): 0.9, ("fog", 1): 0.8, ("fog", 2): 0.6}),
        per_corruption_intervals={"fog": [0.65, 0.75]},
        clean_interval=[0.88, 0.92],
        mean_corruption_interval=[0.66, 0.74],
        interval_over="seeds × images",
        test_images=2000,
    )
    _, rows, caption = table_cells(corruption_table(summary))
    assert rows == [["fog", "80.00", "60.00", "70.00 [65.00, 75.00]"]]
    assert caption == (
        "clean 90.00% [88.00, 92.00]; mean corruption accuracy 70.00% [66.00, 74.00] over 1 benchmark corruptions "
        "(CIFAR mCE 30.00); [95% intervals, bootstrap over seeds × images: 2000 test images]"
    )
    assert corruption_table(summary).title == "Accuracy under corruption"


def test_the_corruption_table_leaves_out_what_is_unknown():
    """Only extra corruptions: no benchmark mean; no clean cell: no clean accuracy; CE only where the reference has
    the corruption (and rCE only with both clean accuracies)."""
    _, rows, caption = table_cells(corruption_table(summarize({("speckle_noise", 1): 0.4})))
    assert rows == [["speckle_noise (extra)", "40.00", "40.00"]] and caption == ""
    reference = summarize({("fog", 1): 0.5})
    ours = summarize({("fog", 1): 0.75, ("contrast", 1): 0.5}, reference, reference_name="r")
    columns, rows, caption = table_cells(corruption_table(ours))
    assert columns == ["corruption", "s1", "mean", "CE %"]
    assert rows == [["fog", "75.00", "75.00", "50.0"], ["contrast", "50.00", "50.00", ""]]
    assert caption.endswith("; mCE 50.0% vs r")


def test_the_heatmap_draws_every_cell_in_percent_with_its_label():
    summary = summarize({("fog", 1): 0.8, ("fog", 3): 0.55, ("contrast", 2): 0.3})
    figure = corruption_heatmap(summary, title="H")
    axes = figure.axes[0]
    image = axes.images[0]
    values = np.ma.filled(image.get_array(), np.nan)
    expected = np.array([[80.0, np.nan, 55.0], [np.nan, 30.0, np.nan]])  # rows fog, contrast; columns s1, s2, s3
    assert np.array_equal(np.isnan(values), np.isnan(expected))
    assert np.allclose(values[~np.isnan(values)], expected[~np.isnan(expected)])
    assert image.get_clim() == (0, 100) and image.get_cmap().name == "viridis"
    assert [label.get_text() for label in axes.get_xticklabels()] == ["s1", "s2", "s3"]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["fog", "contrast"]
    texts = {(text.get_position(), text.get_text()): to_rgba(text.get_color()) for text in axes.texts}
    white, black = to_rgba("white"), to_rgba("black")
    assert texts[(0, 0), "80"] == black and texts[(2, 0), "55"] == white and texts[(1, 1), "30"] == white
    assert len(texts) == 6 and texts[(1, 0), "nan"] == black  # a missing cell is labelled nan
    assert axes.get_title() == "H"
    assert figure.axes[1].get_ylabel() == "accuracy %"  # the colour bar
    width, height = figure.get_size_inches()
    assert (width, height) == pytest.approx((2.5 + 0.8 * 3, 1.2 + 0.35 * 2))  # grows with the grid


def test_the_perturbation_figure_has_a_panel_per_kind_and_a_line_per_model():
    rows = [
        {"kind": "noise", "model": "ViR-1", "level": 0.01, "accuracy": 0.7},
        {"kind": "noise", "model": "ViR-1", "level": 0.0, "accuracy": 0.9},
        {"kind": "noise", "model": "ViT", "level": 0.0, "accuracy": 0.8},
        {"kind": "noise", "model": "ViT", "level": 0.01, "accuracy": 0.6},
        {"kind": "spectral_radius", "model": "ViR-1", "level": 1.5, "accuracy": 0.5},
        {"kind": "spectral_radius", "model": "ViR-1", "level": 0.5, "accuracy": 0.85},
    ]
    figure = perturbation_figure(rows)
    noise, radius = figure.axes
    assert [line.get_label() for line in noise.lines] == ["ViR-1", "ViT"]
    assert [list(line.get_xydata().flatten()) for line in noise.lines] == [
        pytest.approx([0.0, 90.0, 0.01, 70.0]),  # sorted by level, in percent
        pytest.approx([0.0, 80.0, 0.01, 60.0]),
    ]
    assert list(radius.lines[0].get_xydata().flatten()) == pytest.approx([0.5, 85.0, 1.5, 50.0])
    assert (noise.get_xlabel(), radius.get_xlabel()) == ("relative noise ε", "α factor")
    assert noise.get_xscale() == "symlog" and radius.get_xscale() == "linear"
    assert noise.get_ylabel() == radius.get_ylabel() == "accuracy %"
    assert (noise.get_title(), radius.get_title()) == ("noise", "spectral radius")
    assert [text.get_text() for text in noise.get_legend().get_texts()] == ["ViR-1", "ViT"]
    assert radius.get_legend() is None  # one legend, on the first panel
    assert tuple(figure.get_size_inches()) == pytest.approx((8.0, 3.2))
    labels = perturbation_figure(
        [
            {"kind": "input_sparsity", "model": "m", "level": 0.2, "accuracy": 0.5},
            {"kind": "reservoir_seed", "model": "m", "level": 1, "accuracy": 0.5},
        ]
    ).axes
    assert [axes.get_xlabel() for axes in labels] == ["input sparsity SD", "seed of W"]
    assert list(labels[0].lines[0].get_xydata().flatten()) == pytest.approx([0.2, 50.0])


def test_the_tables_numbers_are_right_aligned_and_the_mean_bold():
    reference = summarize({("clean", 0): 0.8, ("fog", 1): 0.6})
    table = corruption_table(summarize({("clean", 0): 0.9, ("fog", 1): 0.8}, reference, reference_name="r"))
    assert [(str(column.header), column.justify) for column in table.columns] == [
        ("corruption", "left"),
        ("s1", "right"),
        ("mean", "right"),
        ("CE %", "right"),
        ("rCE %", "right"),
    ]
    assert table.columns[2].style == "bold"
    assert [column.justify for column in paired_table(paired(), "B").columns] == ["left", "right"]


def test_the_heatmap_keeps_its_look_whatever_the_users_matplotlib_defaults():
    """viridis, 0–100, cells that fill the figure, white labels below 60% and black from 60%, labels of size 7 centred
    in their cells, the default title — also under a matplotlibrc that sets another colour map and sizes."""
    summary = summarize({("fog", 1): 0.6, ("fog", 2): 0.605, ("fog", 3): 0.595})
    with matplotlib.rc_context({"image.cmap": "gray", "font.size": 13, "axes.titlesize": 15, "image.aspect": "equal"}):
        figure = corruption_heatmap(summary)
    axes = figure.axes[0]
    image = axes.images[0]
    assert image.get_cmap().name == "viridis" and axes.get_aspect() == "auto"
    assert image.colorbar is not None and image.colorbar.ax is figure.axes[1]
    by_column = sorted(axes.texts, key=lambda text: text.get_position())  # 60.0, 60.5, 59.5 (100 × a: exact)
    assert [to_rgba(text.get_color()) for text in by_column] == [to_rgba("black")] * 2 + [to_rgba("white")]
    assert all(
        (text.get_fontsize(), text.get_horizontalalignment(), text.get_verticalalignment()) == (7, "center", "center")
        for text in axes.texts
    )
    assert axes.get_title() == "Accuracy (%) per corruption and severity"
    assert axes.title.get_fontsize() == 9


def test_the_perturbation_figure_keeps_its_look():
    rows = [{"kind": "noise", "model": "ViR-1", "level": level, "accuracy": 0.5} for level in (0.0, 1e-4, 1e-2)]
    with matplotlib.rc_context({"lines.marker": "", "axes.titlesize": 15, "legend.fontsize": 13, "grid.alpha": 1}):
        figure = perturbation_figure(rows)
    (axes,) = figure.axes
    assert axes.lines[0].get_marker() == "o"
    assert axes.xaxis.get_transform().linthresh == 1e-3  # linear below 0.001, logarithmic above
    assert axes.title.get_fontsize() == 9
    assert [text.get_fontsize() for text in axes.get_legend().get_texts()] == [7]
    gridlines = axes.xaxis.get_gridlines()
    assert gridlines[0].get_visible() and gridlines[0].get_alpha() == 0.3


def test_the_corruption_files_go_into_a_new_nested_folder_at_120_dpi(tmp_path):
    summary = summarize({("fog", 1): 0.8, ("contrast", 1): 0.5})
    written = write_corruption_files(summary, tmp_path / "a" / "b")
    png = written[2].read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
    inches = corruption_heatmap(summary).get_size_inches()
    assert (width, height) == (round(120 * inches[0]), round(120 * inches[1]))
