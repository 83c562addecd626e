"""Re-export shim: nnU-Net imports this file as a top-level module when the demo lists this folder in
``nnUNet_extTrainer``; the classes live in :mod:`nnunet_tcup.demo.trainers` (normal import path for pickling)."""

from nnunet_tcup.demo.trainers import nnUNetTrainer_demo, nnUNetTrainerTCuPGAN_demo  # noqa: F401

__all__ = ["nnUNetTrainer_demo", "nnUNetTrainerTCuPGAN_demo"]
