"""BraTS 2023 lesion-wise evaluation of one case (the official GLI/MEN/PED/SSA algorithm): result types and
:func:`evaluate_case`.

Conventions:

* Arrays are 3D and may be in any axis order; ``spacing`` is the voxel size in mm **in the same axis order as the
  arrays** (for ``read_image_zyx`` output: ``(z, y, x)``). Volumes are in mm^3, distances (HD95) in mm.
* Connected components are ``cc3d`` 26-connectivity, ids 1..n numbered by the raster position of each component's
  first voxel. The official code (nibabel arrays in NIfTI ``(x, y, z)`` order) numbers predicted components in
  Fortran raster order (first axis fastest) and merged GT lesions in C raster order (scipy's dilation returns a
  C-ordered array). This module does the same, so with arrays in ``(x, y, z)`` order the ids equal the official
  ones; the metric values do not depend on the axis order.

Algorithm (per region WT / TC / ET), identical in every number to the official 2023 code:

1. GT lesions: dilate the GT region mask (18-neighbourhood, ``dilation_iterations`` times), label the dilated mask;
   the original GT voxels in one dilated component form one lesion (:func:`~.components.merge_lesions`).
2. A predicted component matches a lesion when it touches the lesion dilated again by the same number of
   iterations; that region is exactly the lesion's dilated component from step 1. Lesion Dice = Dice(lesion,
   union of its matched components); lesion HD95 = DeepMind ``surface_distance`` robust Hausdorff (95 %) between
   the same two masks; a missed lesion gets Dice 0 and HD95 374 mm.
3. Lesions with volume > threshold (mm^3) are scored. Components matching no lesion (of any size) are false
   positives. Dice = sum(scored Dice) / (#scored + #FP); HD95 = (sum(scored HD95) + 374 #FP) / (#scored + #FP);
   0/0 gives Dice 1, HD95 0.
4. Legacy (whole-region) Dice and HD95 (both empty: 1 and 0; one empty: HD95 374), voxel sensitivity and
   specificity (both empty: sensitivity 1), and the GT volume, as the official code computes them.

Cost grows with voxels plus components, never their product: one crop to the labelled part of the case, one
labelling of GT and prediction per region, per-lesion work in the lesion's box, surfels computed once per
component and selected per lesion (:mod:`~nnunet_tcup.evaluation.surface`). Nearest surfels are found by a k-d
tree or by a feature transform of the box holding both surfaces (:mod:`~nnunet_tcup.evaluation.nearest`), so huge
surfaces cost at most their box's volume; a predicted component matching several lesions is measured against each
of them (about one such box per lesion, as the official metric requires each lesion's own HD95).

The primitives (masks, labelling, dilation, matching, boxes, surfaces, formulas) live in
:mod:`~nnunet_tcup.evaluation.components`, :mod:`~nnunet_tcup.evaluation.boxes`,
:mod:`~nnunet_tcup.evaluation.surface` and :mod:`~nnunet_tcup.evaluation.scores`; the names below are re-exported
here for existing callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nnunet_tcup.challenges import REGIONS
from nnunet_tcup.evaluation.boxes import Box, bounding_box, component_boxes, count_in_box, grow_box
from nnunet_tcup.evaluation.components import (
    GTLesions,
    LesionMatching,
    dilate,
    dilation_structure,
    false_positives,
    label_components,
    match_lesions,
    merge_gt_lesions,
    merge_lesions,
    overlap_counts,
    region_mask,
    touched_components,
    voxel_counts,
)
from nnunet_tcup.evaluation.scores import (
    dice_from_counts,
    lesionwise_scores,
    sensitivity_specificity,
    voxel_volume_mm3,
)
from nnunet_tcup.evaluation.surface import (
    MISSED_LESION_HD95,
    SurfacePair,
    component_surfels,
    finite_hd95,
    hd95,
    surface_distances,
)
from nnunet_tcup.evaluation.validation import check_labels, check_spacing, resolve_parameters

if TYPE_CHECKING:
    import pandas

__all__ = [
    "METRIC_COLUMNS",
    "MISSED_LESION_HD95",
    "REGION_NAMES",
    "CaseEvaluation",
    "LesionMatching",
    "LesionResult",
    "RegionEvaluation",
    "bounding_box",
    "check_labels",
    "check_spacing",
    "component_boxes",
    "dice_from_counts",
    "dilate",
    "dilation_structure",
    "evaluate_case",
    "evaluate_region",
    "finite_hd95",
    "hd95",
    "label_components",
    "lesionwise_scores",
    "match_lesions",
    "merge_gt_lesions",
    "overlap_counts",
    "region_mask",
    "resolve_parameters",
    "sensitivity_specificity",
    "surface_distances",
    "voxel_counts",
    "voxel_volume_mm3",
]

#: Official per-region metric names, in the official CSV column order.
METRIC_COLUMNS: tuple[str, ...] = (
    "Num_TP",
    "Num_FP",
    "Num_FN",
    "Sensitivity",
    "Specificity",
    "Legacy_Dice",
    "Legacy_HD95",
    "GT_Complete_Volume",
    "LesionWise_Score_Dice",
    "LesionWise_Score_HD95",
)

#: Region names in evaluation order.
REGION_NAMES: tuple[str, ...] = tuple(REGIONS)


@dataclass(frozen=True)
class LesionResult:
    """One merged GT lesion of one region.

    ``lesion_id``: id in the merged lesion labelling; ``num_voxels`` / ``volume_mm3``: its size;
    ``matched_components``: predicted component ids matching it; ``dice``; ``hd95`` in mm (374 when missed);
    ``scored``: volume > threshold (only scored lesions enter the lesion-wise scores).
    """

    lesion_id: int
    num_voxels: int
    volume_mm3: float
    matched_components: tuple[int, ...]
    dice: float
    hd95: float
    scored: bool


@dataclass(frozen=True)
class RegionEvaluation:
    """Official metrics of one region (``region`` = 'WT', 'TC' or 'ET') plus the per-lesion table.

    Volumes in mm^3, HD95 in mm. ``false_positive_components`` are predicted component ids matching no lesion.
    """

    region: str
    num_tp: int
    num_fp: int
    num_fn: int
    sensitivity: float
    specificity: float
    legacy_dice: float
    legacy_hd95: float
    gt_complete_volume: float
    lesionwise_dice: float
    lesionwise_hd95: float
    lesions: tuple[LesionResult, ...] = ()
    false_positive_components: tuple[int, ...] = ()

    def metrics(self) -> dict[str, float]:
        """The official per-region values keyed by the official CSV column names (``METRIC_COLUMNS``)."""
        values = (
            self.num_tp,
            self.num_fp,
            self.num_fn,
            self.sensitivity,
            self.specificity,
            self.legacy_dice,
            self.legacy_hd95,
            self.gt_complete_volume,
            self.lesionwise_dice,
            self.lesionwise_hd95,
        )
        return dict(zip(METRIC_COLUMNS, values))


@dataclass(frozen=True)
class CaseEvaluation:
    """Evaluation of one case: ``regions['WT' | 'TC' | 'ET']`` and the parameters used.

    ``spacing`` is in the axis order of the evaluated arrays (mm).
    """

    regions: Mapping[str, RegionEvaluation]
    dilation_iterations: int
    volume_threshold_mm3: float
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int] = field(default=(0, 0, 0))

    def __getitem__(self, region: str) -> RegionEvaluation:
        return self.regions[region]

    def metrics_table(self) -> pandas.DataFrame:
        """One row per region: ``Labels`` plus the official metric columns."""
        import pandas as pd

        return pd.DataFrame([{"Labels": name, **self.regions[name].metrics()} for name in REGION_NAMES])

    def lesions_table(self) -> pandas.DataFrame:
        """One row per (region, lesion): Labels, lesion_id, num_voxels, volume_mm3, matched_components (space
        separated ids), dice, hd95, scored."""
        import pandas as pd

        columns = ["Labels", "lesion_id", "num_voxels", "volume_mm3", "matched_components", "dice", "hd95", "scored"]
        rows = [
            (
                name,
                les.lesion_id,
                les.num_voxels,
                les.volume_mm3,
                " ".join(map(str, les.matched_components)),
                les.dice,
                les.hd95,
                les.scored,
            )  # fmt: skip
            for name in REGION_NAMES
            for les in self.regions[name].lesions
        ]
        return pd.DataFrame(rows, columns=columns)


def evaluate_case(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float],
    challenge: str | None = None,
    dilation_iterations: int | None = None,
    volume_threshold_mm3: float | None = None,
) -> CaseEvaluation:
    """Official BraTS 2023 lesion-wise evaluation of one case.

    ``gt`` and ``pred``: 3D integer label arrays (labels 0-3) of the same shape, any axis order; ``spacing``: voxel
    size in mm in the same axis order as the arrays. ``challenge`` ('GLI', 'MEN', 'PED', 'SSA') gives the official
    dilation and volume threshold; ``dilation_iterations`` / ``volume_threshold_mm3`` (mm^3) override them or
    replace the challenge. Returns the official per-region metrics and the per-lesion tables.
    """
    d, threshold = resolve_parameters(challenge, dilation_iterations, volume_threshold_mm3)
    spacing = check_spacing(spacing)
    gt = check_labels(gt, "gt")
    pred = check_labels(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred shapes differ: {gt.shape} vs {pred.shape}")
    # Everything happens in the labelled part of the case grown by the dilation radius (+1): the merge dilation
    # and every lesion's region of interest stay inside it, so the results equal full-volume ones.
    shape = tuple(int(n) for n in gt.shape)
    labelled = bounding_box((gt != 0) | (pred != 0))
    if labelled is not None:
        crop = grow_box(labelled, d + 1, shape)
        gt, pred = gt[crop], pred[crop]
    total = int(np.prod(shape))
    regions = {name: evaluate_region(gt, pred, name, spacing, d, threshold, total) for name in REGION_NAMES}
    return CaseEvaluation(regions, d, threshold, spacing, shape)  # type: ignore[arg-type]


def evaluate_region(
    gt: np.ndarray,
    pred: np.ndarray,
    region: str,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
    total_voxels: int | None = None,
) -> RegionEvaluation:
    """Official metrics of one region of already validated label arrays (see :func:`evaluate_case`).

    ``total_voxels``: voxels of the whole case when ``gt`` / ``pred`` are a crop of it (for the specificity);
    default ``gt.size``. A crop must contain every labelled voxel grown by ``dilation_iterations + 1``.
    """
    total = int(gt.size) if total_voxels is None else int(total_voxels)
    gt_mask = region_mask(gt, region)
    pred_mask = region_mask(pred, region)
    union_box = bounding_box(gt_mask | pred_mask)
    if union_box is None:  # both empty
        sens, spec = sensitivity_specificity(0, 0, 0, total)
        return RegionEvaluation(region, 0, 0, 0, sens, spec, 1.0, 0.0, voxel_volume_mm3(0, spacing), 1.0, 0.0)
    box = grow_box(union_box, dilation_iterations + 1, gt_mask.shape)
    gt_c, pred_c = gt_mask[box], pred_mask[box]
    n_gt, n_pred = int(np.count_nonzero(gt_c)), int(np.count_nonzero(pred_c))
    sens, spec = sensitivity_specificity(int(np.count_nonzero(gt_c & pred_c)), n_gt, n_pred, total)
    legacy_dice = dice_from_counts(int(np.count_nonzero(gt_c & pred_c)), n_gt, n_pred)

    pred_cc, n_comp = label_components(pred_c, order="F")
    comp_boxes = component_boxes(pred_cc, n_comp)
    pred_surfels = component_surfels(pred_cc, n_comp, spacing, comp_boxes)
    lesions: list[LesionResult] = []
    legacy_hd95 = MISSED_LESION_HD95  # GT empty, prediction not
    if n_gt:
        gt_lesions = merge_lesions(gt_c, dilation_iterations)
        gt_surfels = component_surfels(
            gt_lesions.gt_components, gt_lesions.num_components, spacing, gt_lesions.component_boxes
        )
        surfaces = SurfacePair(gt_surfels, pred_surfels, spacing)
        lesions = _lesion_results(
            gt_lesions, surfaces, pred_cc, comp_boxes, dilation_iterations, spacing, volume_threshold_mm3
        )
        legacy_hd95 = finite_hd95(surfaces.hd95())
    fps = false_positives([les.matched_components for les in lesions], n_comp)
    ls_dice, ls_hd95 = lesionwise_scores(
        [les.dice for les in lesions], [les.hd95 for les in lesions], [les.scored for les in lesions], len(fps)
    )
    return RegionEvaluation(
        region=region,
        num_tp=sum(1 for les in lesions if les.scored and les.matched_components),
        num_fp=len(fps),
        num_fn=sum(1 for les in lesions if les.scored and not les.matched_components),
        sensitivity=sens,
        specificity=spec,
        legacy_dice=legacy_dice,
        legacy_hd95=legacy_hd95,
        gt_complete_volume=voxel_volume_mm3(n_gt, spacing),
        lesionwise_dice=ls_dice,
        lesionwise_hd95=ls_hd95,
        lesions=tuple(lesions),
        false_positive_components=fps,
    )


def _lesion_results(
    gt_lesions: GTLesions,
    surfaces: SurfacePair,
    pred_cc: np.ndarray,
    comp_boxes: Sequence[Box | None],
    dilation_iterations: int,
    spacing: Sequence[float],
    volume_threshold_mm3: float,
) -> list[LesionResult]:
    """Per-lesion matching, Dice, HD95 and volume, each in the box of the lesion; HD95 from the components'
    surfels (``surfaces``: GT components vs predicted components). Lesion i's region of interest (lesion dilated
    again) is dilated component i of the merge step."""
    comp_voxels = np.full(len(comp_boxes), -1, np.int64)  # filled on first use

    def voxels_of(component: int) -> int:
        if comp_voxels[component] < 0:
            comp_voxels[component] = count_in_box(pred_cc, component, comp_boxes[component])
        return int(comp_voxels[component])

    results = []
    for lesion_id in range(1, gt_lesions.n + 1):
        lesion_box: Box = gt_lesions.boxes[lesion_id]  # type: ignore[assignment]
        roi_box = grow_box(lesion_box, dilation_iterations, pred_cc.shape)
        matched = touched_components(pred_cc[roi_box], gt_lesions.dilated_labels[roi_box] == lesion_id)
        voxels = int(gt_lesions.voxels[lesion_id])
        # every predicted voxel inside the lesion belongs to a matched component
        covered = int(np.count_nonzero(gt_lesions.mask(lesion_id, lesion_box) & (pred_cc[lesion_box] != 0)))
        dice = dice_from_counts(covered, voxels, sum(voxels_of(c) for c in matched))
        distance = MISSED_LESION_HD95
        if matched:
            distance = finite_hd95(surfaces.hd95_between(gt_lesions.components[lesion_id - 1], matched))
        volume = voxel_volume_mm3(voxels, spacing)
        scored = bool(volume > volume_threshold_mm3)
        results.append(LesionResult(lesion_id, voxels, volume, matched, dice, distance, scored))
    return results
