"""BraTS 2023 lesion-wise evaluation: official goldens, hand-checked edge cases, primitives, and the fast
implementation against the slow full-volume reference (tests/reference_lesionwise.py) on random cases."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import surface_distance
from reference_lesionwise import reference_case

from nnunet_tcup.evaluation import lesionwise as lw
from nnunet_tcup.evaluation import surface
from nnunet_tcup.evaluation.folders import evaluate_files
from nnunet_tcup.evaluation.lesionwise import evaluate_case

GOLDENS = Path(__file__).resolve().parent / "data" / "goldens"  # the official outputs, see tests/data/README.md
GOLDEN_FILES = sorted(GOLDENS.glob("*/official_*.json"))
COUNTS = ("Num_TP", "Num_FP", "Num_FN")
HD_KEYS = ("Legacy_HD95", "LesionWise_Score_HD95")


def assert_metrics(got: dict, expected: dict, where: str) -> None:
    """Counts exact, HD95 within 1e-3 mm, every other value within 1e-4 (the project's acceptance rule)."""
    for key, value in expected.items():
        if key in COUNTS:
            assert got[key] == int(value), f"{where} {key}: {got[key]} != {value}"
        else:
            tol = 1e-3 if key in HD_KEYS else 1e-4
            assert abs(got[key] - value) <= tol, f"{where} {key}: {got[key]} != {value}"


# ------------------------------------------------------------------------------------------------- goldens
def test_goldens_present():
    assert len(GOLDEN_FILES) == 22, f"expected 22 official outputs under {GOLDENS}, found {len(GOLDEN_FILES)}"


@pytest.mark.parametrize("official_json", GOLDEN_FILES, ids=lambda p: f"{p.parent.name}-{p.stem[-3:]}")
def test_golden_matches_official(official_json: Path):
    """Every metric and every per-lesion value (ids, volume, matched components, Dice, HD95, scored) of the
    official 2023 code, for every golden case and challenge."""
    official = json.loads(official_json.read_text())["official_2023"]
    challenge = official_json.stem.split("_")[-1]
    case = official_json.parent
    ev = evaluate_files(case / "gt.nii.gz", case / "pred.nii.gz", challenge)
    assert ev.dilation_iterations == official["params"]["dilation_factor"]
    assert ev.volume_threshold_mm3 == official["params"]["lesion_volume_thresh"]
    for region in ("WT", "TC", "ET"):
        where = f"{case.name} {challenge} {region}"
        assert_metrics(ev[region].metrics(), official["metrics"][region], where)
        expected = official["lesions"].get(region, [])
        got = ev[region].lesions
        assert [les.lesion_id for les in got] == [les["gt_lesion"] for les in expected], where
        for les, exp in zip(got, expected):
            assert les.volume_mm3 == pytest.approx(exp["gt_volume"]), where
            assert list(les.matched_components) == exp["pred_components"], where
            assert les.dice == pytest.approx(exp["dice"], abs=1e-4), where
            assert les.hd95 == pytest.approx(exp["hd95"], abs=1e-3), where
            assert les.scored == exp["scored"], where


# ---------------------------------------------------------------------------------------------- edge cases
def box_labels(shape, boxes):
    """Label volume with ``value`` in each ((slices), value)."""
    labels = np.zeros(shape, dtype=np.uint8)
    for box, value in boxes:
        labels[box] = value
    return labels


def test_both_empty():
    empty = np.zeros((20, 20, 20), np.uint8)
    ev = evaluate_case(empty, empty, (1, 1, 1), "GLI")
    for region in ("WT", "TC", "ET"):
        assert ev[region].metrics() == {
            "Num_TP": 0,
            "Num_FP": 0,
            "Num_FN": 0,
            "Sensitivity": 1.0,
            "Specificity": 1.0,
            "Legacy_Dice": 1.0,
            "Legacy_HD95": 0.0,
            "GT_Complete_Volume": 0.0,
            "LesionWise_Score_Dice": 1.0,
            "LesionWise_Score_HD95": 0.0,
        }
        assert ev[region].lesions == ()


def test_gt_empty_with_prediction_is_false_positive_of_any_size():
    gt = np.zeros((20, 20, 20), np.uint8)
    pred = box_labels(gt.shape, [((slice(5, 7), slice(5, 7), slice(5, 7)), 3), ((slice(15, 16),) * 3, 2)])
    ev = evaluate_case(gt, pred, (1, 1, 1), "GLI")
    et, wt = ev["ET"], ev["WT"]
    assert (et.num_tp, et.num_fp, et.num_fn) == (0, 1, 0)
    assert (wt.num_fp, wt.false_positive_components) == (2, (1, 2))
    assert (et.lesionwise_dice, et.lesionwise_hd95) == (0.0, 374.0)
    assert (et.legacy_dice, et.legacy_hd95, et.sensitivity) == (0.0, 374.0, 0.0)
    assert et.specificity == pytest.approx((8000 - 8) / 8000)
    assert wt.lesionwise_hd95 == 374.0


def test_only_subthreshold_gt_and_touching_prediction_is_neither_tp_nor_fp():
    # 27-voxel ET lesion (<= 50 mm^3); one prediction missing it, one touching only its ROI
    gt = box_labels((24, 24, 24), [((slice(5, 8),) * 3, 3)])
    empty = np.zeros_like(gt)
    ev = evaluate_case(gt, empty, (1, 1, 1), "GLI")
    for region in ("WT", "TC", "ET"):
        r = ev[region]
        assert (r.num_tp, r.num_fp, r.num_fn) == (0, 0, 0)
        assert (r.lesionwise_dice, r.lesionwise_hd95) == (1.0, 0.0)  # 0/0
        assert (r.legacy_dice, r.legacy_hd95) == (0.0, 374.0)
        assert len(r.lesions) == 1 and not r.lesions[0].scored and r.lesions[0].volume_mm3 == 27.0
    near = box_labels(gt.shape, [((slice(10, 12), slice(5, 8), slice(5, 8)), 3)])  # 2 voxels off: in the ROI
    r = evaluate_case(gt, near, (1, 1, 1), "GLI")["ET"]
    assert r.lesions[0].matched_components == (1,)
    assert (r.num_tp, r.num_fp, r.num_fn, r.lesionwise_dice) == (0, 0, 0, 1.0)
    # the same component outside the ROI (4 voxels off) is a false positive
    far = box_labels(gt.shape, [((slice(12, 14), slice(5, 8), slice(5, 8)), 3)])
    r = evaluate_case(gt, far, (1, 1, 1), "GLI")["ET"]
    assert (r.num_fp, r.lesionwise_dice, r.lesionwise_hd95) == (1, 0.0, 374.0)


def test_lesions_merged_by_dilation_3_but_not_1():
    # two 5x5x5 ET blobs with a 3-voxel gap (x 7, 8, 9); only the first is predicted (exactly)
    first = (slice(2, 7), slice(4, 9), slice(4, 9))
    second = (slice(10, 15), slice(4, 9), slice(4, 9))
    gt = box_labels((20, 14, 14), [(first, 3), (second, 3)])
    pred = box_labels(gt.shape, [(first, 3)])
    merged = evaluate_case(gt, pred, (1, 1, 1), "GLI")["ET"]  # dilation 3
    assert [les.num_voxels for les in merged.lesions] == [250]
    assert merged.lesions[0].dice == pytest.approx(2 * 125 / (250 + 125))
    assert (merged.num_tp, merged.num_fn) == (1, 0)
    split = evaluate_case(gt, pred, (1, 1, 1), "MEN")["ET"]  # dilation 1
    assert [les.num_voxels for les in split.lesions] == [125, 125]
    assert [les.dice for les in split.lesions] == [1.0, 0.0]
    assert [les.hd95 for les in split.lesions] == [0.0, 374.0]
    assert (split.num_tp, split.num_fn, split.lesionwise_dice, split.lesionwise_hd95) == (1, 1, 0.5, 187.0)
    # explicit parameters override the challenge's
    assert len(evaluate_case(gt, pred, (1, 1, 1), "MEN", dilation_iterations=3)["ET"].lesions) == 1


def test_prediction_touching_two_lesions_matches_both():
    a = (slice(2, 7), slice(2, 7), slice(2, 7))
    b = (slice(17, 22), slice(2, 7), slice(2, 7))  # 10-voxel gap: separate lesions at dilation 3
    gt = box_labels((24, 10, 10), [(a, 2), (b, 2)])
    pred = box_labels(gt.shape, [((slice(2, 22), slice(3, 6), slice(3, 6)), 2)])  # one bar through both
    r = evaluate_case(gt, pred, (1, 1, 1), "GLI")["WT"]
    assert [les.matched_components for les in r.lesions] == [(1,), (1,)]
    assert (r.num_tp, r.num_fp, r.num_fn) == (2, 0, 0)
    inter = 5 * 3 * 3
    expected = 2 * inter / (125 + 20 * 9)
    assert [les.dice for les in r.lesions] == pytest.approx([expected, expected])
    assert r.lesionwise_dice == pytest.approx(expected)


def test_anisotropic_spacing_volume_in_mm3_and_hd95_in_mm():
    lesion = (slice(4, 7), slice(4, 9), slice(4, 6))  # 30 voxels
    gt = box_labels((16, 16, 16), [(lesion, 3)])
    shifted = box_labels(gt.shape, [((slice(5, 8), slice(4, 9), slice(4, 6)), 3)])  # one voxel along axis 0
    iso = evaluate_case(gt, shifted, (1.0, 1.0, 1.0), "GLI")["ET"]
    aniso = evaluate_case(gt, shifted, (2.0, 1.0, 1.0), "GLI")["ET"]
    assert iso.lesions[0].volume_mm3 == 30.0 and not iso.lesions[0].scored
    assert aniso.lesions[0].volume_mm3 == 60.0 and aniso.lesions[0].scored
    assert aniso.gt_complete_volume == 60.0
    assert (iso.num_tp, aniso.num_tp) == (0, 1)
    # HD95 in mm: the library's value with the spacing, and twice the 1 mm value when axis 0 is 2 mm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lib = surface_distance.compute_robust_hausdorff(
            surface_distance.compute_surface_distances(gt == 3, shifted == 3, (2.0, 1.0, 1.0)), 95
        )
    assert aniso.lesions[0].hd95 == lib == aniso.legacy_hd95
    assert aniso.lesions[0].hd95 == pytest.approx(2 * iso.lesions[0].hd95)
    assert aniso.lesionwise_dice == aniso.lesions[0].dice == pytest.approx(2 * 20 / 60)


def test_bad_arguments_raise_clear_errors():
    a = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate_case(a, np.zeros((8, 8, 9), np.uint8), (1, 1, 1), "GLI")
    with pytest.raises(ValueError, match="pred: labels must be 0-3.*found 4"):
        evaluate_case(a, a + 4, (1, 1, 1), "GLI")
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(a, a, (1, 0, 1), "GLI")
    with pytest.raises(ValueError, match="unknown challenge"):
        evaluate_case(a, a, (1, 1, 1), "XYZ")
    with pytest.raises(ValueError, match="give a challenge"):
        evaluate_case(a, a, (1, 1, 1))
    with pytest.raises(ValueError, match="dilation_iterations"):
        evaluate_case(a, a, (1, 1, 1), dilation_iterations=0, volume_threshold_mm3=50)
    with pytest.raises(ValueError, match="3D"):
        evaluate_case(a[0], a[0], (1, 1, 1), "GLI")
    with pytest.raises(ValueError, match="gt: labels must be 0-3"):
        evaluate_case(a.astype(float) + 0.5, a, (1, 1, 1), "GLI")


# ---------------------------------------------------------------------------------------------- primitives
def test_primitives():
    labels = box_labels((12, 12, 12), [((slice(1, 3),) * 3, 1), ((slice(5, 7),) * 3, 2), ((slice(9, 11),) * 3, 3)])
    assert lw.region_mask(labels, "WT").sum() == 24 and lw.region_mask(labels, "TC").sum() == 16
    assert lw.region_mask(labels, "ET").sum() == 8
    with pytest.raises(ValueError, match="unknown region"):
        lw.region_mask(labels, "XX")
    # numbering follows the raster order: 'F' = first axis fastest, 'C' = last axis fastest
    mask = np.zeros((6, 6, 6), bool)
    mask[0, 5, 0] = mask[5, 0, 0] = True
    f_labels, n = lw.label_components(mask, order="F")
    c_labels, _ = lw.label_components(mask, order="C")
    assert n == 2 and f_labels[5, 0, 0] == 1 and c_labels[0, 5, 0] == 1
    # merging: blobs 3 apart merge at dilation 3 (one lesion, original voxels only), not at 1
    gt = np.zeros((20, 8, 8), bool)
    gt[2:5, 2:5, 2:5] = gt[8:11, 2:5, 2:5] = True
    merged, n3 = lw.merge_gt_lesions(gt, 3)
    assert n3 == 1 and np.array_equal(merged > 0, gt)
    split, n1 = lw.merge_gt_lesions(gt, 1)
    assert n1 == 2 and split[3, 3, 3] == 1 and split[9, 3, 3] == 2
    pred = np.zeros_like(gt)
    pred[11:13, 3, 3] = True  # starts 1 voxel beyond lesion 2: in its ROI at dilation 1
    pred[18, 7, 7] = True  # far: false positive
    pred_cc, n_pred = lw.label_components(pred)
    matching = lw.match_lesions(split, pred_cc, 1)
    assert matching.matches == ((), (1,)) and matching.false_positives == (2,) and n_pred == 2
    overlap = lw.overlap_counts(split, lw.label_components(gt)[0])
    assert overlap.tolist() == [[1, 1, 27], [2, 2, 27]]
    assert lw.voxel_volume_mm3(10, (0.5, 2.0, 3.0)) == 30.0
    assert lw.lesionwise_scores([], [], [], 0) == (1.0, 0.0)
    assert lw.lesionwise_scores([0.8, 0.0, 0.3], [2.0, np.inf, 5.0], [True, True, False], 2) == pytest.approx(
        (0.2, (2.0 + 374 + 2 * 374) / 4)
    )


@pytest.mark.parametrize("small_edge", [0, 4, 12])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.2, 0.7, 3.0)])
def test_surface_distances_equal_the_library(monkeypatch, small_edge, spacing):
    """Per-component surfels + k-d tree give the library's arrays value for value, whether components are coded in
    their boxes (edge 0), together from their voxel lists (edge 12) or both (edge 4)."""
    monkeypatch.setattr(surface, "SMALL_COMPONENT_EDGE", small_edge)
    rng = np.random.default_rng(7)
    for _ in range(6):
        a = np.zeros((30, 26, 22), bool)
        b = np.zeros_like(a)
        for mask in (a, b):
            for _ in range(rng.integers(1, 5)):
                lo = rng.integers(0, (24, 20, 16))
                size = rng.integers(1, 7, 3)
                mask[lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]] = True
            mask &= rng.random(mask.shape) < 0.9  # ragged surfaces
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            expected = surface_distance.compute_surface_distances(a, b, spacing)
        got = lw.surface_distances(a, b, spacing)
        for key, value in expected.items():
            assert np.array_equal(got[key], value), key
        assert lw.hd95(a, b, spacing) == surface_distance.compute_robust_hausdorff(expected, 95)


# ------------------------------------------------------------------------------------- fast vs reference
def random_case(rng: np.random.Generator, shape=(34, 30, 22)):
    """Random GT (blobs of SNFH with NETC/ET inside) and a perturbed prediction (shift, dropped and extra blobs)."""
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    grid = np.indices(shape)
    for _ in range(rng.integers(2, 7)):
        centre = rng.uniform(2, np.array(shape) - 2)
        radius = rng.uniform(1.0, 5.0)
        shift = rng.integers(-1, 2, 3)
        for target, offset, scale in ((gt, 0, 1.0), (pred, shift, rng.uniform(0.7, 1.3))):
            if target is pred and rng.random() < 0.2:
                continue  # missed lesion
            d2 = sum((g - c - o) ** 2 for g, c, o in zip(grid, centre, np.broadcast_to(offset, 3)))
            r = radius * scale
            target[d2 <= r * r] = 2
            target[d2 <= (0.6 * r) ** 2] = rng.choice([1, 3])
            target[d2 <= (0.3 * r) ** 2] = rng.choice([1, 3])
    for _ in range(rng.integers(0, 4)):  # false-positive specks
        p = rng.integers(0, shape)
        pred[p[0], p[1], p[2]] = rng.integers(1, 4)
    return gt, pred


@pytest.mark.parametrize("seed", range(8))
def test_fast_equals_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng)
    spacing = [(1.0, 1.0, 1.0), (1.0, 1.0, 2.5), (0.8, 1.3, 1.1)][seed % 3]
    dilation = [1, 2, 3][seed % 3]
    threshold = [50.0, 20.0, 0.0, 120.0][seed % 4]
    if seed % 2:  # Fortran-ordered input, as nibabel gives it
        gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    fast = evaluate_case(gt, pred, spacing, dilation_iterations=dilation, volume_threshold_mm3=threshold)
    assert assert_same_as_reference(fast, reference_case(gt, pred, spacing, dilation, threshold)) > 0


def assert_same_as_reference(fast, ref) -> int:
    """Every metric, false-positive id and per-lesion value of ``fast`` equals the reference; returns #lesions."""
    n_lesions = 0
    for region in ("WT", "TC", "ET"):
        got, exp = fast[region], ref[region]
        assert got.metrics() == pytest.approx(exp["metrics"], rel=1e-12, abs=1e-12), region
        assert got.false_positive_components == exp["false_positives"], region
        assert len(got.lesions) == len(exp["lesions"]), region
        for les, e in zip(got.lesions, exp["lesions"]):
            assert (les.lesion_id, les.num_voxels, les.matched_components, les.scored) == (
                e["lesion_id"],
                e["num_voxels"],
                e["matched_components"],
                e["scored"],
            ), region
            assert (les.volume_mm3, les.dice, les.hd95) == pytest.approx(
                (e["volume_mm3"], e["dice"], e["hd95"]), rel=1e-12, abs=1e-12
            ), region
        n_lesions += len(got.lesions)
    return n_lesions


def many_component_case(rng: np.random.Generator, shape=(64, 56, 40), specks: int = 400):
    """A few GT tumours and an under-trained-looking prediction: the tumours fragmented (voxels dropped at random)
    plus hundreds of 1-8 voxel specks of every label, inside, around and far from the lesions."""
    gt, pred = random_case(rng, shape)
    pred = np.where(rng.random(shape) < 0.35, 0, pred).astype(np.uint8)  # fragments
    near = np.argwhere(gt > 0)
    corners = np.concatenate(
        [
            rng.integers(0, np.array(shape) - 2, size=(specks - specks // 2, 3)),
            near[rng.integers(0, len(near), specks // 2)] + rng.integers(-4, 5, (specks // 2, 3)),
        ]
    )
    corners = np.clip(corners, 0, np.array(shape) - 1)
    sizes = rng.integers(1, 3, size=(specks, 3))
    values = rng.integers(1, 4, size=specks)
    for (x, y, z), (a, b, c), v in zip(corners, sizes, values):
        pred[x : x + a, y : y + b, z : z + c] = v
    return gt, pred


@pytest.mark.parametrize(("seed", "spacing", "dilation"), [(100, (1.0, 1.0, 1.0), 3), (103, (0.9, 1.1, 1.6), 2)])
def test_many_components_equal_reference(seed, spacing, dilation):
    """Hundreds of predicted components (each region), lesions matched by dozens of them: identical to the
    reference in every number, lesion and false-positive id (the path that replaced per-box clustering)."""
    gt, pred = many_component_case(np.random.default_rng(seed))
    gt, pred = np.asfortranarray(gt), np.asfortranarray(pred)
    fast = evaluate_case(gt, pred, spacing, dilation_iterations=dilation, volume_threshold_mm3=20.0)
    for region in ("WT", "TC", "ET"):
        assert fast[region].num_fp > 50, region  # the case really has many components
    assert sum(len(les.matched_components) for r in ("WT", "TC", "ET") for les in fast[r].lesions) >= 40
    assert assert_same_as_reference(fast, reference_case(gt, pred, spacing, dilation, 20.0)) > 0


def test_component_surfels_select_unions():
    """Surfels selected for a subset of components equal the library-equivalent surfels of that subset's mask."""
    rng = np.random.default_rng(3)
    mask = rng.random((20, 18, 16)) < 0.08
    mask[3:12, 4:13, 2:9] = True  # one large component next to many small ones
    labels, n = lw.label_components(mask)
    surfels = surface.component_surfels(labels, n, (1.0, 1.0, 1.0))
    subset = [1, 2, n] if n > 2 else [1]
    points, areas = surfels.select(subset)
    expected_points, expected_areas = surface.component_surfels(
        *lw.label_components(np.isin(labels, subset)), (1.0, 1.0, 1.0)
    ).select()
    order, expected_order = np.lexsort(points.T), np.lexsort(expected_points.T)
    assert np.array_equal(points[order], expected_points[expected_order])
    assert np.array_equal(areas[order], expected_areas[expected_order])
    assert surfels.select([])[0].shape == (0, 3)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.3, 2.2)])
def test_surface_pair_reuses_nearest_surfels_exactly(spacing):
    """HD95 between unions of components from the shared nearest-surfel tables equals the library's HD95 of the
    union masks (surfels whose overall nearest surfel is not selected are queried again)."""
    rng = np.random.default_rng(11)
    gt_mask = rng.random((26, 22, 18)) < 0.05
    pred_mask = np.roll(gt_mask, 1, axis=0) | (rng.random(gt_mask.shape) < 0.03)
    gt_mask[4:10, 4:11, 3:8] = pred_mask[5:12, 4:10, 3:9] = True
    gt_labels, n_gt = lw.label_components(gt_mask)
    pred_labels, n_pred = lw.label_components(pred_mask)
    pair = surface.SurfacePair(
        surface.component_surfels(gt_labels, n_gt, spacing), surface.component_surfels(pred_labels, n_pred, spacing),
        spacing,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = surface_distance.compute_surface_distances(gt_mask, pred_mask, spacing)
        assert pair.hd95() == surface_distance.compute_robust_hausdorff(expected, 95)
        for _ in range(12):
            gt_ids = np.sort(rng.choice(np.arange(1, n_gt + 1), rng.integers(1, 4), replace=False))
            pred_ids = np.sort(rng.choice(np.arange(1, n_pred + 1), rng.integers(1, 6), replace=False))
            expected = surface_distance.compute_surface_distances(
                np.isin(gt_labels, gt_ids), np.isin(pred_labels, pred_ids), spacing
            )
            assert pair.hd95_between(gt_ids, pred_ids) == surface_distance.compute_robust_hausdorff(expected, 95)
