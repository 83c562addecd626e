"""Re-export shim found by nnU-Net through ``nnUNet_extTrainer`` (set up by ``_nnunet_tcup_discovery``).

nnU-Net imports the modules of this folder as top-level names; the real classes live in the package so that
their ``__module__`` is a normal importable path (pickling, spawned workers, checkpoints). Every trainer of the
package is listed here.
"""

from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN
from nnunet_tcup.trainers.variants.loss import (
    nnUNetTrainerTCuPGAN_DiceBCE,
    nnUNetTrainerTCuPGAN_noClip,
    nnUNetTrainerTCuPGAN_paperRegionWeights,
    nnUNetTrainerTCuPGAN_priorBias,
)
from nnunet_tcup.trainers.variants.training_length import (
    nnUNetTrainerTCuPGAN_5epochs,
    nnUNetTrainerTCuPGAN_finetune,
    nnUNetTrainerTCuPGAN_tiny,
)

__all__ = [
    "nnUNetTrainerTCuPGAN",
    "nnUNetTrainerTCuPGAN_5epochs",
    "nnUNetTrainerTCuPGAN_DiceBCE",
    "nnUNetTrainerTCuPGAN_finetune",
    "nnUNetTrainerTCuPGAN_noClip",
    "nnUNetTrainerTCuPGAN_paperRegionWeights",
    "nnUNetTrainerTCuPGAN_priorBias",
    "nnUNetTrainerTCuPGAN_tiny",
]
