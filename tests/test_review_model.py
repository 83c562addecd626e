"""``nnunet_tcup review --model``: the review runs nnU-Net's predictor once per fold of a real trained model (the
session's shared tiny model, ``tests/shared_models.py``: synthetic GLI data, ``nnUNetTrainerTCuPGAN_tiny`` folds 0 and
1 trained by the stock ``nnUNetv2_train``) and gets the same probabilities as the stock ``nnUNetv2_predict -f K
--save_probabilities``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import run_command
from shared_models import TINY_GLI_DATASET_ID, TINY_TRAINER, TinyGLIModel
from test_trainer_support import predict_on_cpu

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tiny_gli_model")]  # one worker trains the shared model

DATASET_ID = TINY_GLI_DATASET_ID
TRAINER = TINY_TRAINER


def test_review_predicts_each_fold_like_the_stock_command(tiny_gli_model: TinyGLIModel, tmp_path: Path) -> None:
    import SimpleITK as sitk

    env, raw = tiny_gli_model.dataset.env, tiny_gli_model.dataset.raw
    images, out = raw / "imagesTs", tmp_path / "review"
    proc = run_command(
        [
            "nnunet_tcup",
            "review",
            "--model",
            tiny_gli_model.models,
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
    predict_on_cpu(env, images, stock, DATASET_ID, TRAINER, (1,), "--disable_tta")
    cases = sorted(p.name[: -len(".npz")] for p in stock.glob("*.npz"))
    assert len(cases) == 2
    for case in cases:
        ours = np.load(out / "predictions" / "fold_1" / f"{case}.npz")["probabilities"]
        theirs = np.load(stock / f"{case}.npz")["probabilities"]
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=case)
        # the two folds are separately trained models: fold 0's output is not fold 1's (a fold mix-up would show)
        other = np.load(out / "predictions" / "fold_0" / f"{case}.npz")["probabilities"]
        assert np.abs(other - theirs).max() > 1e-3, f"{case}: folds 0 and 1 predict the same probabilities"

    with open(out / "review.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["case"] for r in rows) == cases and all(r["num_folds"] == "2" for r in rows)
    source = sitk.ReadImage(str(images / f"{cases[0]}_0000.nii.gz"))
    consensus = sitk.ReadImage(str(out / "maps" / cases[0] / "consensus.nii.gz"))
    assert consensus.GetSize() == source.GetSize() and consensus.GetSpacing() == source.GetSpacing()
    assert consensus.GetOrigin() == source.GetOrigin() and consensus.GetDirection() == source.GetDirection()
