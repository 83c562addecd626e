"""TCuP-GAN trainers for nnU-Net v2.

``nnUNetTrainerTCuPGAN`` (paper schedule), ``nnUNetTrainerTCuPGAN_finetune`` (transfer, constant lr 1e-4),
``nnUNetTrainerTCuPGAN_tiny`` and ``nnUNetTrainerTCuPGAN_5epochs`` (smoke tests, CPU demos) live in
:mod:`nnunet_tcup.trainers.nnUNetTrainerTCuPGAN`; nnU-Net finds them by name through the re-export shim in
``nnunet_ext/`` (registered in ``nnUNet_extTrainer`` by the package's ``.pth`` hook). Nothing is imported here so
that ``import nnunet_tcup.trainers`` stays light.
"""
