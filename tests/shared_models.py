"""Tiny trained TCuP-GAN models shared by the slow end-to-end tests of a session (``tests/conftest.py`` exposes
the fixtures). ``tiny_gli_model``: a synthetic GLI dataset (regions formulation) made with ``nnunet_tcup synth`` + ``convert``, planned
with ``nnUNetv2_plan_and_preprocess`` and trained with the stock ``nnUNetv2_train`` (``nnUNetTrainerTCuPGAN_tiny``,
folds 0 and 1, ``--npz``), all from a fresh shell (no ``nnUNet_extTrainer``: the package's .pth hook finds the
trainer). Training it once instead of once per test is most of what keeps the slow tier within CI's budget.
``tiny_classes_model``: the same for the classes formulation (``convert --mode classes``), fold 0 trained and copied
as fold 1 (as ``test_trainer_e2e_classes.py`` does: a second training shows nothing more about the formulation).

Tests using the model must treat its folders as read-only, except for stock commands that rewrite the same content
(``nnUNetv2_train --c`` on a finished fold, ``nnUNetv2_find_best_configuration``); they write their own outputs
under their own ``tmp_path``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import isolated_nnunet_env, run_command
from test_trainer_support import fresh_shell_env, make_brats_dataset, model_folder, plan_and_preprocess

TINY_GLI_DATASET_ID = 611
TINY_CLASSES_DATASET_ID = 613
TINY_TRAINER = "nnUNetTrainerTCuPGAN_tiny"
#: Synthetic case size (x, y, z) in voxels; 5 training + 2 test cases.
TINY_SHAPE_XYZ = (40, 40, 24)
TINY_FOLDS = (0, 1)


class TinyGLIDataset(NamedTuple):
    """A converted, planned and preprocessed tiny GLI dataset (patch 16x32x32 (z, y, x), batch 2)."""

    root: Path  # session folder holding the synthetic BraTS cases and the nnU-Net folders
    env: dict[str, str]  # fresh shell (no nnUNet_extTrainer) with this session's nnU-Net folders, CPU settings
    raw: Path  # $nnUNet_raw/Dataset611_BraTS2023_GLI (imagesTs: the 2 test cases)
    preprocessed: Path


class TinyGLIModel(NamedTuple):
    """``nnUNetTrainerTCuPGAN_tiny`` trained on :class:`TinyGLIDataset`, folds 0 and 1, with ``--npz``."""

    dataset: TinyGLIDataset
    models: Path  # $nnUNet_results/Dataset611_BraTS2023_GLI/nnUNetTrainerTCuPGAN_tiny__nnUNetPlans__3d_fullres
    trainings: tuple[subprocess.CompletedProcess, ...]  # the nnUNetv2_train runs, one per fold in TINY_FOLDS


@pytest.fixture(scope="session")
def tiny_gli_dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyGLIDataset:
    """5 training + 2 test synthetic GLI cases of 40x40x24 voxels, converted, planned and preprocessed."""
    root = tmp_path_factory.mktemp("tiny_gli")
    env = fresh_shell_env(isolated_nnunet_env(root))
    raw = make_brats_dataset(env, root, TINY_GLI_DATASET_ID, "GLI", n_train=5, n_test=2, shape=TINY_SHAPE_XYZ)
    preprocessed = plan_and_preprocess(env, TINY_GLI_DATASET_ID)
    return TinyGLIDataset(root, env, raw, preprocessed)


@pytest.fixture(scope="session")
def tiny_gli_model(tiny_gli_dataset: TinyGLIDataset) -> TinyGLIModel:
    """Folds 0 and 1 of ``nnUNetTrainerTCuPGAN_tiny`` trained by the stock ``nnUNetv2_train --npz`` on the CPU."""
    env = tiny_gli_dataset.env
    trainings = tuple(
        run_command(
            ["nnUNetv2_train", TINY_GLI_DATASET_ID, "3d_fullres", fold, "-tr", TINY_TRAINER, "-device", "cpu", "--npz"],
            env=env,
        )
        for fold in TINY_FOLDS
    )
    models = model_folder(env, tiny_gli_dataset.raw.name, TINY_TRAINER)
    return TinyGLIModel(tiny_gli_dataset, models, trainings)


@pytest.fixture(scope="session")
def tiny_classes_model(tmp_path_factory: pytest.TempPathFactory) -> TinyGLIModel:
    """:class:`TinyGLIModel` of the classes formulation (labels NETC/SNFH/ET): 5 training + 2 test cases (the test
    cases keep their -seg files), fold 0 trained by ``nnUNetv2_train`` and copied as fold 1."""
    root = tmp_path_factory.mktemp("tiny_classes")
    env = fresh_shell_env(isolated_nnunet_env(root))
    raw = make_brats_dataset(
        env, root, TINY_CLASSES_DATASET_ID, "GLI", 5, 2, TINY_SHAPE_XYZ, mode="classes", test_seg=True
    )
    dataset = TinyGLIDataset(root, env, raw, plan_and_preprocess(env, TINY_CLASSES_DATASET_ID))
    command = ["nnUNetv2_train", TINY_CLASSES_DATASET_ID, "3d_fullres", 0, "-tr", TINY_TRAINER, "-device", "cpu"]
    training = run_command(command, env=env)
    models = model_folder(env, raw.name, TINY_TRAINER)
    shutil.copytree(models / "fold_0", models / "fold_1")
    return TinyGLIModel(dataset, models, (training,))
