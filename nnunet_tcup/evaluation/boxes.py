"""Bounding boxes of 3D arrays: every box helper of the evaluation lives here.

A box is a tuple of three ``slice`` objects with explicit ``start`` / ``stop`` (voxel indices, ``stop`` exclusive)
in the axis order of the array it was computed from; ``None`` stands for "no voxel" (empty mask, absent id).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "Box",
    "bounding_box",
    "box_volume",
    "component_boxes",
    "count_in_box",
    "grow_box",
    "memory_order",
    "shift_box",
    "union_boxes",
]

Box = tuple[slice, slice, slice]


def memory_order(array: np.ndarray) -> str:
    """'F' when the array (or view) runs fastest along its first axis, else 'C': the cheap order to copy into."""
    strides = np.abs(np.asarray(array.strides))
    return "F" if array.ndim > 1 and strides[0] < strides[-1] else "C"


def bounding_box(mask: np.ndarray, pad: int = 0) -> Box | None:
    """Bounding box of the true voxels, grown by ``pad`` voxels on every side and clipped to the array; ``None``
    for an empty mask."""
    mask = np.asarray(mask)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis])))
    return tuple(box)  # type: ignore[return-value]


def grow_box(box: Box, pad: int, shape: Sequence[int]) -> Box:
    """``box`` grown by ``pad`` voxels on every side, clipped to an array of ``shape``."""
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape))  # type: ignore


def union_boxes(boxes: Sequence[Box]) -> Box:
    """Smallest box containing every box of a non-empty sequence."""
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))  # type: ignore[return-value]


def shift_box(box: Box, offset: Sequence[int]) -> Box:
    """``box`` moved by ``offset`` voxels per axis (e.g. from crop coordinates to the full array's)."""
    return tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, offset))  # type: ignore[return-value]


def box_volume(box: Box) -> int:
    """Number of voxels inside ``box``."""
    return int(np.prod([s.stop - s.start for s in box]))


def component_boxes(labels: np.ndarray, n: int) -> list[Box | None]:
    """Bounding boxes of ids 0..n of a label array: list of length ``n + 1`` in the array's axis order (index 0 and
    absent ids: ``None``). One ``scipy.ndimage.find_objects`` pass in the array's memory order."""
    from scipy import ndimage

    labels = np.asarray(labels)
    if n == 0:
        return [None]
    if memory_order(labels) == "F":
        found = [
            None if b is None else tuple(reversed(b))
            for b in ndimage.find_objects(np.asfortranarray(labels).T, max_label=n)
        ]
    else:
        found = ndimage.find_objects(np.ascontiguousarray(labels), max_label=n)
    return [None, *found]


def count_in_box(labels: np.ndarray, label_id: int, box: Box | None) -> int:
    """Voxels with value ``label_id`` inside ``box`` (0 for ``None``)."""
    return 0 if box is None else int(np.count_nonzero(labels[box] == label_id))
