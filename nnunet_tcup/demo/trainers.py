"""Budget-controlled trainers for the demo: the real TCuP-GAN trainer and stock nnU-Net, same short schedule.

Both classes change nothing but the training length, read from environment variables when the trainer is built
(the demo sets them for its ``nnUNetv2_train`` subprocesses; unset means the defaults below):

- ``NNUNET_TCUP_DEMO_EPOCHS``: number of epochs (default 10)
- ``NNUNET_TCUP_DEMO_ITERATIONS``: training iterations per epoch (default 25)
- ``NNUNET_TCUP_DEMO_VAL_ITERATIONS``: validation iterations per epoch (default 5)

A checkpoint is saved after every epoch so an interrupted demo resumes (``nnUNetv2_train ... --c``) where it
stopped. nnU-Net finds the classes through the re-export shim in ``nnunet_tcup/demo/nnunet_ext``, which the demo
adds to ``nnUNet_extTrainer`` for its subprocesses (see :func:`nnunet_tcup.demo.steps.subprocess_environment`).
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tcup.demo.config import TrainingBudget
from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN


def _apply_budget(trainer: nnUNetTrainer) -> None:
    budget = TrainingBudget.from_environment()
    trainer.num_epochs = budget.epochs
    trainer.num_iterations_per_epoch = budget.iterations
    trainer.num_val_iterations_per_epoch = budget.val_iterations
    trainer.save_every = 1  # short runs: checkpoint every epoch so that --c resumes close to where it stopped
    if hasattr(trainer, "epoch_is_pass_over_training_cases"):  # TCuP-GAN would size epochs by the case count
        trainer.epoch_is_pass_over_training_cases = False


class nnUNetTrainerTCuPGAN_demo(nnUNetTrainerTCuPGAN):
    """nnUNetTrainerTCuPGAN with the demo's training length (``NNUNET_TCUP_DEMO_*`` environment variables)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _apply_budget(self)


class nnUNetTrainer_demo(nnUNetTrainer):
    """Stock nnUNetTrainer with the demo's training length: the baseline given the same budget as TCuP-GAN."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _apply_budget(self)
