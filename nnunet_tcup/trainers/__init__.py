"""TCuP-GAN trainers for nnU-Net v2.

``nnUNetTrainerTCuPGAN`` (the paper: schedule, losses, and on label datasets its sigmoid-class formulation) lives in
:mod:`nnunet_tcup.trainers.nnUNetTrainerTCuPGAN`; variants in :mod:`nnunet_tcup.trainers.variants` (training length
and transfer: ``_finetune``, ``_tiny``, ``_5epochs``; ablation: ``_DiceBCE``, ``_priorBias``, ``_noClip``,
``_paperRegionWeights``). nnU-Net finds them by name through the re-export shim in ``nnunet_ext/`` (registered in
``nnUNet_extTrainer`` by the package's ``.pth`` hook). Nothing is imported here so that ``import
nnunet_tcup.trainers`` stays light.
"""

from __future__ import annotations

__all__: list[str] = []
