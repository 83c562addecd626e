"""The tuning cache is exact: cached scores equal evaluate_case on filtered predictions; grid search = brute force."""
from __future__ import annotations

import numpy as np
import pytest

from nnunet_tcup.evaluation.lesionwise import evaluate_case
from nnunet_tcup.postprocessing.cache import (
    REGION_NAMES, CandidateScorer, build_case_cache, keep_masks, score_case,
)
from nnunet_tcup.postprocessing.lesion_filter import (
    FILTER_REGIONS, FilterParameters, filter_lesions, label_components, preset_parameters, region_mask,
)
from nnunet_tcup.postprocessing.synthetic_predictions import make_case
from nnunet_tcup.postprocessing.tuning import ThresholdGrid, grid_search, pick_best, summarise

SPACING = (1.2, 0.9, 1.0)  # (z, y, x) mm, anisotropic on purpose (lesion volumes in mm^3)


@pytest.fixture(scope="module")
def cases():
    return [make_case((36, 60, 60), seed=s) for s in range(3)]


def candidate_list(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = [FilterParameters(0, 0, 0, 1), preset_parameters("GLI"), preset_parameters("SSA")]
    while len(out) < n:
        out.append(FilterParameters(float(rng.choice([0, 3, 8, 15, 30, 60, 120])),
                                    float(rng.choice([0, 2.5, 5, 10, 25, 50])),
                                    float(rng.choice([0, 1, 5, 10, 20])), int(rng.integers(1, 8))))
    return out


def lesionwise(evaluation) -> dict:
    return {r: evaluation[r].lesionwise_dice for r in REGION_NAMES}


@pytest.mark.parametrize("challenge", ["GLI", "MEN"])
def test_cached_scores_equal_evaluate_case_after_filtering(cases, challenge):
    caches = [build_case_cache(gt, pred, SPACING, challenge=challenge, name=str(k))
              for k, (gt, pred) in enumerate(cases)]
    candidates = candidate_list(8, seed=1 if challenge == "GLI" else 2)
    scorer = CandidateScorer(caches)
    matrix = np.array([[p.wt_threshold, p.tc_threshold, p.et_threshold, p.min_slices] for p in candidates])
    vectorised = np.stack([scorer.region_case_scores(r, matrix) for r in REGION_NAMES], axis=-1)
    distinct = set()
    for i, params in enumerate(candidates):
        for k, (gt, pred) in enumerate(cases):
            reference = lesionwise(evaluate_case(gt, filter_lesions(pred, **params.as_kwargs()), SPACING,
                                                 challenge=challenge))
            assert score_case(caches[k], params) == reference, (params, k)  # bit-identical
            np.testing.assert_allclose(vectorised[i, k], [reference[r] for r in REGION_NAMES], rtol=0, atol=1e-12)
            distinct.add(tuple(reference.values()))
    assert len(distinct) > 5  # the candidates really change the scores
    # unfiltered scores equal the evaluation of the raw predictions
    for k, (gt, pred) in enumerate(cases):
        assert score_case(caches[k], None) == lesionwise(evaluate_case(gt, pred, SPACING, challenge=challenge))


def test_kept_components_are_exactly_the_components_of_the_filtered_map(cases):
    """The cache's premise: after filtering, the components of each region are the unfiltered components that
    the nested rule keeps, intact (removal neither merges nor splits components)."""
    for k, (gt, pred) in enumerate(cases):
        cache = build_case_cache(gt, pred, SPACING, challenge="GLI")
        for params in candidate_list(6, seed=10 + k):
            filtered = filter_lesions(pred, **params.as_kwargs())
            keep = keep_masks(cache, params)
            for region, labels, _ in FILTER_REGIONS:
                unfiltered, n = label_components(region_mask(pred, labels))
                kept_ids = np.flatnonzero(keep[region]) + 1
                expected = np.isin(unfiltered, kept_ids)
                after, n_after = label_components(region_mask(filtered, labels))
                assert np.array_equal(after > 0, expected), (region, params)
                assert n_after == kept_ids.size, (region, params)  # same union and same count: intact components
                # every kept component maps to exactly one component of the filtered map
                pairs = np.unique(np.stack([unfiltered[expected], after[expected]]), axis=1)
                assert pairs.shape[1] == kept_ids.size


def test_nesting_parents(cases):
    gt, pred = cases[0]
    cache = build_case_cache(gt, pred, SPACING, challenge="GLI")
    wt, _ = label_components(pred > 0)
    tc, n_tc = label_components(np.isin(pred, (1, 3)))
    et, n_et = label_components(pred == 3)
    assert n_tc > 1 and n_et > 1
    for child, parent, region in ((tc, wt, "TC"), (et, tc, "ET")):
        for j, p in enumerate(cache.regions[region].parent):
            assert set(np.unique(parent[child == j + 1])) == {p + 1}
    assert (cache.regions["WT"].parent == -1).all()


def naive_objective(cases, grid: ThresholdGrid, challenge: str) -> np.ndarray:
    """Brute force: filter + evaluate_case for every grid point; objective in grid order."""
    values = []
    for a, b, c, m in grid.candidates():
        per_region = {r: [] for r in REGION_NAMES}
        for gt, pred in cases:
            ev = evaluate_case(gt, filter_lesions(pred, a, b, c, int(m)), SPACING, challenge=challenge)
            for r in REGION_NAMES:
                per_region[r].append(ev[r].lesionwise_dice)
        values.append(np.mean([np.mean(per_region[r]) for r in REGION_NAMES]))
    return np.array(values)


def test_grid_search_matches_brute_force(cases):
    grid = ThresholdGrid(wt=(0, 20, 60), tc=(10, 0), et=(0, 8), min_slices=(1, 4))
    caches = [build_case_cache(gt, pred, SPACING, challenge="PED", name=f"c{k}")
              for k, (gt, pred) in enumerate(cases)]
    result = grid_search(CandidateScorer(caches), grid)
    naive = naive_objective(cases, grid, "PED")
    np.testing.assert_allclose(result.objective.ravel(), naive, rtol=0, atol=1e-12)
    index, best = pick_best(naive, grid.candidates())
    a, b, c, m = grid.candidates()[index]
    assert result.best == FilterParameters(a, b, c, int(m))
    assert result.best_objective == pytest.approx(best, abs=1e-12)
    assert naive.max() > naive[0]  # filtering helps on these cases, so the search has something to find
    means, per_case = summarise(caches, result.best)
    assert means["mean"] == pytest.approx(best, abs=1e-12) and sorted(per_case) == ["c0", "c1", "c2"]
    with pytest.raises(ValueError, match="unique"):
        summarise([caches[0], caches[0]], result.best)


def test_grid_sorting_ties_and_validation():
    grid = ThresholdGrid(wt=(50, 0, 50), tc=(1,), et=(2,), min_slices=(3, 1))
    assert grid.wt == (0.0, 50.0) and grid.min_slices == (1, 3) and grid.size == 4
    # ties go to the first candidate in grid order (the mildest filter)
    assert pick_best(np.array([0.5, 0.7, 0.7 - 1e-15, 0.2]), grid.candidates())[0] == 1
    with pytest.raises(ValueError, match="WT threshold"):
        ThresholdGrid(wt=(-5,))
    with pytest.raises(ValueError, match="empty"):
        ThresholdGrid(tc=())
    with pytest.raises(ValueError, match="min_slices"):
        ThresholdGrid(min_slices=(0,))


def test_cache_rejects_bad_input():
    gt = np.zeros((8, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="prediction.*outside 0-3"):
        build_case_cache(gt, np.full((8, 8, 8), 5, np.uint8), (1, 1, 1), challenge="GLI")
    with pytest.raises(ValueError, match="shape"):
        build_case_cache(gt, np.zeros((8, 8, 9), np.uint8), (1, 1, 1), challenge="GLI")
    with pytest.raises(ValueError, match="unknown challenge"):
        build_case_cache(gt, gt, (1, 1, 1), challenge="XYZ")
    with pytest.raises(ValueError, match="no cases"):
        CandidateScorer([])
