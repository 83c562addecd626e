"""Surface distances and HD95 with DeepMind ``surface-distance``'s numbers, computed per connected component.

The library (``compute_surface_distances``) codes every 2x2x2 cell of the masks' bounding box with its neighbour
kernel, keeps cells of mixed content ("surfels") with their area from its lookup table, computes each surfel's
distance (mm) to the nearest surfel of the other mask with a Euclidean distance transform, and sorts the
``(distance, area)`` pairs; ``compute_robust_hausdorff`` then reads the 95th area percentile. This module gives the
same arrays value for value, faster:

* Cell ``g`` (integer, per axis) covers voxels ``g - 1`` and ``g``. Its voxels are pairwise 26-neighbours, so every
  surfel of a mask touches exactly one 26-component of it, and the surfels of a union of components are the union
  of the components' own surfels. They are therefore computed once per component (:func:`component_surfels`) and
  any mask made of whole components (a GT lesion, the components matching it, a whole region) takes its surfels by
  selection (:meth:`ComponentSurfels.select`). Small components are coded all at once from their voxel lists,
  large ones in their own bounding box, so the cost grows with voxels plus components.
* Each surfel's nearest surfel on the other side comes from :mod:`~nnunet_tcup.evaluation.nearest`: a k-d tree
  query or, when the surfaces are large, the library's own feature transform over the box holding both, whichever
  is estimated cheaper (so a case costs at most a few transforms of its box, whatever its surface sizes); each
  distance is computed from the integer offset exactly as the EDT computes it (:func:`nearest_distances`).
* The ``(distance, area)`` pairs are sorted as packed 64-bit keys (:func:`~.percentile.sorted_distances`), in the library's
  order, so the robust Hausdorff distance reads the same arrays.

Coordinates are cell indices in the axis order of the arrays; ``spacing`` is in mm in the same order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_tcup.evaluation import percentile
from nnunet_tcup.evaluation.boxes import Box, component_boxes
from nnunet_tcup.evaluation.nearest import nearest_distances, nearest_surfels
from nnunet_tcup.evaluation.percentile import BlockIndex, nearest_percentile, sorted_distances
from nnunet_tcup.evaluation.validation import check_spacing

__all__ = [
    "MISSED_LESION_HD95",
    "ComponentSurfels",
    "SurfacePair",
    "component_surfels",
    "finite_hd95",
    "hd95",
    "hd95_from_surfels",
    "nearest_distances",
    "nearest_surfels",
    "robust_hausdorff",
    "surface_distances",
    "surface_distances_from_surfels",
]

#: HD95 (mm) given to a missed lesion, to each false positive, and to an empty-vs-non-empty legacy HD95.
MISSED_LESION_HD95: float = 374.0

#: Components whose bounding box fits in this many voxels per axis are coded together from their voxel lists.
SMALL_COMPONENT_EDGE = 4

_CELL_OFFSETS = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.int64)  # (8, 3)


@functools.lru_cache(maxsize=32)
def _surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    from surface_distance import lookup_tables

    return lookup_tables.create_table_neighbour_code_to_surface_area(spacing)


@functools.lru_cache(maxsize=1)
def _kernel_weights() -> np.ndarray:
    """Weight of each cell offset in ``_CELL_OFFSETS`` order: the library's 2x2x2 neighbour-code kernel."""
    from surface_distance import lookup_tables

    kernel = np.asarray(lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, dtype=np.int64)
    return np.array([kernel[i, j, k] for i, j, k in _CELL_OFFSETS], dtype=np.int64)


@dataclass(frozen=True)
class ComponentSurfels:
    """Surfels of a labelled mask grouped by component: component ``k``'s surfels are rows
    ``starts[k]:starts[k + 1]`` of ``points`` ((P, 3) int64 cell indices) and ``areas`` ((P,) mm^2)."""

    points: np.ndarray
    areas: np.ndarray
    starts: np.ndarray

    def indices(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row indices of the surfels of the components ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        lo = self.starts[ids]
        lengths = self.starts[ids + 1] - lo
        return np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))

    def select(self, ids: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(points, areas)`` of the union of components ``ids`` (all components for ``None``)."""
        if ids is None:
            return self.points, self.areas
        index = self.indices(ids)
        return self.points[index], self.areas[index]

    def owners(self) -> np.ndarray:
        """Component id of every surfel (int64, one per row)."""
        return np.repeat(np.arange(self.starts.size - 1, dtype=np.int64), np.diff(self.starts))


def component_surfels(
    labels: np.ndarray, n: int, spacing: Sequence[float], boxes: Sequence[Box | None] | None = None
) -> ComponentSurfels:
    """Surfels (cell indices and areas in mm^2) of every component 1..n of a 26-connected labelling.

    ``boxes``: the components' bounding boxes as :func:`~nnunet_tcup.evaluation.boxes.component_boxes` gives them
    (computed when omitted). The surfels of a component equal the library's surfels of that component alone.
    """
    spacing = check_spacing(spacing)
    labels = np.asarray(labels)
    if boxes is None:
        boxes = component_boxes(labels, n)
    table = _surfel_area_table(spacing)
    lo = np.zeros((n + 1, 3), np.int64)
    hi = np.zeros((n + 1, 3), np.int64)
    for k in range(1, n + 1):
        box = boxes[k]
        if box is not None:
            lo[k] = [s.start for s in box]
            hi[k] = [s.stop for s in box]
    small = np.all(hi - lo <= SMALL_COMPONENT_EDGE, axis=1)
    small[0] = False
    parts = [_small_component_surfels(labels, np.flatnonzero(small), lo)]
    parts += [_box_surfels(labels, k, boxes[k]) for k in np.flatnonzero(~small)[1:] if boxes[k] is not None]
    points = np.concatenate([p[0] for p in parts])
    codes = np.concatenate([p[1] for p in parts])
    owners = np.concatenate([p[2] for p in parts])
    order = np.argsort(owners, kind="stable")
    starts = np.zeros(n + 2, np.int64)
    np.cumsum(np.bincount(owners, minlength=n + 1), out=starts[1:])
    return ComponentSurfels(points[order], table[codes[order]], starts)


def _small_component_surfels(
    labels: np.ndarray, ids: np.ndarray, lo: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cells, codes, owners) of the components ``ids`` whose boxes start at ``lo[ids]`` and fit in
    ``SMALL_COMPONENT_EDGE`` voxels per axis, all at once: their voxels are read from a fixed window per
    component, each voxel's 8 cells are collected and every cell is coded from the 8 voxels it covers."""
    if ids.size == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    shape = np.asarray(labels.shape)
    edge = SMALL_COMPONENT_EDGE
    window = np.indices((edge, edge, edge)).reshape(3, -1).T  # (edge^3, 3)
    voxels = (lo[ids][:, None, :] + window[None]).reshape(-1, 3)
    owner = np.repeat(ids, window.shape[0])
    inside = np.all(voxels < shape, axis=1)
    voxels, owner = voxels[inside], owner[inside]
    hit = labels[voxels[:, 0], voxels[:, 1], voxels[:, 2]] == owner
    voxels, owner = voxels[hit], owner[hit]
    cells = (voxels[:, None, :] + _CELL_OFFSETS[None]).reshape(-1, 3)  # voxel v lies in cells v .. v + 1
    keys = np.ravel_multi_index(cells.T, tuple(shape + 1))
    keys, first = np.unique(keys, return_index=True)
    cells = cells[first]
    owners = np.repeat(owner, 8)[first]
    codes = np.zeros(cells.shape[0], np.int64)
    for offset, weight in zip(_CELL_OFFSETS, _kernel_weights()):
        voxel = cells + offset - 1  # cell g covers voxels g - 1 .. g
        valid = np.all((voxel >= 0) & (voxel < shape), axis=1)
        voxel = voxel[valid]
        codes[valid] += weight * (labels[voxel[:, 0], voxel[:, 1], voxel[:, 2]] != 0)
    border = codes != 255  # never 0: every cell holds a voxel of its component
    return cells[border], codes[border], owners[border]


def _box_surfels(labels: np.ndarray, label_id: int, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cells, codes, owners) of one component, coded inside its bounding box padded by one voxel."""
    size = tuple(s.stop - s.start for s in box)
    padded = np.zeros(tuple(e + 2 for e in size), np.uint8)
    padded[1:-1, 1:-1, 1:-1] = labels[box] == label_id
    codes = np.zeros(tuple(e + 1 for e in size), np.uint8)
    for (i, j, k), weight in zip(_CELL_OFFSETS, _kernel_weights()):
        codes += padded[i : i + size[0] + 1, j : j + size[1] + 1, k : k + size[2] + 1] * np.uint8(weight)
    border = (codes != 0) & (codes != 255)
    cells = np.argwhere(border) + np.array([s.start for s in box], np.int64)  # local p is cell p + start
    values = codes[border].astype(np.int64)
    return cells, values, np.full(values.size, label_id, np.int64)


def robust_hausdorff(
    distances_gt: np.ndarray, areas_gt: np.ndarray, distances_pred: np.ndarray, areas_pred: np.ndarray
) -> float:
    """The library's ``compute_robust_hausdorff(..., 95)`` (mm) from unsorted per-surfel distances and areas
    (GT surfels to the prediction and back); ``inf`` when either side has no surfel."""
    import surface_distance

    if distances_gt.size == 0 or distances_pred.size == 0:
        return float("inf")
    d_gt, a_gt = sorted_distances(distances_gt, areas_gt)
    d_pred, a_pred = sorted_distances(distances_pred, areas_pred)
    result = {"distances_gt_to_pred": d_gt, "distances_pred_to_gt": d_pred, "surfel_areas_gt": a_gt,
              "surfel_areas_pred": a_pred}  # fmt: skip
    return float(surface_distance.compute_robust_hausdorff(result, 95))


def surface_distances_from_surfels(
    gt: tuple[np.ndarray, np.ndarray], pred: tuple[np.ndarray, np.ndarray], spacing: Sequence[float]
) -> dict[str, np.ndarray]:
    """The library's ``compute_surface_distances`` dict from two ``(points, areas)`` surfel sets (one grid)."""
    spacing = check_spacing(spacing)
    (points_gt, areas_gt), (points_pred, areas_pred) = gt, pred
    d_gt, a_gt = sorted_distances(nearest_distances(points_gt, points_pred, spacing), areas_gt)
    d_pred, a_pred = sorted_distances(nearest_distances(points_pred, points_gt, spacing), areas_pred)
    return {"distances_gt_to_pred": d_gt, "distances_pred_to_gt": d_pred, "surfel_areas_gt": a_gt,
            "surfel_areas_pred": a_pred}  # fmt: skip


def hd95_from_surfels(
    gt: tuple[np.ndarray, np.ndarray], pred: tuple[np.ndarray, np.ndarray], spacing: Sequence[float]
) -> float:
    """Robust Hausdorff distance at 95 % (mm) from two surfel sets; ``inf`` when either is empty."""
    spacing = check_spacing(spacing)
    (points_gt, areas_gt), (points_pred, areas_pred) = gt, pred
    if points_gt.shape[0] == 0 or points_pred.shape[0] == 0:
        return float("inf")
    return robust_hausdorff(
        nearest_distances(points_gt, points_pred, spacing), areas_gt,
        nearest_distances(points_pred, points_gt, spacing), areas_pred,
    )  # fmt: skip


#: A side with more surfels than this keeps no table of each surfel's overall nearest surfel (building it costs a
#: distance transform of the whole box); its percentiles are always bounded searches (:mod:`.percentile`).
FULL_TABLE_MAX = 150_000


class _Side:
    """One direction of a :class:`SurfacePair`: the ``queries``' surfels to their nearest among the ``targets``'.

    ``distances`` / ``nearest``: each query surfel's distance to, and row of, its nearest target surfel over all
    components (``None`` above ``FULL_TABLE_MAX`` query surfels). Large query sets (a region matched by many
    lesions) are kept with their block indices (:class:`~.percentile.BlockIndex`) for the next call."""

    def __init__(self, queries: ComponentSurfels, targets: ComponentSurfels, spacing: tuple[float, float, float]):
        self.queries, self.targets, self.spacing = queries, targets, spacing
        self.distances: np.ndarray | None = None
        self.nearest: np.ndarray | None = None
        if queries.points.shape[0] <= FULL_TABLE_MAX:
            self.distances, self.nearest = nearest_surfels(queries.points, targets.points, spacing)
        self.target_owners = targets.owners()
        self._large: dict[tuple[int, ...] | None, tuple[np.ndarray, np.ndarray, np.ndarray, BlockIndex]] = {}

    def _queries(
        self, query_ids: Sequence[int] | np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, BlockIndex | None]:
        """Rows, points and areas of the surfels of components ``query_ids`` (``None``: all), and their block
        index when they are many."""
        key = None if query_ids is None else tuple(int(i) for i in query_ids)
        if key in self._large:
            return self._large[key]
        rows = np.arange(self.queries.points.shape[0]) if query_ids is None else self.queries.indices(query_ids)
        points, areas = self.queries.points[rows], self.queries.areas[rows]
        if rows.size <= percentile.EXACT_MAX:
            return rows, points, areas, None
        self._large[key] = (rows, points, areas, BlockIndex(points, areas=areas))
        return self._large[key]

    def directed_hd95(
        self, query_ids: Sequence[int] | np.ndarray | None, target_ids: Sequence[int] | np.ndarray | None
    ) -> float:
        """95th area percentile (mm) of the distances from the surfels of components ``query_ids`` to those of
        components ``target_ids`` (``None``: all); ``inf`` when either side has none."""
        rows, points, areas, blocks = self._queries(query_ids)
        targets = self.targets.select(target_ids)[0]
        known = None
        if self.distances is not None and self.nearest is not None:
            known = self.distances[rows]  # a copy (fancy indexing)
            if target_ids is not None:  # reused where the overall nearest surfel is selected
                selected = np.zeros(self.targets.starts.size, dtype=bool)
                selected[np.asarray(target_ids, dtype=np.int64)] = True
                known[~selected[self.target_owners[self.nearest[rows]]]] = np.nan
        return nearest_percentile(points, areas, targets, self.spacing, 95.0, known, blocks)


class SurfacePair:
    """Surfels of a region's GT and predicted components, so that the HD95 between a union of GT components and a
    union of predicted components (a lesion and its matched components) costs little per pair: each side keeps
    every surfel's nearest surfel on the other side over all components (a surfel whose overall nearest surfel
    lies in the selected union keeps that distance, as the minimum over all is attained inside the union), and the
    remaining distances are measured only near the percentile (:func:`~.percentile.nearest_percentile`)."""

    def __init__(self, gt: ComponentSurfels, pred: ComponentSurfels, spacing: Sequence[float]) -> None:
        self.gt, self.pred, self.spacing = gt, pred, check_spacing(spacing)
        self._gt_side = _Side(gt, pred, self.spacing)
        self._pred_side = _Side(pred, gt, self.spacing)

    def hd95(self) -> float:
        """HD95 (mm) between all GT and all predicted components; ``inf`` when either side is empty."""
        return max(self._gt_side.directed_hd95(None, None), self._pred_side.directed_hd95(None, None))

    def hd95_between(self, gt_ids: Sequence[int] | np.ndarray, pred_ids: Sequence[int] | np.ndarray) -> float:
        """HD95 (mm) between the union of GT components ``gt_ids`` and of predicted components ``pred_ids``."""
        return max(  # inf when either union has no surfel (that side's percentile, or the other's targets)
            self._gt_side.directed_hd95(gt_ids, pred_ids), self._pred_side.directed_hd95(pred_ids, gt_ids)
        )


def _mask_surfels(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    from nnunet_tcup.evaluation.components import label_components

    labels, n = label_components(mask, order="F")
    return component_surfels(labels, n, spacing).select()


def surface_distances(mask_gt: np.ndarray, mask_pred: np.ndarray, spacing: Sequence[float]) -> dict[str, np.ndarray]:
    """Same result as ``surface_distance.compute_surface_distances(mask_gt, mask_pred, spacing)`` (3D), faster.

    Returns the library's dict (``distances_gt_to_pred``, ``distances_pred_to_gt``, ``surfel_areas_gt``,
    ``surfel_areas_pred``; each sorted by (distance, area)), ready for ``compute_robust_hausdorff``.
    """
    mask_gt = np.asarray(mask_gt, dtype=bool)
    mask_pred = np.asarray(mask_pred, dtype=bool)
    if mask_gt.shape != mask_pred.shape or mask_gt.ndim != 3:
        raise ValueError(f"surface_distances needs two 3D masks of one shape, got {mask_gt.shape}, {mask_pred.shape}")
    return surface_distances_from_surfels(_mask_surfels(mask_gt, spacing), _mask_surfels(mask_pred, spacing), spacing)


def hd95(gt_mask: np.ndarray, pred_mask: np.ndarray, spacing: Sequence[float]) -> float:
    """DeepMind ``surface_distance`` robust Hausdorff distance at 95 % (mm) between two boolean 3D masks.

    If either mask is empty the result is ``inf`` (what the library returns with the numpy it was written for);
    callers map ``inf`` to 374 (:func:`finite_hd95`).
    """
    gt_mask = np.asarray(gt_mask, dtype=bool)
    pred_mask = np.asarray(pred_mask, dtype=bool)
    if not gt_mask.any() or not pred_mask.any():
        return float("inf")
    return hd95_from_surfels(_mask_surfels(gt_mask, spacing), _mask_surfels(pred_mask, spacing), spacing)


def finite_hd95(value: float) -> float:
    """Official replacement of an infinite HD95 by 374 mm."""
    return MISSED_LESION_HD95 if np.isinf(value) else float(value)
