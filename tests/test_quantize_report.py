"""The report of `lit-vir quantize` (its numbers, not its quantisation): which rows are paired with which, the
differences and McNemar's p against scipy's exact binomial test, every table cell and the Markdown file, on
hand-made rows whose per-image outcomes are known."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from rich.console import Console
from scipy.stats import binomtest

from lit_vir.commands.quantize import (
    CSV_FIELDS,
    TABLE_COLUMNS,
    coverage_line,
    markdown,
    paired_rows,
    table_cells,
    write_results,
)

IMAGES = 200


def outcomes(wrong: list[int]) -> np.ndarray:
    """200 images, right except those listed."""
    right = np.ones(IMAGES, dtype=np.int8)
    right[wrong] = 0
    return right


def row(method: str, precision: str, wrong: list[int], **fields) -> dict:
    right = outcomes(wrong)
    accuracy = float(right.mean())
    return {
        "method": method,
        "precision": precision,
        "outcomes": right,
        "accuracy": accuracy,
        "accuracy_interval": (accuracy - 0.01, accuracy + 0.01),
        "sq_b": method != "SQ-b off",
        "opt_m": method != "OPT-m off",
        "softmax": None,
        "weight_bits": 8.0,
        "activation_bits": 8.0,
        "size_bits": 1_234_567,
        "size_mb": 0.154321,
        **fields,
    }


def report_rows() -> list[dict]:
    """FP32 wrong on images 0–9; MPTQ-ViT W4A4 on 0–29 (20 more); SQ-b off W4A4 on 0–9 and 30–69 (40 new, its own
    first 10 shared); OPT-m off at W8A8 only (no MPTQ-ViT W8A8 row to pair it with)."""
    return [
        row("float", "FP32", list(range(10)), sq_b=False, opt_m=False, weight_bits=32.0, activation_bits=32.0),
        row("MPTQ-ViT", "W4A4", list(range(30)), weight_bits=4.0, activation_bits=4.0),
        row("SQ-b off", "W4A4", [*range(10), *range(30, 70)], weight_bits=4.0, activation_bits=4.0),
        row("OPT-m off", "W8A8", list(range(12))),
    ]


def mcnemar(only_a: int, only_b: int) -> float:
    """McNemar's exact test: the discordant pairs as a binomial with p = ½ (scipy, two-sided)."""
    return binomtest(only_a, only_a + only_b, 0.5).pvalue


def test_every_row_is_paired_with_fp32_and_mptq_with_each_ablation_at_its_precision():
    rows = report_rows()
    found = paired_rows(rows)
    assert [(entry["row"], entry["against"]) for entry in found] == [
        ("MPTQ-ViT W4A4", "FP32"),
        ("SQ-b off W4A4", "FP32"),
        ("OPT-m off W8A8", "FP32"),
        ("MPTQ-ViT W4A4", "SQ-b off W4A4"),
    ]
    # MPTQ-ViT W4A4 − FP32: 20 images lost, none gained
    assert found[0]["difference"] == pytest.approx(-20 / IMAGES)
    assert found[0]["p"] == pytest.approx(mcnemar(0, 20))
    # SQ-b off − FP32: 40 lost; OPT-m off − FP32: 2 lost
    assert found[1]["difference"] == pytest.approx(-40 / IMAGES) and found[1]["p"] == pytest.approx(mcnemar(0, 40))
    assert found[2]["difference"] == pytest.approx(-2 / IMAGES) and found[2]["p"] == pytest.approx(mcnemar(0, 2))
    # MPTQ-ViT − SQ-b off on the same images: MPTQ right on 30–69 where SQ-b off is wrong (40), wrong on 10–29 where
    # SQ-b off is right (20)
    assert found[3]["difference"] == pytest.approx((40 - 20) / IMAGES)
    assert found[3]["p"] == pytest.approx(mcnemar(40, 20))
    assert all(
        entry["test"] == "McNemar exact" and entry["low"] <= entry["difference"] <= entry["high"] for entry in found
    )
    for entry, quantised in zip(found[:3], rows[1:], strict=True):
        assert quantised["vs_fp32"] == {key: entry[key] for key in ("difference", "low", "high", "p")}
    assert "vs_fp32" not in rows[0]


def test_a_rows_cells_are_printed_as_the_columns_say():
    rows = report_rows()
    paired_rows(rows)
    mptq = rows[1]
    low, high = mptq["vs_fp32"]["low"], mptq["vs_fp32"]["high"]
    assert len(TABLE_COLUMNS) == 12
    assert table_cells(mptq, rows[0]["accuracy"]) == [
        "W4A4",
        "MPTQ-ViT",
        "✓",
        "✓",
        "float",
        "4",
        "4",
        "85.00 [84.00, 86.00]",
        f"-10.00 [{100 * low:+.2f}, {100 * high:+.2f}]",
        f"{mcnemar(0, 20):.3g}",
        "1,234,567",
        "0.1543",
    ]
    fp32 = table_cells(rows[0], rows[0]["accuracy"])
    assert fp32[2:5] == ["—", "—", "float"] and fp32[7:10] == ["95.00 [94.00, 96.00]", "+0.00", "–"]
    log2 = table_cells(row("log2 softmax", "W6A6", [], softmax="log2", weight_bits=5.5), 0.95)
    assert log2[4:6] == ["log2", "5.5"] and log2[8] == "+5.00"


def report() -> dict:
    """A report as `main` writes it: the rows compared first, then their per-image outcomes moved out."""
    rows = report_rows()
    comparisons = paired_rows(rows)
    for entry in rows:
        entry.pop("outcomes")
    return {
        "backbone": "ViR",
        "checkpoint": "runs/x/last.ckpt",
        "calibration_images": 64,
        "test_images": IMAGES,
        "environment": {"lit_vir_commit": "abc1234", "cpu": "AMD EPYC × 2", "cuda_device": None},
        "command": ["lit-vir", "quantize", "--ckpt_path", "runs/x/last.ckpt"],
        "coverage": {
            "mptq": {
                "layers": ["a", "b", "c"],
                "fixed_edges": ["embedding", "head"],
                "attention_products": ["block0"],
                "float_attention_products": [],
                "opt_m": ["fc1", "fc2"],
                "float_layers": [],
            }
        },
        "edges": "at W8A8",
        "sq_b_pairs": [("norm", "fc1")],
        "rows": rows,
        "comparisons": comparisons,
    }


def test_the_coverage_line_says_what_was_quantised():
    assert coverage_line(report()) == (
        "quantised: 3 weighted layers (embedding, head edges at W8A8), 1 attentions with both products quantised "
        "(left float: none), 2 post-GELU inputs with OPT-m, 1 SQ-b pairs; float matrices: none"
    )
    assert coverage_line({**report(), "coverage": {}}) == "nothing quantised"
    partial = report()
    partial["coverage"]["mptq"] |= {"fixed_edges": [], "float_attention_products": ["b1"], "float_layers": ["W"]}
    assert coverage_line(partial) == (
        "quantised: 3 weighted layers (no edges at W8A8), 1 attentions with both products quantised (left float: "
        "b1), 2 post-GELU inputs with OPT-m, 1 SQ-b pairs; float matrices: W"
    )


def test_the_markdown_file_holds_the_header_every_row_and_the_ablation_table(tmp_path):
    content = report()
    text = markdown(content)
    lines = text.splitlines()
    assert lines[0] == "### MPTQ-ViT on ViR (`runs/x/last.ckpt`)"
    assert lines[2] == (
        "64 calibration images, 200 test images; commit `abc1234`, AMD EPYC × 2; "
        "`lit-vir quantize --ckpt_path runs/x/last.ckpt`."
    )
    assert lines[4] == coverage_line(content) + "."
    assert lines[6] == "| " + " | ".join(TABLE_COLUMNS) + " |" and lines[7] == "|" + "|".join(["---"] * 12) + "|"
    assert lines[8:12] == ["| " + " | ".join(table_cells(entry, 0.95)) + " |" for entry in content["rows"]]
    ablation = content["comparisons"][3]
    assert lines[13] == "MPTQ-ViT against each ablation at the same precision, on the same images:"
    assert lines[17] == (
        f"| MPTQ-ViT W4A4 | SQ-b off W4A4 | +10.00 [{100 * ablation['low']:+.2f}, {100 * ablation['high']:+.2f}] | "
        f"{mcnemar(40, 20):.3g} |"
    )
    assert (
        lines[-1] == "Intervals: percentile bootstrap over the test images; p: McNemar's exact test on the same images."
    )
    on_gpu = {**content, "environment": {**content["environment"], "cuda_device": "NVIDIA H100"}}
    assert "AMD EPYC × 2, NVIDIA H100; `" in markdown(on_gpu).splitlines()[2]
    without = {**content, "comparisons": content["comparisons"][:3]}
    assert "MPTQ-ViT against each ablation" not in markdown(without)
    printed = io.StringIO()
    write_results(content, tmp_path / "out", Console(file=printed, width=300))
    assert (tmp_path / "out" / "quantization.md").read_text() == text
    saved = json.loads((tmp_path / "out" / "quantization.json").read_text())
    assert [entry["precision"] for entry in saved["rows"]] == ["FP32", "W4A4", "W4A4", "W8A8"]
    with open(tmp_path / "out" / "quantization.csv") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == CSV_FIELDS and [entry["method"] for entry in table] == [
        "float",
        "MPTQ-ViT",
        "SQ-b off",
        "OPT-m off",
    ]
    assert float(table[1]["accuracy"]) == 0.85 and table[1]["size_bits"] == "1234567"
    printed = printed.getvalue()
    assert "MPTQ-ViT on ViR (200 test images)" in printed and "quantization.json, quantization.csv" in printed
