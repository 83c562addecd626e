"""Variants of ``nnUNetTrainerTCuPGAN``, grouped as nnU-Net groups its own (``training/nnUNetTrainer/variants``).

- :mod:`.training_length`: ``_finetune`` (the paper's transfer setting), ``_tiny`` (smoke tests), ``_5epochs``;
- :mod:`.loss`: ablation variants beyond the paper (``_DiceBCE``, ``_priorBias``, ``_noClip``,
  ``_paperRegionWeights``), never the default.

nnU-Net finds every class through the re-export shim ``nnunet_tcup/trainers/nnunet_ext/nnunet_tcup_trainers.py``.
"""

from __future__ import annotations

__all__: list[str] = []
