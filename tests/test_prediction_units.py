"""``nnunet_tcup predict``'s pieces that need no trained model: model folder checks (folds, channel order, where the
tuned filter is found), the case id of one case given as files, the part split. End to end: ``test_predict.py``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from nnunet_tcup.cli import main
from nnunet_tcup.postprocessing.lesion_filter import FilterParameters
from nnunet_tcup.postprocessing.nnunet_results import postprocessing_json, write_postprocessing_files
from nnunet_tcup.prediction.cases import part_of
from nnunet_tcup.prediction.cli import _single_case_id
from nnunet_tcup.prediction.model import find_folds, load_model, model_folder_from_ids


def _model(folder: Path, channels: dict[str, str] | None = None, folds: tuple[str, ...] = ("0", "1")) -> Path:
    folder.mkdir(parents=True)
    names = channels or {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}
    (folder / "dataset.json").write_text(json.dumps({"channel_names": names, "file_ending": ".nii.gz"}))
    (folder / "plans.json").write_text("{}")
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    return folder


def test_folds_default_to_those_holding_the_checkpoint(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", folds=("0", "2", "10", "all"))
    (model / "fold_1").mkdir()  # no checkpoint
    assert find_folds(model) == (0, 2, 10)
    assert load_model(model).folds == (0, 2, 10)
    assert load_model(model, folds=["all", "2"]).folds == ("all", 2)
    only_all = _model(tmp_path / "a", folds=("all",))
    with pytest.raises(ValueError, match="fold_all has one: pass -f all"):
        find_folds(only_all)


def test_channel_order_comes_from_the_models_dataset_json(tmp_path: Path) -> None:
    brats21 = {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"}
    assert load_model(_model(tmp_path / "a", brats21)).channel_modalities == ("t1n", "t1c", "t2w", "t2f")
    shuffled = {"0": "t2f", "1": "t1n", "2": "t1c", "3": "t2w"}
    assert load_model(_model(tmp_path / "b", shuffled)).channel_modalities == ("t2f", "t1n", "t1c", "t2w")
    with pytest.raises(ValueError, match="not the four BraTS modalities"):
        load_model(_model(tmp_path / "c", {"0": "t1n", "1": "t1n", "2": "t2w", "3": "t2f"}))


def test_the_tuned_filter_of_these_folds_is_found(tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    params = FilterParameters(10.0, 5.0, 2.0, 3)
    assert load_model(model).postprocessing is None
    write_postprocessing_files(model / "crossval_results_folds_0_1", params, postprocessing_json(params, "test"))
    assert load_model(model).postprocessing == params
    assert load_model(model, postprocessing=False).postprocessing is None
    other = load_model(model, folds=[0])
    assert other.postprocessing is None and "crossval_results_folds_0_1: predict with those folds" in other.notes[0]
    # nnU-Net's own postprocessing.json (find_best_configuration) is not the tuned filter: noted, not applied
    own = model / "crossval_results_folds_0"
    own.mkdir()
    (own / "postprocessing.json").write_text(json.dumps({"postprocessing_fns": [], "postprocessing_kwargs": []}))
    noted = load_model(model, folds=[0])
    assert noted.postprocessing is None and "nnU-Net's own post-processing" in noted.notes[0]
    (own / "postprocessing.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(model, folds=[0])


def test_model_folder_from_nnunet_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    folder = _model(tmp_path / "Dataset007_BraTS2023_GLI" / "T__nnUNetPlans__3d_fullres")
    assert model_folder_from_ids("7", "T") == folder
    assert model_folder_from_ids("Dataset007_BraTS2023_GLI", "T") == folder
    with pytest.raises(ValueError, match="trained model folder not found"):
        model_folder_from_ids("7", "U")


def test_case_id_of_one_case_given_as_files() -> None:
    def case_id(t1n: str, output: str, given: str | None = None) -> str:
        return _single_case_id(argparse.Namespace(case_id=given, t1n=t1n), Path(output))

    assert case_id("d/BraTS-MEN-00004-001-t1n.nii.gz", "out") == "BraTS-MEN-00004-001"
    assert case_id("d/BraTS2021_00012_t1.nii", "out") == "BraTS2021_00012"
    assert case_id("d/BraTS-MEN-00004-001-t1n.nii.gz", "out", "mine") == "mine"
    assert case_id("d/patient_t1.nii.gz", "seg/p7.nii.gz") == "p7"
    with pytest.raises(ValueError, match="give --case-id"):
        case_id("d/patient_t1.nii.gz", "out")


def test_parts_are_nnunets_split() -> None:
    cases = ["a", "b", "c", "d", "e"]
    assert [part_of(cases, 2, k) for k in (0, 1)] == [["a", "c", "e"], ["b", "d"]]
    assert part_of(cases, 1, 0) == cases
    with pytest.raises(ValueError, match="part_id"):
        part_of(cases, 2, 2)


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "-h"])
    text = capsys.readouterr().out
    for option in ("-i", "-o", "--t1n", "--t1c", "--t2w", "--t2f", "--case-id", "-m", "-d", "-tr", "-c", "-p", "-f"):
        assert f"{option} " in text
    for option in ("--checkpoint", "--device", "--disable-tta", "--no-postprocessing", "--num-workers"):
        assert option in text
    for option in ("--no-progress", "-num_parts", "--num-parts", "-part_id", "--part-id"):
        assert option in text


def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "m")
    assert main(["predict", "-o", str(tmp_path / "o"), "-m", str(model)]) == 1
    assert main(["predict", "--t1n", "x.nii.gz", "-o", str(tmp_path / "o"), "-m", str(model)]) == 1
    assert main(["predict", "-i", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "nnunet_tcup predict: error: give the cases either as -i INPUT or as --t1n --t1c --t2w --t2f (one case)",
        "nnunet_tcup predict: error: missing --t1c --t2w --t2f: one case needs all four modalities",
        "nnunet_tcup predict: error: give the model either as -m MODEL_FOLDER or as -d DATASET (with -tr/-c/-p)",
    ]
    assert not (tmp_path / "o").exists()
