"""One TCuP-GAN step (nnunet_tcup.trainers.gan_step): exact update rule, and DDP synchronisation of both networks.

The update rule is checked against a hand-written reference with SGD (so an update is ``-lr * gradient``):
the generator gets the gradient of ``supervised + BCE(D(x, pred), 1)`` and the discriminator exactly the gradient of
``(BCE(D(x, gt), 1) + BCE(D(x, pred_before_update), 0)) / 2`` (nothing from the generator's loss).
The DDP test runs two CPU processes (gloo), each with its own data, and checks the replicas stay identical.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from nnunet_tcup.network_architecture import PatchDiscriminator3D, TCuPGenerator
from nnunet_tcup.trainers.class_head import SigmoidClassesNetwork
from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, frozen, gan_train_step, losses_to_host, unwrap
from nnunet_tcup.trainers.losses import (
    ClassWeightedBCELoss,
    RegionWeightedBCELoss,
    adversarial_loss,
    discriminator_loss,
    prediction_masks,
    target_masks,
)

SHAPE = (2, 4, 3, 16, 16)
LR = 0.1


def _networks(regions: bool, dropout: float = 0.0):
    torch.manual_seed(0)
    generator = TCuPGenerator(4, 3, hidden_channels=(4, 8))
    if not regions:  # the paper's classes: 3 sigmoid outputs handed to nnU-Net as 4 softmax logits
        generator = SigmoidClassesNetwork(generator, output="loss")
    discriminator = PatchDiscriminator3D(4 + 3, features=(4, 8), dropout=dropout)
    return generator, discriminator


def _data(regions: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(SHAPE, generator=g)
    labels = torch.randint(0, 4, (SHAPE[0], 1, *SHAPE[2:]), generator=g)
    if regions:
        target = torch.cat([labels > 0, (labels == 1) | (labels == 3), labels == 3], dim=1).to(torch.int16)
    else:
        target = labels
    return data, target


def _grads(loss: torch.Tensor, module: torch.nn.Module):
    params = [p for p in module.parameters()]
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("regions", [True, False], ids=["regions", "classes"])
def test_update_rule_matches_reference(regions: bool) -> None:
    generator, discriminator = _networks(regions)
    g_ref, d_ref = copy.deepcopy(generator), copy.deepcopy(discriminator)
    data, target = _data(regions)
    loss_fn = RegionWeightedBCELoss() if regions else ClassWeightedBCELoss()
    heads = 3 if regions else 4

    # reference gradients at the starting point
    logits = g_ref(data)
    fake = prediction_masks(logits, regions)
    g_loss = loss_fn(logits, target) + adversarial_loss(d_ref(torch.cat((data, fake), 1)), True)
    g_grads = _grads(g_loss, g_ref)
    real = target_masks(target, regions, heads)
    d_loss = discriminator_loss(d_ref(torch.cat((data, real), 1)), d_ref(torch.cat((data, fake.detach()), 1)))
    d_grads = _grads(d_loss, d_ref)

    out = gan_train_step(
        generator,
        discriminator,
        data,
        target,
        loss_fn,
        GANTargets(regions, heads),
        OptimiserSlot(torch.optim.SGD(generator.parameters(), lr=LR), None, None),
        OptimiserSlot(torch.optim.SGD(discriminator.parameters(), lr=LR), None, None),
        contextlib.nullcontext,
    )
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in out.values())  # no host copy in the step
    assert out["adv_loss"] > 0 and out["disc_loss"] == pytest.approx(d_loss.item(), rel=1e-5)
    host = losses_to_host([out, out])
    assert [float(h["disc_loss"]) for h in host] == [pytest.approx(d_loss.item(), rel=1e-5)] * 2
    for p_new, p_old, grad in zip(generator.parameters(), g_ref.parameters(), g_grads):
        expected = p_old.detach() - LR * (grad if grad is not None else 0)
        assert torch.allclose(p_new, expected, atol=1e-6)
    for p_new, p_old, grad in zip(discriminator.parameters(), d_ref.parameters(), d_grads):
        assert torch.allclose(p_new, p_old.detach() - LR * grad, atol=1e-6)
    assert all(p.requires_grad for p in discriminator.parameters())  # unfrozen again


def test_frozen_restores_requires_grad_after_errors() -> None:
    module = torch.nn.Linear(2, 2)
    module.bias.requires_grad_(False)
    with pytest.raises(RuntimeError):
        with frozen(module):
            assert not any(p.requires_grad for p in module.parameters())
            raise RuntimeError("boom")
    assert module.weight.requires_grad and not module.bias.requires_grad


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        generator, discriminator = _networks(True, dropout=0.2)
        g_opt = torch.optim.Adam(generator.parameters(), lr=1e-3)
        d_opt = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
        generator, discriminator = DDP(generator), DDP(discriminator)
        torch.manual_seed(100 + rank)  # different dropout masks and data on each rank
        for step in range(2):
            data, target = _data(True, seed=10 * rank + step)
            gan_train_step(
                generator,
                discriminator,
                data,
                target,
                RegionWeightedBCELoss(),
                GANTargets(True, 3),
                OptimiserSlot(g_opt),
                OptimiserSlot(d_opt),
                contextlib.nullcontext,
            )
        torch.save(
            {"generator": unwrap(generator).state_dict(), "discriminator": unwrap(discriminator).state_dict()},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_keeps_generator_and_discriminator_replicas_identical(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    start_g, start_d = _networks(True, dropout=0.2)
    for name, start in (("generator", start_g), ("discriminator", start_d)):
        for key, value in rank0[name].items():
            assert torch.allclose(value, rank1[name][key], atol=1e-7), f"{name}.{key} differs between ranks"
        assert any(not torch.equal(v, start.state_dict()[k]) for k, v in rank0[name].items()), f"{name} unchanged"
