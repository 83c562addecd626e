"""TCuP-GAN losses (paper section 4.2), written for nnU-Net's two kinds of targets.

Shapes: logits ``(B, C, D, H, W)`` (any number of spatial axes), D being nnU-Net's first spatial axis.

Supervised term ``BCE' = gamma * W * BCE`` with per-class weights ``W_c = 1 - sum(gt_c) / sum(gt)``:

* sums run over the whole batch and all voxels (``sum(gt)`` adds the voxel counts of every class);
* the loss is the mean over batch, classes and voxels of ``W_c * bce``;
* guard: when fewer than two classes have foreground voxels in the batch (empty patch: ``0/0``; one-class patch:
  the formula gives weight 0 to the only class present, so the generator would get no positive signal from it) all
  weights are 1, i.e. plain BCE. This never produces NaN or infinite values.

Region datasets (nnU-Net ``regions``, e.g. BraTS WT/TC/ET, sigmoid at inference): the channels are the regions, the
loss is ``BCEWithLogits`` of each region logit against nnU-Net's region mask.

Label datasets (softmax over background + classes at inference): to train the way nnU-Net infers, the per-class
probabilities are the softmax probabilities ``p_c``; the BCE of every foreground class ``c >= 1`` against its one-hot
mask is computed from the logits in log space (``log p_c = log_softmax``, ``log(1 - p_c) = logsumexp_{k != c} z_k -
logsumexp_k z_k``), so it stays finite and exact in fp32. The background channel gets no term of its own: it is
``1 - sum_c p_c`` and is pushed to 1 wherever all foreground masks are 0. These are the paper's three one-hot class
channels, with nnU-Net's softmax instead of independent sigmoids.

The discriminator sees ``cat(image, mask)``: the mask is the probabilities of the prediction (sigmoid of the region
logits, or softmax probabilities of the foreground classes) against the region masks / one-hot foreground classes of
the ground truth; both have the same channels. Adversarial terms are ``BCEWithLogits`` against all-ones / all-zeros
(logits everywhere: safe under CUDA autocast).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def paper_class_weights(target_masks: torch.Tensor) -> torch.Tensor:
    """Per-class weights ``W_c = 1 - n_c / sum_k n_k`` from binary masks ``(B, C, *spatial)``; shape ``(C,)``, fp32.

    ``n_c`` counts voxels of class ``c`` over batch and space. Guard: if fewer than two classes are present all
    weights are 1 (see module docstring).
    """
    if target_masks.ndim < 3:
        raise ValueError(f"target masks must be (B, C, *spatial), got shape {tuple(target_masks.shape)}")
    reduce_dims = [0] + list(range(2, target_masks.ndim))
    counts = target_masks.detach().float().sum(dim=reduce_dims)
    total = counts.sum()
    present = (counts > 0).sum()
    if present < 2:
        return torch.ones_like(counts)
    return 1.0 - counts / total


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


def softmax_foreground_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p_c, log(1 - p_c))`` of the softmax over channels for foreground channels ``c >= 1``, in fp32.

    ``log(1 - p_c) = logsumexp_{k != c} z_k - logsumexp_k z_k`` (exact and finite for finite logits when there are
    at least two channels).
    """
    z = logits.float()
    if z.shape[1] < 2:
        raise ValueError(f"softmax training needs at least 2 output channels, got {z.shape[1]}")
    lse_all = torch.logsumexp(z, dim=1, keepdim=True)
    log_p = z[:, 1:] - lse_all
    others = []
    for c in range(1, z.shape[1]):
        keep = [k for k in range(z.shape[1]) if k != c]
        others.append(torch.logsumexp(z[:, keep], dim=1, keepdim=True))
    log_not_p = torch.cat(others, dim=1) - lse_all
    return log_p, log_not_p


class RegionWeightedBCELoss(nn.Module):
    """``gamma * mean(W_c * BCEWithLogits(logits, region_masks))`` for nnU-Net region (sigmoid) training."""

    def __init__(self, gamma: float = 200.0):
        super().__init__()
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"region logits {tuple(logits.shape)} and targets {tuple(target.shape)} must match")
        masks = region_masks(target)
        bce = F.binary_cross_entropy_with_logits(logits.float(), masks, reduction="none")
        return self.gamma * weighted_mean(bce, paper_class_weights(masks))


class SoftmaxWeightedBCELoss(nn.Module):
    """``gamma * mean(W_c * BCE(softmax_c, onehot_c))`` over foreground classes, for nnU-Net label training."""

    def __init__(self, gamma: float = 200.0):
        super().__init__()
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]:
            raise ValueError(f"label targets {tuple(target.shape)} do not fit logits {tuple(logits.shape)}")
        masks = one_hot_foreground(target, logits.shape[1])
        log_p, log_not_p = softmax_foreground_log_probs(logits)
        bce = -(masks * log_p + (1.0 - masks) * log_not_p)
        return self.gamma * weighted_mean(bce, paper_class_weights(masks))


def prediction_masks(logits: torch.Tensor, has_regions: bool) -> torch.Tensor:
    """Probabilities of the prediction shown to the discriminator, same channels as :func:`target_masks`.

    Regions: ``sigmoid(logits)``; labels: softmax probabilities of the foreground classes (channels ``1..``).
    """
    if has_regions:
        return torch.sigmoid(logits)
    return torch.softmax(logits.float(), dim=1)[:, 1:].to(logits.dtype)


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


def nonzero_gaussian_noise(data: torch.Tensor, sigma: float,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, sigma^2) noise to every channel of voxels where any channel is non-zero (paper: non-background).

    ``data``: ``(B, C, *spatial)``. Voxels that are 0 in all channels (background after nnU-Net's masking, padding)
    are left unchanged. Returns a new tensor.
    """
    if sigma <= 0:
        return data
    foreground = (data != 0).any(dim=1, keepdim=True)
    noise = torch.randn(data.shape, device=data.device, dtype=data.dtype, generator=generator)
    return data + sigma * noise * foreground

