"""One TCuP-GAN optimisation step (generator, then discriminator), independent of nnU-Net's trainer class.

Works with plain modules, ``torch.compile``-d ones and ``DistributedDataParallel`` wrappers:

* the generator runs once through its (possibly DDP) wrapper and gets one backward;
* the generator's adversarial term runs the *unwrapped* discriminator with its parameters frozen, so it adds no
  discriminator gradients and triggers no DDP gradient synchronisation of the discriminator;
* the discriminator runs once through its wrapper on ``[real pairs; fake pairs]`` concatenated along the batch
  (InstanceNorm is per sample, so this equals two separate passes) and gets one backward, so DDP all-reduces its
  gradients exactly once per step and every replica stays identical.

AMP: everything inside ``autocast`` produces logits; losses are computed in fp32 with ``BCEWithLogits``; each network
has its own optimiser and its own ``GradScaler`` (or none on CPU), with unscale before gradient clipping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from nnunet_tcup.trainers.losses import (
    adversarial_loss,
    discriminator_loss,
    prediction_masks,
    target_masks,
)


@dataclass
class OptimiserSlot:
    """Optimiser, optional GradScaler (CUDA AMP) and gradient-norm clip of one network."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None
    clip_norm: float | None = 12.0


@dataclass
class GANTargets:
    """How the dataset's targets are read: nnU-Net regions (sigmoid) or labels (softmax), and output channels."""

    has_regions: bool
    num_heads: int


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    if isinstance(module, DistributedDataParallel):
        module = module.module
    if isinstance(module, OptimizedModule):
        module = module._orig_mod
    return module


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Temporarily set ``requires_grad=False`` on all parameters (restored afterwards, even on error)."""
    params = list(module.parameters())
    previous = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in zip(params, previous):
            p.requires_grad_(flag)


def backward_and_step(loss: torch.Tensor, module: nn.Module, slot: OptimiserSlot) -> None:
    """Backward ``loss``, clip the gradient norm of ``module`` and step its optimiser (scaled under AMP)."""
    if slot.scaler is not None:
        slot.scaler.scale(loss).backward()
        slot.scaler.unscale_(slot.optimizer)
        if slot.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), slot.clip_norm)
        slot.scaler.step(slot.optimizer)
        slot.scaler.update()
    else:
        loss.backward()
        if slot.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), slot.clip_norm)
        slot.optimizer.step()


def gan_train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    data: torch.Tensor,
    target: torch.Tensor,
    supervised_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    targets: GANTargets,
    generator_slot: OptimiserSlot,
    discriminator_slot: OptimiserSlot,
    autocast: Callable[[], AbstractContextManager],
    adversarial_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Run one generator update then one discriminator update; return the three loss values (detached 0-d tensors).

    ``data``: ``(B, C_in, D, H, W)`` network input; ``target``: nnU-Net target (region masks ``(B, R, ...)`` or label
    map ``(B, 1, ...)``). Generator loss ``supervised_loss + adversarial_weight * BCE(D(x, pred), 1)``; discriminator
    loss ``(BCE(D(x, gt), 1) + BCE(D(x, pred.detach()), 0)) / 2``.
    Returned keys: ``loss`` (supervised term), ``adv_loss``, ``disc_loss``; they stay on the device (no host sync
    in the step): :func:`losses_to_host` copies a whole epoch's values at once.
    """
    plain_discriminator = unwrap(discriminator)

    generator_slot.optimizer.zero_grad(set_to_none=True)
    with autocast():
        logits = generator(data)
        supervised = supervised_loss(logits, target)
        fake = prediction_masks(logits, targets.has_regions).to(data.dtype)
        with frozen(plain_discriminator):
            adversarial = adversarial_loss(plain_discriminator(torch.cat((data, fake), dim=1)), real=True)
        generator_total = supervised + adversarial_weight * adversarial
    backward_and_step(generator_total, generator, generator_slot)

    discriminator_slot.optimizer.zero_grad(set_to_none=True)
    with autocast():
        real = target_masks(target, targets.has_regions, targets.num_heads).to(data.dtype)
        pairs = torch.cat((torch.cat((data, real), dim=1), torch.cat((data, fake.detach()), dim=1)), dim=0)
        scores = discriminator(pairs)
        real_scores, fake_scores = scores.split(data.shape[0], dim=0)
        disc = discriminator_loss(real_scores, fake_scores)
    backward_and_step(disc, discriminator, discriminator_slot)

    return {"loss": supervised.detach(), "adv_loss": adversarial.detach(), "disc_loss": disc.detach()}


def losses_to_host(outputs: list[dict]) -> list[dict]:
    """Step outputs whose tensor values are copied to the host in one transfer per key, as numpy float arrays."""
    if not outputs:
        return outputs
    converted: list[dict] = [dict(o) for o in outputs]
    for key, value in outputs[0].items():
        if isinstance(value, torch.Tensor):
            values = torch.stack([o[key].reshape(()).float() for o in outputs]).cpu().numpy()
            for out, v in zip(converted, values):
                out[key] = v
    return converted
