"""The paper's formulation on a plain label dataset: three sigmoid class outputs, turned into nnU-Net softmax logits.

A label dataset ``{"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}`` is predicted by nnU-Net with softmax + argmax
(label managers are not pluggable, DESIGN.md section 8). :class:`SigmoidClassesNetwork` wraps the generator, whose
``K`` logits ``s_k`` are the paper's per-class sigmoid outputs, and hands nnU-Net the ``K + 1`` logits

    ``z = [log(max(1 - sum_k sigmoid(s_k), eps)), log sigmoid(s_1), ..., log sigmoid(s_K)]``

(channel 0 background, fp32). nnU-Net's softmax of ``z`` is ``[max(1 - sum P, eps), P_1, ..., P_K]`` normalised,
i.e. exactly the paper's rule "background = 1 - sum P, normalise, argmax" (section 5.2): the stock
``nnUNetv2_predict`` (sliding window, mirroring, ``-f 0 1 ...`` fold averaging of these logits), ``--npz``
validation, ``nnUNetv2_ensemble`` and export then apply it with no extra step. Training uses ``P_k = exp(z_k)``
(:class:`nnunet_tcup.trainers.losses.ClassWeightedBCELoss`).

Where it acts: inside the network's forward; nothing is written into nnunetv2. The trainer records the formulation in
the plans it saves to the model folder (``plans["tcup_gan"]["formulation"]``), which the predictor passes back to
:func:`build_tcup_network`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PLANS_KEY = "tcup_gan"
FORMULATIONS = ("regions", "classes")
BACKGROUND_EPS = 1e-6


class SigmoidClassesNetwork(nn.Module):
    """``generator`` with ``K`` sigmoid logits -> ``K + 1`` softmax logits (see module docstring); ``(B, K+1, ...)``."""

    def __init__(self, generator: nn.Module, eps: float = BACKGROUND_EPS):
        super().__init__()
        self.generator = generator
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.generator(x).float()
        log_p = F.logsigmoid(s)
        background = (1.0 - torch.sigmoid(s).sum(dim=1, keepdim=True)).clamp_min(self.eps)
        return torch.cat([torch.log(background), log_p], dim=1)

    @property
    def head(self) -> nn.Module:
        """The generator's last layer (the ``s_k`` logits)."""
        head = self.generator.head
        assert isinstance(head, nn.Module)
        return head


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
    counts the labels including background, as nnU-Net passes them)."""
    from nnunet_tcup.network_architecture import TCuPGenerator

    if formulation == "regions":
        return TCuPGenerator(num_input_channels, num_output_channels)
    if num_output_channels < 2:
        raise ValueError(
            f"classes formulation needs background + at least one class, got {num_output_channels} output channels"
        )
    return SigmoidClassesNetwork(TCuPGenerator(num_input_channels, num_output_channels - 1))


def output_head(network: nn.Module) -> nn.Module:
    """The last conv giving the sigmoid logits (regions: the generator's head; classes: the wrapped one's)."""
    head = network.head
    assert isinstance(head, nn.Module), f"{type(network).__name__} has no output head"
    return head
