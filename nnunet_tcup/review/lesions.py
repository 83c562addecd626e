"""Per-lesion fold agreement, matched the way the BraTS 2023 lesion-wise evaluation matches.

For one region, the consensus mask plays the ground truth and each fold's mask the prediction: consensus lesions are
merged by dilation, a fold component matches a lesion when it touches the lesion dilated again, a lesion's Dice is
that of the union of its matched components (the official rules, :mod:`nnunet_tcup.evaluation.components`). Then:

- a **consensus lesion** is *found* by a fold when at least one of the fold's components matches it; its
  ``agreement`` is the mean over folds of its lesion Dice (0 for a fold that misses it);
- a **fold-only lesion** groups the fold components that match no consensus lesion (the evaluation's false
  positives against the consensus), merged across folds by the same dilation; ``folds_found`` counts the folds with
  a component in it, its agreement is 0 (the consensus has nothing there);
- a fold's lesion-wise Dice against the consensus is the official score: sum of scored lesion Dice / (scored
  lesions + false positives), lesions scored when their volume exceeds the challenge threshold (50 mm^3).

Arrays are ``(z, y, x)``; spacing is ``(z, y, x)`` in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_tcup.evaluation.boxes import bounding_box
from nnunet_tcup.evaluation.components import (
    label_components,
    match_lesions,
    merge_gt_lesions,
    overlap_counts,
    voxel_counts,
)
from nnunet_tcup.evaluation.scores import dice_from_counts, lesionwise_scores, voxel_volume_mm3


@dataclass(frozen=True)
class FoldComparison:
    """One fold against the reference (consensus) in one region: per reference lesion its Dice and whether it is
    scored; ``false_positive_mask`` marks the voxels of the fold's unmatched components; ``score`` is the official
    lesion-wise Dice."""

    lesion_dice: np.ndarray
    scored: np.ndarray
    false_positive_mask: np.ndarray
    num_false_positives: int
    score: float


@dataclass(frozen=True)
class LesionRecord:
    """One lesion of one region for the review tables. ``slices`` are the first and last z index (0-based) it
    covers, ``centroid_zyx`` its centre in voxels, ``volume_mm3`` its size (consensus voxels for a consensus lesion,
    voxels of any fold for a fold-only lesion); probabilities and mutual information (bits) are means over them."""

    region: str
    lesion_id: int
    in_consensus: bool
    folds_found: int
    num_folds: int
    agreement: float
    volume_mm3: float
    mean_probability: float
    mean_mutual_information: float
    slices: tuple[int, int]
    centroid_zyx: tuple[float, float, float]

    @property
    def agreement_class(self) -> str:
        """'unanimous' (every fold finds it), 'majority' (more than half) or 'minority'."""
        if self.folds_found == self.num_folds:
            return "unanimous"
        return "majority" if 2 * self.folds_found > self.num_folds else "minority"


def compare_to_reference(
    lesion_labels: np.ndarray,
    num_lesions: int,
    lesion_voxels: np.ndarray,
    fold_mask: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
) -> FoldComparison:
    """Official lesion-wise Dice of ``fold_mask`` against merged reference lesions ``lesion_labels`` (ids
    1..num_lesions, ``lesion_voxels[i]`` = voxels of lesion i)."""
    comps, n_comp = label_components(fold_mask, order="C")
    matching = match_lesions(lesion_labels, comps, dilation_iterations, num_lesions, n_comp)
    comp_voxels = voxel_counts(comps, n_comp)
    overlaps = overlap_counts(lesion_labels, comps)
    overlap = {(int(a), int(b)): int(c) for a, b, c in overlaps}
    dice = np.zeros(num_lesions, dtype=np.float64)
    for i, matched in enumerate(matching.matches, start=1):
        if matched:
            inter = sum(overlap.get((i, c), 0) for c in matched)
            dice[i - 1] = dice_from_counts(inter, int(lesion_voxels[i]), int(comp_voxels[list(matched)].sum()))
    scored = np.array(
        [voxel_volume_mm3(int(lesion_voxels[i]), spacing) > volume_threshold_mm3 for i in range(1, num_lesions + 1)],
        dtype=bool,
    )
    fp = np.zeros(n_comp + 1, dtype=bool)
    fp[list(matching.false_positives)] = True
    score, _ = lesionwise_scores(dice.tolist(), [0.0] * num_lesions, scored.tolist(), len(matching.false_positives))
    return FoldComparison(dice, scored, fp[comps], len(matching.false_positives), score)


def lesionwise_dice(
    reference_mask: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
) -> float:
    """The official BraTS 2023 lesion-wise Dice of one region (``mask`` scored against ``reference_mask``)."""
    lesions, n = merge_gt_lesions(np.asarray(reference_mask, dtype=bool), dilation_iterations)
    return compare_to_reference(
        lesions,
        n,
        voxel_counts(lesions, n),
        np.asarray(mask, dtype=bool),
        spacing,
        dilation_iterations,
        volume_threshold_mm3,
    ).score


def _stats(
    mask: np.ndarray, probability: np.ndarray, mi: np.ndarray
) -> tuple[float, float, tuple[int, int], tuple[float, float, float]]:
    idx = np.nonzero(mask)
    centroid = (float(np.mean(idx[0])), float(np.mean(idx[1])), float(np.mean(idx[2])))
    slices = (int(idx[0].min()), int(idx[0].max()))
    return float(probability[idx].mean()), float(mi[idx].mean()), slices, centroid


def _shifted(centre: tuple[float, float, float], offset: np.ndarray) -> tuple[float, float, float]:
    return (float(centre[0] + offset[0]), float(centre[1] + offset[1]), float(centre[2] + offset[2]))


def region_lesions(
    region: str,
    consensus_mask: np.ndarray,
    fold_masks: np.ndarray,
    mean_probability: np.ndarray,
    mutual_information: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
) -> tuple[list[LesionRecord], list[float]]:
    """Lesion records of one region and each fold's lesion-wise Dice against the consensus.

    ``consensus_mask`` ``(z, y, x)`` bool; ``fold_masks`` ``(folds, z, y, x)`` bool; ``mean_probability`` and
    ``mutual_information`` ``(z, y, x)``. Work happens in the bounding box of all masks grown by the dilation
    radius + 1 (identical to full-volume results); coordinates in the records are those of the full volume.
    """
    num_folds = int(fold_masks.shape[0])
    box = bounding_box(consensus_mask | np.any(fold_masks, axis=0), pad=dilation_iterations + 1)
    if box is None:  # nothing anywhere: every fold agrees perfectly with the empty consensus
        return [], [1.0] * num_folds
    offset = np.array([s.start for s in box], dtype=np.float64)
    ref, folds = consensus_mask[box], fold_masks[(slice(None),) + tuple(box)]
    prob, mi = mean_probability[box], mutual_information[box]
    lesions, n = merge_gt_lesions(ref, dilation_iterations)
    lesion_voxels = voxel_counts(lesions, n)
    comparisons = [
        compare_to_reference(lesions, n, lesion_voxels, f, spacing, dilation_iterations, volume_threshold_mm3)
        for f in folds
    ]
    records = []
    for i in range(1, n + 1):
        dice = np.array([c.lesion_dice[i - 1] for c in comparisons])
        p, m, (z0, z1), centre = _stats(lesions == i, prob, mi)
        records.append(
            LesionRecord(
                region,
                i,
                True,
                int(np.count_nonzero(dice > 0)),
                num_folds,
                float(dice.mean()),
                voxel_volume_mm3(int(lesion_voxels[i]), spacing),
                p,
                m,
                (z0 + int(offset[0]), z1 + int(offset[0])),
                _shifted(centre, offset),
            )
        )
    fp_union = np.zeros(ref.shape, dtype=bool)
    for c in comparisons:
        fp_union |= c.false_positive_mask
    extra, n_extra = merge_gt_lesions(fp_union, dilation_iterations)
    for j in range(1, n_extra + 1):
        member = extra == j
        found = sum(1 for c in comparisons if np.any(c.false_positive_mask & member))
        p, m, (z0, z1), centre = _stats(member, prob, mi)
        records.append(
            LesionRecord(
                region,
                n + j,
                False,
                found,
                num_folds,
                0.0,
                voxel_volume_mm3(int(np.count_nonzero(member)), spacing),
                p,
                m,
                (z0 + int(offset[0]), z1 + int(offset[0])),
                _shifted(centre, offset),
            )
        )
    return records, [c.score for c in comparisons]
