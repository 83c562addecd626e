"""The surface-distance library's robust percentile of nearest-surfel distances, measuring only the distances near it.

``compute_robust_hausdorff`` sorts one direction's ``(distance, area)`` pairs, divides their cumulative areas by the
total and returns the distance where that first reaches ``percent / 100``. Only the distances near that value need
to be exact: every other one only needs to be known as below or above it. For many query surfels (the surface of a
predicted region that covers most of the brain: several hundred thousand surfels, queried once per lesion), the
bounded search of :func:`nearest_percentile`

1. groups the queries into blocks of ``b`` cells (``b`` = 8, then 2): a query lies within the block's radius
   ``r`` (mm) of the block's centre, so its distance is the centre's (one k-d tree query per block) plus or minus
   ``r``;
2. bounds the percentile by the same rule applied to those lower and to those upper bounds (the rule is monotone);
3. keeps only the blocks whose bounds meet that interval (the others lie certainly below or certainly above it) and
   repeats with smaller blocks;
4. measures what is left exactly (:func:`~nnunet_tcup.evaluation.nearest.nearest_distances`, the EDT's formula),
   sorts it as the library sorts and reads the percentile, with the areas known to lie below it added in front.

Sums taken in another order than the library's differ from its sums by at most ``n * eps`` of the total. The
result is therefore the library's value whenever the cumulative area at the crossing is more than a bound of that
size away from ``percent / 100``; when it is not, every distance is measured and the library's arithmetic runs
(``FALLBACKS`` counts those calls). Positions are integer cell indices ``(n, 3)``; ``spacing`` in mm, same axis order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_tcup.evaluation.nearest import jitter_error, jittered_tree, nearest_distances
from nnunet_tcup.evaluation.validation import check_spacing

__all__ = ["BLOCKS", "EXACT_MAX", "FALLBACKS", "BlockIndex", "library_percentile", "nearest_percentile",
           "sorted_distances"]  # fmt: skip

#: Queries measured exactly at once; above this many, the block bounds narrow them down first.
EXACT_MAX = 20_000
#: Block edges (cells) of the successive bounding rounds.
BLOCKS: tuple[int, ...] = (8, 2)
#: Calls that measured every distance because the crossing lay within rounding of the percentile (tests read it).
FALLBACKS = [0]


def sorted_distances(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, areas)`` sorted as the library sorts its ``(distance, area)`` tuples (by distance, then area).

    Each pair is packed into one unsigned 64-bit key (the distance's bits, offset from the smallest positive
    distance's, above the area's rank among the distinct areas) and the keys are sorted by value, which orders
    them exactly as the pairs; a lexicographic argsort is the fallback when the keys do not fit.
    """
    distances = np.asarray(distances, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    values = np.unique(areas)
    rank_bits = max(int(values.size - 1).bit_length(), 1)
    positive = distances > 0
    if distances.size and np.all(np.isfinite(distances)) and np.all(distances >= 0) and positive.any():
        bits = distances.view(np.uint64)
        lowest = bits[positive].min()
        span = int(bits.max()) - int(lowest) + 2  # keys 1.. for positive distances, 0 for zero
        if span < 1 << (64 - rank_bits):
            keys = np.where(positive, bits - (lowest - np.uint64(1)), np.uint64(0)) << np.uint64(rank_bits)
            keys |= np.searchsorted(values, areas).astype(np.uint64)
            keys.sort()
            packed = keys >> np.uint64(rank_bits)
            found = np.where(packed > 0, packed + (lowest - np.uint64(1)), np.uint64(0)).view(np.float64)
            return found, values[(keys & np.uint64((1 << rank_bits) - 1)).astype(np.intp)]
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def library_percentile(distances: np.ndarray, areas: np.ndarray, percent: float = 95.0) -> float:
    """One direction of ``compute_robust_hausdorff(..., percent)`` (mm) from unsorted distances and areas, with the
    library's own arithmetic; ``inf`` when there is no surfel."""
    if np.asarray(distances).size == 0:
        return float("inf")
    d, a = sorted_distances(distances, areas)
    cumulative = np.cumsum(a) / np.sum(a)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(d[min(index, d.size - 1)])


class BlockIndex:
    """The first round's blocks of a fixed set of query surfels, kept to serve many calls on the same queries (a
    predicted region matched by many lesions): block id per query, block centres (cells) and, given the queries'
    areas, the area per block."""

    def __init__(self, points: np.ndarray, block: int = BLOCKS[0], areas: np.ndarray | None = None) -> None:
        self.block = block
        keys = points // block
        lowest = keys.min(axis=0) if keys.size else np.zeros(3, np.int64)
        extent = tuple(int(e) for e in (keys.max(axis=0) - lowest + 1)) if keys.size else (1, 1, 1)
        flat = np.ravel_multi_index((keys - lowest).T, extent)
        unique, inverse = np.unique(flat, return_inverse=True)
        self.ids = inverse.reshape(-1)
        self.centres = (np.stack(np.unravel_index(unique, extent), axis=1) + lowest) * block + (block - 1) / 2.0
        self.areas = None if areas is None else np.bincount(self.ids, weights=areas, minlength=unique.size)


def nearest_percentile(
    points: np.ndarray,
    areas: np.ndarray,
    targets: np.ndarray,
    spacing: Sequence[float],
    percent: float = 95.0,
    known: np.ndarray | None = None,
    blocks: BlockIndex | None = None,
) -> float:
    """:func:`library_percentile` of the distances from ``points`` (n, 3) to their nearest ``targets`` (m, 3), equal
    to measuring every distance; ``inf`` when either is empty.

    ``known``: (n,) distances already measured (``nan`` where not); ``blocks``: a :class:`BlockIndex` of ``points``.
    """
    spacing = check_spacing(spacing)
    points = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 3)
    areas = np.asarray(areas, dtype=np.float64)
    n = points.shape[0]
    if n == 0 or targets.shape[0] == 0:
        return float("inf")
    if known is None:
        distances, unknown = np.full(n, np.nan), np.arange(n)
    else:
        distances = np.array(known, dtype=np.float64)
        unknown = np.flatnonzero(np.isnan(distances))
    if unknown.size > EXACT_MAX:
        found = _bounded_percentile(points, areas, targets, spacing, percent / 100.0, distances, unknown, blocks)
        if found is not None:
            return found
        FALLBACKS[0] += 1
    distances[unknown] = nearest_distances(points[unknown], targets, spacing)
    return library_percentile(distances, areas, percent)


def _threshold(values: np.ndarray, weights: np.ndarray, base: float, target: float) -> float:
    """Smallest of ``values`` whose weight at or below it, plus ``base``, reaches ``target``; ``-inf`` when ``base``
    does alone, ``inf`` when nothing does."""
    if base >= target:
        return -np.inf
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order]) + base
    index = int(np.searchsorted(cumulative, target))
    return float(values[order[index]]) if index < values.size else np.inf


def _bounded_percentile(
    points: np.ndarray,
    areas: np.ndarray,
    targets: np.ndarray,
    spacing: tuple[float, float, float],
    fraction: float,
    distances: np.ndarray,
    unknown: np.ndarray,
    blocks: BlockIndex | None,
) -> float | None:
    """The block rounds and the final reading (module docstring); ``None`` when rounding could change the answer."""
    scale = np.asarray(spacing, dtype=np.float64)
    total = float(np.sum(areas))
    tolerance = 4.0 * areas.size * np.finfo(np.float64).eps * total
    low_target, high_target = fraction * total - tolerance, fraction * total + tolerance
    exact = np.zeros(0, np.int64) if unknown.size == points.shape[0] else np.flatnonzero(~np.isnan(distances))
    below = 0.0  # area of surfels known to lie below the percentile
    floor = -np.inf  # the highest lower bound of the percentile found so far
    tree = jittered_tree(targets, scale)  # centre distances within jitter_error() of the true ones
    for round_number, block in enumerate(BLOCKS):
        if unknown.size <= EXACT_MAX:
            break
        everything = unknown.size == points.shape[0]  # no distance known yet: the cached blocks serve as they are
        cache = blocks if round_number == 0 and blocks is not None and blocks.block == block else None
        if cache is not None and everything and cache.areas is not None:
            ids, centres, block_areas = cache.ids, cache.centres, cache.areas
            used = block_areas > 0
        else:
            if cache is not None:
                ids, centres = cache.ids[unknown], cache.centres
            else:
                block_index = BlockIndex(points[unknown], block)
                ids, centres = block_index.ids, block_index.centres
            block_areas = np.bincount(ids, weights=areas[unknown], minlength=centres.shape[0])
            used = np.bincount(ids, minlength=centres.shape[0]) > 0
        centre_distance = np.full(centres.shape[0], np.nan)
        centre_distance[used], _ = tree.query(centres[used] * scale)
        radius = float(np.sqrt(np.sum(np.square((block - 1) / 2.0 * scale)))) + jitter_error()
        slack = 1e-9 * (centre_distance + radius + 1.0)
        low, high = centre_distance - radius - slack, centre_distance + radius + slack
        low, high, weight = low[used], high[used], block_areas[used]
        exact_d, exact_a = distances[exact], areas[exact]
        q_low = _threshold(np.concatenate([low, exact_d]), np.concatenate([weight, exact_a]), below, low_target)
        q_high = _threshold(np.concatenate([high, exact_d]), np.concatenate([weight, exact_a]), below, high_target)
        floor = max(floor, q_low)
        block_below = np.zeros(centres.shape[0], bool)
        block_above = np.zeros(centres.shape[0], bool)
        block_below[used], block_above[used] = high < floor, low > q_high
        below += float(np.sum(weight[high < floor]))
        exact_below = exact_d < floor
        below += float(np.sum(exact_a[exact_below]))
        exact = exact[~exact_below & (exact_d <= q_high)]
        keep = ~(block_below | block_above)[ids]
        unknown = np.flatnonzero(keep) if everything else unknown[keep]
    distances[unknown] = nearest_distances(points[unknown], targets, spacing)
    exact = np.concatenate([exact, unknown])
    exact_d, exact_a = distances[exact], areas[exact]
    below += float(np.sum(exact_a[exact_d < floor]))
    keep = exact_d >= floor
    d, a = sorted_distances(exact_d[keep], exact_a[keep])
    cumulative = below + np.cumsum(a)
    index = int(np.searchsorted(cumulative, fraction * total))
    if index >= d.size or cumulative[index] < high_target:
        return None
    if (cumulative[index - 1] if index else below) >= low_target:
        return None
    return float(d[index])
