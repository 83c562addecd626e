"""Uncertainty from the disagreement of cross-validation folds: per voxel, per lesion, per case.

All arrays are in nnU-Net's array order ``(z, y, x)`` (z = the slice axis for BraTS, the image's third NIfTI axis),
region probabilities are ``(folds, 3, z, y, x)`` with the regions in the order WT, TC, ET. Definitions (per
region, ``p_k`` = fold k's probability of a voxel, K folds, ``H(p) = -p log2 p - (1-p) log2(1-p)`` in bits):

- mean probability ``p = mean_k p_k``; the consensus segmentation thresholds it at 0.5 (the paint order of
  nnU-Net's region datasets: WT -> 2, TC -> 1, ET -> 3; label datasets: argmax of the mean class probabilities);
- entropy ``H(p)`` (total uncertainty, 0-1 bit); expected fold entropy ``mean_k H(p_k)`` (what each fold is unsure
  of); mutual information ``MI = H(p) - mean_k H(p_k)`` (0-1 bit): the fold disagreement (the information the fold
  identity carries about the label; 0 when all folds give the same probability);
- per lesion: see :mod:`nnunet_tcup.review.lesions`;
- per case: the **disputed share** ``D[R] = 1 - |M_1 & ... & M_K| / |M_1 | ... | M_K|`` (``M_k`` = fold k's mask
  of R, the label map that fold writes): the share of the volume that any fold labels R on which the folds do not
  all agree (0 when no fold labels R, or all folds label exactly the same voxels; 1 when no voxel is labelled by
  every fold); the **doubt score** ``score = mean_R D[R]`` (0 to 1, higher = more doubtful);
  also reported: ``expected_dice[R] = mean_k LesionwiseDice(reference = consensus, prediction = fold k)`` with the
  official BraTS 2023 lesion-wise Dice (lesion merging, matching, 50 mm^3 threshold, unthresholded false
  positives) of the challenge (the doubt score of the first version was ``1 - mean_R expected_dice[R]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGION_NAMES: tuple[str, ...] = ("WT", "TC", "ET")
#: 2023 labels of each region (also the label sets nnU-Net's region channels are defined by).
REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
#: Paint order of the regions into a 2023 label map (nnU-Net's ``regions_class_order`` [2, 1, 3] for WT, TC, ET).
PAINT_LABELS: tuple[int, ...] = (2, 1, 3)
_EPS = 1e-7


def labels_to_region_probabilities(class_probabilities: np.ndarray) -> np.ndarray:
    """Softmax probabilities of a label model ``(4, z, y, x)`` (background, NETC, SNFH, ET) to WT/TC/ET region
    probabilities ``(3, z, y, x)`` float32: WT = NETC + SNFH + ET, TC = NETC + ET, ET = ET."""
    p = np.asarray(class_probabilities, dtype=np.float32)
    if p.ndim != 4 or p.shape[0] != 4:
        raise ValueError(f"expected class probabilities of shape (4, z, y, x), got {p.shape}")
    return np.stack([p[1] + p[2] + p[3], p[1] + p[3], p[3]]).clip(0.0, 1.0)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of Bernoulli probabilities ``p`` (any shape), float32, 0 at p = 0 or 1."""
    p = np.clip(np.asarray(p, dtype=np.float32), _EPS, 1.0 - _EPS)
    h = -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))
    return np.where(h < 1e-5, 0.0, h).astype(np.float32)


@dataclass(frozen=True)
class VoxelMaps:
    """Per-voxel maps of one case, each ``(3, z, y, x)`` float32 for WT, TC, ET: ``mean`` probability, ``entropy``
    of the mean (bits), ``expected_entropy`` (mean of the folds' entropies, bits), ``mutual_information`` (bits),
    ``std`` of the folds' probabilities; ``fold_masks`` ``(folds, 3, z, y, x)`` bool: each fold's region masks."""

    mean: np.ndarray
    entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    std: np.ndarray
    fold_masks: np.ndarray

    @property
    def num_folds(self) -> int:
        return int(self.fold_masks.shape[0])


def fold_region_masks(region_probabilities: np.ndarray, class_probabilities: np.ndarray | None = None) -> np.ndarray:
    """Region masks ``(3, z, y, x)`` bool of one model output, i.e. the regions of the label map nnU-Net writes:
    region models paint ``probability > 0.5`` (WT -> 2, TC -> 1, ET -> 3), label models (``class_probabilities``
    (4, z, y, x) given) take the argmax."""
    if class_probabilities is not None:
        labels = np.argmax(class_probabilities, axis=0)
    else:
        labels = paint_regions(np.asarray(region_probabilities) > 0.5)
    return labels_to_region_masks(labels)


def paint_regions(region_masks: np.ndarray) -> np.ndarray:
    """2023 label map ``(z, y, x)`` uint8 from region masks ``(3, z, y, x)`` painted as nnU-Net does for
    ``regions_class_order`` [2, 1, 3]: WT -> 2, then TC -> 1, then ET -> 3 (later regions overwrite)."""
    masks = np.asarray(region_masks, dtype=bool)
    labels = np.zeros(masks.shape[1:], dtype=np.uint8)
    for mask, value in zip(masks, PAINT_LABELS):
        labels[mask] = value
    return labels


def labels_to_region_masks(labels: np.ndarray) -> np.ndarray:
    """Region masks ``(3, z, y, x)`` bool (WT, TC, ET) of a 2023 label map."""
    labels = np.asarray(labels)
    return np.stack([np.isin(labels, REGION_LABELS[r]) for r in REGION_NAMES])


def voxel_maps(fold_probabilities: list[np.ndarray], fold_masks: list[np.ndarray]) -> VoxelMaps:
    """Per-voxel maps from each fold's region probabilities ``(3, z, y, x)`` and region masks (same shape, bool).

    At least two folds are needed for a disagreement; with one fold ``mutual_information`` and ``std`` are 0.
    """
    if not fold_probabilities or len(fold_probabilities) != len(fold_masks):
        raise ValueError("voxel_maps needs one probability array and one mask array per fold (at least one fold)")
    shape = np.shape(fold_probabilities[0])
    total = np.zeros(shape, dtype=np.float64)
    total_sq = np.zeros(shape, dtype=np.float64)
    entropy_sum = np.zeros(shape, dtype=np.float64)
    for p in fold_probabilities:
        if np.shape(p) != shape:
            raise ValueError(f"fold probabilities differ in shape: {np.shape(p)} vs {shape}")
        p = np.asarray(p, dtype=np.float32)
        total += p
        total_sq += np.square(p, dtype=np.float64)
        entropy_sum += binary_entropy(p)
    k = len(fold_probabilities)
    mean = (total / k).astype(np.float32)
    std = np.sqrt(np.maximum(total_sq / k - np.square(total / k), 0.0)).astype(np.float32)
    entropy = binary_entropy(mean)
    expected = (entropy_sum / k).astype(np.float32)
    mi = np.maximum(entropy - expected, 0.0).astype(np.float32)
    return VoxelMaps(mean, entropy, expected, mi, std, np.stack([np.asarray(m, dtype=bool) for m in fold_masks]))


def consensus_labels(
    mean_region_probabilities: np.ndarray, mean_class_probabilities: np.ndarray | None = None
) -> np.ndarray:
    """Consensus 2023 label map ``(z, y, x)`` uint8: region models paint ``mean > 0.5`` (WT -> 2, TC -> 1,
    ET -> 3); label models (``mean_class_probabilities`` (4, z, y, x)) take the argmax."""
    if mean_class_probabilities is not None:
        return np.argmax(mean_class_probabilities, axis=0).astype(np.uint8)
    return paint_regions(np.asarray(mean_region_probabilities) > 0.5)


def slice_disagreement(mutual_information: np.ndarray) -> np.ndarray:
    """Disagreement per slice: the sum over regions and in-plane voxels of the mutual information (bits), shape
    ``(z,)``."""
    mi = np.asarray(mutual_information)
    return mi.reshape(mi.shape[0], mi.shape[1], -1).sum(axis=(0, 2)) if mi.ndim == 4 else mi.sum(axis=(1, 2))


def doubtful_slices(per_slice: np.ndarray, count: int, min_gap: int = 3) -> list[int]:
    """Indices (0-based, along z) of up to ``count`` slices with the largest ``per_slice`` values, at least
    ``min_gap`` slices apart, in decreasing order of value; slices with value 0 are never chosen."""
    values = np.asarray(per_slice, dtype=np.float64)
    chosen: list[int] = []
    for z in np.argsort(-values, kind="stable"):
        if len(chosen) >= count or values[z] <= 0:
            break
        if all(abs(int(z) - c) >= min_gap for c in chosen):
            chosen.append(int(z))
    return chosen


def disputed_share(fold_masks: np.ndarray) -> float:
    """Share of the voxels labelled by any fold that not every fold labels: ``1 - |intersection| / |union|`` of the
    folds' masks ``(folds, z, y, x)`` bool of one region; 0.0 when no fold labels a voxel."""
    masks = np.asarray(fold_masks, dtype=bool)
    if masks.ndim < 2 or masks.shape[0] < 1:
        raise ValueError(f"expected fold masks of shape (folds, ...), got {masks.shape}")
    union = int(np.count_nonzero(np.any(masks, axis=0)))
    if union == 0:
        return 0.0
    return 1.0 - int(np.count_nonzero(np.all(masks, axis=0))) / union


def case_score(disputed: dict[str, float]) -> float:
    """Doubt score of a case: the mean over WT, TC, ET of the regions' disputed shares (:func:`disputed_share`),
    0 to 1, higher = more doubtful."""
    return float(np.mean([disputed[r] for r in REGION_NAMES]))
