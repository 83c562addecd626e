"""Re-export shim found by nnU-Net through ``nnUNet_extTrainer`` (set up by ``_nnunet_tcup_discovery``).

nnU-Net imports the modules of this folder as top-level names; the real classes live in the package so that
their ``__module__`` is a normal importable path (pickling, spawned workers, checkpoints).
"""
from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import (  # noqa: F401
    nnUNetTrainerTCuPGAN,
    nnUNetTrainerTCuPGAN_5epochs,
    nnUNetTrainerTCuPGAN_finetune,
    nnUNetTrainerTCuPGAN_tiny,
)
