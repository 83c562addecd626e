"""The paper's formulation on a plain label dataset: three sigmoid class outputs, turned into nnU-Net softmax logits.

A label dataset ``{"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}`` is predicted by nnU-Net with softmax + argmax
(label managers are not pluggable, DESIGN.md section 8). :class:`SigmoidClassesNetwork` wraps the generator, whose
``K`` logits ``s_k`` are the paper's per-class sigmoid outputs ``sigma_k = sigmoid(s_k)``, and has two outputs
(``K + 1`` channels, channel 0 background, fp32), chosen by its ``output`` attribute:

* ``"average"`` (what nnU-Net's predictor gets; the default of :func:`build_tcup_network`):
  ``z = [1 - sum_k sigma_k, sigma_1, ..., sigma_K]``, linear in ``sigma``. nnU-Net averages network outputs
  arithmetically (overlapping sliding windows, Gaussian-weighted; mirrors; the folds of ``-f 0 1 ...``), so the
  averaged ``z`` is ``[1 - sum_k mean(sigma_k), mean(sigma_1), ...]``, and nnU-Net's softmax + argmax of it is
  exactly the paper's rule "background = 1 - sum sigma, normalise (the sum is already 1), argmax" applied to the
  *average of the members' sigmoid probabilities* (argmax is invariant to softmax), with no floor and no veto.
  The saved probabilities (``--save_probabilities``) are ``p = softmax(z_avg)``; since ``sum z = 1`` they are
  invertible: ``z_k = log p_k - mean_j log p_j + 1 / (K + 1)``, which gives the averaged ``sigma`` back
  (:func:`nnunet_tcup.review.inputs.tcup_class_scores`). ``p`` itself is *not* the paper's class probability.
  ``nnUNetv2_ensemble`` averages ``p`` (not ``z``): every member's argmax is kept, and since ``z`` spans at most
  ``[-(K-1), 1]`` softmax is close to linear there, but the ensemble's label is not in general the paper's rule on
  the averaged ``sigma`` (it can differ near ties; ``tests/test_class_head_averaging.py`` shows an example).
  Why ``sigma`` and not ``s_k``: the rule's background ``1 - sum sigma`` is not linear in ``s_k``, so no output
  linear in ``s_k`` gives the rule by argmax; the paper's rule is defined on probabilities, so those are averaged.
* ``"loss"`` (training and nnU-Net's per-batch validation step; set by the trainer):
  ``z = [log(max(1 - sum_k sigma_k, eps)), log sigma_1, ..., log sigma_K]``, so the loss reads ``log sigma_k = z_k``
  and ``log(1 - sigma_k) = log(-expm1(z_k))`` exactly (:class:`nnunet_tcup.trainers.losses.ClassWeightedBCELoss`:
  the paper's weighted BCE of the raw ``s_k``). Its argmax is the same rule for one network evaluation; it is never
  averaged (the trainer switches to ``"average"`` for its final sliding-window validation).

Both outputs come from the same weights (the output choice is not stored in checkpoints): a model trained with the
``"loss"``-only head of earlier versions predicts with the ``"average"`` head unchanged.

Where it acts: inside the network's forward; nothing is written into nnunetv2. The trainer records the formulation in
the plans it saves to the model folder (``plans["tcup_gan"]["formulation"]``), which the predictor passes back to
:func:`build_tcup_network`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

PLANS_KEY = "tcup_gan"
FORMULATIONS = ("regions", "classes")
BACKGROUND_EPS = 1e-6
#: Outputs of :class:`SigmoidClassesNetwork` (see the module docstring).
CLASS_OUTPUTS = ("average", "loss")


def average_output(s: torch.Tensor) -> torch.Tensor:
    """``[1 - sum_k sigmoid(s_k), sigmoid(s_1), ...]`` of sigmoid logits ``(B, K, ...)``: ``(B, K + 1, ...)``, fp32."""
    sigma = torch.sigmoid(s.float())
    return torch.cat([1.0 - sigma.sum(dim=1, keepdim=True), sigma], dim=1)


def loss_output(s: torch.Tensor, eps: float = BACKGROUND_EPS) -> torch.Tensor:
    """``[log(max(1 - sum sigmoid(s_k), eps)), log sigmoid(s_1), ...]`` of ``(B, K, ...)``: ``(B, K + 1, ...)``."""
    s = s.float()
    background = (1.0 - torch.sigmoid(s).sum(dim=1, keepdim=True)).clamp_min(eps)
    return torch.cat([torch.log(background), F.logsigmoid(s)], dim=1)


class SigmoidClassesNetwork(nn.Module):
    """``generator`` with ``K`` sigmoid logits -> ``K + 1`` softmax logits ``(B, K+1, ...)``; ``output`` is
    ``"average"`` (inference) or ``"loss"`` (training), see the module docstring."""

    def __init__(self, generator: nn.Module, output: str, eps: float = BACKGROUND_EPS):
        super().__init__()
        self.generator = generator
        self.eps = float(eps)
        self.output = output

    @property
    def output(self) -> str:
        """Which output ``forward`` gives: ``"average"`` or ``"loss"``."""
        return self._output

    @output.setter
    def output(self, value: str) -> None:
        if value not in CLASS_OUTPUTS:
            raise ValueError(f"classes head output {value!r}: expected one of {CLASS_OUTPUTS}")
        self._output = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.generator(x)
        return average_output(s) if self._output == "average" else loss_output(s, self.eps)

    @property
    def head(self) -> nn.Module:
        """The generator's last layer (the ``s_k`` logits)."""
        head = self.generator.head
        assert isinstance(head, nn.Module)
        return head


def set_class_output(network: nn.Module, output: str) -> str | None:
    """Set the output of a :class:`SigmoidClassesNetwork` (no-op for other networks); returns the previous one."""
    if not isinstance(network, SigmoidClassesNetwork):
        return None
    previous = network.output
    network.output = output
    return previous


@contextlib.contextmanager
def class_output(network: nn.Module, output: str) -> Iterator[None]:
    """Temporarily set the classes head's output (restored afterwards, even on error); no-op for other networks."""
    previous = set_class_output(network, output)
    try:
        yield
    finally:
        if previous is not None:
            set_class_output(network, previous)


def plans_formulation(plans: dict) -> str:
    """The formulation recorded in ``plans`` by the trainer; ``"regions"`` when none is recorded (older models)."""
    formulation = plans.get(PLANS_KEY, {}).get("formulation", "regions")
    if formulation not in FORMULATIONS:
        raise ValueError(f"plans['{PLANS_KEY}']['formulation'] = {formulation!r}: expected one of {FORMULATIONS}")
    return formulation


def record_formulation(plans: dict, formulation: str) -> None:
    """Write ``formulation`` into ``plans`` (saved by nnU-Net as the model folder's ``plans.json``)."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation {formulation!r}: expected one of {FORMULATIONS}")
    plans.setdefault(PLANS_KEY, {})["formulation"] = formulation


def build_tcup_network(num_input_channels: int, num_output_channels: int, formulation: str) -> nn.Module:
    """The generator for ``regions`` (one logit per region), or wrapped for ``classes`` (``num_output_channels``
    counts the labels including background, as nnU-Net passes them) with the ``"average"`` output (the trainer
    switches its own copy to ``"loss"``)."""
    from nnunet_tcup.network_architecture import TCuPGenerator

    if formulation == "regions":
        return TCuPGenerator(num_input_channels, num_output_channels)
    if num_output_channels < 2:
        raise ValueError(
            f"classes formulation needs background + at least one class, got {num_output_channels} output channels"
        )
    return SigmoidClassesNetwork(TCuPGenerator(num_input_channels, num_output_channels - 1), output="average")


def output_head(network: nn.Module) -> nn.Module:
    """The last conv giving the sigmoid logits (regions: the generator's head; classes: the wrapped one's)."""
    head = network.head
    assert isinstance(head, nn.Module), f"{type(network).__name__} has no output head"
    return head
