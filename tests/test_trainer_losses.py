"""TCuP-GAN losses, input noise and learning-rate schedule (nnunet_tcup.trainers.losses / schedulers)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_tcup.trainers.losses import (
    RegionWeightedBCELoss,
    SoftmaxWeightedBCELoss,
    adversarial_loss,
    discriminator_loss,
    nonzero_gaussian_noise,
    num_mask_channels,
    one_hot_foreground,
    paper_class_weights,
    prediction_masks,
    softmax_foreground_log_probs,
    target_masks,
)
from nnunet_tcup.trainers.schedulers import StepDecayLRScheduler


def _masks(counts):
    """(1, C, 1, 1, N) binary masks with counts[c] ones in channel c."""
    n = max(max(counts), 1)
    masks = torch.zeros(1, len(counts), 1, 1, n)
    for c, k in enumerate(counts):
        masks[0, c, 0, 0, :k] = 1
    return masks


def test_class_weights_follow_the_paper_formula():
    weights = paper_class_weights(_masks([6, 3, 1]))
    assert torch.allclose(weights, torch.tensor([1 - 0.6, 1 - 0.3, 1 - 0.1]))


@pytest.mark.parametrize("counts", [[0, 0, 0], [5, 0, 0], [0, 0, 7]], ids=["empty", "one-class", "only-ET"])
def test_class_weights_guard_empty_and_single_class_patches(counts):
    weights = paper_class_weights(_masks(counts))
    assert torch.equal(weights, torch.ones(3))  # plain BCE: no 0/0, no zero weight for the only class present


def test_class_weights_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        paper_class_weights(torch.zeros(3, 4))


def test_region_loss_matches_manual_formula_and_is_finite_on_empty_patches():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 6, 6, generator=g)
    target = (torch.rand(2, 3, 4, 6, 6, generator=g) > 0.7).to(torch.int16)
    weights = paper_class_weights(target.float())
    manual = 200 * (F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
                    * weights.view(1, 3, 1, 1, 1)).mean()
    assert torch.allclose(RegionWeightedBCELoss()(logits, target), manual)
    empty = RegionWeightedBCELoss()(logits.requires_grad_(), torch.zeros_like(target))
    empty.backward()
    assert torch.isfinite(empty) and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="must match"):
        RegionWeightedBCELoss()(logits, target[:, :2])


def test_softmax_loss_equals_bce_on_softmax_probabilities():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 5, 5, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 4, (2, 1, 3, 5, 5), generator=g)
    probabilities = torch.softmax(logits, 1)[:, 1:]
    masks = one_hot_foreground(labels, 4)
    manual = 200 * (F.binary_cross_entropy(probabilities, masks.double(), reduction="none")
                    * paper_class_weights(masks).double().view(1, 3, 1, 1, 1)).mean()
    assert torch.allclose(SoftmaxWeightedBCELoss()(logits, labels).double(), manual, rtol=1e-5)


def test_softmax_log_probabilities_stay_finite_for_extreme_logits():
    logits = torch.tensor([[300.0, -300.0, 0.0, 50.0]]).view(1, 4, 1, 1, 1)
    log_p, log_not_p = softmax_foreground_log_probs(logits)
    assert torch.isfinite(log_p).all() and torch.isfinite(log_not_p).all()
    labels = torch.full((1, 1, 1, 1, 1), 1)
    loss = SoftmaxWeightedBCELoss()(logits.requires_grad_(), labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(200 * 600 / 3, rel=1e-4)  # -log p_1 = 600, others ~0; weights 1


def test_one_hot_foreground_channels_and_errors():
    labels = torch.tensor([0, 1, 2, 3]).view(1, 1, 1, 1, 4)
    one_hot = one_hot_foreground(labels, 4)
    assert one_hot.shape == (1, 3, 1, 1, 4)
    assert one_hot[0, :, 0, 0].tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        one_hot_foreground(torch.zeros(1, 2, 1, 1, 1), 4)


def test_discriminator_sees_matching_channels_for_prediction_and_ground_truth():
    logits_regions = torch.randn(2, 3, 2, 4, 4)
    regions = (torch.rand(2, 3, 2, 4, 4) > 0.5)
    assert prediction_masks(logits_regions, True).shape == target_masks(regions, True, 3).shape == (2, 3, 2, 4, 4)
    logits_labels = torch.randn(2, 4, 2, 4, 4)
    labels = torch.randint(0, 4, (2, 1, 2, 4, 4))
    fake = prediction_masks(logits_labels, False)
    assert fake.shape == target_masks(labels, False, 4).shape == (2, 3, 2, 4, 4)
    assert torch.allclose(fake, torch.softmax(logits_labels, 1)[:, 1:])
    assert num_mask_channels(3, True) == 3 and num_mask_channels(4, False) == 3


def test_adversarial_and_discriminator_losses():
    zeros = torch.zeros(2, 1, 3, 2, 2)
    assert adversarial_loss(zeros, True).item() == pytest.approx(math.log(2))
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))
    confident = torch.full_like(zeros, 20.0)
    assert discriminator_loss(confident, -confident).item() < 1e-6
    assert adversarial_loss(confident.half(), False).dtype == torch.float32


def test_noise_only_on_voxels_that_are_nonzero_in_some_channel():
    data = torch.ones(2, 4, 3, 8, 8)
    data[:, :, :, :4] = 0  # background
    data[:, 0, :, 0, 0] = 5.0  # one channel non-zero -> foreground voxel
    noisy = nonzero_gaussian_noise(data, 0.1, generator=torch.Generator().manual_seed(0))
    background = torch.ones(2, 1, 3, 8, 8, dtype=torch.bool)
    background[:, :, :, 4:] = False
    background[:, :, :, 0, 0] = False
    assert torch.equal(noisy * background, data * background)
    diff = (noisy - data)[:, :, :, 4:]
    assert diff.std().item() == pytest.approx(0.1, rel=0.1) and abs(diff.mean().item()) < 0.01
    assert (noisy[:, 1:, :, 0, 0] != 0).all()  # all channels of a foreground voxel get noise
    assert nonzero_gaussian_noise(data, 0.0) is data


def test_step_decay_schedule_and_state_dict():
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam(params, lr=5e-4)
    scheduler = StepDecayLRScheduler(optimizer, 5e-4, step_size=5, gamma=0.95)
    rates = []
    for epoch in range(12):
        scheduler.step(epoch)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:5] == [5e-4] * 5 and rates[5:10] == [pytest.approx(4.75e-4)] * 5
    assert rates[10] == pytest.approx(5e-4 * 0.95 ** 2)
    other = StepDecayLRScheduler(torch.optim.Adam(params, lr=1.0), 1.0, step_size=1, gamma=0.5)
    other.load_state_dict(scheduler.state_dict())
    assert (other.initial_lr, other.step_size, other.gamma) == (5e-4, 5, 0.95)
    constant = StepDecayLRScheduler(torch.optim.Adam(params, lr=1e-4), 1e-4, step_size=5, gamma=1.0)
    assert constant.lr_at(1000) == 1e-4
    with pytest.raises(ValueError, match="gamma"):
        StepDecayLRScheduler(optimizer, 1e-4, step_size=5, gamma=1.5)
    with pytest.raises(ValueError, match="step_size"):
        StepDecayLRScheduler(optimizer, 1e-4, step_size=0, gamma=0.9)
