"""The classes head under nnU-Net's averaging (windows, mirrors, folds) and ``nnUNetv2_ensemble``: a voxel's label is
the paper's rule (background = 1 - sum sigma, normalise, argmax) on the members' *averaged* sigmoid probabilities.

Worked example (issue 19): members sigma = (0.55, 0.50, 0) and (0.01, 0.01, 0.01). The average (0.28, 0.255, 0.005)
leaves background 0.46, so the rule gives background; averaging the earlier head's log-probabilities
(``log max(1 - sum sigma, 1e-6)`` vetoes background) gives NETC. The two members are two "folds" of a model folder
whose generators output a constant ``s_k = logit(sigma_k)`` (head weights 0, bias ``s_k``), run through the stock
``nnUNetv2_predict -f 0 1``, ``nnUNetv2_ensemble`` and nnU-Net's predictor API.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_command
from test_trainer_support import predict_on_cpu
from test_trainer_unit import DATASET, LABELS_JSON, _plans

from nnunet_tcup.review.inputs import load_probabilities, output_kind, tcup_class_scores
from nnunet_tcup.trainers.class_head import average_output, loss_output
from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN

MEMBERS = ((0.55, 0.50, 0.0), (0.01, 0.01, 0.01))
DATASET_ID = 987
TRAINER = "nnUNetTrainerTCuPGAN"
SHAPE_ZYX = (12, 16, 16)  # 2 overlapping windows of the 8 x 16 x 16 patch along z


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def _sigmoid_logits(sigma: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor([_logit(p) for p in sigma], dtype=torch.float64).view(1, -1, 1, 1, 1)


def _paper_rule(sigma: np.ndarray) -> int:
    scores = np.concatenate([[1.0 - sigma.sum()], sigma])
    return int(np.argmax(scores / scores.sum()))


def test_average_output_is_linear_in_sigma_and_the_old_head_vetoes_background() -> None:
    s = [_sigmoid_logits(m) for m in MEMBERS]
    mean_sigma = np.mean(np.array(MEMBERS), axis=0)
    assert _paper_rule(mean_sigma) == 0
    averaged = (average_output(s[0]) + average_output(s[1])) / 2
    torch.testing.assert_close(averaged[0, :, 0, 0, 0], torch.tensor([0.46, 0.28, 0.255, 0.005], dtype=torch.float32))
    assert int(torch.softmax(averaged, 1).argmax(1)) == 0  # the rule on the averaged sigma
    old = (loss_output(s[0]) + loss_output(s[1])) / 2  # the earlier head, averaged as nnU-Net averages
    assert int(old.argmax(1)) == 1  # NETC: one member's floored background vetoes it


def test_saved_probabilities_give_the_averaged_sigma_back() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 3, 2, 2, 2, generator=g, dtype=torch.float64) * 3
    z = average_output(s).double()
    assert torch.allclose(z.sum(1), torch.ones_like(z[:, 0]))
    p = torch.softmax(z, 1).numpy()
    for b in range(3):
        np.testing.assert_allclose(tcup_class_scores(p[b]), z[b].numpy(), atol=1e-5)
    outside_crop = np.zeros((4, 1, 1, 1), np.float32)
    outside_crop[0] = 1  # what nnU-Net writes outside its crop
    np.testing.assert_array_equal(tcup_class_scores(outside_crop), outside_crop)


def test_probability_ensemble_is_not_exactly_the_rule() -> None:
    """``nnUNetv2_ensemble`` averages softmax(z), not z: each member's argmax is kept, and the worked example agrees,
    but near ties the label can differ from the rule on the averaged sigma (here NETC by the rule, ET by the
    probability average)."""
    members = np.array([[0.523, 0.089, 0.982], [0.562, 0.063, 0.025]])
    z = [average_output(_sigmoid_logits(tuple(m))).double() for m in members]
    assert _paper_rule(members.mean(0)) == 1
    assert int(torch.stack([torch.softmax(v, 1) for v in z]).mean(0).argmax(1)) == 3


def _constant_state(sigma: tuple[float, ...], template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = copy.deepcopy(template)
    state["generator.head.weight"].zero_()
    state["generator.head.bias"].copy_(torch.tensor([_logit(p) for p in sigma]))
    return state


def _model_folder(results: Path) -> Path:
    """A TCuP-GAN classes model folder with two folds whose generators output the constant ``MEMBERS``."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = _plans()
    plans["tcup_gan"] = {"formulation": "classes"}
    manager = PlansManager(plans)
    network = nnUNetTrainerTCuPGAN.build_network_architecture(
        manager, manager.get_configuration("3d_fullres"), 4, 4, enable_deep_supervision=False
    )
    folder = results / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(LABELS_JSON))
    for fold, sigma in enumerate(MEMBERS):
        (folder / f"fold_{fold}").mkdir()
        checkpoint = {
            "network_weights": _constant_state(sigma, network.state_dict()),
            "trainer_name": TRAINER,
            "init_args": {"configuration": "3d_fullres"},
            "inference_allowed_mirroring_axes": (0, 1, 2),
        }
        torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


def _images(folder: Path) -> Path:
    """One case on the plans' 1 mm grid (no resampling: the test stays fast)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for channel in range(4):
        image = sitk.GetImageFromArray(rng.normal(1.0, 0.3, SHAPE_ZYX).astype(np.float32))
        sitk.WriteImage(image, str(folder / f"case_0000_{channel:04d}.nii.gz"), True)
    return folder


def _labels(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.mark.slow
def test_worked_example_through_nnunet_predict_folds_and_ensemble(tmp_path: Path, nnunet_env: dict[str, str]) -> None:
    model = _model_folder(Path(nnunet_env["nnUNet_results"]))
    images = _images(tmp_path / "images")
    out = tmp_path / "pred"
    predict_on_cpu(nnunet_env, images, out / "folds01", DATASET_ID, TRAINER, [0, 1], "--disable_tta")
    labels = _labels(out / "folds01" / "case_0000.nii.gz")
    assert labels.shape == SHAPE_ZYX and np.all(labels == 0)  # the rule on the averaged sigma: background
    kind = output_kind(out / "folds01" / "dataset.json")
    assert kind.kind == "tcup_classes"
    regions, scores = load_probabilities(out / "folds01" / "case_0000.npz", kind)
    assert scores is not None
    # the averaged sigma, back from the saved probabilities (nnU-Net accumulates windows in fp16)
    np.testing.assert_allclose(scores[:, 6, 8, 8], [0.46, 0.28, 0.255, 0.005], atol=2e-3)
    np.testing.assert_allclose(regions[:, 6, 8, 8], [0.54, 0.285, 0.005], atol=2e-3)  # WT, TC, ET

    for fold in (0, 1):
        predict_on_cpu(nnunet_env, images, out / f"fold{fold}", DATASET_ID, TRAINER, [fold], "--disable_tta")
    assert np.all(_labels(out / "fold0" / "case_0000.nii.gz") == 1)  # member 1 alone: NETC
    run_command(["nnUNetv2_ensemble", "-i", out / "fold0", out / "fold1", "-o", out / "ensemble", "-np", 1])
    assert np.all(_labels(out / "ensemble" / "case_0000.nii.gz") == 0)

    # the same predictor with the earlier head (log-probabilities averaged): NETC everywhere
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=True, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), (0, 1))
    assert predictor.network.output == "average"
    data = np.stack([_labels(p) for p in sorted(images.glob("*.nii.gz"))]).astype(np.float32)
    properties = {"spacing": [1.0, 1.0, 1.0]}  # in-process: mirrors averaged too
    assert np.all(predictor.predict_single_npy_array(data, properties) == 0)
    predictor.network.output = "loss"
    assert np.all(predictor.predict_single_npy_array(data, properties) == 1)
