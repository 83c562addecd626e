"""TCuP-GAN losses, input noise and learning-rate schedule (nnunet_tcup.trainers.losses / schedulers)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_tcup.trainers.class_head import SigmoidClassesNetwork
from nnunet_tcup.trainers.losses import (
    ClassWeightedBCELoss,
    RegionWeightedBCELoss,
    adversarial_loss,
    class_log_probs,
    discriminator_loss,
    disjoint_region_weights,
    nested_to_disjoint,
    nonzero_gaussian_noise,
    num_mask_channels,
    one_hot_foreground,
    paper_class_weights,
    prediction_masks,
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


def _nested(snfh: int, netc: int, et: int, size: int = 4000) -> torch.Tensor:
    """(1, 3, 1, 1, size) nested region masks WT/TC/ET built from disjoint class counts."""
    labels = torch.zeros(size, dtype=torch.long)
    labels[:et] = 3
    labels[et : et + netc] = 1
    labels[et + netc : et + netc + snfh] = 2
    regions = torch.stack([labels > 0, (labels == 1) | (labels == 3), labels == 3]).float()
    return regions.view(1, 3, 1, 1, size)


def test_nested_regions_map_to_disjoint_classes():
    classes = nested_to_disjoint(_nested(snfh=30, netc=20, et=10))
    assert classes.sum(dim=(0, 2, 3, 4)).tolist() == [30, 20, 10]
    assert classes.sum(dim=1).max() == 1  # disjoint


def test_disjoint_region_weights_value_floor_and_empty_batch():
    pseudo = 1e-3 * 4000
    weights = disjoint_region_weights(_nested(snfh=600, netc=300, et=100))
    expected = [1 - 600 / (1000 + pseudo), 1 - 300 / (1000 + pseudo), 1 - 100 / (1000 + pseudo)]
    assert torch.allclose(weights, torch.tensor(expected))
    assert torch.equal(disjoint_region_weights(_nested(0, 0, 0)), torch.ones(3))
    assert disjoint_region_weights(_nested(900, 0, 0))[0] == pytest.approx(1 / 3)  # edema only: floor, not 0


def test_disjoint_region_weights_have_no_jump_between_one_and_two_class_batches():
    """The issue's example: an edema-only patch, then the same patch plus 20 TC voxels."""
    one = disjoint_region_weights(_nested(snfh=2000, netc=0, et=0))
    two = disjoint_region_weights(_nested(snfh=2000, netc=20, et=0))
    assert (one - two).abs().max() < 0.02
    old_one, old_two = paper_class_weights(_nested(2000, 0, 0)), paper_class_weights(_nested(2000, 20, 0))
    assert (old_one - old_two).abs().max() > 0.9  # the paper's formula on regions jumps (the reason for the rule)
    assert two.min() >= 1 / 3  # WT false positives always penalised


def test_paper_class_weights_guard_runs_on_the_device_without_host_sync():
    class NoHostRead(torch.Tensor):
        def __bool__(self):
            raise AssertionError("host read of a device value")

    masks = _masks([5, 0, 0]).as_subclass(NoHostRead)
    weights = paper_class_weights(masks)
    assert torch.equal(weights.as_subclass(torch.Tensor), torch.ones(3))


@pytest.mark.parametrize("rule", ["disjoint", "paper"])
def test_region_loss_matches_manual_formula_and_is_finite_on_empty_patches(rule):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 6, 6, generator=g)
    labels = torch.randint(0, 4, (2, 4, 6, 6), generator=g)
    target = torch.stack([labels > 0, (labels == 1) | (labels == 3), labels == 3], dim=1).to(torch.int16)
    weights = (disjoint_region_weights if rule == "disjoint" else paper_class_weights)(target.float())
    assert not torch.allclose(weights, torch.ones(3))  # so that dropping the weights is noticed
    manual = (
        200
        * (
            F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none") * weights.view(1, 3, 1, 1, 1)
        ).mean()
    )
    assert torch.allclose(RegionWeightedBCELoss(weight_rule=rule)(logits, target), manual)
    empty = RegionWeightedBCELoss(weight_rule=rule)(logits.requires_grad_(), torch.zeros_like(target))
    empty.backward()
    assert torch.isfinite(empty) and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="must match"):
        RegionWeightedBCELoss()(logits, target[:, :2])
    with pytest.raises(ValueError, match="weight_rule"):
        RegionWeightedBCELoss(weight_rule="other")


def test_classes_head_is_the_papers_label_rule():
    """softmax of the head's logits = [1 - sum P, P_1..P_K] (normalised when sum P > 1): argmax = the paper's rule."""
    s = torch.tensor([[-3.0, -1.0, 0.5], [2.0, 1.5, 1.0], [-6.0, -7.0, -5.0]]).view(3, 3, 1, 1, 1)
    network = SigmoidClassesNetwork(torch.nn.Identity(), output="loss")
    probabilities = torch.softmax(network(s), dim=1)[..., 0, 0, 0]
    p = torch.sigmoid(s)[..., 0, 0, 0]
    background = (1 - p.sum(1, keepdim=True)).clamp_min(1e-6)
    paper = torch.cat([background, p], 1)
    paper = paper / paper.sum(1, keepdim=True)
    torch.testing.assert_close(probabilities, paper)
    assert probabilities.argmax(1).tolist() == [3, 1, 0]


def test_class_loss_equals_weighted_bce_on_sigmoid_probabilities():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 3, 3, 5, 5, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 4, (2, 1, 3, 5, 5), generator=g)
    logits = SigmoidClassesNetwork(torch.nn.Identity(), output="loss")(s)
    masks = one_hot_foreground(labels, 4)
    weights = paper_class_weights(masks).double()
    assert not torch.allclose(weights, torch.ones(3, dtype=torch.float64))
    manual = (
        200
        * (F.binary_cross_entropy_with_logits(s, masks.double(), reduction="none") * weights.view(1, 3, 1, 1, 1)).mean()
    )
    assert torch.allclose(ClassWeightedBCELoss()(logits, labels).double(), manual, rtol=1e-5)


def test_class_log_probabilities_stay_finite_for_extreme_logits():
    s = torch.tensor([300.0, -300.0, 50.0]).view(1, 3, 1, 1, 1).requires_grad_()
    logits = SigmoidClassesNetwork(torch.nn.Identity(), output="loss")(s)
    log_p, log_not_p = class_log_probs(logits)
    assert torch.isfinite(log_p).all() and torch.isfinite(log_not_p).all()
    labels = torch.full((1, 1, 1, 1, 1), 2)  # SNFH: s_2 = -300 is wrong by 300
    loss = ClassWeightedBCELoss()(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert loss.item() == pytest.approx(200 * (87.3 + 300 + 50) / 3, rel=2e-3)  # class 1 clamped at log(tiny)


def test_one_hot_foreground_channels_and_errors():
    labels = torch.tensor([0, 1, 2, 3]).view(1, 1, 1, 1, 4)
    one_hot = one_hot_foreground(labels, 4)
    assert one_hot.shape == (1, 3, 1, 1, 4)
    assert one_hot[0, :, 0, 0].tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        one_hot_foreground(torch.zeros(1, 2, 1, 1, 1), 4)


def test_discriminator_sees_matching_channels_for_prediction_and_ground_truth():
    logits_regions = torch.randn(2, 3, 2, 4, 4)
    regions = torch.rand(2, 3, 2, 4, 4) > 0.5
    assert prediction_masks(logits_regions, True).shape == target_masks(regions, True, 3).shape == (2, 3, 2, 4, 4)
    s = torch.randn(2, 3, 2, 4, 4)
    logits_labels = SigmoidClassesNetwork(torch.nn.Identity(), output="loss")(s)
    labels = torch.randint(0, 4, (2, 1, 2, 4, 4))
    fake = prediction_masks(logits_labels, False)
    assert fake.shape == target_masks(labels, False, 4).shape == (2, 3, 2, 4, 4)
    assert torch.allclose(fake, torch.sigmoid(s))  # the paper's D sees the sigmoid class outputs
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
    assert rates[10] == pytest.approx(5e-4 * 0.95**2)
    other = StepDecayLRScheduler(torch.optim.Adam(params, lr=1.0), 1.0, step_size=1, gamma=0.5)
    other.load_state_dict(scheduler.state_dict())
    assert (other.initial_lr, other.step_size, other.gamma) == (5e-4, 5, 0.95)
    constant = StepDecayLRScheduler(torch.optim.Adam(params, lr=1e-4), 1e-4, step_size=5, gamma=1.0)
    assert constant.lr_at(1000) == 1e-4
    with pytest.raises(ValueError, match="gamma"):
        StepDecayLRScheduler(optimizer, 1e-4, step_size=5, gamma=1.5)
    with pytest.raises(ValueError, match="step_size"):
        StepDecayLRScheduler(optimizer, 1e-4, step_size=0, gamma=0.9)
