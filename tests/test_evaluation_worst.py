"""Worst inputs of the lesion-wise evaluation, small: a region covering most of the volume plus specks, a prediction
equal to the whole volume, an empty prediction, an empty ground truth; identical to the slow reference whichever
nearest-surfel method runs (k-d tree, feature transform, local search). Plus the packed (distance, area) sort."""

from __future__ import annotations

import numpy as np
import pytest
import surface_distance
from reference_lesionwise import reference_case
from scipy import ndimage
from test_evaluation_lesionwise import assert_same_as_reference, random_case

from nnunet_tcup.evaluation import nearest, percentile, surface
from nnunet_tcup.evaluation.lesionwise import evaluate_case

SHAPE = (40, 36, 28)
METHODS = (None, "tree", "transform", "local", "bounded", "bounded-no-table")


def large_region_case(seed: int, specks: int) -> tuple[np.ndarray, np.ndarray]:
    """GT blobs; a prediction whose WT covers most of the volume (an ellipsoid minus blobs of smoothed noise)
    with NETC / ET cores around the GT's, plus ``specks`` one- or two-voxel ET components anywhere."""
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, SHAPE)
    grid = np.indices(SHAPE)
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, np.array(SHAPE) / 2, np.array(SHAPE) / 2.2)) <= 1
    noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5)
    out = np.where(inside & (noise > np.quantile(noise[inside], 0.12)), 2, 0).astype(np.uint8)
    out[pred == 1], out[pred == 3] = 1, 3
    for corner, size in zip(rng.integers(0, np.array(SHAPE) - 2, (specks, 3)), rng.integers(1, 3, (specks, 3))):
        out[tuple(slice(c, c + s) for c, s in zip(corner, size))] = 3
    return gt, out


def worst_case(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = random_case(np.random.default_rng(seed), SHAPE)
    if name == "large+specks":
        return large_region_case(seed, 40)
    if name == "whole":
        return gt, np.full_like(pred, 3)
    if name == "empty-pred":
        return gt, np.zeros_like(pred)
    return np.zeros_like(gt), pred  # empty-gt


ISO, ANISO = (1.0, 1.0, 1.0), (0.9, 1.2, 1.7)
CASES = [(name, seed, ISO, method) for name, seed in (("large+specks", 4), ("whole", 5)) for method in METHODS]
CASES += [
    (name, seed, ANISO, method)
    for name, seed in (("large+specks", 8), ("whole", 9))
    for method in ("tree", "transform", "bounded-no-table")
]
CASES += [
    (name, seed, spacing, None) for name, seed in (("empty-pred", 6), ("empty-gt", 7)) for spacing in (ISO, ANISO)
]


@pytest.mark.parametrize(("name", "seed", "spacing", "method"), CASES)
def test_worst_inputs_equal_reference(monkeypatch, name, seed, spacing, method):
    """Every number, lesion and false-positive id equals the reference, for each nearest-surfel method (``local``:
    the local search on every call that has fewer queries than targets, from a one-voxel margin; ``bounded``: every
    percentile with a distance left to measure narrowed down by block bounds first, with the tables of overall
    nearest surfels or, ``-no-table``, without them)."""
    if method == "local":
        monkeypatch.setattr(nearest, "_LOCAL_RATIO", 1)
        monkeypatch.setattr(nearest, "_LOCAL_MARGIN", 1)
    elif method is not None and method.startswith("bounded"):
        monkeypatch.setattr(percentile, "EXACT_MAX", 0)
        monkeypatch.setattr(percentile, "BLOCKS", (4, 2))
        if method == "bounded-no-table":
            monkeypatch.setattr(surface, "FULL_TABLE_MAX", 0)
    else:
        monkeypatch.setattr(nearest, "METHOD", method)
    gt, pred = worst_case(name, seed)
    gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    fast = evaluate_case(gt, pred, spacing, dilation_iterations=2, volume_threshold_mm3=10.0)
    lesions = assert_same_as_reference(fast, reference_case(gt, pred, spacing, 2, 10.0))
    if name == "large+specks":  # one predicted component matches several lesions: lesion HD95s re-query surfels
        matched = [c for les in fast["WT"].lesions for c in les.matched_components]
        assert max(matched.count(c) for c in matched) >= 2
        assert fast["ET"].num_fp >= 10
    assert (lesions > 0) == (name != "empty-gt")


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.3, 2.2)])
def test_nearest_methods_equal_brute_force(monkeypatch, spacing):
    """Tree, transform and local search give, per query, the brute-force minimum of the EDT's distance formula and
    a target at that distance (the local search forced, and proven by growing its box)."""
    rng = np.random.default_rng(21)
    scale = np.asarray(spacing)
    calls = []
    monkeypatch.setattr(nearest, "_local_nearest", _spy(nearest._local_nearest, calls))
    for trial in range(6):
        targets = rng.integers(0, (30, 24, 20), (rng.integers(50, 400), 3))
        points = rng.integers(0, (30, 24, 20), (rng.integers(3, 40), 3))
        points[:3] = targets[:3]  # queries on targets: distance 0
        offsets = targets[None, :, :] - points[:, None, :]
        expected = nearest.offset_distances(offsets.reshape(-1, 3), scale).reshape(offsets.shape[:2]).min(axis=1)
        for method, ratio in (("tree", 8), ("transform", 8), (None, 1)):
            monkeypatch.setattr(nearest, "METHOD", method)
            monkeypatch.setattr(nearest, "_LOCAL_RATIO", ratio)
            monkeypatch.setattr(nearest, "_LOCAL_MARGIN", 1 + trial % 2)
            got, index = nearest.nearest_surfels(points, targets, spacing)
            assert np.array_equal(got, expected), (method, trial)
            assert np.array_equal(nearest.offset_distances(targets[index] - points, scale), expected), (method, trial)
    assert calls, "the local search never ran"


def _spy(function, calls):
    def wrapped(*args):
        calls.append(args[0].shape[0])
        return function(*args)

    return wrapped


def test_sorted_distances_packed_and_fallback_equal_lexsort():
    """The packed-key sort (and its lexsort fallback, taken when distances span too many binades) orders
    (distance, area) pairs exactly as the library's sort of tuples."""
    rng = np.random.default_rng(5)
    for trial in range(60):
        n = int(rng.integers(0, 400))
        distances = np.sqrt(rng.integers(0, 40, n).astype(np.float64)) * rng.choice([1.0, 0.7, 1.3])
        if trial % 7 == 0:
            distances[:] = 0.0
        if trial % 5 == 1 and n:
            distances[0] = 1e300  # keys cannot fit: fallback
        areas = rng.choice(rng.random(int(rng.integers(1, 40))), n)
        order = np.lexsort((areas, distances))
        got_d, got_a = percentile.sorted_distances(distances, areas)
        assert np.array_equal(got_d, distances[order]) and np.array_equal(got_a, areas[order]), trial


def _brute_force_percentile(points, areas, targets, scale, known=None):
    offsets = targets[None, :, :] - points[:, None, :]
    distances = nearest.offset_distances(offsets.reshape(-1, 3), scale).reshape(offsets.shape[:2]).min(axis=1)
    if known is not None:
        assert np.array_equal(known[~np.isnan(known)], distances[~np.isnan(known)])
    d, a = percentile.sorted_distances(distances, areas)  # the same set both ways: the library's max is its value
    result = {"distances_gt_to_pred": d, "surfel_areas_gt": a, "distances_pred_to_gt": d, "surfel_areas_pred": a}
    return float(surface_distance.compute_robust_hausdorff(result, 95))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.3, 2.2)])
def test_bounded_percentile_equals_the_library(monkeypatch, spacing):
    """The percentile read from block bounds (only distances near it measured) equals the library's percentile of
    every distance, for lattice point sets with ties, far and overlapping targets, some distances already known;
    and it measures fewer distances than there are queries when the targets are far."""
    monkeypatch.setattr(percentile, "EXACT_MAX", 0)
    measured = []
    monkeypatch.setattr(percentile, "nearest_distances", _spy(percentile.nearest_distances, measured))
    rng = np.random.default_rng(3)
    scale = np.asarray(spacing)
    for trial in range(40):
        box = rng.integers(10, 60, 3)
        points = rng.integers(0, box, (int(rng.integers(1, 900)), 3))
        targets = rng.integers(0, box // (1 + trial % 3), (int(rng.integers(1, 200)), 3)) + (trial % 4 == 0) * 40
        areas = rng.choice(np.array([0.25, 0.5, 0.7071, 1.0]) * rng.random(), points.shape[0])
        known = None
        if trial % 3 == 1:
            known = np.full(points.shape[0], np.nan)
            some = rng.random(points.shape[0]) < 0.4
            known[some] = nearest.nearest_distances(points[some], targets, spacing)
        monkeypatch.setattr(percentile, "BLOCKS", ((8, 2), (4,), (2, 1))[trial % 3])
        expected = _brute_force_percentile(points, areas, targets, scale, known)
        got = percentile.nearest_percentile(points, areas, targets, spacing, 95.0, known)
        assert got == expected, trial
    far = rng.integers(0, 40, (3000, 3))
    measured.clear()
    far_areas = rng.choice([0.3, 0.6, 0.9], 3000)
    got = percentile.nearest_percentile(far, far_areas, far[:5] + 60, spacing)
    assert got == _brute_force_percentile(far, far_areas, far[:5] + 60, scale)
    assert sum(measured) < 3000 // 2, measured


def test_bounded_percentile_falls_back_at_a_rounding_tie(monkeypatch):
    """Where the cumulative area meets 95 % within rounding (20 equal areas: 19 / 20), a sum in another order than
    the library's could flip the answer: every distance is then measured and the library's arithmetic decides."""
    monkeypatch.setattr(percentile, "EXACT_MAX", 0)
    monkeypatch.setattr(percentile, "BLOCKS", (2,))
    points = np.array([[i, 0, 0] for i in range(0, 40, 2)])
    targets = np.array([[-5, 0, 0]])
    before = percentile.FALLBACKS[0]
    got = percentile.nearest_percentile(points, np.full(20, 0.1), targets, (1.0, 1.0, 1.0))
    assert got == _brute_force_percentile(points, np.full(20, 0.1), targets, np.ones(3))
    assert percentile.FALLBACKS[0] == before + 1


def test_method_choice_bounds_the_cost(monkeypatch):
    """Huge surfaces go to the feature transform (cost of their box); moderate sets in a big box, a volume's outer
    shell included (the jittered tree does not degrade on it), to the tree; ``METHOD`` forces either."""
    rng = np.random.default_rng(0)
    box = np.array([240, 240, 155])
    huge = rng.integers(0, box, (2_000_000, 3))
    lesion = rng.integers(100, 130, (3_000, 3))
    shell = np.concatenate([rng.integers(0, box, (264_000, 3)) * [0, 1, 1], [[239, 239, 154]]])
    gt = rng.integers(30, box - 30, (30_000, 3))
    specks = rng.integers(0, box, (60_000, 3))
    assert nearest._method(huge, lesion) == "transform"  # 2M queries: a box transform is cheaper than 2M lookups
    assert nearest._method(lesion, huge) == "transform"
    assert nearest._method(gt, shell) == "tree"
    assert nearest._method(gt, specks) == "tree"
    assert nearest._method(lesion[:100], lesion) == "tree"
    monkeypatch.setattr(nearest, "METHOD", "tree")
    assert nearest._method(huge, lesion) == "tree"


@pytest.mark.parametrize("jitter", [1e-6, 0.45])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0), (0.8, 1.3, 2.2)])
def test_tree_resolves_exact_ties_of_lattice_points(monkeypatch, spacing, jitter):
    """Queries with many equally near targets (the centre of a lattice sphere, points next to it; a hollow box's
    inside against its shell; random sets) get the brute-force distance
    and a target at that distance from the jittered k-d tree; also with a jitter of half a voxel, which reorders
    targets whose true distances differ, so that only the proof (and the measurement of every target that could
    be nearer) gives the right answer."""
    monkeypatch.setattr(nearest, "METHOD", "tree")
    monkeypatch.setattr(nearest, "_JITTER", jitter)
    scale = np.asarray(spacing)
    grid = np.indices((11, 11, 11)).reshape(3, -1).T - 5
    sphere = grid[np.abs(np.sum(grid.astype(float) ** 2 * scale**2, axis=1) - 25.0) < 2.0]  # about 5 mm away
    assert sphere.shape[0] > 16
    shell = np.indices((20, 16, 12)).reshape(3, -1).T
    shell = shell[np.any((shell == 0) | (shell == [19, 15, 11]), axis=1)] + 20
    for targets, points in (
        (sphere + 30, np.array([[30, 30, 30], [31, 30, 30], [30, 29, 31], [32, 33, 27]])),
        (shell, np.indices((18, 14, 10)).reshape(3, -1).T + 21),
        (np.random.default_rng(2).integers(0, 30, (500, 3)), np.random.default_rng(3).integers(0, 30, (300, 3))),
    ):
        offsets = targets[None, :, :] - points[:, None, :]
        expected = nearest.offset_distances(offsets.reshape(-1, 3), scale).reshape(offsets.shape[:2]).min(axis=1)
        got, index = nearest.nearest_surfels(points, targets, spacing)
        assert np.array_equal(got, expected)
        assert np.array_equal(nearest.offset_distances(targets[index] - points, scale), expected)
