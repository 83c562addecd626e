"""Loss and optimisation variants of ``nnUNetTrainerTCuPGAN`` for the ablation (``benchmarks/bench_learning.py``).

None of them is the paper's method; the default trainer stays the paper's. Each changes one thing:

- ``_DiceBCE``: adds nnU-Net's soft Dice (batch Dice over the trained channels, on the sigmoid probabilities) to the
  supervised term, ``gamma * (W * BCE + Dice)`` (nnU-Net's 1:1 ratio of its CE and Dice terms);
- ``_priorBias``: the output bias starts at ``logit(0.01)`` instead of 0, so every channel starts near "absent"
  instead of at probability 0.5 (the 200x BCE of the all-0.5 start gives an initial gradient norm ~244);
- ``_noClip``: no gradient-norm clipping (the default clips at 12, as nnU-Net, which fires on nearly every step of
  the 200x BCE);
- ``_paperRegionWeights``: on region datasets, the paper's weight formula applied to the nested regions (the
  package's earlier behaviour) instead of the disjoint-class rule.
"""

from __future__ import annotations

import math

import torch
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from torch import nn

from nnunet_tcup.trainers.class_head import output_head
from nnunet_tcup.trainers.gan_step import unwrap
from nnunet_tcup.trainers.losses import one_hot_foreground, prediction_masks, region_masks
from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN

PRIOR_PROBABILITY = 0.01


class WeightedBCEPlusSoftDice(nn.Module):
    """``bce_loss(logits, target) + gamma * SoftDice(P, masks)``; ``P`` and masks as the discriminator sees them."""

    def __init__(self, bce_loss: nn.Module, has_regions: bool, gamma: float, ddp: bool = False):
        super().__init__()
        self.bce_loss = bce_loss
        self.has_regions = has_regions
        self.gamma = float(gamma)
        self.dice = MemoryEfficientSoftDiceLoss(apply_nonlin=None, batch_dice=True, do_bg=True, smooth=1e-5, ddp=ddp)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probabilities = prediction_masks(logits, self.has_regions).float()
        masks = region_masks(target) if self.has_regions else one_hot_foreground(target, logits.shape[1])
        return self.bce_loss(logits, target) + self.gamma * self.dice(probabilities, masks)


class nnUNetTrainerTCuPGAN_DiceBCE(nnUNetTrainerTCuPGAN):
    """TCuP-GAN with nnU-Net's soft Dice added to the paper's weighted BCE (not the paper's method)."""

    def _build_loss(self) -> nn.Module:
        return WeightedBCEPlusSoftDice(
            super()._build_loss(), self.label_manager.has_regions, self.bce_scale, ddp=self.is_ddp
        )


class nnUNetTrainerTCuPGAN_priorBias(nnUNetTrainerTCuPGAN):
    """TCuP-GAN whose output logits start at ``logit(0.01)`` (not the paper's method: the paper gives no init)."""

    def initialize(self) -> None:
        super().initialize()
        with torch.no_grad():
            bias = output_head(unwrap(self.network)).bias
            assert isinstance(bias, torch.Tensor)
            bias.fill_(math.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY)))


class nnUNetTrainerTCuPGAN_noClip(nnUNetTrainerTCuPGAN):
    """TCuP-GAN without gradient-norm clipping for either network."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.grad_clip_norm = None


class nnUNetTrainerTCuPGAN_paperRegionWeights(nnUNetTrainerTCuPGAN):
    """TCuP-GAN on region datasets with the paper's weight formula on the nested regions (the earlier default)."""

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.region_weight_rule = "paper"
