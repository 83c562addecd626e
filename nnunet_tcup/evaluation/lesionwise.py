"""BraTS 2023 lesion-wise evaluation (the official GLI/MEN/PED/SSA algorithm), computed in cropped boxes.

Conventions used by every function here:

* Arrays are 3D and may be in any axis order; ``spacing`` is the voxel size in mm **in the same axis order as the
  arrays** (for ``read_array_zyx`` output: ``(z, y, x)``). Volumes are in mm^3, distances (HD95) in mm.
* Connected components are ``cc3d`` 26-connectivity, ids 1..n (0 = background) numbered by the raster position of
  each component's first voxel. The official code (nibabel arrays in NIfTI ``(x, y, z)`` order) numbers predicted
  components in Fortran raster order (first axis fastest) and merged GT lesions in C raster order (last axis
  fastest, because scipy's dilation returns a C-ordered array). This module does the same, so with arrays in
  ``(x, y, z)`` order (e.g. ``read_array_zyx(...)[0].T``) the ids equal the official ones; the metric values do not
  depend on the axis order.
* Dilation is ``scipy.ndimage.binary_dilation`` with ``generate_binary_structure(3, 2)`` (18-neighbourhood),
  iterated ``dilation_iterations`` times.

Algorithm (per region WT / TC / ET), identical in every number to the official 2023 code:

1. GT lesions: dilate the GT region mask, label the dilated mask; the original (undilated) GT voxels in one dilated
   component form one lesion (:func:`merge_gt_lesions`).
2. A predicted component matches a lesion when it touches the lesion dilated again by the same number of
   iterations (:func:`match_lesions`). That region is exactly the lesion's dilated component from step 1, so
   :func:`evaluate_case` needs no second dilation. Lesion Dice = Dice(lesion, union of its matched components);
   lesion HD95 = DeepMind ``surface_distance`` robust Hausdorff (95 %) between the same two masks; a missed lesion
   gets Dice 0 and HD95 374 mm.
3. Lesions with volume > threshold (mm^3) are scored. Components matching no lesion (of any size) are false
   positives. Scores: Dice = sum(scored Dice) / (#scored + #FP); HD95 = (sum(scored HD95) + 374 #FP) /
   (#scored + #FP); 0/0 gives Dice 1, HD95 0.
4. Legacy (whole-region) Dice and HD95 (both empty: 1 and 0; one empty: HD95 374), voxel sensitivity and
   specificity (both empty: sensitivity 1), and the GT volume, as the official code computes them.

Speed (same numbers, ~30x less CPU than a full-volume implementation on full-size cases with many lesions): all
work happens in the bounding box of GT and prediction grown by the dilation radius; each GT component is dilated in
its own box; each lesion is matched, scored and its HD95 computed in the box of the lesion and its matched
components; surface distances use the library's surfels and area table with a k-d tree instead of a distance
transform over the whole box (:func:`surface_distances`).

Primitives for other code (e.g. threshold tuning from cached statistics): :func:`region_mask`,
:func:`label_components`, :func:`dilate`, :func:`merge_gt_lesions`, :func:`match_lesions`, :func:`overlap_counts`,
:func:`component_boxes`, :func:`dice_from_counts`, :func:`voxel_volume_mm3`, :func:`lesionwise_scores`,
:func:`hd95`, :func:`surface_distances`.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nnunet_tcup.challenges import EVALUATION_PARAMETERS, REGIONS, check_challenge

#: HD95 (mm) given to a missed lesion, to each false positive, and to an empty-vs-non-empty legacy HD95.
MISSED_LESION_HD95: float = 374.0

#: Official per-region metric names, in the official CSV column order.
METRIC_COLUMNS: Tuple[str, ...] = (
    "Num_TP", "Num_FP", "Num_FN", "Sensitivity", "Specificity", "Legacy_Dice", "Legacy_HD95",
    "GT_Complete_Volume", "LesionWise_Score_Dice", "LesionWise_Score_HD95",
)

#: Region names in evaluation order.
REGION_NAMES: Tuple[str, ...] = tuple(REGIONS)

Box = Tuple[slice, slice, slice]


# ----------------------------------------------------------------------------------------------------------------
# Primitives (also used by the post-processing threshold tuner)
# ----------------------------------------------------------------------------------------------------------------

def dilation_structure() -> np.ndarray:
    """The official dilation structuring element: ``generate_binary_structure(3, 2)`` (3x3x3, 18-neighbourhood)."""
    from scipy import ndimage

    return ndimage.generate_binary_structure(3, 2)


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of a region (``'WT'``: labels 1,2,3; ``'TC'``: 1,3; ``'ET'``: 3) of a 2023 label array.

    Axis order and memory layout are those of ``labels``.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}: expected one of {', '.join(REGIONS)}")
    labels = np.asarray(labels)
    mask = labels == REGIONS[region][0]
    for value in REGIONS[region][1:]:
        mask |= labels == value
    return mask


def label_components(mask: np.ndarray, order: str = "F") -> Tuple[np.ndarray, int]:
    """26-connected components of a 3D boolean mask with ``cc3d``: ``(labels, n)``, labels 1..n, 0 = background.

    Ids follow the raster position of each component's first voxel: ``order='F'`` scans with the first axis
    fastest (the official numbering of predicted components for ``(x, y, z)`` arrays), ``'C'`` with the last axis
    fastest. ``labels`` has the shape of ``mask`` and the memory order ``order``.
    """
    import cc3d

    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"label_components expects a 3D mask, got shape {mask.shape}")
    mask = np.asfortranarray(mask) if order == "F" else np.ascontiguousarray(mask)
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    return labels, int(n)


def _memory_order(array: np.ndarray) -> str:
    """'F' when the array (or view) runs fastest along its first axis, else 'C': the cheap order to copy into."""
    strides = np.abs(np.asarray(array.strides))
    return "F" if array.ndim > 1 and strides[0] < strides[-1] else "C"


def dilate(mask: np.ndarray, dilation_iterations: int) -> np.ndarray:
    """Official dilation of a boolean mask (18-neighbourhood structure, ``dilation_iterations`` times, border 0).

    ``dilation_iterations`` must be >= 1 (scipy treats 0 as "until nothing changes"). Returns a C-ordered array.
    """
    from scipy import ndimage

    _check_iterations(dilation_iterations)
    out = ndimage.binary_dilation(mask, structure=dilation_structure(), iterations=int(dilation_iterations))
    return np.ascontiguousarray(out)


def _check_iterations(dilation_iterations: int) -> None:
    ok = isinstance(dilation_iterations, (int, np.integer)) and not isinstance(dilation_iterations, bool)
    if not ok or dilation_iterations < 1:
        raise ValueError(f"dilation_iterations must be an integer >= 1, got {dilation_iterations!r}")


def bounding_box(mask: np.ndarray, pad: int = 0) -> Optional[Box]:
    """Bounding box (tuple of slices, array axis order) of the true voxels, grown by ``pad`` voxels on every side
    and clipped to the array; ``None`` for an empty mask."""
    mask = np.asarray(mask)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis])))
    return tuple(box)


def merge_gt_lesions(gt_mask: np.ndarray, dilation_iterations: int) -> Tuple[np.ndarray, int]:
    """GT lesions after merging by dilation: ``(lesion_labels, n)``.

    ``gt_mask`` is dilated ``dilation_iterations`` times (official structure) and labelled (26-conn.); every original
    GT voxel gets the id of the dilated component that contains it, other voxels 0. Ids are 1..n, all non-empty,
    numbered in C raster order of the dilated components (the official numbering for ``(x, y, z)`` arrays).
    ``lesion_labels`` has the shape of ``gt_mask``.
    """
    lesions = _merge_gt_lesions(np.asarray(gt_mask, dtype=bool), dilation_iterations)
    lut = np.zeros(lesions.gt_lesion_of_component.size, dtype=np.uint32)
    lut[:] = lesions.gt_lesion_of_component
    return lut[lesions.gt_components], lesions.n


@dataclass(frozen=True)
class _GTLesions:
    """Merged GT lesions of one region, kept as GT components plus the labelled dilated mask (no dense lesion map).

    ``gt_components``: GT 26-components (internal numbering); ``gt_lesion_of_component[j]``: lesion id of GT
    component j (index 0 unused); ``dilated_labels``: labelled dilated mask, lesion i = dilated component i;
    ``components[i - 1]``: GT component ids of lesion i; ``voxels[i]``: its voxel count; ``boxes[i]``: its bounding
    box (undilated voxels); ``component_boxes[j - 1]``: bounding box of GT component j.
    """

    gt_components: np.ndarray
    gt_lesion_of_component: np.ndarray
    dilated_labels: np.ndarray
    n: int
    components: Tuple[np.ndarray, ...]
    voxels: np.ndarray
    boxes: Tuple[Optional[Box], ...]
    component_boxes: Tuple[Box, ...]

    def mask(self, lesion_id: int, box: Box) -> np.ndarray:
        """Boolean mask of lesion ``lesion_id`` within ``box``."""
        comps = self.components[lesion_id - 1]
        sub = self.gt_components[box]
        return sub == comps[0] if comps.size == 1 else np.isin(sub, comps)


def _merge_gt_lesions(gt_mask: np.ndarray, dilation_iterations: int) -> _GTLesions:
    """Merge GT components by dilation; each component is dilated in its own box (grown by the dilation radius),
    which together equal the dilation of the whole mask."""
    _check_iterations(dilation_iterations)
    shape = gt_mask.shape
    gt_cc, n_gt = label_components(gt_mask, order=_memory_order(gt_mask))  # numbering irrelevant here
    gt_boxes = component_boxes(gt_cc, n_gt)
    gt_voxels = np.array([0] + [count_in_box(gt_cc, j, gt_boxes[j]) for j in range(1, n_gt + 1)], np.int64)
    dilated = np.zeros(shape, dtype=bool)
    for j in range(1, n_gt + 1):
        box = _grow(gt_boxes[j], dilation_iterations, shape)
        dilated[box] |= dilate(gt_cc[box] == j, dilation_iterations)
    dilated_labels, n = label_components(dilated, order="C")
    lesion_of = np.zeros(n_gt + 1, dtype=np.int64)
    for j in range(1, n_gt + 1):
        box = gt_boxes[j]
        lesion_of[j] = dilated_labels[box][gt_cc[box] == j][0]
    order = np.argsort(lesion_of[1:], kind="stable") + 1
    splits = np.flatnonzero(np.diff(lesion_of[order])) + 1
    components = tuple(np.split(order, splits)) if n_gt else ()
    voxels = np.zeros(n + 1, dtype=np.int64)
    np.add.at(voxels, lesion_of[1:], gt_voxels[1:])
    boxes: List[Optional[Box]] = [None] * (n + 1)
    for comps in components:
        boxes[int(lesion_of[comps[0]])] = _union_boxes([gt_boxes[j] for j in comps])
    return _GTLesions(gt_cc, lesion_of, dilated_labels, n, components, voxels, tuple(boxes),
                      tuple(gt_boxes[1:]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class LesionMatching:
    """Which predicted components touch each GT lesion's region of interest (lesion dilated again).

    ``matches[i - 1]`` are the predicted component ids (sorted) matching lesion ``i``; ``false_positives`` are the
    ids (sorted) of predicted components matching no lesion; ``num_components`` is the number of predicted
    components.
    """

    matches: Tuple[Tuple[int, ...], ...]
    false_positives: Tuple[int, ...]
    num_components: int

    @property
    def num_lesions(self) -> int:
        return len(self.matches)


def match_lesions(lesion_labels: np.ndarray, pred_components: np.ndarray, dilation_iterations: int,
                  num_lesions: Optional[int] = None, num_components: Optional[int] = None) -> LesionMatching:
    """Match predicted components to GT lesions as the official code does.

    A component matches lesion ``i`` when it has a voxel in ``dilate(lesion_labels == i, dilation_iterations)``;
    a component may match several lesions. ``lesion_labels`` (ids 1..num_lesions, e.g. from
    :func:`merge_gt_lesions`) and ``pred_components`` (ids 1..num_components, e.g. from :func:`label_components`)
    share shape and axis order. ``num_lesions`` / ``num_components`` default to the arrays' maxima.

    Every lesion's dilated region is computed inside the lesion's bounding box grown by ``dilation_iterations``
    (identical to a full-volume dilation).
    """
    _check_iterations(dilation_iterations)
    lesion_labels = np.asarray(lesion_labels)
    pred_components = np.asarray(pred_components)
    if lesion_labels.shape != pred_components.shape:
        raise ValueError(f"lesion_labels {lesion_labels.shape} and pred_components {pred_components.shape} "
                         f"must have the same shape")
    n_les = int(lesion_labels.max(initial=0)) if num_lesions is None else int(num_lesions)
    n_comp = int(pred_components.max(initial=0)) if num_components is None else int(num_components)
    boxes = component_boxes(lesion_labels, n_les)[1:]
    matches: List[Tuple[int, ...]] = []
    for lesion_id, box in enumerate(boxes, start=1):
        if box is None:
            matches.append(())
            continue
        grown = _grow(box, dilation_iterations, lesion_labels.shape)
        roi = dilate(lesion_labels[grown] == lesion_id, dilation_iterations)
        touched = np.unique(pred_components[grown][roi])
        matches.append(tuple(int(c) for c in touched if c != 0))
    return LesionMatching(tuple(matches), _false_positives(matches, n_comp), n_comp)


def _false_positives(matches: Sequence[Sequence[int]], num_components: int) -> Tuple[int, ...]:
    matched = np.zeros(num_components + 1, dtype=bool)
    for ids in matches:
        matched[list(ids)] = True
    return tuple(int(c) for c in np.flatnonzero(~matched[1:]) + 1)


def overlap_counts(lesion_labels: np.ndarray, pred_components: np.ndarray) -> np.ndarray:
    """Voxel overlaps between GT lesions and predicted components: int64 array of rows
    ``(lesion_id, component_id, voxels)`` for every pair that overlaps, sorted by lesion then component.

    With these, a lesion's Dice for any subset ``S`` of its matched components is
    ``dice_from_counts(sum(overlap[c] for c in S), lesion_voxels, sum(component_voxels[c] for c in S))``.
    """
    lesion_labels = np.asarray(lesion_labels)
    pred_components = np.asarray(pred_components)
    both = (lesion_labels != 0) & (pred_components != 0)
    n_comp = int(pred_components.max(initial=0))
    keys = lesion_labels[both].astype(np.int64) * (n_comp + 1) + pred_components[both].astype(np.int64)
    pairs, counts = np.unique(keys, return_counts=True)
    les, comp = np.divmod(pairs, n_comp + 1)
    return np.stack([les, comp, counts.astype(np.int64)], axis=1) if pairs.size else np.zeros((0, 3), np.int64)


def voxel_counts(labels: np.ndarray, n: int) -> np.ndarray:
    """Voxels per id: int64 array of length ``n + 1`` (index 0 = background)."""
    return np.bincount(np.asarray(labels).ravel(order="K"), minlength=n + 1).astype(np.int64)[: n + 1]


def component_boxes(labels: np.ndarray, n: int) -> List[Optional[Box]]:
    """Bounding boxes of ids 0..n of a label array: list of length ``n + 1`` of slice tuples in the array's axis
    order (index 0 and absent ids: ``None``). One ``scipy.ndimage.find_objects`` pass in the array's memory order.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if n == 0:
        return [None]
    if _memory_order(labels) == "F":
        found = [None if b is None else tuple(reversed(b))
                 for b in ndimage.find_objects(np.asfortranarray(labels).T, max_label=n)]
    else:
        found = ndimage.find_objects(np.ascontiguousarray(labels), max_label=n)
    return [None] + list(found)


def count_in_box(labels: np.ndarray, label_id: int, box: Optional[Box]) -> int:
    """Voxels with value ``label_id`` inside ``box`` (0 for ``None``)."""
    return 0 if box is None else int(np.count_nonzero(labels[box] == label_id))


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


@functools.lru_cache(maxsize=32)
def _surfel_area_table(spacing: Tuple[float, float, float]) -> np.ndarray:
    from surface_distance import lookup_tables

    return lookup_tables.create_table_neighbour_code_to_surface_area(spacing)


def _nearest_distances(points: np.ndarray, targets: np.ndarray, spacing: Tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) from each integer position in ``points`` (k, 3) to the nearest one in ``targets`` (m, 3).

    The nearest target comes from a k-d tree; the distance is then computed from the integer offset exactly as
    ``scipy.ndimage.distance_transform_edt(..., sampling=spacing)`` computes it (scaled offsets, squared, summed
    axis by axis, square root), so values equal the library's EDT-based ones. Points that are also targets get 0
    without a query.
    """
    from scipy.spatial import cKDTree

    distances = np.full(points.shape[0], np.inf)
    if targets.shape[0] == 0 or points.shape[0] == 0:
        return distances
    scale = np.asarray(spacing, dtype=np.float64)
    extent = np.maximum(points.max(axis=0), targets.max(axis=0)) + 1
    shared = np.isin(np.ravel_multi_index(points.T, extent), np.ravel_multi_index(targets.T, extent))
    distances[shared] = 0.0
    rest = points[~shared]
    if rest.shape[0]:
        tree = cKDTree(targets * scale, leafsize=32, balanced_tree=False, compact_nodes=False)
        _, nearest = tree.query(rest * scale, k=1)
        offsets = (targets[nearest] - rest).astype(np.float64)
        offsets *= scale
        np.multiply(offsets, offsets, out=offsets)
        distances[~shared] = np.sqrt((offsets[:, 0] + offsets[:, 1]) + offsets[:, 2])
    return distances


#: Boxes larger than this (voxels) are split into separated clusters before computing surfels.
_CLUSTER_MIN_VOXELS = 1 << 20
_CLUSTER_MAX_COUNT = 1000


def _merge_boxes(boxes: Sequence[Box]) -> List[Box]:
    """Group boxes until no 2x2x2 cell touches two groups; returns the groups' bounding boxes.

    A box [lo, hi) of voxels has cells lo..hi (cell i covers voxels i-1 and i on each axis), so two groups must
    merge while their cell ranges overlap on every axis.
    """
    from scipy.sparse.csgraph import connected_components

    lo = np.array([[s.start for s in b] for b in boxes])
    hi = np.array([[s.stop for s in b] for b in boxes])
    while lo.shape[0] > 1:
        touching = np.all((lo[:, None, :] <= hi[None, :, :]) & (lo[None, :, :] <= hi[:, None, :]), axis=2)
        count, group = connected_components(touching, directed=False)
        if count == lo.shape[0]:
            break
        lo = np.stack([lo[group == g].min(axis=0) for g in range(count)])
        hi = np.stack([hi[group == g].max(axis=0) for g in range(count)])
    return [tuple(slice(int(a), int(b)) for a, b in zip(l, h)) for l, h in zip(lo, hi)]  # type: ignore[misc]


def _surfel_clusters(union: np.ndarray, box: Box, object_boxes: Optional[Sequence[Box]]) -> List[Box]:
    """Boxes covering every true voxel of ``union`` (inside ``box``) such that no 2x2x2 cell touches two of them.

    Built from ``object_boxes`` (boxes known to cover all true voxels) or from the 26-components of ``union``;
    a small ``box`` or too many objects give ``[box]``.
    """
    volume = int(np.prod([s.stop - s.start for s in box]))
    if volume < _CLUSTER_MIN_VOXELS:
        return [box]
    if object_boxes is None:
        labels, n = label_components(union[box], order=_memory_order(union))
        if n > _CLUSTER_MAX_COUNT:
            return [box]
        offset = [s.start for s in box]
        object_boxes = [tuple(slice(s.start + o, s.stop + o) for s, o in zip(b, offset))
                        for b in component_boxes(labels, n)[1:]]
    if len(object_boxes) > _CLUSTER_MAX_COUNT:
        return [box]
    return _merge_boxes(object_boxes)


def surface_distances(mask_gt: np.ndarray, mask_pred: np.ndarray, spacing: Sequence[float],
                      object_boxes: Optional[Sequence[Box]] = None) -> Dict[str, np.ndarray]:
    """Same result as ``surface_distance.compute_surface_distances(mask_gt, mask_pred, spacing)`` (3D), faster.

    Surfels (2x2x2 cells with mixed content, coded with the library's kernel), their areas (the library's lookup
    table) and the sorting by (distance, area) are the library's. Differences, none of which changes a value: the
    cells are computed only in boxes around separated groups of objects instead of the whole bounding box, and the
    distance transform is replaced by a k-d tree query between the two surfel sets with each distance computed by
    the EDT's formula. ``spacing`` in mm in the arrays' axis order. Returns the library's dict
    (``distances_gt_to_pred``, ``distances_pred_to_gt``, ``surfel_areas_gt``, ``surfel_areas_pred``), ready for
    ``surface_distance.compute_robust_hausdorff``. ``object_boxes`` (optional): boxes that together cover every
    true voxel of both masks (e.g. their components' boxes), saving a labelling pass.
    """
    from scipy import ndimage
    from surface_distance import lookup_tables

    mask_gt = np.asarray(mask_gt, dtype=bool)
    mask_pred = np.asarray(mask_pred, dtype=bool)
    if mask_gt.shape != mask_pred.shape or mask_gt.ndim != 3:
        raise ValueError(f"surface_distances needs two 3D masks of one shape, got {mask_gt.shape}, "
                         f"{mask_pred.shape}")
    spacing = check_spacing(spacing)
    union = None
    if object_boxes is not None:
        box = _union_boxes(object_boxes) if len(object_boxes) else None
    else:
        union = mask_gt | mask_pred
        box = bounding_box(union)
    if box is None:
        empty = np.array([])
        return {"distances_gt_to_pred": empty, "distances_pred_to_gt": empty.copy(),
                "surfel_areas_gt": empty.copy(), "surfel_areas_pred": empty.copy()}
    table = _surfel_area_table(spacing)
    kernel = lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL
    points: Tuple[List[np.ndarray], List[np.ndarray]] = ([], [])
    areas: Tuple[List[np.ndarray], List[np.ndarray]] = ([], [])
    for cluster in _surfel_clusters(union, box, object_boxes):
        start = np.array([s.start for s in cluster]) - 1  # global cell index = local index + start
        for k, mask in enumerate((mask_gt, mask_pred)):
            padded = np.zeros(tuple(s.stop - s.start + 2 for s in cluster), dtype=np.uint8)
            padded[1:-1, 1:-1, 1:-1] = mask[cluster]
            code = ndimage.correlate(padded, kernel, mode="constant", cval=0)
            border = (code != 0) & (code != 0b11111111)
            points[k].append(np.argwhere(border) + start)
            areas[k].append(table[code[border]])
    points_gt, points_pred = (np.concatenate(p) for p in points)
    areas_gt, areas_pred = (np.concatenate(a) for a in areas)
    lowest = np.minimum(points_gt.min(axis=0, initial=0), points_pred.min(axis=0, initial=0))
    points_gt, points_pred = points_gt - lowest, points_pred - lowest  # non-negative for index arithmetic
    result = {}
    for key, source, targets, source_areas in (("gt_to_pred", points_gt, points_pred, areas_gt),
                                               ("pred_to_gt", points_pred, points_gt, areas_pred)):
        distances = _nearest_distances(source, targets, spacing)
        order = np.lexsort((source_areas, distances))  # the library sorts (distance, area) tuples
        result[f"distances_{key}"] = distances[order]
        result["surfel_areas_gt" if key == "gt_to_pred" else "surfel_areas_pred"] = source_areas[order]
    return result


def hd95(gt_mask: np.ndarray, pred_mask: np.ndarray, spacing: Sequence[float],
         object_boxes: Optional[Sequence[Box]] = None) -> float:
    """DeepMind ``surface_distance`` robust Hausdorff distance at 95 % (mm) between two boolean masks.

    Uses :func:`surface_distances` (same values as the library's ``compute_surface_distances``) and the library's
    ``compute_robust_hausdorff``. ``spacing`` in the arrays' axis order. If either mask is empty the result is
    ``inf`` (what the library returns with the numpy it was written for); callers map ``inf`` to 374.
    ``object_boxes``: see :func:`surface_distances`.
    """
    import surface_distance

    gt_mask = np.asarray(gt_mask, dtype=bool)
    pred_mask = np.asarray(pred_mask, dtype=bool)
    if not gt_mask.any() or not pred_mask.any():
        return float("inf")
    distances = surface_distances(gt_mask, pred_mask, spacing, object_boxes)
    return float(surface_distance.compute_robust_hausdorff(distances, 95))


def finite_hd95(value: float) -> float:
    """Official replacement of an infinite HD95 by 374 mm."""
    return MISSED_LESION_HD95 if np.isinf(value) else float(value)


def lesionwise_scores(dice: Sequence[float], hd95_mm: Sequence[float], scored: Sequence[bool],
                      num_fp: int) -> Tuple[float, float]:
    """Official lesion-wise (Dice, HD95) of one region from per-lesion values.

    ``dice`` / ``hd95_mm`` (inf or 374 for missed lesions) / ``scored`` (volume > threshold) have one entry per
    lesion; ``num_fp`` is the number of false-positive components. Dice = sum(scored Dice) / (#scored + #FP),
    HD95 = (sum(scored HD95) + 374 #FP) / (#scored + #FP); when #scored + #FP = 0 the result is (1.0, 0.0).
    """
    scored = np.asarray(scored, dtype=bool)
    dice_arr = np.asarray(dice, dtype=np.float64)[scored] if scored.size else np.zeros(0)
    hd_arr = np.asarray(hd95_mm, dtype=np.float64)[scored] if scored.size else np.zeros(0)
    hd_arr = np.where(np.isinf(hd_arr), MISSED_LESION_HD95, hd_arr)
    denominator = int(scored.sum()) + int(num_fp)
    if denominator == 0:
        return 1.0, 0.0
    return float(np.sum(dice_arr) / denominator), float((np.sum(hd_arr) + num_fp * MISSED_LESION_HD95) / denominator)


def sensitivity_specificity(tp: int, gt_voxels: int, pred_voxels: int, total_voxels: int) -> Tuple[float, float]:
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


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------

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
    matched_components: Tuple[int, ...]
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
    lesions: Tuple[LesionResult, ...] = ()
    false_positive_components: Tuple[int, ...] = ()

    def metrics(self) -> Dict[str, float]:
        """The official per-region values keyed by the official CSV column names (``METRIC_COLUMNS``)."""
        return {
            "Num_TP": self.num_tp, "Num_FP": self.num_fp, "Num_FN": self.num_fn,
            "Sensitivity": self.sensitivity, "Specificity": self.specificity,
            "Legacy_Dice": self.legacy_dice, "Legacy_HD95": self.legacy_hd95,
            "GT_Complete_Volume": self.gt_complete_volume,
            "LesionWise_Score_Dice": self.lesionwise_dice, "LesionWise_Score_HD95": self.lesionwise_hd95,
        }


@dataclass(frozen=True)
class CaseEvaluation:
    """Evaluation of one case: ``regions['WT' | 'TC' | 'ET']`` and the parameters used.

    ``spacing`` is in the axis order of the evaluated arrays (mm).
    """

    regions: Mapping[str, RegionEvaluation]
    dilation_iterations: int
    volume_threshold_mm3: float
    spacing: Tuple[float, float, float]
    shape: Tuple[int, int, int] = field(default=(0, 0, 0))

    def __getitem__(self, region: str) -> RegionEvaluation:
        return self.regions[region]

    def metrics_table(self) -> "pandas.DataFrame":  # noqa: F821
        """One row per region: ``Labels`` plus the official metric columns."""
        import pandas as pd

        return pd.DataFrame([{"Labels": name, **self.regions[name].metrics()} for name in REGION_NAMES])

    def lesions_table(self) -> "pandas.DataFrame":  # noqa: F821
        """One row per (region, lesion): Labels, lesion_id, num_voxels, volume_mm3, matched_components (space
        separated ids), dice, hd95, scored."""
        import pandas as pd

        rows = [
            {"Labels": name, "lesion_id": les.lesion_id, "num_voxels": les.num_voxels, "volume_mm3": les.volume_mm3,
             "matched_components": " ".join(map(str, les.matched_components)), "dice": les.dice,
             "hd95": les.hd95, "scored": les.scored}
            for name in REGION_NAMES for les in self.regions[name].lesions
        ]
        columns = ["Labels", "lesion_id", "num_voxels", "volume_mm3", "matched_components", "dice", "hd95", "scored"]
        return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------

def resolve_parameters(challenge: Optional[str] = None, dilation_iterations: Optional[int] = None,
                       volume_threshold_mm3: Optional[float] = None) -> Tuple[int, float]:
    """(dilation_iterations, volume_threshold_mm3): the challenge's official values, each overridable explicitly.

    Without a challenge both explicit values are required.
    """
    if challenge is not None:
        params = EVALUATION_PARAMETERS[check_challenge(challenge)]
        dilation_iterations = params.dilation_iterations if dilation_iterations is None else dilation_iterations
        volume_threshold_mm3 = params.volume_threshold_mm3 if volume_threshold_mm3 is None \
            else volume_threshold_mm3
    if dilation_iterations is None or volume_threshold_mm3 is None:
        raise ValueError("give a challenge (GLI, MEN, PED, SSA) or both dilation_iterations and "
                         "volume_threshold_mm3")
    _check_iterations(dilation_iterations)
    threshold = float(volume_threshold_mm3)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"volume_threshold_mm3 must be a finite number >= 0, got {volume_threshold_mm3!r}")
    return int(dilation_iterations), threshold


def check_spacing(spacing: Sequence[float]) -> Tuple[float, float, float]:
    """Validate a 3D voxel spacing (mm, positive, finite) and return it as a float tuple."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing!r}")
    return values  # type: ignore[return-value]


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Validate a 3D BraTS 2023 label array (integer values 0-3; integral floats accepted) and return it as is.

    Raises ValueError naming ``name`` and the offending values.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{name}: expected a 3D label array, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    if labels.size == 0:
        raise ValueError(f"{name}: empty array of shape {labels.shape}")
    low, high = labels.min(), labels.max()
    bad = not (0 <= low and high <= 3)
    if not bad and np.issubdtype(labels.dtype, np.floating):
        bad = not np.all(np.isin(labels, (0, 1, 2, 3)))
    if bad:
        values = np.unique(labels)
        outside = values[~np.isin(values, (0, 1, 2, 3))]
        raise ValueError(f"{name}: labels must be 0-3 (BraTS 2023: 1 NETC, 2 SNFH, 3 ET); found "
                         f"{', '.join(str(v) for v in outside[:10])}")
    return labels


def evaluate_case(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float], challenge: Optional[str] = None,
                  dilation_iterations: Optional[int] = None,
                  volume_threshold_mm3: Optional[float] = None) -> CaseEvaluation:
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
    regions = {name: evaluate_region(gt, pred, name, spacing, d, threshold) for name in REGION_NAMES}
    return CaseEvaluation(regions, d, threshold, spacing, tuple(gt.shape))  # type: ignore[arg-type]


def evaluate_region(gt: np.ndarray, pred: np.ndarray, region: str, spacing: Sequence[float],
                    dilation_iterations: int, volume_threshold_mm3: float) -> RegionEvaluation:
    """Official metrics of one region of already validated label arrays (see :func:`evaluate_case`)."""
    gt_mask = region_mask(gt, region)
    pred_mask = region_mask(pred, region)
    n_gt = int(np.count_nonzero(gt_mask))
    n_pred = int(np.count_nonzero(pred_mask))
    union_box = bounding_box(gt_mask | pred_mask)
    if union_box is None:  # both empty
        sens, spec = sensitivity_specificity(0, 0, 0, gt_mask.size)
        return RegionEvaluation(region, 0, 0, 0, sens, spec, 1.0, 0.0, voxel_volume_mm3(0, spacing), 1.0, 0.0)

    # Everything below happens in the union box grown by the dilation radius (+1), clipped to the volume: the
    # merge dilation and the lesions' regions of interest stay inside it, so results equal full-volume ones.
    box = _grow(union_box, dilation_iterations + 1, gt_mask.shape)
    gt_c = gt_mask[box]
    pred_c = pred_mask[box]
    n_tp_vox = int(np.count_nonzero(gt_c & pred_c))
    sens, spec = sensitivity_specificity(n_tp_vox, n_gt, n_pred, gt_mask.size)
    legacy_dice = dice_from_counts(n_tp_vox, n_gt, n_pred)

    pred_cc, n_comp = label_components(pred_c, order="F")
    comp_boxes = component_boxes(pred_cc, n_comp)
    object_boxes: List[Box] = [b for b in comp_boxes[1:] if b is not None]
    if n_gt:
        lesions_gt = _merge_gt_lesions(gt_c, dilation_iterations)
        object_boxes += list(lesions_gt.component_boxes)
        lesions, matches = _lesion_results(lesions_gt, pred_cc, comp_boxes, dilation_iterations,
                                           spacing, volume_threshold_mm3)
    else:
        lesions, matches = [], []
    legacy_hd95 = finite_hd95(hd95(gt_c, pred_c, spacing, object_boxes=object_boxes))
    false_positives = _false_positives(matches, n_comp)
    scored = [les.scored for les in lesions]
    num_fp = len(false_positives)
    ls_dice, ls_hd95 = lesionwise_scores([les.dice for les in lesions], [les.hd95 for les in lesions], scored,
                                         num_fp)
    return RegionEvaluation(
        region=region,
        num_tp=sum(1 for les in lesions if les.scored and les.matched_components),
        num_fp=num_fp,
        num_fn=sum(1 for les in lesions if les.scored and not les.matched_components),
        sensitivity=sens, specificity=spec, legacy_dice=legacy_dice, legacy_hd95=legacy_hd95,
        gt_complete_volume=voxel_volume_mm3(n_gt, spacing),
        lesionwise_dice=ls_dice, lesionwise_hd95=ls_hd95,
        lesions=tuple(lesions), false_positive_components=false_positives,
    )


def _lesion_results(lesions_gt: _GTLesions, pred_cc: np.ndarray,
                    comp_boxes: Sequence[Optional[Box]], dilation_iterations: int, spacing: Sequence[float],
                    volume_threshold_mm3: float) -> Tuple[List[LesionResult], List[Tuple[int, ...]]]:
    """Per-lesion matching, Dice, HD95 and volume, each in the box of the lesion (and its matched components).

    Lesion i's region of interest (lesion dilated again) is exactly dilated component i of the merge step: the
    dilated component is the dilation of the GT voxels it contains.
    """
    shape = pred_cc.shape
    results, matches = [], []
    for lesion_id in range(1, lesions_gt.n + 1):
        lesion_box = lesions_gt.boxes[lesion_id]
        roi_box = _grow(lesion_box, dilation_iterations, shape)
        touched = np.unique(pred_cc[roi_box][lesions_gt.dilated_labels[roi_box] == lesion_id])
        matched = tuple(int(c) for c in touched if c != 0)
        voxels = int(lesions_gt.voxels[lesion_id])
        # every predicted voxel inside the lesion belongs to a matched component
        covered = int(np.count_nonzero(lesions_gt.mask(lesion_id, lesion_box) & (pred_cc[lesion_box] != 0)))
        matched_voxels = sum(count_in_box(pred_cc, c, comp_boxes[c]) for c in matched)
        dice = dice_from_counts(covered, voxels, matched_voxels)
        if matched:
            box = _union_boxes([lesion_box] + [comp_boxes[c] for c in matched])
            pred_sub = pred_cc[box] == matched[0] if len(matched) == 1 else np.isin(pred_cc[box], matched)
            distance = finite_hd95(hd95(lesions_gt.mask(lesion_id, box), pred_sub, spacing))
        else:
            distance = MISSED_LESION_HD95
        volume = voxel_volume_mm3(voxels, spacing)
        results.append(LesionResult(lesion_id, voxels, volume, matched, dice, distance,
                                    bool(volume > volume_threshold_mm3)))
        matches.append(matched)
    return results, matches


def _grow(box: Box, pad: int, shape: Sequence[int]) -> Box:
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape))  # type: ignore


def _union_boxes(boxes: Sequence[Box]) -> Box:
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
                 for a in range(len(boxes[0])))  # type: ignore[return-value]
