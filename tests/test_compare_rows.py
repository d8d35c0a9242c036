"""`lit-vir compare`'s aggregation, in process on hand-made runs: which runs form a row, which row is the baseline,
which runs pair, and every number of the summary and per-run tables against a hand computation (numpy, scipy,
statistics). tests/test_compare.py runs the command on real runs."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from scipy import stats

from lit_vir.analysis.uncertainty import accuracy_interval, p_text, paired_difference, t_interval
from lit_vir.commands.compare import (
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    baseline_of,
    bounded,
    difference_text,
    figure,
    group_runs,
    markdown,
    mean_sd,
    paired_runs,
    run_rows,
    summary_rows,
    threads_text,
    with_interval,
)
from lit_vir.commands.runs import Run

LABELS = np.arange(400) % 10


def run(model: str, seed: int | None, right: int, **changes) -> Run:
    """A run whose first `right` of 400 test images are right (the others predicted one class off)."""
    predicted = np.where(np.arange(400) < right, LABELS, (LABELS + 1) % 10)
    fields = dict(
        path=f"runs/{model}/s{seed}",
        model=model,
        recipe="reference",
        dataset="FashionMNIST",
        seed=seed,
        epochs=3,
        budget="15m",
        precision="32-true",
        val_acc_final=0.5,
        val_acc_best=0.6 + 0.01 * (seed or 0),
        test_acc=right / 400,
        test_last_acc=(right - 4) / 400,
        test_images=400,
        trainable_params=1234567,
        fixed_params=0,
        peak_memory_mib=1000.0 + (seed or 0),
        epoch_time_s=10.0 * (seed or 1),
        fit_time_s=900.0,
        train_flops_per_image=1e6,
        train_flops=2.5e12 * (seed or 1),
        images_seen=1000 * (seed or 1),
        epochs_completed=0.5 * (seed or 1),
        optimizer_steps=10 * (seed or 1),
        threads=1,
        cpu_affinity="1",
        device="cpu",
        logger="tensorboard",
        predictions={"test/label": LABELS, "test/prediction": predicted},
    )
    return Run(**{**fields, **changes})


def column(row: list[str], name: str, columns=SUMMARY_COLUMNS) -> str:
    return row[columns.index(name)]


def test_rows_group_runs_that_differ_only_in_seed_sorted_by_seed():
    runs = [
        run("ViR-1", 3, 300),
        run("ViR-1", None, 300),
        run("ViR-1", 1, 300),
        run("ViR-1", 2, 300, recipe="x"),
        run("ViR-1", 2, 300, dataset="MNIST"),
        run("ViR-1", 2, 300, budget="4m"),
        run("ViR-1", 2, 300, precision="bf16-mixed"),
    ]
    groups = group_runs(runs)
    assert [len(group.runs) for group in groups] == [3, 1, 1, 1, 1]
    assert [member.seed for member in groups[0].runs] == [1, 3, None]
    assert groups[1].label == "ViR-1 (x)" and groups[0].label == "ViR-1"
    assert [group.length for group in groups] == ["15m", "15m", "15m", "4m", "15m"]


def test_the_baseline_is_named_on_the_same_dataset_and_prefers_the_same_length():
    groups = group_runs(
        [
            run("ViR-1", 1, 300),
            run("ViR-1", 1, 300, budget="4m"),
            run("ViT", 1, 300),
            run("ViT", 1, 300, budget="4m"),
            run("ViT", 1, 300, dataset="MNIST"),
            run("ViR-1", 1, 300, recipe="strong"),
        ]
    )
    vir, vir_short, vit, vit_short, vit_mnist, vir_strong = groups
    assert baseline_of(vit, groups, "ViR-1") is vir and baseline_of(vit_short, groups, "ViR-1") is vir_short
    assert baseline_of(vit_mnist, groups, "ViR-1") is None
    assert baseline_of(vit, groups, "ViR-1 (strong)") is vir_strong  # a label with its recipe names it too
    assert baseline_of(vir, groups, "ViR-1") is vir_strong  # never itself; of the others, the one of its length


def test_runs_pair_by_seed_or_as_two_single_runs_and_say_why_not():
    base = group_runs([run("B", 1, 300), run("B", 2, 300)])[0]
    ours = group_runs([run("A", 2, 310), run("A", 3, 310)])[0]
    a, b = paired_runs(ours, base)
    assert [r.seed for r in a] == [2] and [r.seed for r in b] == [2]
    single, lone = group_runs([run("A", 7, 310)])[0], group_runs([run("B", 8, 300)])[0]
    a, b = paired_runs(single, lone)
    assert a[0] is single.runs[0] and b[0] is lone.runs[0]
    assert paired_runs(single, base) == "no seed in common"
    bare = group_runs([run("A", 1, 310, predictions={})])[0]
    assert paired_runs(bare, base) == "no per-image predictions (test_predictions.npz)"
    other = run("A", 1, 310)
    other.predictions = {"test/label": LABELS[::-1], "test/prediction": LABELS[::-1]}
    assert paired_runs(group_runs([other])[0], base) == "not the same test images"


def test_the_summary_row_is_each_number_computed_by_hand():
    rights = {1: 300, 2: 320, 3: 340}
    runs = [run("ViR-1", seed, 280 + 4 * seed) for seed in (1, 2, 3)] + [run("A", s, r) for s, r in rights.items()]
    rows = {row[0]: row for row in summary_rows(group_runs(runs), baseline="ViR-1")}
    row = rows["A"]
    outcomes = [(np.arange(400) < r).astype(np.int8) for r in rights.values()]
    interval = accuracy_interval(outcomes)
    assert column(row, "runs") == "3" and column(row, "CI over") == "seeds × images"
    expected = f"{100 * interval.estimate:.2f} [{100 * interval.low:.2f}, {100 * interval.high:.2f}]"
    assert column(row, "test acc % (best val) [95% CI]") == expected
    accuracies = [r / 400 for r in rights.values()]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(accuracies) / np.sqrt(3)
    low, high = max(0, np.mean(accuracies) - half), min(1, np.mean(accuracies) + half)
    assert column(row, "t-interval over seeds") == f"[{100 * low:.2f}, {100 * high:.2f}]"
    assert column(row, "test acc % (final)") == (
        f"{100 * np.mean([(r - 4) / 400 for r in rights.values()]):.2f} ± "
        f"{100 * statistics.stdev([(r - 4) / 400 for r in rights.values()]):.2f}"
    )
    assert column(row, "epochs completed") == "1.00 ± 0.50"  # 0.5, 1.0, 1.5
    assert column(row, "images seen") == "2000 ± 1000" and column(row, "optimiser steps") == "20 ± 10"
    assert column(row, "trainable") == "1,234,567" and column(row, "fixed") == "0"
    assert column(row, "peak memory MiB") == "1002 ± 1" and column(row, "epoch s") == "20.0 ± 10.0"
    assert column(row, "train FLOPs") == "5.00 ± 2.50 T" and column(row, "threads") == "1 on 1"
    # A − ViR-1, paired seed by seed on the same images: A is right on 300..340 and ViR-1 on 284..292 first images
    per_seed = [(rights[s] - (280 + 4 * s)) / 400 for s in (1, 2, 3)]
    delta = column(row, "Δ vs baseline, points [95% CI]")
    assert delta.startswith(f"{100 * np.mean(per_seed):+.2f} [")
    assert column(row, "p").endswith("(sign-flip 0.25)")  # all three seeds the same sign: 2 of 8 assignments
    assert column(row, "test") == "paired bootstrap (seeds × images), 3 seeds"
    assert column(rows["ViR-1"], "Δ vs baseline, points [95% CI]") == "(baseline)"
    assert column(rows["ViR-1"], "p") == "" and column(rows["ViR-1"], "test") == ""


def test_a_row_without_a_baseline_or_predictions_says_so():
    runs = [run("A", 1, 300, dataset="MNIST"), run("ViR-1", 1, 300), run("C", 1, 300, predictions={})]
    rows = {row[0]: row for row in summary_rows(group_runs(runs), baseline="ViR-1")}
    assert column(rows["A"], "Δ vs baseline, points [95% CI]") == "no ViR-1 row on MNIST".join(("not paired: ", ""))
    assert column(rows["C"], "test acc % (best val) [95% CI]") == "75.00"  # the logged accuracy, no interval
    assert column(rows["C"], "CI over") == "–"
    assert column(rows["C"], "Δ vs baseline, points [95% CI]").startswith("not paired: no per-image predictions")
    assert all(column(row, "Δ vs baseline, points [95% CI]") == "" for row in summary_rows(group_runs(runs), None))


def test_the_per_run_rows_pair_each_seed_with_mcnemar():
    runs = [run("ViR-1", 1, 300), run("ViR-1", 2, 300), run("A", 1, 320), run("A", 3, 320)]
    rows, records = run_rows(group_runs(runs), baseline="ViR-1")
    by_seed = {(row[0], row[3]): row for row in rows}
    first = by_seed["A", "1"]
    # 20 images right only for A, none only for ViR-1: McNemar's exact p = 2 · 0.5^20
    assert column(first, "Δ vs baseline [95% CI]", RUN_COLUMNS).startswith("+5.00 [")
    assert float(column(first, "p", RUN_COLUMNS)) == pytest.approx(stats.binomtest(0, 20).pvalue, rel=1e-2)
    assert column(by_seed["A", "3"], "Δ vs baseline [95% CI]", RUN_COLUMNS) == "not paired: no run of that seed"
    assert column(by_seed["ViR-1", "1"], "Δ vs baseline [95% CI]", RUN_COLUMNS) == ""
    interval = accuracy_interval([(np.arange(400) < 320).astype(np.int8)])
    record = next(r for r in records if r["model"] == "A" and r["seed"] == 1)
    assert (record["test_acc_low"], record["test_acc_high"]) == (interval.low, interval.high)
    assert record["difference"] == pytest.approx(20 / 400) and record["vs_baseline"] == "ViR-1"
    assert record["p"] == pytest.approx(stats.binomtest(0, 20).pvalue) and record["test"].startswith("McNemar")
    assert "predictions" not in record
    assert column(first, "epochs completed", RUN_COLUMNS) == "0.50"
    assert column(first, "images seen", RUN_COLUMNS) == "1,000"


def test_the_small_formatters():
    assert with_interval(None, 0.8834) == "88.34" and with_interval(None) == "–"
    assert with_interval(t_interval([0.5, 0.7])) == "60.00 [-67.06, 187.06]"  # unbounded on its own …
    assert bounded(t_interval([0.5, 0.7])) == "[0.00, 100.00]"  # … cut to [0, 100]% in the table
    assert bounded(None) == "–"
    assert mean_sd([None, 2.0, 4.0]) == f"3.00 ± {statistics.stdev([2.0, 4.0]):.2f}" and mean_sd([None]) == "–"
    assert mean_sd([0.5], scale=100, digits=1) == "50.0"
    two = [run("A", 1, 1, threads=2, cpu_affinity="0-1"), run("A", 2, 1), run("A", 3, 1, threads=None)]
    assert threads_text(two) == "1 on 1/2 on 0-1" and threads_text([run("A", 1, 1, threads=None)]) == "–"
    assert threads_text([run("A", 1, 1, cpu_affinity="")]) == "1 on ?"


def test_the_markdown_table_has_a_header_a_rule_and_one_line_per_row():
    assert markdown(("a", "b"), [["1", "2"], ["3", "4"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"


def test_a_per_run_pair_without_predictions_or_on_other_images_says_why():
    other = run("A", 2, 310)
    other.predictions = {"test/label": LABELS[::-1], "test/prediction": LABELS[::-1]}
    runs = [run("ViR-1", 1, 300), run("ViR-1", 2, 300), run("A", 1, 310, predictions={}), other]
    rows, records = run_rows(group_runs(runs), baseline="ViR-1")
    delta = {row[3]: column(row, "Δ vs baseline [95% CI]", RUN_COLUMNS) for row in rows if row[0] == "A"}
    assert delta == {
        "1": "not paired: no per-image predictions (test_predictions.npz)",
        "2": "not paired: not the same test images",
    }
    bare = next(record for record in records if record["model"] == "A" and record["seed"] == 1)
    assert bare["test_acc_low"] is None and bare["difference"] is None and bare["vs_baseline"] is None


def points(axes) -> dict[str, tuple[float, float, float, float]]:
    """Each annotated point of a panel: label → (x, y, bar below, bar above), read back from the artists."""
    found = {}
    for container, note in zip(axes.containers, axes.texts, strict=True):
        data_line, _, (bars,) = container.lines
        ((x, y),) = data_line.get_xydata()
        ((_, bottom), (_, top)) = bars.get_segments()[0]
        found[note.get_text()] = (x, y, y - bottom, top - y)
        assert note.xy == (x, y)
    return found


def assert_points(axes, expected: dict[str, tuple[float, ...]]) -> None:
    found = points(axes)
    assert set(found) == set(expected)
    for label, values in expected.items():
        assert found[label] == pytest.approx(values), label


def test_the_figure_puts_each_row_at_its_mean_cost_and_accuracy_with_its_bar():
    no_predictions = {"predictions": {}}
    runs = [
        run("CNN", 1, 0, test_acc=None, val_acc_final=None, **no_predictions),  # no accuracy at all: no point
        run("ViR-1", 1, 320, trainable_params=1000, train_flops=1e9, fit_time_s=100.0, **no_predictions),
        run("ViR-1", 2, 336, trainable_params=1000, train_flops=1e9, fit_time_s=110.0, **no_predictions),
        run("ViR-1", 3, 368, trainable_params=1000, train_flops=1e9, fit_time_s=150.0, **no_predictions),
        run("ViT", 1, 300, recipe="strong", trainable_params=100_000, train_flops=1e10, fit_time_s=120.0),
        run("MLP", 1, 0, test_acc=None, val_acc_final=0.6, trainable_params=None, fit_time_s=130.0, **no_predictions),
    ]
    plot = figure(group_runs(runs), "tiny")
    parameters, flops, seconds = plot.axes
    spread = statistics.stdev([80.0, 84.0, 92.0])  # ViR-1's three seeds, no predictions: ±1 sd
    interval = accuracy_interval([(np.arange(400) < 300).astype(np.int8)])  # ViT's one run: its images' interval
    vit_bar = (100 * (0.75 - interval.low), 100 * (interval.high - 0.75))
    assert_points(parameters, {"ViR-1": (1000, 256 / 3, spread, spread), "ViT (strong)": (100_000, 75.0, *vit_bar)})
    assert_points(
        flops,
        {"ViR-1": (1e9, 256 / 3, spread, spread), "ViT (strong)": (1e10, 75.0, *vit_bar), "MLP": (2.5e12, 60.0, 0, 0)},
    )
    seconds_points = {"ViR-1": (120.0, 256 / 3, spread, spread), "ViT (strong)": (120.0, 75.0, *vit_bar)}
    assert_points(seconds, seconds_points | {"MLP": (130.0, 60.0, 0, 0)})  # MLP: no count, still on the other panels
    # a log axis only where the values span more than a decade: 1000–100,000 does, 1e9–2.5e12 does, 100–150 does not
    assert [axes.get_xscale() for axes in plot.axes] == ["log", "log", "linear"]
    assert tuple(plot.get_size_inches()) == (15, 4.6)  # three panels side by side, left to right:
    boxes = [axes.get_position() for axes in plot.axes]
    assert boxes[0].x1 < boxes[1].x0 and boxes[1].x1 < boxes[2].x0 and boxes[0].y0 == boxes[1].y0 == boxes[2].y0
    assert [axes.get_xlabel() for axes in plot.axes] == ["trainable parameters", "training FLOPs", "training time (s)"]
    assert {axes.get_ylabel() for axes in plot.axes} == {"test accuracy % (95% interval)"}
    assert plot.get_suptitle() == "tiny"


def test_the_figure_uses_a_log_axis_only_beyond_a_decade_and_names_the_dataset_when_there_are_several():
    runs = [
        run("ViR-1", 1, 300, trainable_params=1000, train_flops=1e9, fit_time_s=100.0),
        run("ViR-1", 1, 300, dataset="MNIST", trainable_params=10_000, train_flops=1e9 + 1, fit_time_s=1000.0001),
    ]
    parameters, flops, seconds = figure(group_runs(runs), "two datasets").axes
    assert set(points(parameters)) == {"ViR-1 FashionMNIST", "ViR-1 MNIST"}
    assert [axes.get_xscale() for axes in (parameters, flops, seconds)] == ["linear", "linear", "log"]


def test_every_cell_of_a_per_run_row_by_hand():
    ours = run("A", 1, 320, threads=2, cpu_affinity="0-1", peak_memory_mib=1001.4, fit_time_s=900.04, device="cuda:0")
    rows, records = run_rows(group_runs([run("ViR-1", 1, 300), ours]), baseline="ViR-1")
    outcomes = [(np.arange(400) < right).astype(np.int8) for right in (320, 300)]
    interval, difference = accuracy_interval(outcomes[:1]), paired_difference(outcomes[:1], outcomes[1:])
    assert rows[1] == [
        "A",
        "reference",
        "FashionMNIST",
        "1",
        f"80.00 [{100 * interval.low:.2f}, {100 * interval.high:.2f}]",
        f"+5.00 [{100 * difference.low:+.2f}, {100 * difference.high:+.2f}]",
        p_text(stats.binomtest(0, 20).pvalue),  # McNemar's exact test: 20 images right only for A, none for ViR-1
        "79.00",  # test (final): (320 − 4) / 400
        "61.00",  # best validation: 0.6 + 0.01 · seed
        "0.50",
        "1,000",
        "10",
        "2",
        "0-1",
        "1001",
        "900.0",
        "cuda:0",
        "runs/A/s1",
    ]
    record = records[1]
    assert (record["difference_low"], record["difference_high"]) == (difference.low, difference.high)
    assert record["difference"] == pytest.approx(0.05) and record["test"] == difference.test


def test_a_per_run_row_shows_a_dash_for_whatever_the_run_did_not_record():
    missing = dict.fromkeys(
        ("test_last_acc", "val_acc_best", "epochs_completed", "images_seen", "optimizer_steps", "threads"), None
    )
    bare = run("A", 1, 320, **missing, cpu_affinity="", peak_memory_mib=None, fit_time_s=None, predictions={})
    (row,), _ = run_rows(group_runs([bare]), baseline=None)
    assert row[4:] == ["80.00", "", "", "–", "–", "–", "–", "–", "–", "–", "–", "–", "cpu", "runs/A/s1"]


def test_two_single_runs_of_different_seeds_pair_in_the_per_run_table_too():
    rows, records = run_rows(group_runs([run("ViR-1", 8, 300), run("A", 7, 320)]), baseline="ViR-1")
    outcomes = [(np.arange(400) < right).astype(np.int8) for right in (320, 300)]
    difference = paired_difference(outcomes[:1], outcomes[1:])
    assert column(rows[1], "Δ vs baseline [95% CI]", RUN_COLUMNS).startswith("+5.00 [")
    assert records[1]["vs_baseline"] == "ViR-1" and records[1]["difference_low"] == difference.low
    two = group_runs([run("ViR-1", 8, 300), run("A", 7, 320), run("A", 9, 320)])
    assert {column(row, "Δ vs baseline [95% CI]", RUN_COLUMNS) for row in run_rows(two, "ViR-1")[0][1:]} == {
        "not paired: no run of that seed"
    }


def test_the_summary_names_the_baseline_by_its_label_and_lists_every_test_size():
    runs = [run("ViR-1", 1, 300, recipe="strong"), run("ViR-1", 1, 300), run("A", 1, 300), run("A", 2, 300)]
    runs[3].test_images = 500
    rows = summary_rows(group_runs(runs), baseline="ViR-1 (strong)")
    assert column(rows[0], "Δ vs baseline, points [95% CI]") == "(baseline)"
    assert column(rows[1], "Δ vs baseline, points [95% CI]").startswith("+0.00 [")  # ViR-1 against ViR-1 (strong)
    assert column(rows[2], "test images") == "400/500"
    untested = summary_rows(group_runs([run("A", 1, 300, test_acc=None, test_images=None), run("A", 2, 300)]), None)
    assert column(untested[0], "test images") == "400" and column(untested[0], "t-interval over seeds") == "–"
    assert column(summary_rows(group_runs([run("A", 1, 300, test_images=None)]), None)[0], "test images") == "–"


def test_the_difference_text_names_the_test_and_its_seeds():
    one = paired_difference([(np.arange(400) < 320).astype(np.int8)], [(np.arange(400) < 300).astype(np.int8)])
    outcomes = [(np.arange(400) < right).astype(np.int8) for right in (320, 330)]
    two = paired_difference(outcomes, [(np.arange(400) < 300).astype(np.int8)] * 2)
    assert difference_text(None) == ("", "", "")
    assert difference_text("no seed in common") == ("not paired: no seed in common", "", "")
    assert difference_text(one)[2] == one.test and "seeds" not in one.test  # McNemar's, one pair
    assert difference_text(two)[2] == f"{two.test}, 2 seeds"
    assert difference_text(two)[1] == f"{p_text(two.p)} (sign-flip {p_text(two.sign_flip_p)})"


def test_a_summary_row_shows_dashes_for_counts_it_does_not_have():
    (row,) = summary_rows(
        group_runs([run("A", 1, 300, trainable_params=None, fixed_params=None, train_flops=None)]), None
    )
    assert (column(row, "trainable"), column(row, "fixed"), column(row, "train FLOPs")) == ("–", "–", "–")


def test_the_figure_draws_each_point_as_documented():
    """The figure's look, read back: round markers of 4 pt with caps of 2 pt (matplotlib draws a cap 2·capsize
    wide), labels of 6 pt set 3 points up and right of their point, a light grid, a 10 pt title."""
    two = [run("A", seed, 300 + seed, predictions={}) for seed in (1, 2)]  # no predictions: the ±1 sd bar of 2 runs
    plot = figure(group_runs(two), "title")
    for axes in plot.axes:
        (container,) = axes.containers
        data_line, caps, _ = container.lines
        assert data_line.get_marker() == "o" and data_line.get_markersize() == 4 and data_line.get_linestyle() == "None"
        assert [cap.get_markersize() for cap in caps] == [4, 4]
        (note,) = axes.texts
        assert note.get_fontsize() == 6 and note.xyann == (3, 3) and note.anncoords == "offset points"
        assert axes.xaxis.get_gridlines()[0].get_alpha() == 0.3 and axes.xaxis.get_gridlines()[0].get_visible()
    assert plot._suptitle.get_fontsize() == 10
    spread = 100 * statistics.stdev([301 / 400, 302 / 400])
    assert points(plot.axes[0])["A"][2:] == pytest.approx((spread, spread))


def test_a_rows_outcomes_are_its_runs_in_seed_order_or_none():
    group = group_runs([run("A", 2, 300), run("A", 1, 310)])[0]
    assert [outcome.sum() for outcome in group.outcomes()] == [310, 300]
    assert group_runs([run("A", 1, 300), run("A", 2, 300, predictions={})])[0].outcomes() is None
