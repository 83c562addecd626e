"""``nnunet_tcup review --model``: the review runs nnU-Net's predictor once per fold of a real trained model (tiny
synthetic GLI data, ``nnUNetTrainerTCuPGAN_tiny`` fold 0, copied as fold 1) and gets the same probabilities as the stock
``nnUNetv2_predict -f K --save_probabilities``."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_command
from test_trainer_support import fresh_shell_env, make_brats_dataset, model_folder, plan_and_preprocess

pytestmark = pytest.mark.slow

DATASET_ID = 652
TRAINER = "nnUNetTrainerTCuPGAN_tiny"


def test_review_predicts_each_fold_like_the_stock_command(nnunet_env: dict[str, str], tmp_path: Path) -> None:
    import SimpleITK as sitk

    env = fresh_shell_env(nnunet_env)
    raw = make_brats_dataset(env, tmp_path, DATASET_ID, "GLI", n_train=5, n_test=2, shape=(32, 32, 24))
    plan_and_preprocess(env, DATASET_ID)
    run_command(["nnUNetv2_train", DATASET_ID, "3d_fullres", 0, "-tr", TRAINER, "-device", "cpu"], env=env)
    results = model_folder(env, raw.name, TRAINER)
    shutil.copytree(results / "fold_0", results / "fold_1")  # a second fold (same weights) saves a training
    images, out = raw / "imagesTs", tmp_path / "review"
    proc = run_command(
        [
            "nnunet_tcup",
            "review",
            "--model",
            model_folder(env, raw.name, TRAINER),
            "-f",
            0,
            1,
            "-i",
            images,
            "-o",
            out,
            "--device",
            "cpu",
            "--disable-tta",
            "--num-workers",
            1,
            "--no-progress",
        ],
        env=env,
    )
    assert "2 cases reviewed" in proc.stdout

    stock = tmp_path / "stock_fold1"
    run_command(
        [
            "nnUNetv2_predict",
            "-i",
            images,
            "-o",
            stock,
            "-d",
            DATASET_ID,
            "-c",
            "3d_fullres",
            "-tr",
            TRAINER,
            "-f",
            1,
            "--save_probabilities",
            "--disable_tta",
            "-device",
            "cpu",
            "-npp",
            1,
            "-nps",
            1,
        ],
        env=env,
    )
    cases = sorted(p.name[: -len(".npz")] for p in stock.glob("*.npz"))
    assert len(cases) == 2
    for case in cases:
        ours = np.load(out / "predictions" / "fold_1" / f"{case}.npz")["probabilities"]
        theirs = np.load(stock / f"{case}.npz")["probabilities"]
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=case)

    with open(out / "review.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["case"] for r in rows) == cases and all(r["num_folds"] == "2" for r in rows)
    source = sitk.ReadImage(str(images / f"{cases[0]}_0000.nii.gz"))
    consensus = sitk.ReadImage(str(out / "maps" / cases[0] / "consensus.nii.gz"))
    assert consensus.GetSize() == source.GetSize() and consensus.GetSpacing() == source.GetSpacing()
    assert consensus.GetOrigin() == source.GetOrigin() and consensus.GetDirection() == source.GetDirection()
