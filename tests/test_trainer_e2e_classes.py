"""The paper's formulation end to end with the stock commands (issue 9): ``nnunet_tcup convert --mode classes``
(plain labels NETC / SNFH / ET) -> ``nnUNetv2_plan_and_preprocess`` -> ``nnUNetv2_train -tr
nnUNetTrainerTCuPGAN_tiny`` folds 0 and 1 (the session's shared classes model, ``tiny_classes_model`` in
``tests/shared_models.py``) -> ``nnUNetv2_predict -f 0 1 --save_probabilities`` (the fold ensemble) -> ``nnunet_tcup
evaluate``.

What it shows: the model folder records the classes formulation; the stock predictor, through the network's
classes head (``trainers/class_head.py``), writes 2023 labels 0-3 whose saved probabilities are ``softmax(z)`` of the
fold-averaged ``z = [1 - sum sigma, sigma_NETC, sigma_SNFH, sigma_ET]``, and whose
labels are their argmax (the paper's rule on the averaged sigma); the
predictions are not trivial (an all-background or single-label output fails) and are scored lesion-wise. (Two
epochs of 4 iterations do not segment well: learning is shown by ``test_trainer_overfit.py`` and the ablation.)
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_command
from shared_models import TINY_CLASSES_DATASET_ID, TINY_SHAPE_XYZ, TINY_TRAINER, TinyGLIModel
from test_trainer_support import model_folder, predict_on_cpu

# one worker trains the shared classes model (with `pytest -n 2 --dist loadgroup`)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tiny_classes_model")]

DATASET_ID = TINY_CLASSES_DATASET_ID
TRAINER = TINY_TRAINER
SHAPE_XYZ = TINY_SHAPE_XYZ


def test_classes_formulation_with_the_stock_commands(tiny_classes_model: TinyGLIModel, tmp_path: Path) -> None:
    env, raw = tiny_classes_model.dataset.env, tiny_classes_model.dataset.raw
    assert json.loads((raw / "dataset.json").read_text())["labels"] == {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
    assert [proc.returncode for proc in tiny_classes_model.trainings] == [0, 0]
    models = model_folder(env, raw.name, TRAINER)
    assert models == tiny_classes_model.models
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
    gt = tiny_classes_model.dataset.root / f"synth_GLI_{DATASET_ID}_test"
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
