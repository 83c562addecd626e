"""Slow, straightforward full-volume reference of the BraTS 2023 lesion-wise evaluation (tests and benchmark only).

Written directly from the algorithm description (DESIGN.md section 4), with no cropping and no shortcuts: one
full-volume dilation per lesion, full-volume masks for every lesion's Dice and HD95. The fast implementation in
``nnunet_tcup.evaluation.lesionwise`` must give the same numbers.

Arrays in any axis order; ``spacing`` in mm in the same axis order.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import cc3d
import numpy as np
import surface_distance
from scipy import ndimage

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
MISSED = 374.0


def _hd95(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float]) -> float:
    # The library's own empty-mask branch uses np.Inf (gone in numpy 2); its result there is inf.
    if not gt.any() or not pred.any():
        return float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sd = surface_distance.compute_surface_distances(gt, pred, tuple(float(s) for s in spacing))
        return float(surface_distance.compute_robust_hausdorff(sd, 95))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def reference_region(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    region: str,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
) -> dict:
    """Official metrics and lesion table of one region, computed the slow way. Returns a plain dict."""
    sx, sy, sz = (float(s) for s in spacing)
    gt = np.isin(gt_labels, REGIONS[region])
    pred = np.isin(pred_labels, REGIONS[region])
    both_empty = not gt.any() and not pred.any()

    legacy_dice = 1.0 if both_empty else _dice(pred, gt)
    legacy_hd95 = 0.0 if both_empty else _hd95(gt, pred, spacing)
    tp = np.sum(pred & gt)
    fn = np.sum(gt) - tp
    fp_vox = np.sum(pred) - tp
    tn = np.count_nonzero(~pred & ~gt)
    sens = 1.0 * tp / (tp + fn + sys.float_info.min)
    spec = 1.0 * tn / (tn + fp_vox + sys.float_info.min)
    if both_empty:
        sens = 1.0

    # Numbering as the official code has it for nibabel (x, y, z) arrays: predicted components in Fortran raster
    # order (its label array is Fortran-ordered), dilated GT components in C raster order (scipy's output).
    struct = ndimage.generate_binary_structure(3, 2)
    gt_cc = cc3d.connected_components(gt, connectivity=26)
    pred_cc = cc3d.connected_components(np.asfortranarray(pred), connectivity=26)
    dilated_cc = cc3d.connected_components(
        np.ascontiguousarray(ndimage.binary_dilation(gt, structure=struct, iterations=dilation_iterations)),
        connectivity=26,
    )
    lesions_map = np.zeros(gt.shape, dtype=np.int64)
    for comp in range(1, int(dilated_cc.max()) + 1):
        lesions_map[(dilated_cc == comp) & (gt_cc > 0)] = comp

    lesions: list[dict] = []
    all_matched: list[int] = []
    for lesion_id in range(1, int(lesions_map.max()) + 1):
        lesion = lesions_map == lesion_id
        roi = ndimage.binary_dilation(lesion, structure=struct, iterations=dilation_iterations)
        matched = [int(c) for c in np.unique(pred_cc[roi]) if c != 0]
        all_matched.extend(matched)
        pred_lesion = np.isin(pred_cc, matched)
        volume = np.sum(lesion) * sx * sy * sz
        hd = _hd95(lesion, pred_lesion, spacing)
        lesions.append(
            {
                "lesion_id": lesion_id,
                "num_voxels": int(lesion.sum()),
                "volume_mm3": float(volume),
                "matched_components": tuple(matched),
                "dice": float(_dice(pred_lesion, lesion)),
                "hd95": MISSED if np.isinf(hd) else hd,
                "scored": bool(volume > volume_threshold_mm3),
            }
        )
    fps = [int(c) for c in np.unique(pred_cc) if c != 0 and c not in set(all_matched)]

    scored = [les for les in lesions if les["scored"]]
    denominator = len(scored) + len(fps)
    if denominator:
        ls_dice = np.sum(np.array([les["dice"] for les in scored], dtype=np.float64)) / denominator
        ls_hd95 = (
            np.sum(np.array([les["hd95"] for les in scored], dtype=np.float64)) + MISSED * len(fps)
        ) / denominator
    else:
        ls_dice, ls_hd95 = 1.0, 0.0
    return {
        "metrics": {
            "Num_TP": sum(1 for les in scored if les["matched_components"]),
            "Num_FP": len(fps),
            "Num_FN": sum(1 for les in scored if not les["matched_components"]),
            "Sensitivity": float(sens),
            "Specificity": float(spec),
            "Legacy_Dice": float(legacy_dice),
            "Legacy_HD95": MISSED if np.isinf(legacy_hd95) else legacy_hd95,
            "GT_Complete_Volume": float(np.sum(gt) * sx * sy * sz),
            "LesionWise_Score_Dice": float(ls_dice),
            "LesionWise_Score_HD95": float(ls_hd95),
        },
        "lesions": lesions,
        "false_positives": tuple(fps),
    }


def reference_case(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
) -> dict[str, dict]:
    """``{'WT': ..., 'TC': ..., 'ET': ...}`` of :func:`reference_region`."""
    return {
        region: reference_region(gt_labels, pred_labels, region, spacing, dilation_iterations, volume_threshold_mm3)
        for region in REGIONS
    }
