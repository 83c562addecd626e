"""TCuP-GAN losses (paper section 4.2) for nnU-Net's two kinds of datasets, and the paper's input noise.

Shapes: logits ``(B, C, D, H, W)`` (any number of spatial axes), D being nnU-Net's first spatial axis. Voxel counts
``n_c`` run over the whole batch and all voxels. Nothing here reads a device value on the host (no ``if`` on a
tensor, no ``.item()``): a loss evaluation never synchronises a CUDA stream.

Supervised term ``gamma * mean_{b,c,voxels}(W_c * BCE_c)`` with per-channel weights ``W`` from one of two rules:

* **paper** (:func:`paper_class_weights`): ``W_c = 1 - n_c / sum_k n_k`` on the channels themselves. Guard: when
  fewer than two channels have foreground voxels (empty patch: ``0/0``; one-class patch: weight 0 for the only class
  present) all weights are 1. This is the paper's rule on its native disjoint classes (NETC, SNFH, ET).
* **disjoint** (:func:`disjoint_region_weights`, default for nested region datasets): on nested regions (WT ⊇ TC ⊇
  ET) the paper's formula degenerates (WT always gets the lowest weight, <= 2/3, and its guard jumps between a
  one-class and a two-class batch). Here the weights are computed on the disjoint classes the regions are made of
  (``region_r - region_{r+1}``: WT-TC = SNFH, TC-ET = NETC, ET) and each region gets the weight of the class it adds
  (its outer boundary is that class's boundary): ``W_c = max(1 / K, 1 - n_c / (sum_k n_k + s))`` with ``K`` classes
  and a pseudo-count ``s`` of 0.1 % of the voxels per channel. The floor ``1/K`` keeps a dominant (or the only)
  class trained; ``s`` makes the weights continuous in the counts (an empty patch gives all ones and one extra voxel
  changes them by about ``1/s``), so there is no jump between one- and two-class batches.

Formulations (see :mod:`nnunet_tcup.trainers.class_head`):

* regions (nnU-Net ``regions``, e.g. BraTS WT/TC/ET, sigmoid at inference): ``BCEWithLogits`` of each region logit;
* classes (a plain label dataset, the paper's formulation): in training the network gives its ``"loss"`` output,
  ``K + 1`` logits ``z = [log(max(1 - sum_k sigmoid(s_k), eps)), log sigmoid(s_1), ..., log sigmoid(s_K)]``
  (at inference it gives nnU-Net another output of the same ``s_k``, linear in ``sigmoid(s_k)``); the loss is the paper's
  weighted BCE of ``P_k = sigmoid(s_k) = exp(z_k)`` against one-hot classes, computed in log space
  (``log P_k = z_k``, ``log(1 - P_k) = log(-expm1(z_k))``), exact and finite in fp32.

The discriminator sees ``cat(image, mask)``: the mask is the per-channel probabilities of the prediction (sigmoid of
the region logits, or ``P_k``) against the region masks / one-hot classes of the ground truth (same channels).
Adversarial terms are ``BCEWithLogits`` against all-ones / all-zeros (logits everywhere: safe under CUDA autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Pseudo-count of the disjoint rule, as a fraction of the voxels per channel in the batch.
DISJOINT_PSEUDO_COUNT_FRACTION = 1e-3
WEIGHT_RULES = ("paper", "disjoint")


def _class_counts(masks: torch.Tensor) -> torch.Tensor:
    """Voxel counts per channel of binary masks ``(B, C, *spatial)``, over batch and space; shape ``(C,)``, fp32."""
    if masks.ndim < 3:
        raise ValueError(f"target masks must be (B, C, *spatial), got shape {tuple(masks.shape)}")
    return masks.detach().float().sum(dim=[0] + list(range(2, masks.ndim)))


def paper_class_weights(target_masks: torch.Tensor) -> torch.Tensor:
    """The paper's ``W_c = 1 - n_c / sum_k n_k`` from binary masks ``(B, C, *spatial)``; shape ``(C,)``, fp32.

    Guard: if fewer than two channels are present all weights are 1 (evaluated on the device, no host sync).
    """
    counts = _class_counts(target_masks)
    total = counts.sum()
    present = (counts > 0).sum()
    weights = 1.0 - counts / total.clamp_min(1.0)
    return torch.where(present >= 2, weights, torch.ones_like(weights))


def nested_to_disjoint(region_masks: torch.Tensor) -> torch.Tensor:
    """Nested region masks ``(B, R, ...)`` ordered outer to inner (WT, TC, ET) -> disjoint classes (WT-TC, TC-ET, ET).

    Class ``r`` = region ``r`` minus region ``r + 1`` (clamped at 0), the last class = the innermost region.
    """
    masks = region_masks.float()
    inner = torch.cat([masks[:, 1:], torch.zeros_like(masks[:, :1])], dim=1)
    return (masks - inner).clamp_min(0.0)


def disjoint_region_weights(region_masks: torch.Tensor) -> torch.Tensor:
    """Weights of nested regions (outer to inner) from their disjoint classes; shape ``(R,)``, fp32, in ``[1/R, 1]``.

    See the module docstring: ``W_r = max(1/R, 1 - n_r / (sum_k n_k + s))``, ``n_r`` the voxel count of region ``r``
    minus region ``r + 1``. Continuous in the counts; all ones on an empty batch.
    """
    counts = _class_counts(nested_to_disjoint(region_masks))
    voxels_per_channel = region_masks[:, :1].numel()
    pseudo = DISJOINT_PSEUDO_COUNT_FRACTION * voxels_per_channel
    weights = 1.0 - counts / (counts.sum() + pseudo)
    return weights.clamp_min(1.0 / counts.numel())


def weighted_mean(elementwise: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """Mean over all elements of ``W_c * elementwise`` for ``elementwise`` of shape ``(B, C, *spatial)``."""
    shape = [1, -1] + [1] * (elementwise.ndim - 2)
    return (elementwise * class_weights.view(shape)).mean()


def region_masks(target: torch.Tensor) -> torch.Tensor:
    """nnU-Net region targets ``(B, R, *spatial)`` (bool/int/float) as fp32 masks."""
    return target.float()


def one_hot_foreground(target: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Label map ``(B, 1, *spatial)`` with values ``0..num_heads-1`` -> one-hot of classes ``1..num_heads-1``, fp32.

    Output shape ``(B, num_heads - 1, *spatial)``.
    """
    if target.ndim < 3 or target.shape[1] != 1:
        raise ValueError(f"label targets must be (B, 1, *spatial), got shape {tuple(target.shape)}")
    labels = target[:, 0].long()
    classes = torch.arange(1, num_heads, device=target.device).view([1, -1] + [1] * (labels.ndim - 1))
    return (labels.unsqueeze(1) == classes).float()


def class_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log P_k, log(1 - P_k))`` for the class channels ``k >= 1`` of the classes-head logits, fp32.

    ``logits[:, k] = log sigmoid(s_k)`` (the head's ``"loss"`` output, :mod:`nnunet_tcup.trainers.class_head`), so ``log P_k = z_k`` and
    ``log(1 - P_k) = log(-expm1(z_k))``; ``z_k`` is clamped just below 0 so the result stays finite.
    """
    z = logits[:, 1:].float()
    z = z.clamp(max=-torch.finfo(torch.float32).tiny)
    return z, torch.log(-torch.expm1(z))


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``P_k = sigmoid(s_k)`` of the classes-head logits (channels ``1..K``), in the logits' dtype."""
    return torch.exp(logits[:, 1:].float()).to(logits.dtype)


class RegionWeightedBCELoss(nn.Module):
    """``gamma * mean(W_c * BCEWithLogits(logits, region_masks))`` for nnU-Net region (sigmoid) training.

    ``weight_rule``: ``"disjoint"`` (default, :func:`disjoint_region_weights`) or ``"paper"`` (the paper's formula on
    the regions themselves, the package's earlier behaviour).
    """

    def __init__(self, gamma: float = 200.0, weight_rule: str = "disjoint"):
        super().__init__()
        if weight_rule not in WEIGHT_RULES:
            raise ValueError(f"weight_rule must be one of {WEIGHT_RULES}, got {weight_rule!r}")
        self.gamma = float(gamma)
        self.weight_rule = weight_rule

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"region logits {tuple(logits.shape)} and targets {tuple(target.shape)} must match")
        masks = region_masks(target)
        bce = F.binary_cross_entropy_with_logits(logits.float(), masks, reduction="none")
        weights = disjoint_region_weights(masks) if self.weight_rule == "disjoint" else paper_class_weights(masks)
        return self.gamma * weighted_mean(bce, weights)


class ClassWeightedBCELoss(nn.Module):
    """The paper's ``gamma * mean(W_c * BCE(P_c, onehot_c))`` over the classes ``1..K`` of a label dataset.

    ``logits``: ``(B, K + 1, ...)`` from the classes head; ``target``: label map ``(B, 1, ...)`` with values ``0..K``.
    Weights: :func:`paper_class_weights` on the one-hot classes (exactly the paper's rule).
    """

    def __init__(self, gamma: float = 200.0):
        super().__init__()
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]:
            raise ValueError(f"label targets {tuple(target.shape)} do not fit logits {tuple(logits.shape)}")
        masks = one_hot_foreground(target, logits.shape[1])
        log_p, log_not_p = class_log_probs(logits)
        bce = -(masks * log_p + (1.0 - masks) * log_not_p)
        return self.gamma * weighted_mean(bce, paper_class_weights(masks))


def prediction_masks(logits: torch.Tensor, has_regions: bool) -> torch.Tensor:
    """Probabilities of the prediction shown to the discriminator, same channels as :func:`target_masks`.

    Regions: ``sigmoid(logits)``; classes: ``P_k`` (:func:`class_probabilities`).
    """
    if has_regions:
        return torch.sigmoid(logits)
    return class_probabilities(logits)


def target_masks(target: torch.Tensor, has_regions: bool, num_heads: int) -> torch.Tensor:
    """Ground-truth masks shown to the discriminator: region masks, or one-hot foreground classes."""
    return region_masks(target) if has_regions else one_hot_foreground(target, num_heads)


def num_mask_channels(num_heads: int, has_regions: bool) -> int:
    """Number of mask channels the discriminator receives besides the image channels."""
    return num_heads if has_regions else num_heads - 1


def adversarial_loss(discriminator_logits: torch.Tensor, real: bool) -> torch.Tensor:
    """``BCEWithLogits`` of patch scores against all-ones (``real``) or all-zeros, mean over patches; fp32."""
    logits = discriminator_logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Paper's discriminator loss ``(BCE(D(x, gt), 1) + BCE(D(x, pred.detach()), 0)) / 2``."""
    return 0.5 * (adversarial_loss(real_logits, True) + adversarial_loss(fake_logits, False))


def nonzero_gaussian_noise(data: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, sigma^2) noise to every channel of voxels where any channel is non-zero (paper: non-background).

    ``data``: ``(B, C, *spatial)``. Voxels that are 0 in all channels (background after nnU-Net's masking, padding)
    are left unchanged. Returns a new tensor.
    """
    if sigma <= 0:
        return data
    foreground = (data != 0).any(dim=1, keepdim=True)
    noise = torch.randn(data.shape, device=data.device, dtype=data.dtype, generator=generator)
    return data + sigma * noise * foreground
