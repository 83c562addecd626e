"""The paper's formulation end to end with the stock commands (issue 9): ``nnunet_tcup convert --mode classes``
(plain labels NETC / SNFH / ET) -> ``nnUNetv2_plan_and_preprocess`` -> ``nnUNetv2_train -tr
nnUNetTrainerTCuPGAN_tiny`` fold 0 (copied as fold 1: a second training shows nothing more about the formulation, the
regions model of ``tests/shared_models.py`` trains both folds) -> ``nnUNetv2_predict -f 0 1 --save_probabilities``
(the fold ensemble) -> ``nnunet_tcup evaluate``.

What it shows: the model folder records the classes formulation; the stock predictor, through the network's
classes head (``trainers/class_head.py``), writes 2023 labels 0-3 whose saved probabilities are ``softmax(z)`` of the
fold-averaged ``z = [1 - sum sigma, sigma_NETC, sigma_SNFH, sigma_ET]``, and whose
labels are their argmax (the paper's rule on the averaged sigma); the
predictions are not trivial (an all-background or single-label output fails) and are scored lesion-wise. (Two
epochs of 4 iterations do not segment well: learning is shown by ``test_trainer_overfit.py`` and the ablation.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_command
from test_trainer_support import fresh_shell_env, make_brats_dataset, model_folder, plan_and_preprocess, predict_on_cpu

pytestmark = pytest.mark.slow

DATASET_ID = 612
TRAINER = "nnUNetTrainerTCuPGAN_tiny"
SHAPE_XYZ = (40, 40, 24)


def test_classes_formulation_with_the_stock_commands(tmp_path: Path) -> None:
    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / key).mkdir()
        env[key] = str(tmp_path / key)
    env.update({"nnUNet_compile": "f", "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "MPLBACKEND": "Agg"})
    env = fresh_shell_env(env)
    raw = make_brats_dataset(
        env, tmp_path, DATASET_ID, "GLI", n_train=5, n_test=2, shape=SHAPE_XYZ, mode="classes", test_seg=True
    )
    assert json.loads((raw / "dataset.json").read_text())["labels"] == {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
    plan_and_preprocess(env, DATASET_ID)
    run_command(["nnUNetv2_train", DATASET_ID, "3d_fullres", 0, "-tr", TRAINER, "-device", "cpu"], env=env)
    models = model_folder(env, raw.name, TRAINER)
    shutil.copytree(models / "fold_0", models / "fold_1")  # the ensemble of two folds, for one training
    assert json.loads((models / "plans.json").read_text())["tcup_gan"]["formulation"] == "classes"
    assert "formulation: classes (NETC, SNFH, ET)" in next((models / "fold_0").glob("training_log_*.txt")).read_text()

    predictions = tmp_path / "pred"
    predict_on_cpu(env, raw / "imagesTs", predictions, DATASET_ID, TRAINER, (0, 1))
    files = sorted(predictions.glob("*.nii.gz"))
    assert len(files) == 2
    for f in files:
        seg = np.asarray(nib.load(str(f)).dataobj)
        assert seg.shape == SHAPE_XYZ and set(np.unique(seg).tolist()) <= {0, 1, 2, 3}
        labels = set(np.unique(seg).tolist())
        assert 0 in labels and len(labels) >= 2, f"{f.name}: trivial prediction (labels {sorted(labels)})"
        probabilities = np.load(str(f).replace(".nii.gz", ".npz"))["probabilities"]  # (4, z, y, x)
        assert probabilities.shape == (4, SHAPE_XYZ[2], SHAPE_XYZ[1], SHAPE_XYZ[0])
        np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-4)
        # the paper's rule: label = argmax of [1 - sum sigma, sigma_1, sigma_2, sigma_3]: what nnU-Net wrote
        agree = np.mean(probabilities.argmax(0) == seg.transpose(2, 1, 0))
        assert agree > 0.99, f"{f.name}: labels and probabilities disagree on {1 - agree:.1%} of voxels"

    results = tmp_path / "results.csv"
    gt = tmp_path / f"synth_GLI_{DATASET_ID}_test"
    run_command(
        [
            "nnunet_tcup",
            "evaluate",
            "--gt",
            gt,
            "--pred",
            predictions,
            "--challenge",
            "GLI",
            "-o",
            results,
            "--no-progress",
        ],
        env=env,
    )
    table = pd.read_csv(results)
    assert sorted(set(table["Labels"])) == ["ET", "TC", "WT"] and len(table) == 6
    assert np.isfinite(table["LesionWise_Score_Dice"]).all()
