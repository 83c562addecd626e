"""`nnunet_tcup evaluate` and the folder API: real NIfTI files, CSV / summary / figure outputs, folder layouts,
bad input (truncated, shifted, flipped, NaN, duplicates) and all-or-nothing outputs."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from conftest import run_command

from nnunet_tcup.cli import main
from nnunet_tcup.evaluation.folders import (
    RESULT_COLUMNS,
    SUMMARY_STATISTICS,
    evaluate_files,
    evaluate_folders,
    read_case_pair,
    summarize,
)
from nnunet_tcup.evaluation.lesionwise import METRIC_COLUMNS, evaluate_case

SPACING_XYZ = (1.0, 1.2, 2.0)


def write_nifti(
    path: Path,
    labels_zyx: np.ndarray,
    spacing_xyz=SPACING_XYZ,
    origin_xyz=(0.0, 0.0, 0.0),
    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
) -> Path:
    image = sitk.GetImageFromArray(labels_zyx)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin_xyz)
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def make_labels(rng: np.random.Generator, shape=(16, 28, 24), blobs=3) -> np.ndarray:
    """Small (z, y, x) label volume: SNFH boxes with an ET core and NETC centre."""
    labels = np.zeros(shape, np.uint8)
    for _ in range(blobs):
        lo = rng.integers(1, np.array(shape) - 8)
        size = rng.integers(4, 8, 3)
        box = tuple(slice(a, a + s) for a, s in zip(lo, size))
        labels[box] = 2
        inner = tuple(slice(a + 1, a + s - 1) for a, s in zip(lo, size))
        labels[inner] = 3
        labels[tuple(slice(a + 2, a + s - 2) for a, s in zip(lo, size))] = 1
    return labels


@pytest.fixture
def dataset(tmp_path: Path):
    """Three cases (GT, perturbed prediction) as NIfTI in gt/ and pred/; returns (gt_dir, pred_dir, arrays)."""
    rng = np.random.default_rng(3)
    arrays = {}
    for i in range(3):
        gt = make_labels(rng)
        pred = np.roll(gt, 1, axis=2)
        pred[rng.integers(0, 16), rng.integers(0, 28), rng.integers(0, 24)] = 3  # a speck
        case = f"BraTS-GLI-{i:05d}-000"
        write_nifti(tmp_path / "gt" / f"{case}.nii.gz", gt)
        write_nifti(tmp_path / "pred" / f"{case}.nii.gz", pred)
        arrays[case] = (gt, pred)
    return tmp_path / "gt", tmp_path / "pred", arrays


def expected_rows(arrays, challenge="GLI"):
    rows = []
    for case, (gt, pred) in sorted(arrays.items()):
        # (z, y, x) arrays with (z, y, x) spacing; NIfTI stores the spacing as float32, as the official code reads it
        spacing = tuple(float(np.float32(s)) for s in SPACING_XYZ[::-1])
        ev = evaluate_case(gt, pred, spacing, challenge)
        rows += [{"case": case, "Labels": r, **ev[r].metrics()} for r in ("WT", "TC", "ET")]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def outputs(folder: Path):
    """Every entry of ``folder`` (hidden temporary files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow  # the real console script in a subprocess, with 2 worker processes
def test_cli_writes_results_summary_lesions_and_figure(dataset, tmp_path):
    gt_dir, pred_dir, arrays = dataset
    out = tmp_path / "out" / "results.csv"
    proc = run_command(
        [
            "nnunet_tcup",
            "evaluate",
            "--gt",
            gt_dir,
            "--pred",
            pred_dir,
            "--challenge",
            "GLI",
            "-o",
            out,
            "--plot",
            tmp_path / "out" / "fig.png",
            "--num-workers",
            "2",
        ],
        timeout=300,
    )
    assert outputs(out.parent) == ["fig.png", "results.csv", "results_lesions.csv", "results_summary.csv"]
    table = pd.read_csv(out)
    assert list(table.columns) == list(RESULT_COLUMNS)
    expected = expected_rows(arrays)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, rtol=1e-12)
    summary = pd.read_csv(tmp_path / "out" / "results_summary.csv")
    assert list(summary.columns) == ["Labels", "Statistic", *METRIC_COLUMNS]
    assert len(summary) == 15 and list(summary["Statistic"][:5]) == list(SUMMARY_STATISTICS)
    wt_mean = summary[(summary.Labels == "WT") & (summary.Statistic == "Mean")].iloc[0]
    assert wt_mean["LesionWise_Score_Dice"] == pytest.approx(
        expected[expected.Labels == "WT"]["LesionWise_Score_Dice"].mean()
    )
    lesions = pd.read_csv(tmp_path / "out" / "results_lesions.csv")
    assert {"case", "Labels", "lesion_id", "volume_mm3", "matched_components", "dice", "hd95", "scored"} <= set(
        lesions.columns
    ) and len(lesions) > 0
    png = (tmp_path / "out" / "fig.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "LW_Dice" in proc.stdout and "Median" in proc.stdout and "results_summary.csv" in proc.stdout


def test_folder_api_matches_arrays_and_summary(dataset):
    gt_dir, pred_dir, arrays = dataset
    table, lesions = evaluate_folders(gt_dir, pred_dir, "MEN", progress=False, with_lesions=True)
    pd.testing.assert_frame_equal(table, expected_rows(arrays, "MEN"), check_dtype=False, rtol=1e-12)
    summary = summarize(table)
    et = table[table.Labels == "ET"]["Legacy_HD95"]
    stats = summary[summary.Labels == "ET"].set_index("Statistic")["Legacy_HD95"]
    assert stats["Mean"] == pytest.approx(et.mean()) and stats["StdDev"] == pytest.approx(et.std(ddof=1))
    assert stats["Median"] == pytest.approx(et.median())
    assert stats["25quantile"] == pytest.approx(np.percentile(et, 25))
    assert stats["75quantile"] == pytest.approx(np.percentile(et, 75))
    # files are evaluated in NIfTI (x, y, z) order: spacing reported in that order
    case = sorted(arrays)[0]
    ev = evaluate_files(gt_dir / f"{case}.nii.gz", pred_dir / f"{case}.nii.gz", "GLI")
    assert ev.spacing == pytest.approx(SPACING_XYZ)
    assert set(lesions["case"]) == set(arrays)


def run_cli(args, capsys):
    code = main(["evaluate", *map(str, args)])
    return code, capsys.readouterr().err


def base_args(gt_dir, pred_dir, out):
    return ["--gt", gt_dir, "--pred", pred_dir, "--challenge", "GLI", "-o", out, "--no-progress", "--num-workers", "1"]


def test_shape_and_spacing_mismatch_name_the_file(dataset, tmp_path, capsys):
    gt_dir, pred_dir, arrays = dataset
    case = sorted(arrays)[1]
    bad = pred_dir / f"{case}.nii.gz"
    out = tmp_path / "out" / "r.csv"
    write_nifti(bad, np.zeros((16, 28, 25), np.uint8))
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and str(bad) in err and "shape" in err and str(gt_dir / f"{case}.nii.gz") in err
    write_nifti(bad, arrays[case][1], spacing_xyz=(1.0, 1.0, 2.0))
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and str(bad) in err and "spacing" in err
    assert outputs(out.parent) == []


@pytest.mark.parametrize("kind", ["shifted", "flipped"])
def test_shifted_or_flipped_prediction_is_a_geometry_error(dataset, tmp_path, capsys, kind):
    """Same shape and spacing but 3 mm away, or mirrored along x: refused with both files named, nothing written."""
    gt_dir, pred_dir, arrays = dataset
    case = sorted(arrays)[0]
    bad = pred_dir / f"{case}.nii.gz"
    if kind == "shifted":
        write_nifti(bad, arrays[case][1], origin_xyz=(3.0, 0.0, 0.0))
    else:
        write_nifti(bad, arrays[case][1][:, :, ::-1], direction=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    word = "origin" if kind == "shifted" else "direction"
    assert code == 1 and str(bad) in err and str(gt_dir / f"{case}.nii.gz") in err and word in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert outputs(out.parent) == []


def test_truncated_prediction_is_refused(dataset, tmp_path, capsys):
    """SimpleITK would zero-fill a truncated .nii.gz and score it; evaluate names the file and writes nothing."""
    gt_dir, pred_dir, arrays = dataset
    bad = pred_dir / f"{sorted(arrays)[2]}.nii.gz"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(bad))).shape == arrays[sorted(arrays)[2]][1].shape  # silent
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and str(bad) in err and "truncated" in err, err
    assert len(err.strip().splitlines()) == 1
    assert outputs(out.parent) == []


def test_nan_label_is_refused(dataset, tmp_path, capsys):
    gt_dir, pred_dir, arrays = dataset
    case = sorted(arrays)[1]
    bad = pred_dir / f"{case}.nii.gz"
    values = arrays[case][1].astype(np.float32)
    values[2, 3, 4] = np.nan
    write_nifti(bad, values)
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and str(bad) in err and "NaN" in err, err
    assert outputs(out.parent) == []


def test_brats_tree_seg_names_and_nii_pair_by_case_id(dataset, tmp_path, capsys):
    """--gt as a BraTS case-folder tree (CASE/CASE-seg.nii.gz, junk beside it), predictions as .nii and one
    CASE-seg.nii.gz: the same numbers as the flat folders."""
    gt_dir, pred_dir, arrays = dataset
    tree, flat_pred = tmp_path / "GLI-Validation", tmp_path / "pred_mixed"
    cases = sorted(arrays)
    for i, case in enumerate(cases):
        write_nifti(tree / case / f"{case}-seg.nii.gz", arrays[case][0])
        write_nifti(tree / case / f"{case}-t1n.nii.gz", arrays[case][0])  # images beside the seg are ignored
        name = [f"{case}.nii", f"{case}-seg.nii.gz", f"{case}.nii.gz"][i]
        write_nifti(flat_pred / name, arrays[case][1])
    (tree / "__MACOSX" / cases[0]).mkdir(parents=True)
    write_nifti(tree / "__MACOSX" / cases[0] / f"._{cases[0]}-seg.nii.gz", arrays[cases[0]][0])
    (tree / ".DS_Store").write_bytes(b"junk")
    (flat_pred / "plans.json").write_text("{}")
    write_nifti(flat_pred / f"{cases[1]}-t2f.nii.gz", arrays[cases[1]][0])  # an image file, not a prediction
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(tree, flat_pred, out), capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(out), expected_rows(arrays), check_dtype=False, rtol=1e-12)
    # skipped entries: one note per folder, on stderr (images inside case folders are expected, not counted)
    assert err.splitlines() == [
        f"note: {tree}: skipped 2 entries (.DS_Store, __MACOSX/): not ground-truth label files",
        f"note: {flat_pred}: skipped 2 entries ({cases[1]}-t2f.nii.gz, plans.json): not prediction label files",
    ], err
    # two files for one case id are refused, naming both
    write_nifti(flat_pred / f"{cases[0]}.nii.gz", arrays[cases[0]][1])
    code, err = run_cli(base_args(tree, flat_pred, tmp_path / "out2" / "r.csv"), capsys)
    assert code == 1 and "two prediction files" in err and f"{cases[0]}.nii" in err
    assert outputs(tmp_path / "out2") == []


def test_output_under_a_file_is_a_one_line_error(dataset, tmp_path, capsys):
    gt_dir, pred_dir, _ = dataset
    afile = tmp_path / "afile"
    afile.write_text("user data")
    code, err = run_cli(base_args(gt_dir, pred_dir, afile / "r.csv"), capsys)
    assert code == 1 and str(afile) in err and "is a file, not a directory" in err, err
    assert "Errno" not in err and len(err.strip().splitlines()) == 1
    code, err = run_cli(base_args(gt_dir, pred_dir, tmp_path / "r.csv") + ["--plot", afile / "sub" / "f.png"], capsys)
    assert code == 1 and "is a file, not a directory" in err
    assert afile.read_text() == "user data" and not (tmp_path / "r.csv").exists()


def test_failing_plot_leaves_no_csv(dataset, tmp_path, capsys, monkeypatch):
    """A figure that cannot be saved (here: the disk is full) leaves neither CSVs nor temporary files."""
    from matplotlib.figure import Figure

    def full_disk(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    gt_dir, pred_dir, _ = dataset
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(gt_dir, pred_dir, out) + ["--plot", tmp_path / "out" / "fig.png"], capsys)
    assert code == 1 and "no space left on device" in err, err
    assert outputs(out.parent) == []


def test_missing_prediction_errors_unless_missing_as_empty(dataset, tmp_path, capsys):
    gt_dir, pred_dir, arrays = dataset
    case = sorted(arrays)[2]
    (pred_dir / f"{case}.nii.gz").unlink()
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and f"{case}.nii.gz" in err and "--missing-as-empty" in err
    assert outputs(out.parent) == []
    code, _ = run_cli(base_args(gt_dir, pred_dir, out) + ["--missing-as-empty"], capsys)
    assert code == 0
    row = pd.read_csv(out).set_index(["case", "Labels"]).loc[(case, "WT")]
    assert (row["Num_TP"], row["Num_FP"], row["LesionWise_Score_Dice"], row["Legacy_Dice"]) == (0, 0, 0.0, 0.0)
    assert row["Num_FN"] >= 1 and row["LesionWise_Score_HD95"] == 374.0
    # an existing output is not replaced without --overwrite
    code, err = run_cli(base_args(gt_dir, pred_dir, out) + ["--missing-as-empty"], capsys)
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert run_cli(base_args(gt_dir, pred_dir, out) + ["--missing-as-empty", "--overwrite"], capsys)[0] == 0


def test_bad_labels_unreadable_files_and_folders(dataset, tmp_path, capsys):
    gt_dir, pred_dir, arrays = dataset
    cases = sorted(arrays)
    out = tmp_path / "out" / "r.csv"
    bad = pred_dir / f"{cases[0]}.nii.gz"
    write_nifti(bad, arrays[cases[0]][1] * 2)  # labels up to 6
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and str(bad) in err and "labels must be 0-3" in err and "4" in err
    bad.write_bytes(b"not a nifti file at all")
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and str(bad) in err and ("cannot read" in err or "corrupt" in err), err
    write_nifti(pred_dir / "BraTS-GLI-99999-000.nii.gz", arrays[cases[1]][1])
    code, err = run_cli(base_args(gt_dir, pred_dir, out), capsys)
    assert code == 1 and "BraTS-GLI-99999-000.nii.gz" in err and "without ground truth" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(base_args(empty, pred_dir, out), capsys)
    assert code == 1 and str(empty) in err and "no ground-truth label files" in err
    code, err = run_cli(base_args(tmp_path / "nowhere", pred_dir, out), capsys)
    assert code == 1 and "nowhere: ground-truth folder not found" in err
    code, err = run_cli(base_args(gt_dir, pred_dir, out) + ["--plot", tmp_path / "fig.jpg"], capsys)
    assert code == 1 and ".png" in err
    assert outputs(out.parent) == [] and not (tmp_path / "fig.jpg").exists()


@pytest.mark.slow  # spawns 2 worker processes
def test_worker_error_leaves_no_output(dataset, tmp_path, capsys):
    """A file whose header is fine (so the up-front check passes) fails inside a worker: nothing is written."""
    gt_dir, pred_dir, arrays = dataset
    bad = pred_dir / f"{sorted(arrays)[1]}.nii.gz"
    bad.write_bytes(bad.read_bytes()[:-40])  # header intact (passes the up-front check), stream cut short
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(gt_dir, pred_dir, out) + ["--num-workers", "2", "--plot", tmp_path / "f.png"], capsys)
    assert code == 1 and str(bad) in err
    assert outputs(out.parent) == [] and not (tmp_path / "f.png").exists()


def test_read_case_pair_returns_xyz_views(dataset):
    gt_dir, pred_dir, arrays = dataset
    case = sorted(arrays)[0]
    gt, pred, spacing = read_case_pair(gt_dir / f"{case}.nii.gz", None)
    assert gt.shape == arrays[case][0].shape[::-1] and spacing == pytest.approx(SPACING_XYZ)
    assert np.array_equal(gt, arrays[case][0].T) and not pred.any()


def write_brats2021_tree(root: Path, cases: dict[str, np.ndarray]) -> Path:
    """BraTS 2021/2020 case folders ``CASE/CASE_{t1,t1ce,t2,flair,seg}.nii.gz`` from 2023 label arrays (ET 3 -> 4)."""
    for case, labels in cases.items():
        legacy = labels.copy()
        legacy[legacy == 3] = 4
        write_nifti(root / case / f"{case}_seg.nii.gz", legacy)
        for i, name in enumerate(("t1", "t1ce", "t2", "flair")):
            write_nifti(root / case / f"{case}_{name}.nii.gz", (labels.astype(np.int16) + 1) * (100 + i))
    return root


def test_brats2021_tree_reads_et_4_as_3_and_pairs_by_case_id(dataset, tmp_path, capsys):
    """--gt as a BraTS 2021/2020 tree (ET = 4) scores like 2023 labels; predictions are named CASE.nii.gz as
    `convert` names those cases, in 2023 labels or (as `export` writes them back) with ET = 4."""
    _, _, arrays = dataset
    legacy_ids = ["BraTS2021_00000", "BraTS2021_00001", "BraTS20_Training_002"]
    renamed = {new: arrays[old] for new, old in zip(legacy_ids, sorted(arrays))}
    tree = write_brats2021_tree(tmp_path / "RSNA_ASNR_MICCAI_BraTS2021", {c: gt for c, (gt, _) in renamed.items()})
    pred_dir = tmp_path / "pred2021"
    for i, (case, (_, pred)) in enumerate(sorted(renamed.items())):
        exported = pred.copy()
        if i == 1:
            exported[exported == 3] = 4  # `export` output of a BraTS 2021 case
        write_nifti(pred_dir / f"{case}.nii.gz", exported)
    out = tmp_path / "out" / "r.csv"
    code, err = run_cli(base_args(tree, pred_dir, out), capsys)
    assert code == 0 and err == "", err
    pd.testing.assert_frame_equal(pd.read_csv(out), expected_rows(renamed), check_dtype=False, rtol=1e-12)
    # ET = 4 in a BraTS 2023 file is still an error, in the ground truth as in a prediction
    gt_dir, pred_2023, arrays = dataset
    case = sorted(arrays)[0]
    bad = write_nifti(gt_dir / f"{case}.nii.gz", np.where(arrays[case][0] == 3, 4, arrays[case][0]).astype(np.uint8))
    code, err = run_cli(base_args(gt_dir, pred_2023, tmp_path / "o2" / "r.csv"), capsys)
    assert code == 1 and f"{bad}: labels must be 0-3" in err and "found 4" in err, err
    # a BraTS 2021 file holding both 3 and 4 has no single meaning
    mixed = pred_dir / f"{legacy_ids[0]}.nii.gz"
    labels = renamed[legacy_ids[0]][1].copy()
    labels[labels == 3] = 4
    labels[0, 0, 0] = 3
    write_nifti(mixed, labels)
    code, err = run_cli(base_args(tree, pred_dir, tmp_path / "o3" / "r.csv"), capsys)
    assert code == 1 and f"{mixed}: holds both labels 4 and 3" in err, err
    assert outputs(tmp_path / "o2") == [] and outputs(tmp_path / "o3") == []


def test_convert_labelsTs_and_the_brats2021_tree_give_the_same_results(dataset, tmp_path, capsys, monkeypatch):
    """`convert --test` on BraTS 2021 cases with segmentations writes labelsTs/CASE.nii.gz (ET 3); evaluating
    against it or against the source tree itself gives identical tables (the README's two --gt choices)."""
    _, _, arrays = dataset
    cases = {f"BraTS2021_{i:05d}": arrays[c] for i, c in enumerate(sorted(arrays))}
    train = write_brats2021_tree(tmp_path / "train", {"BraTS2021_00009": arrays[sorted(arrays)[0]][0]})
    test = write_brats2021_tree(tmp_path / "test", {c: gt for c, (gt, _) in cases.items()})
    pred_dir = tmp_path / "pred_converted"  # the fixture's pred/ holds the 2023-named cases
    for case, (_, pred) in cases.items():
        write_nifti(pred_dir / f"{case}.nii.gz", pred)
    raw = tmp_path / "nnUNet_raw"
    raw.mkdir()
    monkeypatch.setenv("nnUNet_raw", str(raw))
    convert = ["convert", "--challenge", "GLI", "--dataset-id", "231", "--train", train, "--test", test]
    assert main([str(a) for a in [*convert, "--num-workers", "1", "--no-progress"]]) == 0, capsys.readouterr().err
    labels_ts = raw / "Dataset231_BraTS2023_GLI" / "labelsTs"
    assert sorted(p.name for p in labels_ts.iterdir()) == [f"{c}.nii.gz" for c in sorted(cases)]
    for gt, name in ((labels_ts, "a"), (test, "b")):
        code, err = run_cli(base_args(gt, pred_dir, tmp_path / name / "r.csv"), capsys)
        assert code == 0, err
    table = pd.read_csv(tmp_path / "a" / "r.csv")
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "b" / "r.csv"))
    pd.testing.assert_frame_equal(table, expected_rows(cases), check_dtype=False, rtol=1e-12)


def test_skipped_entries_note_and_empty_folder_error(dataset, tmp_path, capsys):
    """A clean pair of folders gives no note; many skipped entries are counted with three examples; a folder with
    no label file at all says what it skipped."""
    gt_dir, pred_dir, arrays = dataset
    code, err = run_cli(base_args(gt_dir, pred_dir, tmp_path / "o1" / "r.csv"), capsys)
    assert code == 0 and err == "", err
    for name in ("dataset.json", "plans.json", "predict_from_raw_data_args.json", "notes.txt", ".hidden.nii.gz"):
        (pred_dir / name).write_text("x")
    (pred_dir / "__MACOSX").mkdir()
    (pred_dir / "no_seg_case").mkdir()
    code, err = run_cli(base_args(gt_dir, pred_dir, tmp_path / "o2" / "r.csv"), capsys)
    assert code == 0 and err.splitlines() == [
        f"note: {pred_dir}: skipped 7 entries (.hidden.nii.gz, __MACOSX/, dataset.json, ...): not prediction "
        "label files"
    ], err
    images = tmp_path / "images"
    for case, (gt, _) in arrays.items():
        write_nifti(images / f"{case}-t1n.nii.gz", gt)
    code, err = run_cli(base_args(images, pred_dir, tmp_path / "o3" / "r.csv"), capsys)
    assert code == 1 and f"{images}: no ground-truth label files" in err and "skipped 3 entries" in err, err
