"""A short overfitting run: TCuP-GAN (generator + discriminator, the real GAN step and losses) learns one tiny case.

One synthetic case (8 slices of 24x24: edema shell, enhancing ring, necrotic core; the four image channels show the
classes with different contrasts plus noise), a few dozen Adam steps on CPU, for both formulations: the held-out
check is the same case without noise, each region's Dice must be high. A network that cannot carry information
(zeroed skips, reversed recurrence, a loss without signal) does not get there in this budget.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from nnunet_tcup.network_architecture import PatchDiscriminator3D, TCuPGenerator
from nnunet_tcup.trainers.class_head import SigmoidClassesNetwork
from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, gan_train_step
from nnunet_tcup.trainers.losses import ClassWeightedBCELoss, RegionWeightedBCELoss, nonzero_gaussian_noise

SHAPE = (8, 24, 24)  # (D, H, W)
STEPS = 60
#: channel contrasts of (background, NETC, SNFH, ET): every class is visible in some channel
CONTRAST = torch.tensor([[0.2, -1.0, 0.5, 1.5], [0.2, 0.3, 1.5, 0.0], [0.2, 1.2, -0.5, 1.0], [0.2, 0.8, 1.0, -1.0]])


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ``(1, 4, D, H, W)`` and 2023 labels ``(1, 1, D, H, W)`` (1 NETC, 2 SNFH, 3 ET) of nested spheroids."""
    d, h, w = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in SHAPE), indexing="ij")
    r = torch.sqrt(((d - 3.5) / 0.7) ** 2 + (h - 11.5) ** 2 + (w - 12.5) ** 2)
    labels = torch.zeros(SHAPE, dtype=torch.long)
    labels[r < 9] = 2
    labels[r < 5.5] = 3
    labels[r < 3.5] = 1
    image = CONTRAST[:, labels].unsqueeze(0)
    image = image + 0.1 * torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    return image, labels.view(1, 1, *SHAPE)


def _regions(labels: torch.Tensor) -> torch.Tensor:
    return torch.cat([labels > 0, (labels == 1) | (labels == 3), labels == 3], dim=1).to(torch.int16)


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp_min(1))


def _train(formulation: str) -> dict[str, float]:
    torch.manual_seed(0)
    generator: torch.nn.Module = TCuPGenerator(4, 3, hidden_channels=(8, 16, 32))
    regions = formulation == "regions"
    if not regions:
        generator = SigmoidClassesNetwork(generator, output="loss")
    discriminator = PatchDiscriminator3D(4 + 3, features=(8, 16), dropout=0.0)
    loss = RegionWeightedBCELoss() if regions else ClassWeightedBCELoss()
    g_slot = OptimiserSlot(torch.optim.Adam(generator.parameters(), 3e-3, betas=(0.5, 0.999)), None, 12.0)
    d_slot = OptimiserSlot(torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)), None, 12.0)
    image, labels = _case()
    target = _regions(labels) if regions else labels
    for _ in range(STEPS):
        gan_train_step(
            generator,
            discriminator,
            nonzero_gaussian_noise(image, 0.1),
            target,
            loss,
            GANTargets(regions, 3 if regions else 4),
            g_slot,
            d_slot,
            contextlib.nullcontext,
        )
    clean, _ = _case(seed=1)
    with torch.no_grad():
        logits = generator.eval()(clean)
    if regions:
        predicted = torch.sigmoid(logits) > 0.5
    else:  # nnU-Net's rule for label datasets: softmax + argmax, which is the paper's rule here
        predicted = _regions(logits.argmax(1, keepdim=True)).bool()
    truth = _regions(labels).bool()
    return {name: _dice(predicted[:, i], truth[:, i]) for i, name in enumerate(("WT", "TC", "ET"))}


@pytest.mark.parametrize("formulation", ["classes", "regions"])
def test_tcupgan_overfits_one_case(formulation: str) -> None:
    dice = _train(formulation)
    assert min(dice.values()) > 0.9, dice
