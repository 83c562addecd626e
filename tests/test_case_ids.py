"""Case ids from file and folder names (issue 20): BraTS patterns are ASCII-only whole-name matches; a trailing
newline, full-width or Arabic-Indic digits are one-line errors in `convert` and `export`; ids with a control
character, or two ids equal under Unicode NFKC normalisation, are refused by every command, naming the file(s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_conversion import convert_args, raw, run_cli, write_case, write_cases  # noqa: F401 (raw: fixture)
from test_evaluation_cli import write_nifti

from nnunet_tcup.case_ids import check_case_id, check_distinct_case_ids, id_problem, shown
from nnunet_tcup.dataset_conversion.layout import (
    CASE_ID_PATTERN,
    LEGACY_CASE_ID_PATTERN,
    brats2023_challenge,
    is_legacy_case_id,
)
from nnunet_tcup.io_utils import list_nifti_cases

FULL_WIDTH = "BraTS-GLI-\uff10\uff10\uff10\uff12\uff11-000"  # BraTS-GLI-００００２１-000 (full-width digits)
ARABIC_INDIC = "BraTS-GLI-\u0660\u0660\u0660\u0662\u0661-000"  # Arabic-Indic digits 00021
NEWLINE = "BraTS-GLI-00021-000\n"


def one_line_error(code: int, err: str, command: str) -> str:
    """The error line of a failed command (exit 1, exactly one line on stderr)."""
    assert code == 1, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith(f"nnunet_tcup {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "name", [FULL_WIDTH, ARABIC_INDIC, NEWLINE, "BraTS-GLI-00021-000 ", "xBraTS-GLI-00021-000", "BraTS-gli-00021-000"]
)
def test_brats_patterns_match_whole_ascii_names_only(name):
    assert brats2023_challenge(name) is None
    assert CASE_ID_PATTERN.match(name) is None  # anchored with \A ... \Z, so even .match is a whole-name match
    assert brats2023_challenge("BraTS-GLI-00021-000") == "GLI"


@pytest.mark.parametrize("name", ["BraTS2021_00001\n", "BraTS2021_\u0660\u0661", "BraTS20_Training_\uff10\uff11"])
def test_legacy_pattern_matches_whole_ascii_names_only(name):
    assert not is_legacy_case_id(name) and LEGACY_CASE_ID_PATTERN.match(name) is None
    assert is_legacy_case_id("BraTS2021_00001") and is_legacy_case_id("BraTS20_Training_001")


def test_id_checks_and_shown_names():
    assert id_problem("case_1") is None and id_problem("=1+2") is None and id_problem("x$\\foo$y") is None
    assert "control character ('\\n')" in str(id_problem(NEWLINE))
    assert id_problem("a\tb") is not None and id_problem("") == "empty case id"
    assert shown("d/a b.nii.gz") == "d/a b.nii.gz" and shown("d/a\nb") == "'d/a\\nb'"
    with pytest.raises(ValueError, match=r"^'d/x\\n.nii.gz': case id 'x\\n' holds a control character") as e:
        check_case_id("x\n", "d/x\n.nii.gz")
    assert "\n" not in str(e.value)
    check_distinct_case_ids({"BraTS-GLI-00021-000": Path("a"), "BraTS-GLI-00022-000": Path("b")})
    with pytest.raises(ValueError, match="under Unicode normalisation") as e:
        check_distinct_case_ids({"BraTS-GLI-00021-000": Path("d/ascii.nii.gz"), FULL_WIDTH: Path("d/wide.nii.gz")})
    assert str(e.value).startswith("d/wide.nii.gz: ") and "d/ascii.nii.gz" in str(e.value)
    decomposed, composed = "cafe\u0301", "caf\u00e9"  # macOS file names are NFD, typed ones NFC
    with pytest.raises(ValueError, match="NFKC"):
        check_distinct_case_ids({decomposed: "x", composed: "y"})


@pytest.mark.parametrize("odd", [FULL_WIDTH, ARABIC_INDIC, NEWLINE])
def test_convert_refuses_non_ascii_and_newline_ids_on_one_line(tmp_path, raw, capsys, odd):  # noqa: F811
    train = write_cases(tmp_path / "train", [21])
    write_case(train, odd, seed=3)
    code, _, err = run_cli(convert_args(train), capsys)
    line = one_line_error(code, err, "convert")
    assert f"{shown(train / odd)}: not a BraTS case folder" in line
    assert ("control character ('\\n')" if odd == NEWLINE else "non-ASCII characters") in line
    assert list(raw.iterdir()) == []  # nothing written, no lock file left


@pytest.mark.parametrize("odd", [FULL_WIDTH, ARABIC_INDIC, NEWLINE])
def test_export_refuses_non_ascii_and_newline_ids_on_one_line(tmp_path, capsys, odd):
    preds = tmp_path / "preds"
    for case in ("BraTS-GLI-00021-000", odd):
        write_nifti(preds / f"{case}.nii.gz", np.zeros((4, 5, 6), np.uint8))
    code, _, err = run_cli(["export", preds, tmp_path / "out", "--challenge", "GLI", "--no-progress"], capsys)
    line = one_line_error(code, err, "export")
    expected = {
        NEWLINE: "control character ('\\n')",
        FULL_WIDTH: "under Unicode normalisation (NFKC)",  # named with its ASCII twin
        ARABIC_INDIC: "not a BraTS case name",  # NFKC keeps Arabic-Indic digits: no twin, but no BraTS id either
    }[odd]
    assert expected in line and not (tmp_path / "out").exists()
    if odd == FULL_WIDTH:  # the clash names both files
        assert str(preds / "BraTS-GLI-00021-000.nii.gz") in line and str(preds / f"{odd}.nii.gz") in line
    (preds / "BraTS-GLI-00021-000.nii.gz").unlink()
    if odd != NEWLINE:  # alone, the look-alike id is no BraTS case name
        code, _, err = run_cli(["export", preds, tmp_path / "out", "--challenge", "GLI", "--no-progress"], capsys)
        assert "not a BraTS case name" in one_line_error(code, err, "export") and "non-ASCII" in err


def test_evaluate_refuses_look_alike_and_control_character_ids(tmp_path, capsys):
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 2
    for folder in ("gt", "pred"):
        write_nifti(tmp_path / folder / "BraTS-GLI-00021-000.nii.gz", labels)
    write_nifti(tmp_path / "pred" / f"{FULL_WIDTH}.nii.gz", labels)
    args = ["evaluate", "--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "--challenge", "GLI"]
    args += ["-o", tmp_path / "out" / "r.csv", "--num-workers", "1"]
    code, _, err = run_cli(args, capsys)
    line = one_line_error(code, err, "evaluate")
    assert line.startswith(f"nnunet_tcup evaluate: error: {tmp_path / 'pred' / FULL_WIDTH}.nii.gz: case id ")
    assert "NFKC" in line and str(tmp_path / "pred" / "BraTS-GLI-00021-000.nii.gz") in line
    (tmp_path / "pred" / f"{FULL_WIDTH}.nii.gz").rename(tmp_path / "pred" / "tab\tid.nii.gz")
    code, _, err = run_cli(args, capsys)
    assert "case id 'tab\\tid' holds a control character" in one_line_error(code, err, "evaluate")
    assert not (tmp_path / "out").exists()


def test_nifti_case_lists_skip_hidden_files_and_refuse_clashes(tmp_path):
    for name in ("b", ".hidden", ".b.partial-12", "..", "a"):
        write_nifti(tmp_path / f"{name}.nii.gz", np.zeros((2, 2, 2), np.uint8))
    assert list_nifti_cases(tmp_path) == ["a", "b"]
    write_nifti(tmp_path / "\uff41.nii.gz", np.zeros((2, 2, 2), np.uint8))  # full-width a
    with pytest.raises(ValueError, match="NFKC"):
        list_nifti_cases(tmp_path)


def test_postprocess_apply_refuses_a_control_character_id(tmp_path, capsys):
    from nnunet_tcup.postprocessing.lesion_filter import preset_parameters
    from nnunet_tcup.postprocessing.nnunet_results import postprocessing_json, write_postprocessing_files

    params = preset_parameters("GLI")
    _, js, _ = write_postprocessing_files(tmp_path / "pp", params, postprocessing_json(params, "test", {}))
    write_nifti(tmp_path / "in" / "ok.nii.gz", np.zeros((4, 5, 6), np.uint8))
    write_nifti(tmp_path / "in" / "new\nline.nii.gz", np.zeros((4, 5, 6), np.uint8))
    code, _, err = run_cli(
        ["postprocess", "apply", "-i", tmp_path / "in", "-o", tmp_path / "out", "--json", js], capsys
    )
    assert "case id 'new\\nline' holds a control character" in one_line_error(code, err, "postprocess apply")
    assert not (tmp_path / "out").exists()
