"""`nnunet_tcup postprocess preset|tune|apply` and the stock nnUNetv2_apply_postprocessing on our pkl files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import run_command
from postprocessing_helpers import make_case, write_case_folders

from nnunet_tcup.challenges import PAPER_FILTER_PRESETS, PAPER_MIN_SLICES
from nnunet_tcup.cli import main
from nnunet_tcup.evaluation.lesionwise import evaluate_case
from nnunet_tcup.io_utils import read_array_zyx
from nnunet_tcup.postprocessing.lesion_filter import filter_lesions

SHAPE = (32, 48, 48)
SPACING = (1.2, 1.0, 1.0)  # (z, y, x)

DATASET_JSON = {
    "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3], "enhancing tumor": [3]},
    "regions_class_order": [2, 1, 3],
    "numTraining": 4,
    "file_ending": ".nii.gz",
}


def plans_json(name: str = "Dataset999_PPTest") -> dict:
    """Minimal nnU-Net plans (what nnUNetv2_apply_postprocessing reads: the image reader/writer)."""
    return {
        "dataset_name": name,
        "plans_name": "nnUNetPlans",
        "image_reader_writer": "SimpleITKIO",
        "original_median_spacing_after_transp": list(SPACING),
        "original_median_shape_after_transp": list(SHAPE),
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
    }


def write_json(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def write_prediction_with_geometry(array: np.ndarray, path: Path) -> None:
    """A prediction with non-trivial origin and direction, to check that outputs keep the geometry."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(reversed(SPACING)))
    image.SetOrigin((-10.0, 20.5, 3.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path), useCompression=True)


def assert_filtered_copy(source: Path, output: Path, kwargs: dict) -> None:
    src, out = sitk.ReadImage(str(source)), sitk.ReadImage(str(output))
    expected = filter_lesions(sitk.GetArrayFromImage(src), **kwargs)
    assert np.array_equal(sitk.GetArrayFromImage(out), expected), output
    assert np.allclose(out.GetSpacing(), src.GetSpacing()) and np.allclose(out.GetOrigin(), src.GetOrigin())
    assert np.allclose(out.GetDirection(), src.GetDirection())


def stock_apply(pred: Path, out: Path, pkl: Path, env=None) -> None:
    plans = write_json(plans_json(), pred.parent / "plans.json")
    dataset = write_json(DATASET_JSON, pred.parent / "dataset.json")
    run_command(
        [
            "nnUNetv2_apply_postprocessing",
            "-i",
            pred,
            "-o",
            out,
            "-pp_pkl_file",
            pkl,
            "-np",
            "1",
            "-plans_json",
            plans,
            "-dataset_json",
            dataset,
        ],
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_preset_pkl_is_applied_by_stock_nnunet(tmp_path, nnunet_env):
    out_dir = tmp_path / "pp"
    proc = run_command(
        ["nnunet_tcup", "postprocess", "preset", "--challenge", "brats-men", "-o", out_dir], env=nnunet_env
    )
    assert "wrote" in proc.stdout
    fns, kwargs = pickle.loads((out_dir / "postprocessing.pkl").read_bytes())
    preset = PAPER_FILTER_PRESETS["MEN"]
    expected = {
        "wt_threshold": preset["WT"],
        "tc_threshold": preset["TC"],
        "et_threshold": preset["ET"],
        "min_slices": PAPER_MIN_SLICES,
    }
    assert fns == [filter_lesions] and kwargs == [expected]
    doc = json.loads((out_dir / "postprocessing.json").read_text())
    assert doc["kwargs"] == expected and doc["challenge"] == "MEN"

    pred = tmp_path / "pred"
    pred.mkdir()
    for k in range(2):
        _, p = make_case(SHAPE, seed=20 + k)
        p[10:20, 10:40, 10:40] = np.where(p[10:20, 10:40, 10:40] == 0, 2, p[10:20, 10:40, 10:40])  # a big lesion
        write_prediction_with_geometry(p, pred / f"case_{k}.nii.gz")
    stock_apply(pred, tmp_path / "pp_out", out_dir / "postprocessing.pkl", env=nnunet_env)
    for k in range(2):
        assert_filtered_copy(pred / f"case_{k}.nii.gz", tmp_path / "pp_out" / f"case_{k}.nii.gz", expected)
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "pp_out" / f"case_{k}.nii.gz"))).any()

    # writing again keeps a backup of what was there and says so
    (out_dir / "postprocessing.pkl").write_bytes(b"old pkl")
    assert main(["postprocess", "preset", "--challenge", "GLI", "-o", str(out_dir)]) == 0
    backups = sorted(out_dir.glob("postprocessing.pkl.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"old pkl"
    assert len(list(out_dir.glob("postprocessing.json.bak-*"))) == 1
    assert pickle.loads((out_dir / "postprocessing.pkl").read_bytes())[1][0]["wt_threshold"] == 125


@pytest.mark.slow
def test_tune_from_folders_then_apply_with_stock_nnunet_and_with_json(tmp_path, nnunet_env):
    pred, gt, out_dir = tmp_path / "pred", tmp_path / "gt", tmp_path / "tuned"
    write_case_folders(pred, gt, 4, SHAPE, SPACING, seed=40)
    proc = run_command(
        [
            "nnunet_tcup",
            "postprocess",
            "tune",
            "--challenge",
            "GLI",
            "--pred",
            pred,
            "--gt",
            gt,
            "-o",
            out_dir,
            "--num-workers",
            "1",
        ],
        env=nnunet_env,
    )
    assert "caching cases" in proc.stderr and "lesion-wise Dice" in proc.stdout  # tqdm progress, summary
    assert "out-of-sample" in proc.stdout and "filter KEPT" in proc.stdout and "warning: only 4 cases" in proc.stdout
    doc = json.loads((out_dir / "postprocessing.json").read_text())
    fns, kwargs = pickle.loads((out_dir / "postprocessing.pkl").read_bytes())
    assert fns == [filter_lesions] and kwargs == [doc["kwargs"]]
    assert doc["n_candidates"] == 392 and doc["grid_name"] == "paper" and doc["n_cases"] == 4
    assert doc["filter_kept"] and doc["kwargs"]["min_slices"] == 5
    oos = doc["out_of_sample"]
    assert oos["gain_mean"] > 2 * oos["gain_se"] and sorted(oos["per_case_gain"]) == sorted(doc["per_case"])
    assert set(doc["lesionwise_dice_before"]) == {"WT", "TC", "ET", "mean"}
    assert doc["lesionwise_dice_after"]["mean"] > doc["lesionwise_dice_before"]["mean"]
    # the reported Dice is what the evaluation gives on the filtered predictions
    for name, values in doc["per_case"].items():
        p, spacing = read_array_zyx(pred / f"{name}.nii.gz")
        g, _ = read_array_zyx(gt / f"{name}.nii.gz")
        ev = evaluate_case(g, filter_lesions(p, **doc["kwargs"]), spacing, challenge="GLI")
        assert values["after"] == {r: ev[r].lesionwise_dice for r in ("WT", "TC", "ET")}
        ev0 = evaluate_case(g, p, spacing, challenge="GLI")
        assert values["before"] == {r: ev0[r].lesionwise_dice for r in ("WT", "TC", "ET")}

    stock_apply(pred, tmp_path / "stock", out_dir / "postprocessing.pkl", env=nnunet_env)
    run_command(
        [
            "nnunet_tcup",
            "postprocess",
            "apply",
            "-i",
            pred,
            "-o",
            tmp_path / "ours",
            "--json",
            out_dir / "postprocessing.json",
            "--num-workers",
            "2",
        ],
        env=nnunet_env,
    )
    for name in doc["per_case"]:
        assert_filtered_copy(pred / f"{name}.nii.gz", tmp_path / "stock" / f"{name}.nii.gz", doc["kwargs"])
        assert_filtered_copy(pred / f"{name}.nii.gz", tmp_path / "ours" / f"{name}.nii.gz", doc["kwargs"])


def make_results_layout(env: dict, folds=(0, 1), cases_per_fold: int = 2) -> Path:
    """A trained-model folder as nnU-Net leaves it: plans/dataset json, fold_X/validation predictions, and GT in
    nnUNet_preprocessed/DatasetXXX/gt_segmentations."""
    name = "Dataset999_PPTest"
    model = Path(env["nnUNet_results"]) / name / "nnUNetTrainerTCuPGAN__nnUNetPlans__3d_fullres"
    gt = Path(env["nnUNet_preprocessed"]) / name / "gt_segmentations"
    write_json(plans_json(name), model / "plans.json")
    write_json(DATASET_JSON, model / "dataset.json")
    for f in folds:
        write_case_folders(
            model / f"fold_{f}" / "validation",
            gt,
            cases_per_fold,
            SHAPE,
            SPACING,
            seed=60 + 10 * f,
            prefix=f"BraTS-GLI-{f:05d}",
        )
    return model


@pytest.mark.slow
def test_tune_from_nnunet_results_writes_where_find_best_configuration_does(tmp_path, nnunet_env, monkeypatch):
    from nnunetv2.utilities.file_path_utilities import folds_tuple_to_string, get_output_folder

    model = make_results_layout(nnunet_env)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, nnunet_env[key])
    # the folder find_best_configuration passes to accumulate_cv_results / determine_postprocessing
    crossval = (
        Path(get_output_folder(999, "nnUNetTrainerTCuPGAN", "nnUNetPlans", "3d_fullres", fold=None))
        / f"crossval_results_folds_{folds_tuple_to_string((0, 1))}"
    )
    assert crossval.parent == model
    crossval.mkdir()
    (crossval / "postprocessing.pkl").write_bytes(b"nnU-Net's own pkl")
    (crossval / "postprocessing.json").write_text('{"postprocessing_fns": []}')
    proc = run_command(
        [
            "nnunet_tcup",
            "postprocess",
            "tune",
            "--challenge",
            "GLI",
            "-d",
            "999",
            "-f",
            "0",
            "1",
            "--wt-thresholds",
            "0",
            "20",
            "--tc-thresholds",
            "0",
            "10",
            "--et-thresholds",
            "0",
            "5",
            "--min-slices",
            "1",
            "3",
            "--num-workers",
            "1",
        ],
        env=nnunet_env,
    )
    assert "previous version kept as" in proc.stdout and "nnUNetv2_apply_postprocessing" in proc.stdout
    backups = list(crossval.glob("postprocessing.pkl.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"nnU-Net's own pkl"
    fns, kwargs = pickle.loads((crossval / "postprocessing.pkl").read_bytes())
    doc = json.loads((crossval / "postprocessing.json").read_text())
    assert fns == [filter_lesions] and kwargs == [doc["kwargs"]] and doc["n_cases"] == 4
    assert doc["dataset"] == "Dataset999_PPTest" and doc["folds"] == [0, 1] and doc["n_candidates"] == 16
    assert (crossval / "plans.json").is_file() and (crossval / "dataset.json").is_file()  # for -plans_json


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_cli_bad_input(tmp_path, capsys, monkeypatch):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    code, err = run_cli(["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt], capsys)
    assert code == 1 and "no prediction files" in err
    write_case_folders(pred, gt, 2, (16, 24, 24), seed=1)
    (gt / "case_001.nii.gz").rename(gt / "other_001.nii.gz")
    code, err = run_cli(
        ["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "--num-workers", "1"], capsys
    )
    assert code == 1 and "no ground truth for 1 of 2" in err and "case_001" in err
    code, err = run_cli(
        ["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "--wt-thresholds", "-5"], capsys
    )
    assert code == 1 and "non-negative" in err
    code, err = run_cli(["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "-d", "1"], capsys)
    assert code == 1 and "either --pred and --gt, or -d" in err
    code, err = run_cli(["postprocess", "tune", "--challenge", "XYZ", "--pred", pred, "--gt", gt], capsys)
    assert code == 1 and "unknown challenge" in err
    (gt / "other_001.nii.gz").rename(gt / "case_001.nii.gz")
    from postprocessing_helpers import write_label_image

    write_label_image(np.zeros((16, 24, 20), np.uint8), gt / "case_001.nii.gz")
    code, err = run_cli(
        ["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "--num-workers", "1"], capsys
    )
    assert code == 1 and "geometry differs from" in err and "case_001.nii.gz" in err and "shape" in err
    write_label_image(np.full((16, 24, 24), 4, np.uint8), gt / "case_001.nii.gz")
    code, err = run_cli(
        ["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "--num-workers", "1"], capsys
    )
    assert code == 1 and "ground truth holds labels outside 0-3" in err and "case_001.nii.gz" in err
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    code, err = run_cli(["postprocess", "tune", "--challenge", "GLI", "-d", "Dataset001_X"], capsys)
    assert code == 1 and "trained model folder not found" in err

    # apply: refuses nnU-Net's own json, labels outside 0-3 (naming the file), existing outputs, -o == -i
    nnunet_json = write_json({"postprocessing_fns": [], "postprocessing_kwargs": []}, tmp_path / "nn.json")
    code, err = run_cli(["postprocess", "apply", "-i", pred, "-o", tmp_path / "o", "--json", nnunet_json], capsys)
    assert code == 1 and "no 'kwargs'" in err
    assert main(["postprocess", "preset", "--challenge", "SSA", "-o", str(tmp_path / "preset")]) == 0
    ours = tmp_path / "preset" / "postprocessing.json"
    bad = np.zeros((8, 8, 8), np.uint8)
    bad[2, 2, 2] = 7
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    write_prediction_with_geometry(bad, bad_dir / "bad_case.nii.gz")
    code, err = run_cli(["postprocess", "apply", "-i", bad_dir, "-o", tmp_path / "bad_out", "--json", ours], capsys)
    assert code == 1 and "bad_case.nii.gz" in err and "outside 0-3" in err
    assert list((tmp_path / "bad_out").glob("*")) == []  # nothing written, not even a partial file
    assert main(["postprocess", "apply", "-i", str(pred), "-o", str(tmp_path / "o"), "--json", str(ours)]) == 0
    code, err = run_cli(["postprocess", "apply", "-i", pred, "-o", tmp_path / "o", "--json", ours], capsys)
    assert code == 1 and "exist already" in err
    assert (
        main(["postprocess", "apply", "-i", str(pred), "-o", str(tmp_path / "o"), "--json", str(ours), "--overwrite"])
        == 0
    )
    code, err = run_cli(["postprocess", "apply", "-i", pred, "-o", pred, "--json", ours], capsys)
    assert code == 1 and "must differ" in err
    code, err = run_cli(
        ["postprocess", "apply", "-i", tmp_path / "gt_missing", "-o", tmp_path / "x", "--json", ours], capsys
    )
    assert code == 1 and "not a directory" in err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"wt_threshold": -1, "tc_threshold": 0, "et_threshold": 0}, "non-negative"),
        ({"wt_threshold": "a", "tc_threshold": 0, "et_threshold": 0}, "non-negative"),
        ({"wt_threshold": 1, "tc_threshold": 0}, "missing"),
    ],
)
def test_apply_rejects_bad_json_kwargs(tmp_path, capsys, kwargs, message):
    path = write_json({"kwargs": kwargs}, tmp_path / "pp.json")
    code, err = run_cli(["postprocess", "apply", "-i", tmp_path, "-o", tmp_path / "o", "--json", path], capsys)
    assert code == 1 and message in err


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def one_line_error(err: str) -> str:
    """The error line of the CLI (tqdm progress lines on stderr aside); asserts it is a single line."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_truncated_prediction_is_refused_by_tune_and_apply_leaving_nothing(tmp_path, capsys):
    pred, gt, out = tmp_path / "pred", tmp_path / "gt", tmp_path / "tuned"
    write_case_folders(pred, gt, 3, (16, 24, 24), seed=3)
    truncate(pred / "case_001.nii.gz")
    code, err = run_cli(
        ["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "-o", out, "--num-workers", "1"],
        capsys,
    )
    line = one_line_error(err)
    assert code == 1 and "case_001.nii.gz" in line and "truncated" in line
    assert not out.exists()
    assert main(["postprocess", "preset", "--challenge", "GLI", "-o", str(tmp_path / "preset")]) == 0
    for workers in ("1", "2"):  # also when other workers have already written their (staged) cases
        code, err = run_cli(
            [
                "postprocess",
                "apply",
                "-i",
                pred,
                "-o",
                tmp_path / "pp",
                "--json",
                tmp_path / "preset" / "postprocessing.json",
                "--num-workers",
                workers,
            ],
            capsys,
        )
        line = one_line_error(err)
        assert code == 1 and "case_001.nii.gz" in line and "truncated" in line
        assert not (tmp_path / "pp").exists()  # no outputs, no partial files, not even the folder it made
    (tmp_path / "pp").mkdir()
    (tmp_path / "pp" / "mine.txt").write_text("user data")
    code, _ = run_cli(
        [
            "postprocess",
            "apply",
            "-i",
            pred,
            "-o",
            tmp_path / "pp",
            "--json",
            tmp_path / "preset" / "postprocessing.json",
            "--num-workers",
            "1",
        ],
        capsys,
    )
    assert code == 1 and sorted(p.name for p in (tmp_path / "pp").iterdir()) == ["mine.txt"]


def test_tune_refuses_a_prediction_on_another_grid(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_case_folders(pred, gt, 2, (16, 24, 24), seed=5)
    image = sitk.ReadImage(str(pred / "case_000.nii.gz"))
    image.SetOrigin((0.0, 0.0, 3.0))  # same shape and spacing, shifted by 3 mm
    sitk.WriteImage(image, str(pred / "case_000.nii.gz"), useCompression=True)
    code, err = run_cli(
        ["postprocess", "tune", "--challenge", "GLI", "--pred", pred, "--gt", gt, "--num-workers", "1"], capsys
    )
    line = one_line_error(err)
    assert (
        code == 1 and "origin" in line and str(pred / "case_000.nii.gz") in line and str(gt / "case_000.nii.gz") in line
    )


@pytest.mark.slow
def test_identity_when_no_filter_passes_changes_nothing_with_stock_nnunet_and_apply(tmp_path, nnunet_env, capsys):
    from postprocessing_helpers import make_model_case

    pred, gt, out_dir = tmp_path / "pred", tmp_path / "gt", tmp_path / "tuned"
    pred.mkdir()
    gt.mkdir()
    for k in range(5):  # clean predictions with true small lesions: any filter can only delete real tumour
        g, p = make_model_case(300 + k, (40, 64, 64), fp_rate=0.0, small_lesion_prob=1.0, hit_rate=1.0)
        write_prediction_with_geometry(g, gt / f"case_{k}.nii.gz")
        write_prediction_with_geometry(p, pred / f"case_{k}.nii.gz")
    code = main(
        [
            "postprocess",
            "tune",
            "--challenge",
            "GLI",
            "--pred",
            str(pred),
            "--gt",
            str(gt),
            "-o",
            str(out_dir),
            "--grid",
            "wide",
            "--num-workers",
            "1",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0 and "filter NOT KEPT" in stdout and "writing the identity" in stdout
    doc = json.loads((out_dir / "postprocessing.json").read_text())
    assert not doc["filter_kept"] and doc["kwargs"] == {
        "wt_threshold": 0.0,
        "tc_threshold": 0.0,
        "et_threshold": 0.0,
        "min_slices": 1,
    }
    assert doc["postprocessing_fns"] == [] and pickle.loads((out_dir / "postprocessing.pkl").read_bytes()) == ([], [])
    stock_apply(pred, tmp_path / "stock", out_dir / "postprocessing.pkl", env=nnunet_env)
    assert (
        main(
            [
                "postprocess",
                "apply",
                "-i",
                str(pred),
                "-o",
                str(tmp_path / "ours"),
                "--json",
                str(out_dir / "postprocessing.json"),
                "--num-workers",
                "1",
            ]
        )
        == 0
    )
    for k in range(5):
        for folder in ("stock", "ours"):
            assert_filtered_copy(
                pred / f"case_{k}.nii.gz", tmp_path / folder / f"case_{k}.nii.gz", doc["kwargs"]
            )  # identity kwargs: the output equals the input
            same = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / folder / f"case_{k}.nii.gz")))
            assert np.array_equal(same, sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"case_{k}.nii.gz"))))


def test_output_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_case_folders(pred, gt, 2, (16, 24, 24), seed=7)
    (tmp_path / "afile").write_text("mine")
    code, err = run_cli(
        [
            "postprocess",
            "tune",
            "--challenge",
            "GLI",
            "--pred",
            pred,
            "--gt",
            gt,
            "-o",
            tmp_path / "afile" / "pp",
            "--num-workers",
            "1",
        ],
        capsys,
    )
    line = one_line_error(err)
    assert code == 1 and "afile" in line and "caching cases" not in err
    assert main(["postprocess", "preset", "--challenge", "GLI", "-o", str(tmp_path / "preset")]) == 0
    code, err = run_cli(
        [
            "postprocess",
            "apply",
            "-i",
            pred,
            "-o",
            tmp_path / "afile" / "out",
            "--json",
            tmp_path / "preset" / "postprocessing.json",
            "--num-workers",
            "1",
        ],
        capsys,
    )
    assert code == 1 and "afile" in one_line_error(err) and (tmp_path / "afile").read_text() == "mine"
    code, err = run_cli(["postprocess", "preset", "--challenge", "GLI", "-o", tmp_path / "afile" / "pp"], capsys)
    assert code == 1 and "afile" in one_line_error(err)
