"""End to end with the stock nnU-Net commands (issue 6, sections 2 and 4), on one tiny synthetic GLI dataset.

* ``test_stock_commands_end_to_end`` runs from a shell without ``nnUNet_extTrainer`` (the package's .pth hook must
  find the trainer): ``nnunet_tcup synth`` + ``convert`` -> ``nnUNetv2_plan_and_preprocess`` -> ``nnUNetv2_train``
  folds 0 and 1 with ``--npz`` (``nnUNetTrainerTCuPGAN_tiny``) -> ``--c`` -> ``nnUNetv2_predict -f 0 1`` (fold
  ensemble, with and without test-time mirroring, probabilities saved) -> ``nnUNetv2_find_best_configuration -c
  3d_fullres -f 0 1`` -> ``nnUNetv2_ensemble`` (of the two prediction folders) -> ``nnUNetv2_apply_postprocessing``.
* ``test_interrupted_run_resumes_exactly``: ``--c`` after a crash restores epoch, learning rates, discriminator (and
  generator) weights and the discriminator's optimiser exactly as in an uninterrupted run; ``--val --npz`` works.
* ``test_pretrained_weights_start_finetune_variant``: ``-pretrained_weights`` + ``nnUNetTrainerTCuPGAN_finetune``
  (the transfer step of the README's GLI -> MEN recipe).

The probe trainers of the last two tests live in a *user's own* ``nnUNet_extTrainer`` folder (so they also show that
the package keeps the user's entries). They are the package's trainers with a seeded start, a short schedule whose
learning rates change every epoch, a state dump at the start of every epoch (``probe_epochN.pt``) and, when asked
through the environment, a crash right after the checkpoint of an epoch is written.
Tiny data (5 + 2 cases of 40x40x24 voxels) and a 16x32x32 patch keep it to a few minutes on 2 CPU cores. The
dataset and the trained folds 0 and 1 are the session's shared tiny model (``tests/shared_models.py``: also used by
``test_review_model.py``); the probe trainers train on the session's shared classes dataset (the other xdist group,
with ``test_trainer_e2e_classes.py``: resuming and fine-tuning do not depend on the formulation, and the two groups
keep both workers busy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_command
from shared_models import (
    TINY_CLASSES_DATASET_ID,
    TINY_GLI_DATASET_ID,
    TINY_SHAPE_XYZ,
    TINY_TRAINER,
    TinyGLIDataset,
    TinyGLIModel,
)
from test_trainer_support import model_folder, predict_on_cpu, with_user_trainer_folder, write_user_trainers

# With `pytest -n 2 --dist loadgroup` (the README command) every test of a shared tiny model or dataset runs on that
# model's worker, so each is planned and trained once per run, not once per worker (one group mark per test: two
# marks would make a third group).
ON_GLI_MODEL = pytest.mark.xdist_group("tiny_gli_model")
ON_CLASSES_MODEL = pytest.mark.xdist_group("tiny_classes_model")

DATASET_ID = TINY_GLI_DATASET_ID
PROBE_DATASET_ID = TINY_CLASSES_DATASET_ID
TRAINER = TINY_TRAINER
SHAPE_XYZ = TINY_SHAPE_XYZ

PROBE_SOURCE = """
import os
import random

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import join

from nnunet_tcup.trainers.gan_step import unwrap
from nnunet_tcup.trainers.variants.training_length import nnUNetTrainerTCuPGAN_finetune, nnUNetTrainerTCuPGAN_tiny


class _Probe:
    def _shorten(self):
        self.num_epochs = 4
        self.epoch_is_pass_over_training_cases = False
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        torch.save({"epoch": self.current_epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "lr_discriminator": self.optimizer_discriminator.param_groups[0]["lr"],
                    "generator": unwrap(self.network).state_dict(),
                    "discriminator": unwrap(self.discriminator).state_dict(),
                    "discriminator_optimizer": self.optimizer_discriminator.state_dict()},
                   join(self.output_folder, f"probe_epoch{self.current_epoch}.pt"))

    def on_epoch_end(self):
        super().on_epoch_end()
        crash_after = os.environ.get("TCUP_TEST_CRASH_AFTER_EPOCH")
        if crash_after is not None and self.current_epoch == int(crash_after) + 1:
            raise SystemExit(17)  # simulated crash, after checkpoint_latest.pth of that epoch was written

    def perform_actual_validation(self, save_probabilities=False):
        if os.environ.get("TCUP_TEST_SKIP_VALIDATION"):
            return
        super().perform_actual_validation(save_probabilities)


def _seed():
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)


class nnUNetTrainerTCuPGAN_probeUninterrupted(_Probe, nnUNetTrainerTCuPGAN_tiny):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        _seed()
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._shorten()
        self.lr_decay_every_epochs = 1


class nnUNetTrainerTCuPGAN_probeInterrupted(nnUNetTrainerTCuPGAN_probeUninterrupted):
    pass


class nnUNetTrainerTCuPGAN_probeFinetune(_Probe, nnUNetTrainerTCuPGAN_finetune):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        _seed()
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._shorten()
        self.num_epochs = 2
"""
UNINTERRUPTED = "nnUNetTrainerTCuPGAN_probeUninterrupted"
INTERRUPTED = "nnUNetTrainerTCuPGAN_probeInterrupted"
FINETUNE = "nnUNetTrainerTCuPGAN_probeFinetune"


class GLIDataset(NamedTuple):
    env: dict[str, str]  # fresh shell: no nnUNet_extTrainer
    user_env: dict[str, str]  # nnUNet_extTrainer = the user's probe-trainer folder
    raw: Path
    preprocessed: Path


@pytest.fixture(scope="module")
def gli(tiny_classes_dataset: TinyGLIDataset, tmp_path_factory: pytest.TempPathFactory) -> GLIDataset:
    """The session's tiny classes-formulation GLI dataset (5 training + 2 test cases, patch 16x32x32, batch 2) plus a
    user's own trainer folder holding this module's probe trainers."""
    users_folder = write_user_trainers(
        tmp_path_factory.mktemp("users_trainers"), "tcup_probe_trainers_for_tests", PROBE_SOURCE
    )
    dataset = tiny_classes_dataset
    return GLIDataset(
        dataset.env, with_user_trainer_folder(dataset.env, [users_folder]), dataset.raw, dataset.preprocessed
    )


@pytest.fixture(scope="module")
def reference_run(gli: GLIDataset) -> Path:
    """Fold 0 of an uninterrupted 4-epoch probe training (no final validation); returns its fold folder."""
    _train(gli.user_env, PROBE_DATASET_ID, UNINTERRUPTED, TCUP_TEST_SKIP_VALIDATION=1)
    return model_folder(gli.env, gli.raw.name, UNINTERRUPTED) / "fold_0"


def _train(env: dict[str, str], dataset_id: int, trainer: str, *extra, check: bool = True, **env_extra):
    return run_command(
        ["nnUNetv2_train", dataset_id, "3d_fullres", 0, "-tr", trainer, "-device", "cpu", *extra],
        env={**env, **{k: str(v) for k, v in env_extra.items()}},
        check=check,
    )


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


def _check_segmentations(folder: Path, expected_cases: int) -> None:
    files = sorted(folder.glob("*.nii.gz"))
    assert len(files) == expected_cases, f"{folder}: {[f.name for f in files]}"
    for f in files:
        seg = np.asarray(nib.load(str(f)).dataobj)
        assert seg.shape == SHAPE_XYZ, f"{f}: shape {seg.shape}"
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3}, f"{f}: labels {np.unique(seg)}"


def _check_checkpoint(fold_folder: Path, plans_file: Path, dataset_json: Path) -> None:
    """network_weights is generator-only (strict load into build_network_architecture); GAN state present."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_tcup.network_architecture import TCuPGenerator
    from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import GAN_CHECKPOINT_KEYS, nnUNetTrainerTCuPGAN

    checkpoint = torch.load(fold_folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == TRAINER
    assert checkpoint["current_epoch"] == 2
    plans = PlansManager(str(plans_file))
    network = nnUNetTrainerTCuPGAN.build_network_architecture(
        plans, plans.get_configuration("3d_fullres"), 4, 3, enable_deep_supervision=False
    )
    assert isinstance(network, TCuPGenerator)
    network.load_state_dict(checkpoint["network_weights"], strict=True)
    for key in GAN_CHECKPOINT_KEYS:
        assert key in checkpoint, key
    assert not any(k.startswith("module.") for k in checkpoint["discriminator_weights"])
    logging = checkpoint["logging"]
    for key in ("train_losses", "train_adv_losses", "train_disc_losses", "lrs", "lrs_discriminator"):
        assert len(logging[key]) == 2 and np.all(np.isfinite(logging[key])), (key, logging[key])
    assert logging["lrs"] == [5e-4, 5e-4] and logging["lrs_discriminator"] == [1e-4, 1e-4]
    assert (fold_folder / "progress.png").stat().st_size > 0
    assert json.loads(dataset_json.read_text())["regions_class_order"] == [2, 1, 3]


@ON_GLI_MODEL
def test_stock_commands_end_to_end(tiny_gli_model: TinyGLIModel, tmp_path: Path) -> None:
    dataset = tiny_gli_model.dataset
    env, raw, preprocessed = dataset.env, dataset.raw, dataset.preprocessed
    dataset_name = raw.name

    # folds 0 and 1 were trained by the stock `nnUNetv2_train 611 3d_fullres FOLD -tr nnUNetTrainerTCuPGAN_tiny
    # -device cpu --npz` from a fresh shell (shared_models.tiny_gli_model)
    assert [proc.returncode for proc in tiny_gli_model.trainings] == [0, 0]
    models = model_folder(env, dataset_name, TRAINER)
    assert models == tiny_gli_model.models
    _check_checkpoint(models / "fold_0", models / "plans.json", models / "dataset.json")
    for fold in (0, 1):
        validation = models / f"fold_{fold}" / "validation"
        assert sorted(validation.glob("*.npz")), f"--npz wrote no probabilities in {validation}"

    # --c on a finished fold: loads checkpoint_final (generator + GAN state), runs no epoch, validates again
    resumed = run_command(
        ["nnUNetv2_train", DATASET_ID, "3d_fullres", 0, "-tr", TRAINER, "-device", "cpu", "--c"], env=env
    )
    assert "Mean Validation Dice" in resumed.stdout
    assert (
        torch.load(models / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)["current_epoch"]
        == 2
    )

    images = raw / "imagesTs"
    both, no_tta = tmp_path / "pred_f01", tmp_path / "pred_f01_no_tta"
    predict_on_cpu(env, images, both, DATASET_ID, TRAINER, (0, 1))
    predict_on_cpu(env, images, no_tta, DATASET_ID, TRAINER, (0, 1), "--disable_tta")
    _check_segmentations(both, 2)
    for npz in sorted(both.glob("*.npz")):
        probabilities = np.load(npz)["probabilities"]
        assert probabilities.shape == (3, SHAPE_XYZ[2], SHAPE_XYZ[1], SHAPE_XYZ[0])  # regions WT, TC, ET; (z, y, x)
        assert np.all((probabilities >= 0) & (probabilities <= 1))
        assert probabilities.std(axis=(1, 2, 3)).min() > 1e-4, "constant probability maps: the network saw nothing"
        # the written labels are nnU-Net's region rule applied to these probabilities (no all-zero shortcut)
        expected = np.zeros(probabilities.shape[1:], dtype=np.uint8)
        for channel, label in enumerate((2, 1, 3)):  # regions_class_order
            expected[probabilities[channel] > 0.5] = label
        seg = np.asarray(nib.load(str(npz).replace(".npz", ".nii.gz")).dataobj).transpose(2, 1, 0)
        assert np.mean(seg == expected) > 0.99

    run_command(
        ["nnUNetv2_find_best_configuration", DATASET_ID, "-c", "3d_fullres", "-tr", TRAINER, "-f", 0, 1, "-np", 1],
        env=env,
    )
    info = json.loads((Path(env["nnUNet_results"]) / dataset_name / "inference_information.json").read_text())
    best = info["best_model_or_ensemble"]
    assert best["selected_model_or_models"][0]["trainer"] == TRAINER

    ensembled = tmp_path / "ensemble"
    run_command(["nnUNetv2_ensemble", "-i", both, no_tta, "-o", ensembled, "-np", 1], env=env)
    _check_segmentations(ensembled, 2)

    final = tmp_path / "ensemble_postprocessed"
    run_command(
        [
            "nnUNetv2_apply_postprocessing",
            "-i",
            ensembled,
            "-o",
            final,
            "-pp_pkl_file",
            best["postprocessing_file"],
            "-np",
            1,
            "-plans_json",
            best["some_plans_file"],
        ],
        env=env,
    )
    _check_segmentations(final, 2)
    assert (preprocessed / "splits_final.json").is_file()


@ON_CLASSES_MODEL
def test_interrupted_run_resumes_exactly(gli: GLIDataset, reference_run: Path) -> None:
    env, reference = gli.user_env, reference_run
    resumed = model_folder(env, gli.raw.name, INTERRUPTED) / "fold_0"

    crashed = _train(
        env, PROBE_DATASET_ID, INTERRUPTED, check=False, TCUP_TEST_SKIP_VALIDATION=1, TCUP_TEST_CRASH_AFTER_EPOCH=1
    )
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    assert not (resumed / "checkpoint_final.pth").exists()
    at_crash = _load(resumed / "checkpoint_latest.pth")
    assert at_crash["current_epoch"] == 2 and not (resumed / "probe_epoch2.pt").exists()

    _train(env, PROBE_DATASET_ID, INTERRUPTED, "--c", TCUP_TEST_SKIP_VALIDATION=1)
    expected, got = _load(reference / "probe_epoch2.pt"), _load(resumed / "probe_epoch2.pt")
    assert got["epoch"] == expected["epoch"] == 2
    assert got["lr"] == expected["lr"] == pytest.approx(5e-4 * 0.95**2)
    assert got["lr_discriminator"] == expected["lr_discriminator"] == pytest.approx(1e-4 * 0.95**2)
    _assert_same_tensors(got["discriminator"], expected["discriminator"], "discriminator weights")
    _assert_same_tensors(got["generator"], expected["generator"], "generator weights")
    _assert_same_tensors(got["discriminator"], at_crash["discriminator_weights"], "loaded vs checkpoint")
    for idx, state in expected["discriminator_optimizer"]["state"].items():
        other = got["discriminator_optimizer"]["state"][idx]
        assert float(state["step"]) == float(other["step"]) == 4  # 2 epochs x 2 iterations
        assert torch.equal(state["exp_avg"], other["exp_avg"]) and torch.equal(state["exp_avg_sq"], other["exp_avg_sq"])
    first = _load(reference / "probe_epoch0.pt")["discriminator"]
    assert any(not torch.equal(first[k], v) for k, v in expected["discriminator"].items()), "D never trained"

    final, final_reference = _load(resumed / "checkpoint_final.pth"), _load(reference / "checkpoint_final.pth")
    assert final["current_epoch"] == final_reference["current_epoch"] == 4
    for key in ("lrs", "lrs_discriminator"):
        assert final["logging"][key] == final_reference["logging"][key]
        assert len(final["logging"][key]) == 4
    assert len(final["logging"]["train_disc_losses"]) == 4

    validated = _train(env, PROBE_DATASET_ID, INTERRUPTED, "--val", "--npz")
    assert "Mean Validation Dice" in validated.stdout
    assert (resumed / "validation" / "summary.json").is_file()
    assert sorted((resumed / "validation").glob("*.npz")), "--npz wrote no probabilities"


@ON_CLASSES_MODEL
def test_pretrained_weights_start_finetune_variant(gli: GLIDataset, reference_run: Path) -> None:
    """``-pretrained_weights`` loads a trained model's generator into ``nnUNetTrainerTCuPGAN_finetune`` (constant
    lr 1e-4 for both networks). The README's GLI -> MEN recipe adds moving the plans between datasets first."""
    source = reference_run / "checkpoint_final.pth"
    _train(gli.user_env, PROBE_DATASET_ID, FINETUNE, "-pretrained_weights", source, TCUP_TEST_SKIP_VALIDATION=1)
    folder = model_folder(gli.env, gli.raw.name, FINETUNE) / "fold_0"
    start = _load(folder / "probe_epoch0.pt")
    _assert_same_tensors(start["generator"], _load(source)["network_weights"], "generator at fine-tuning start")
    fresh = _load(reference_run / "probe_epoch0.pt")["generator"]
    assert any(not torch.equal(fresh[k], v) for k, v in start["generator"].items()), "source model never trained"
    final = _load(folder / "checkpoint_final.pth")
    assert final["logging"]["lrs"] == [1e-4, 1e-4] and final["logging"]["lrs_discriminator"] == [1e-4, 1e-4]
