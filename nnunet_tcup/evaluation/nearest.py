"""Nearest target among integer grid positions, with the distances ``scipy.ndimage.distance_transform_edt`` gives.

For each query position (a surfel's cell index) the nearest target position and its distance in mm. Two exact
methods, chosen per call by an estimate of their cost (``METHOD`` forces one):

* ``"tree"``: a k-d tree over the targets (cost grows with the numbers of queries and targets);
* ``"transform"``: scipy's Euclidean feature transform over the box holding queries and targets, the algorithm the
  DeepMind library itself runs (cost grows with the box's volume, whatever the surfaces' sizes).

Either way the distance is then computed from the integer offset exactly as ``distance_transform_edt(...,
sampling=spacing)`` computes it (offsets scaled, squared, summed axis by axis, square root), so values equal the
library's. A few queries against many targets first look for their nearest target in a box around them, growing it
until every answer is proven (no target outside the box can be nearer).

Positions are ``(n, 3)`` integer arrays in the axis order of ``spacing`` (mm).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from nnunet_tcup.evaluation.validation import check_spacing

__all__ = ["METHOD", "jitter_error", "jittered_tree", "nearest_distances", "nearest_surfels"]

#: ``None``: cheaper method by estimate; ``"tree"`` or ``"transform"``: always that one (tests use both).
METHOD: str | None = None

# Cost estimates in seconds (measured on one core): k-d tree build per target and level, query per query and
# level; feature transform per voxel of the box, gather per query.
_TREE_BUILD = 3e-8
_TREE_QUERY = 4e-8
_TRANSFORM_VOXEL = 4e-8
_TRANSFORM_QUERY = 3e-8
#: Largest move (mm, per axis) of a target before the k-d tree is built (:func:`jittered_tree`).
_JITTER = 1e-6
#: The local search is tried when there are this many times more targets than queries.
_LOCAL_RATIO = 8
#: First margin (voxels) of the local search box around the queries; doubled until every answer is proven.
_LOCAL_MARGIN = 6


def nearest_surfels(points: np.ndarray, targets: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """For each integer position in ``points`` (k, 3): the distance (mm) to the nearest one in ``targets`` (m, 3)
    and that target's row (``(distances, index)``; ``inf`` and -1 when there is no target). Among equally near
    targets any one may be given; the distance is the same."""
    spacing = check_spacing(spacing)
    points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 3)
    if targets.shape[0] == 0 or points.shape[0] == 0:
        return np.full(points.shape[0], np.inf), np.full(points.shape[0], -1, np.int64)
    scale = np.asarray(spacing, dtype=np.float64)
    few = targets.shape[0] > _LOCAL_RATIO * points.shape[0]
    if few and _box_volume(points, _LOCAL_MARGIN) * _LOCAL_RATIO < _box_volume(targets):
        return _local_nearest(points, targets, scale)
    return _global_nearest(points, targets, scale)


def nearest_distances(points: np.ndarray, targets: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from each integer position in ``points`` to the nearest one in ``targets`` (see
    :func:`nearest_surfels`); ``inf`` when there is no target."""
    return nearest_surfels(points, targets, spacing)[0]


def offset_distances(offsets: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Length (mm) of integer offsets ``(n, 3)`` as ``distance_transform_edt`` computes it: each axis scaled and
    squared, the squares summed in axis order, then the square root."""
    scaled = offsets.astype(np.float64)
    scaled *= scale
    np.multiply(scaled, scaled, out=scaled)
    return np.sqrt((scaled[:, 0] + scaled[:, 1]) + scaled[:, 2])


def _box_volume(points: np.ndarray, margin: int = 0, other: np.ndarray | None = None) -> float:
    """Voxels in the bounding box of ``points`` (and ``other``) grown by ``margin`` on every side."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    if other is not None:
        lo, hi = np.minimum(lo, other.min(axis=0)), np.maximum(hi, other.max(axis=0))
    return float(np.prod(hi - lo + 1 + 2 * margin))


def _method(points: np.ndarray, targets: np.ndarray) -> str:
    if METHOD is not None:
        return METHOD
    k, m = points.shape[0], targets.shape[0]
    volume = _box_volume(points, 0, targets)
    levels = np.log2(m + 2.0)
    tree = _TREE_BUILD * m * levels + _TREE_QUERY * k * levels
    transform = _TRANSFORM_VOXEL * volume + _TRANSFORM_QUERY * (k + m)
    return "transform" if transform < tree else "tree"


def _global_nearest(points: np.ndarray, targets: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if _method(points, targets) == "transform":
        return _transform_nearest(points, targets, scale)
    return _tree_nearest(points, targets, scale)


def _tree_nearest(points: np.ndarray, targets: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-d tree over the jittered targets (:func:`jittered_tree`); a query's two nearest jittered targets prove its
    true nearest when their jittered distances differ by more than twice :func:`jitter_error`, the other queries
    are decided among the targets in a ball of that slack (:func:`_proven_nearest`). A query at a target's own
    position is answered by key lookup (distance 0). Distances are computed from the integer offsets
    (:func:`offset_distances`)."""
    distances = np.zeros(points.shape[0])
    lowest = np.minimum(points.min(axis=0), targets.min(axis=0))
    extent = tuple(np.maximum(points.max(axis=0), targets.max(axis=0)) - lowest + 1)
    target_keys = np.ravel_multi_index((targets - lowest).T, extent)
    order = np.argsort(target_keys, kind="stable")
    point_keys = np.ravel_multi_index((points - lowest).T, extent)
    found = np.minimum(np.searchsorted(target_keys[order], point_keys), order.size - 1)
    index = order[found]
    rest = np.flatnonzero(target_keys[index] != point_keys)
    if rest.size:
        index[rest] = _proven_nearest(jittered_tree(targets, scale), points[rest], targets, scale)
        distances[rest] = offset_distances(targets[index[rest]] - points[rest], scale)
    return distances, index


def jitter_error() -> float:
    """Largest difference (mm) between a distance to a jittered target and to the target itself."""
    return float(np.sqrt(3.0)) * _JITTER


def jittered_tree(targets: np.ndarray, scale: np.ndarray):
    """``cKDTree`` over the targets in mm, each moved by at most ``_JITTER`` mm per axis (a fixed pseudo-random
    jitter): scipy's tree degrades on the exact ties of lattice points (about 100 us per query against a volume's
    outer shell, 2 us jittered). Distances to it are within :func:`jitter_error` of the true ones."""
    from scipy.spatial import cKDTree

    moved = targets * scale + np.random.default_rng(0).uniform(-_JITTER, _JITTER, targets.shape)
    return cKDTree(moved, leafsize=32, balanced_tree=False, compact_nodes=False)


def _proven_nearest(tree, points: np.ndarray, targets: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Row of a truly nearest target of each query, from :func:`jittered_tree`: a jittered distance is within
    :func:`jitter_error` of the true one, so the jittered nearest is truly nearest when the second one is more than
    twice that further. For the other queries (near-ties, mostly exact ties of lattice distances) every true nearest
    target lies within that slack of the jittered nearest distance: the jittered tree lists the targets in that ball
    (a handful) and the exact distances (:func:`offset_distances`) decide. (A tree over the exact lattice positions
    would answer them too, but its queries degrade on exact ties: 0.13-0.18 s for 447 tied queries against a
    261k-surfel box shell, against 7 ms for the balls.)"""
    slack = 2.0 * jitter_error() + 1e-7
    query = points * scale
    if targets.shape[0] == 1:
        return np.zeros(points.shape[0], np.int64)
    near, rows = tree.query(query, k=2)
    nearest = rows[:, 0].copy()
    tied = np.flatnonzero(near[:, 1] - near[:, 0] <= slack)
    if tied.size:
        balls = tree.query_ball_point(query[tied], r=near[tied, 0] + slack)
        counts = np.fromiter((len(ball) for ball in balls), np.int64, tied.size)
        candidates = np.fromiter(itertools.chain.from_iterable(balls), np.int64, int(counts.sum()))
        owner = np.repeat(np.arange(tied.size), counts)
        exact = offset_distances(targets[candidates] - points[tied][owner], scale)
        order = np.lexsort((exact, owner))  # by query, nearest first
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        nearest[tied] = candidates[order[first]]
    return nearest


def _transform_nearest(points: np.ndarray, targets: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature transform (``distance_transform_edt(..., return_indices=True)``) over the box of queries and
    targets; each query reads its nearest target's position there."""
    from scipy import ndimage

    lowest = np.minimum(points.min(axis=0), targets.min(axis=0))
    shape = tuple(int(e) for e in np.maximum(points.max(axis=0), targets.max(axis=0)) - lowest + 1)
    target_keys = np.ravel_multi_index((targets - lowest).T, shape)
    background = np.ones(shape, bool)
    background.reshape(-1)[target_keys] = False
    features = ndimage.distance_transform_edt(background, sampling=scale, return_distances=False, return_indices=True)
    local = points - lowest
    point_keys = np.ravel_multi_index(local.T, shape)
    nearest = np.empty_like(local)
    for axis in range(3):
        nearest[:, axis] = features[axis].reshape(-1)[point_keys]
    del features
    rows = np.empty(int(np.prod(shape)), np.int64)  # target row by position (only targets' entries are read)
    rows[target_keys] = np.arange(targets.shape[0])
    index = rows[np.ravel_multi_index(nearest.T, shape)]
    return offset_distances(nearest - local, scale), index


def _local_nearest(points: np.ndarray, targets: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Few queries, many targets: search the targets inside the queries' box grown by a margin; an answer is
    proven when it is nearer than the box's faces that cut targets off (a target beyond a face is at least that
    far along one axis); the others are searched again with the margin doubled."""
    distances = np.full(points.shape[0], np.inf)
    index = np.full(points.shape[0], -1, np.int64)
    target_lo, target_hi = targets.min(axis=0), targets.max(axis=0)
    todo = np.arange(points.shape[0])
    margin = _LOCAL_MARGIN
    while todo.size:
        query = points[todo]
        lo = np.maximum(query.min(axis=0) - margin, target_lo)
        hi = np.minimum(query.max(axis=0) + margin, target_hi)
        inside = np.flatnonzero(np.all((targets >= lo) & (targets <= hi), axis=1))
        if inside.size == 0:
            margin *= 2
            continue
        found, rows = _global_nearest(query, targets[inside], scale)
        # distance from each query to the nearest face that cut targets off (inf where nothing was cut)
        below = np.where(lo > target_lo, query - lo + 1, np.iinfo(np.int64).max // 4)
        above = np.where(hi < target_hi, hi - query + 1, np.iinfo(np.int64).max // 4)
        gap = np.sqrt(np.square(np.minimum(below, above) * scale)).min(axis=1)
        proven = (found < gap) | np.all((lo <= target_lo) & (hi >= target_hi))
        distances[todo[proven]] = found[proven]
        index[todo[proven]] = inside[rows[proven]]
        todo = todo[~proven]
        margin *= 2
    return distances, index
