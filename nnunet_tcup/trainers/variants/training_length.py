"""Training-length and transfer variants of ``nnUNetTrainerTCuPGAN`` (hyper-parameters otherwise the paper's)."""

from __future__ import annotations

import torch

from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN


class nnUNetTrainerTCuPGAN_finetune(nnUNetTrainerTCuPGAN):
    """Transfer learning as in the paper (GLI -> MEN/PED/SSA): constant lr 1e-4 for both networks, 30 epochs.

    Start it with ``-pretrained_weights <GLI fold>/checkpoint_final.pth`` (nnU-Net loads ``network_weights`` into
    the generator; the discriminator starts fresh).
    """

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.initial_lr_discriminator = 1e-4
        self.lr_decay_gamma = 1.0


class nnUNetTrainerTCuPGAN_tiny(nnUNetTrainerTCuPGAN):
    """Smoke tests and CPU demos: 2 epochs of 4 training and 2 validation iterations (other settings as the paper)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.epoch_is_pass_over_training_cases = False
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainerTCuPGAN_5epochs(nnUNetTrainerTCuPGAN):
    """Short CPU demo run: 5 epochs of 25 training and 5 validation iterations, lr x0.95 after every epoch."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 5
        self.epoch_is_pass_over_training_cases = False
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
        self.lr_decay_every_epochs = 1
