"""The official formulas of the lesion-wise evaluation, from voxel counts and per-lesion values."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from nnunet_tcup.evaluation.surface import MISSED_LESION_HD95

__all__ = ["dice_from_counts", "lesionwise_scores", "sensitivity_specificity", "voxel_volume_mm3"]


def voxel_volume_mm3(num_voxels: int, spacing: Sequence[float]) -> float:
    """Volume in mm^3 of ``num_voxels`` voxels, multiplied in the official order ``((n * s0) * s1) * s2``."""
    volume = float(num_voxels)
    for s in spacing:
        volume = volume * float(s)
    return volume


def dice_from_counts(intersection: int, gt_voxels: int, pred_voxels: int) -> float:
    """Dice ``2 |A & B| / (|A| + |B|)`` from voxel counts (the official formula; NaN for 0/0)."""
    denominator = int(gt_voxels) + int(pred_voxels)
    return 2.0 * int(intersection) / denominator if denominator else float("nan")


def lesionwise_scores(
    dice: Sequence[float], hd95_mm: Sequence[float], scored: Sequence[bool], num_fp: int
) -> tuple[float, float]:
    """Official lesion-wise (Dice, HD95) of one region from per-lesion values.

    ``dice`` / ``hd95_mm`` (inf or 374 for missed lesions) / ``scored`` (volume > threshold) have one entry per
    lesion; ``num_fp`` is the number of false-positive components. Dice = sum(scored Dice) / (#scored + #FP),
    HD95 = (sum(scored HD95) + 374 #FP) / (#scored + #FP); when #scored + #FP = 0 the result is (1.0, 0.0).
    """
    keep = np.asarray(scored, dtype=bool)
    dice_arr = np.asarray(dice, dtype=np.float64)[keep] if keep.size else np.zeros(0)
    hd_arr = np.asarray(hd95_mm, dtype=np.float64)[keep] if keep.size else np.zeros(0)
    hd_arr = np.where(np.isinf(hd_arr), MISSED_LESION_HD95, hd_arr)
    denominator = int(keep.sum()) + int(num_fp)
    if denominator == 0:
        return 1.0, 0.0
    return float(np.sum(dice_arr) / denominator), float((np.sum(hd_arr) + num_fp * MISSED_LESION_HD95) / denominator)


def sensitivity_specificity(tp: int, gt_voxels: int, pred_voxels: int, total_voxels: int) -> tuple[float, float]:
    """Official voxel sensitivity and specificity from counts (``TP / (TP + FN + tiny)``, ``TN / (TN + FP + tiny)``
    with tiny = smallest float; sensitivity 1 when GT and prediction are both empty)."""
    fn = gt_voxels - tp
    fp = pred_voxels - tp
    tn = total_voxels - (gt_voxels + pred_voxels - tp)
    sens = 1.0 * tp / (float(tp + fn) + sys.float_info.min)
    spec = 1.0 * tn / (float(tn + fp) + sys.float_info.min)
    if gt_voxels == 0 and pred_voxels == 0:
        sens = 1.0
    return float(sens), float(spec)
