"""CSV cells safe to open in a spreadsheet (issue 20, OWASP "CSV injection"): text starting with = + - @ tab or CR
gets a leading quote, numbers (negative ones too) stay numbers; `evaluate`'s three tables read back that way. The
review's CSVs: tests/test_review_odd_ids.py."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_case_ids import one_line_error
from test_conversion import run_cli
from test_evaluation_cli import write_nifti

from nnunet_tcup.csv_cells import cell_safe_file_name, safe_cell, safe_frame, safe_rows
from nnunet_tcup.evaluation.folders import write_results

FORMULA_IDS = ("=1+2", '=HYPERLINK("x")', "+1", "-1", "@SUM(A1)")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("text", [*FORMULA_IDS, "\tx", "\rx", "-0.5"])
def test_formula_text_is_quoted(text):
    assert safe_cell(text) == "'" + text
    assert safe_rows([{"a": text, "b": 1}]) == [{"a": "'" + text, "b": 1}]


@pytest.mark.parametrize("value", [-1, -0.5, np.float64(-2.5), np.int64(-3), 0, 1e-9, float("nan"), None, True])
def test_numbers_and_other_values_are_unchanged(value):
    assert safe_cell(value) is value


def test_plain_text_and_file_names():
    assert safe_cell("BraTS-GLI-00001-000") == "BraTS-GLI-00001-000" and safe_cell("a=b") == "a=b"
    assert safe_cell("") == "" and safe_cell("'=x") == "'=x"
    assert cell_safe_file_name("=1+2_z003.png") == "_=1+2_z003.png" and cell_safe_file_name("a.png") == "a.png"


def test_safe_frame_quotes_text_columns_only():
    frame = pd.DataFrame({"case": ["=1+2", "ok"], "x": [-1.5, 2.0], "n": [-3, 4], "mixed": ["-x", -7]})
    safe = safe_frame(frame)
    assert list(safe["case"]) == ["'=1+2", "ok"] and list(safe["mixed"]) == ["'-x", -7]
    assert safe["x"].dtype == frame["x"].dtype and safe["n"].dtype == frame["n"].dtype
    assert frame["case"][0] == "=1+2"  # the caller's frame is not changed


def test_write_results_keeps_negative_numbers_unquoted(tmp_path):
    table = pd.DataFrame({"case": ["-2", "ok"], "Labels": ["WT", "WT"], "value": [-0.25, 1.0], "count": [-1, 2]})
    write_results(table, tmp_path / "r.csv", summary=table, lesions=table)
    for name in ("r.csv", "r_summary.csv", "r_lesions.csv"):
        rows = read_rows(tmp_path / name)
        assert [r["case"] for r in rows] == ["'-2", "ok"]
        assert [r["value"] for r in rows] == ["-0.25", "1.0"] and [r["count"] for r in rows] == ["-1", "2"]
        back = pd.read_csv(tmp_path / name)
        assert back["value"].dtype == np.float64 and back["count"].dtype == np.int64


def test_evaluate_with_formula_case_ids(tmp_path, capsys):
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[1:5, 2:6, 2:6] = 2
    labels[2:4, 3:5, 3:5] = 3
    cases = (*FORMULA_IDS, "plain")
    for case in cases:
        write_nifti(tmp_path / "gt" / f"{case}.nii.gz", labels)
        write_nifti(tmp_path / "pred" / f"{case}.nii.gz", labels)
    out = tmp_path / "out" / "results.csv"
    code, _, err = run_cli(
        ["evaluate", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--challenge", "GLI", "-o", out]
        + ["--num-workers", "1"],
        capsys,
    )
    assert code == 0, err
    results = read_rows(out)
    assert sorted({r["case"] for r in results}) == sorted(["'" + c for c in FORMULA_IDS] + ["plain"])
    assert all(float(r["LesionWise_Score_Dice"]) == 1.0 for r in results)
    lesions = read_rows(out.with_name("results_lesions.csv"))
    assert {r["case"] for r in lesions} == {r["case"] for r in results}
    for name in ("results.csv", "results_summary.csv", "results_lesions.csv"):
        for row in read_rows(out.with_name(name)):
            assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), (name, row)
    assert pd.read_csv(out)["LesionWise_Score_Dice"].dtype == np.float64


def test_evaluate_refuses_tab_and_carriage_return_ids(tmp_path, capsys):
    """Tab and CR start a formula too, but as control characters they never reach a table: refused at input."""
    labels = np.zeros((4, 5, 6), np.uint8)
    for folder in ("gt", "pred"):
        write_nifti(tmp_path / folder / "\rcr.nii.gz", labels)
    code, _, err = run_cli(
        ["evaluate", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--challenge", "GLI"]
        + ["-o", tmp_path / "out.csv", "--num-workers", "1"],
        capsys,
    )
    assert "case id '\\rcr' holds a control character" in one_line_error(code, err, "evaluate")
