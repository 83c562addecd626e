"""Tiny trained TCuP-GAN models shared by the slow end-to-end tests of a session (``tests/conftest.py`` exposes the
fixtures): synthetic GLI datasets made with ``nnunet_tcup synth`` + ``convert`` (``tiny_gli_*``: the regions
formulation; ``tiny_classes_*``: the paper's classes formulation, ``--mode classes``), planned with
``nnUNetv2_plan_and_preprocess`` and trained with the stock ``nnUNetv2_train`` (``nnUNetTrainerTCuPGAN_tiny``, folds 0
and 1, ``--npz``), all from a fresh shell (no ``nnUNet_extTrainer``: the package's .pth hook finds the trainer).
Training each once instead of once per test is most of what keeps the slow tier within CI's budget.

Each model's tests carry ``pytest.mark.xdist_group`` with the model's name (``tiny_gli_model``,
``tiny_classes_model``): with ``--dist loadgroup`` each model is trained once per run, and the two groups run on
different workers (two groups, not one, so that neither worker waits for both trainings). A test carries exactly one
group mark (two marks make a third group).

Tests using a model must treat its folders as read-only, except for stock commands that rewrite the same content
(``nnUNetv2_train --c`` on a finished fold, ``nnUNetv2_find_best_configuration``) and trainings of other trainers
(their own model folders); they write their own outputs under their own ``tmp_path``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import isolated_nnunet_env, run_command
from test_trainer_support import fresh_shell_env, make_brats_dataset, model_folder, plan_and_preprocess

TINY_GLI_DATASET_ID = 611
TINY_CLASSES_DATASET_ID = 612
TINY_TRAINER = "nnUNetTrainerTCuPGAN_tiny"
#: Synthetic case size (x, y, z) in voxels; 5 training + 2 test cases.
TINY_SHAPE_XYZ = (40, 40, 24)
TINY_FOLDS = (0, 1)


class TinyGLIDataset(NamedTuple):
    """A converted, planned and preprocessed tiny GLI dataset (patch 16x32x32 (z, y, x), batch 2)."""

    root: Path  # session folder holding the synthetic BraTS cases and the nnU-Net folders
    env: dict[str, str]  # fresh shell (no nnUNet_extTrainer) with this session's nnU-Net folders, CPU settings
    raw: Path  # $nnUNet_raw/Dataset6xx_BraTS2023_GLI (imagesTs: the 2 test cases)
    preprocessed: Path


class TinyGLIModel(NamedTuple):
    """``nnUNetTrainerTCuPGAN_tiny`` trained on :class:`TinyGLIDataset`, folds 0 and 1, with ``--npz``."""

    dataset: TinyGLIDataset
    models: Path  # $nnUNet_results/Dataset6xx_BraTS2023_GLI/nnUNetTrainerTCuPGAN_tiny__nnUNetPlans__3d_fullres
    trainings: tuple[subprocess.CompletedProcess, ...]  # the nnUNetv2_train runs, one per fold in TINY_FOLDS


def _tiny_dataset(root: Path, dataset_id: int, mode: str) -> TinyGLIDataset:
    """5 training + 2 test synthetic GLI cases of :data:`TINY_SHAPE_XYZ` in ``root``, converted in ``mode``, planned
    and preprocessed. The test cases keep their ``-seg`` files (``root/synth_GLI_<id>_test``) for scoring."""
    env = fresh_shell_env(isolated_nnunet_env(root))
    raw = make_brats_dataset(
        env, root, dataset_id, "GLI", n_train=5, n_test=2, shape=TINY_SHAPE_XYZ, mode=mode, test_seg=True
    )
    preprocessed = plan_and_preprocess(env, dataset_id)
    return TinyGLIDataset(root, env, raw, preprocessed)


def _train_tiny_folds(dataset: TinyGLIDataset, dataset_id: int) -> TinyGLIModel:
    """Folds :data:`TINY_FOLDS` of :data:`TINY_TRAINER` trained by the stock ``nnUNetv2_train --npz`` on the CPU."""
    trainings = tuple(
        run_command(
            ["nnUNetv2_train", dataset_id, "3d_fullres", fold, "-tr", TINY_TRAINER, "-device", "cpu", "--npz"],
            env=dataset.env,
        )
        for fold in TINY_FOLDS
    )
    return TinyGLIModel(dataset, model_folder(dataset.env, dataset.raw.name, TINY_TRAINER), trainings)


@pytest.fixture(scope="session")
def tiny_gli_dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyGLIDataset:
    """The regions-formulation tiny dataset (Dataset611)."""
    return _tiny_dataset(tmp_path_factory.mktemp("tiny_gli"), TINY_GLI_DATASET_ID, "regions")


@pytest.fixture(scope="session")
def tiny_gli_model(tiny_gli_dataset: TinyGLIDataset) -> TinyGLIModel:
    """Folds 0 and 1 of ``nnUNetTrainerTCuPGAN_tiny`` on :func:`tiny_gli_dataset` (xdist group ``tiny_gli_model``)."""
    return _train_tiny_folds(tiny_gli_dataset, TINY_GLI_DATASET_ID)


@pytest.fixture(scope="session")
def tiny_classes_dataset(tmp_path_factory: pytest.TempPathFactory) -> TinyGLIDataset:
    """The classes-formulation tiny dataset (Dataset612: labels NETC 1, SNFH 2, ET 3)."""
    return _tiny_dataset(tmp_path_factory.mktemp("tiny_classes"), TINY_CLASSES_DATASET_ID, "classes")


@pytest.fixture(scope="session")
def tiny_classes_model(tiny_classes_dataset: TinyGLIDataset) -> TinyGLIModel:
    """Folds 0 and 1 of ``nnUNetTrainerTCuPGAN_tiny`` on :func:`tiny_classes_dataset` (xdist group
    ``tiny_classes_model``)."""
    return _train_tiny_folds(tiny_classes_dataset, TINY_CLASSES_DATASET_ID)
