"""Masks, connected components, the official dilation, GT lesion merging and lesion matching.

Arrays are 3D in any axis order (the caller's); ids are 1..n with 0 = background. Connected components are
``cc3d`` 26-connectivity numbered by the raster position of each component's first voxel (``order='F'``: first
axis fastest, ``'C'``: last axis fastest). Dilation is ``scipy.ndimage.binary_dilation`` with
``generate_binary_structure(3, 2)`` (18-neighbourhood), iterated ``dilation_iterations`` times, border 0: the
official structure. Every per-component or per-lesion step works inside that object's bounding box grown by the
dilation radius, which gives the same result as the full-volume operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_tcup.challenges import REGIONS
from nnunet_tcup.evaluation.boxes import Box, component_boxes, count_in_box, grow_box, memory_order, union_boxes
from nnunet_tcup.evaluation.validation import check_iterations

__all__ = [
    "GTLesions",
    "LesionMatching",
    "dilate",
    "dilation_structure",
    "false_positives",
    "label_components",
    "match_lesions",
    "merge_gt_lesions",
    "merge_lesions",
    "overlap_counts",
    "region_mask",
    "touched_components",
    "voxel_counts",
]


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


def label_components(mask: np.ndarray, order: str = "F") -> tuple[np.ndarray, int]:
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


def dilate(mask: np.ndarray, dilation_iterations: int) -> np.ndarray:
    """Official dilation of a boolean mask (18-neighbourhood structure, ``dilation_iterations`` times, border 0).

    ``dilation_iterations`` must be >= 1 (scipy treats 0 as "until nothing changes"). Returns a C-ordered array.
    """
    from scipy import ndimage

    check_iterations(dilation_iterations)
    out = ndimage.binary_dilation(mask, structure=dilation_structure(), iterations=int(dilation_iterations))
    return np.ascontiguousarray(out)


def voxel_counts(labels: np.ndarray, n: int) -> np.ndarray:
    """Voxels per id: int64 array of length ``n + 1`` (index 0 = background)."""
    return np.bincount(np.asarray(labels).ravel(order="K"), minlength=n + 1).astype(np.int64)[: n + 1]


@dataclass(frozen=True)
class GTLesions:
    """Merged GT lesions of one region, kept as GT components plus the labelled dilated mask (no dense lesion map).

    ``gt_components``: GT 26-components 1..``num_components`` (internal numbering); ``component_boxes[j]``: box of
    GT component j (index 0: ``None``); ``lesion_of_component[j]``: lesion id of GT component j (index 0 unused);
    ``dilated_labels``: labelled dilated mask, lesion i = dilated component i (which is also lesion i's region of
    interest: the lesion dilated again); ``n``: number of lesions; ``components[i - 1]``: GT component ids of lesion
    i; ``voxels[i]``: its voxel count; ``boxes[i]``: its bounding box (undilated voxels, index 0: ``None``).
    """

    gt_components: np.ndarray
    num_components: int
    component_boxes: tuple[Box | None, ...]
    lesion_of_component: np.ndarray
    dilated_labels: np.ndarray
    n: int
    components: tuple[np.ndarray, ...]
    voxels: np.ndarray
    boxes: tuple[Box | None, ...]

    def mask(self, lesion_id: int, box: Box) -> np.ndarray:
        """Boolean mask of lesion ``lesion_id`` within ``box``."""
        comps = self.components[lesion_id - 1]
        sub = self.gt_components[box]
        return sub == comps[0] if comps.size == 1 else np.isin(sub, comps)

    def labels(self) -> np.ndarray:
        """Dense lesion map: lesion id of every GT voxel, 0 elsewhere (uint32, shape of the GT mask)."""
        lut = self.lesion_of_component.astype(np.uint32)
        return lut[self.gt_components]


def merge_lesions(gt_mask: np.ndarray, dilation_iterations: int) -> GTLesions:
    """Merge the GT components of a boolean mask into lesions (official dilation); see :class:`GTLesions`.

    Each GT component is dilated in its own box grown by the dilation radius; together these equal the dilation of
    the whole mask. Lesion ids are numbered in C raster order of the dilated components (the official numbering for
    ``(x, y, z)`` arrays).
    """
    check_iterations(dilation_iterations)
    gt_mask = np.asarray(gt_mask, dtype=bool)
    shape = gt_mask.shape
    gt_cc, n_gt = label_components(gt_mask, order=memory_order(gt_mask))  # numbering irrelevant here
    gt_boxes = component_boxes(gt_cc, n_gt)
    gt_voxels = np.array([0] + [count_in_box(gt_cc, j, gt_boxes[j]) for j in range(1, n_gt + 1)], np.int64)
    dilated = np.zeros(shape, dtype=bool)
    for j in range(1, n_gt + 1):
        grown = grow_box(gt_boxes[j], dilation_iterations, shape)  # type: ignore[arg-type]
        dilated[grown] |= dilate(gt_cc[grown] == j, dilation_iterations)
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
    boxes: list[Box | None] = [None] * (n + 1)
    for comps in components:
        boxes[int(lesion_of[comps[0]])] = union_boxes([gt_boxes[j] for j in comps])
    return GTLesions(gt_cc, n_gt, tuple(gt_boxes), lesion_of, dilated_labels, n, components, voxels, tuple(boxes))


def merge_gt_lesions(gt_mask: np.ndarray, dilation_iterations: int) -> tuple[np.ndarray, int]:
    """GT lesions after merging by dilation as a dense map: ``(lesion_labels, n)``.

    ``gt_mask`` is dilated ``dilation_iterations`` times (official structure) and labelled (26-conn.); every original
    GT voxel gets the id of the dilated component that contains it, other voxels 0. Ids are 1..n, all non-empty,
    numbered in C raster order of the dilated components. ``lesion_labels`` has the shape of ``gt_mask``.
    """
    lesions = merge_lesions(gt_mask, dilation_iterations)
    return lesions.labels(), lesions.n


@dataclass(frozen=True)
class LesionMatching:
    """Which predicted components touch each GT lesion's region of interest (lesion dilated again).

    ``matches[i - 1]`` are the predicted component ids (sorted) matching lesion ``i``; ``false_positives`` are the
    ids (sorted) of predicted components matching no lesion; ``num_components`` is the number of predicted
    components.
    """

    matches: tuple[tuple[int, ...], ...]
    false_positives: tuple[int, ...]
    num_components: int

    @property
    def num_lesions(self) -> int:
        return len(self.matches)


def match_lesions(
    lesion_labels: np.ndarray,
    pred_components: np.ndarray,
    dilation_iterations: int,
    num_lesions: int | None = None,
    num_components: int | None = None,
) -> LesionMatching:
    """Match predicted components to GT lesions as the official code does.

    A component matches lesion ``i`` when it has a voxel in ``dilate(lesion_labels == i, dilation_iterations)``;
    a component may match several lesions. ``lesion_labels`` (ids 1..num_lesions, e.g. from
    :func:`merge_gt_lesions`) and ``pred_components`` (ids 1..num_components, e.g. from :func:`label_components`)
    share shape and axis order. ``num_lesions`` / ``num_components`` default to the arrays' maxima. Every lesion's
    region is dilated inside the lesion's bounding box grown by ``dilation_iterations``.
    """
    check_iterations(dilation_iterations)
    lesion_labels = np.asarray(lesion_labels)
    pred_components = np.asarray(pred_components)
    if lesion_labels.shape != pred_components.shape:
        raise ValueError(
            f"lesion_labels {lesion_labels.shape} and pred_components {pred_components.shape} must have the same shape"
        )
    n_les = int(lesion_labels.max(initial=0)) if num_lesions is None else int(num_lesions)
    n_comp = int(pred_components.max(initial=0)) if num_components is None else int(num_components)
    matches: list[tuple[int, ...]] = []
    for lesion_id, box in enumerate(component_boxes(lesion_labels, n_les)[1:], start=1):
        if box is None:
            matches.append(())
            continue
        grown = grow_box(box, dilation_iterations, lesion_labels.shape)
        roi = dilate(lesion_labels[grown] == lesion_id, dilation_iterations)
        matches.append(touched_components(pred_components[grown], roi))
    return LesionMatching(tuple(matches), false_positives(matches, n_comp), n_comp)


def touched_components(pred_components: np.ndarray, roi: np.ndarray) -> tuple[int, ...]:
    """Sorted non-zero component ids of ``pred_components`` inside the boolean ``roi`` (same shape)."""
    touched = np.unique(pred_components[roi])
    return tuple(int(c) for c in touched[touched != 0])


def false_positives(matches: Sequence[Sequence[int]], num_components: int) -> tuple[int, ...]:
    """Sorted ids of components 1..num_components that appear in no entry of ``matches``."""
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
