"""The tuning cache is exact: cached scores equal evaluate_case on filtered predictions; grid search = brute force."""

from __future__ import annotations

import numpy as np
import pytest
from postprocessing_helpers import brute_force_objective, make_case, make_model_case

from nnunet_tcup.evaluation.lesionwise import evaluate_case
from nnunet_tcup.postprocessing.cache import (
    REGION_NAMES,
    CandidateScorer,
    build_case_cache,
    keep_masks,
    score_case,
)
from nnunet_tcup.postprocessing.lesion_filter import (
    FILTER_REGIONS,
    FilterParameters,
    filter_lesions,
    label_components,
    preset_parameters,
    region_mask,
)
from nnunet_tcup.postprocessing.selection import decide, leave_one_out, select
from nnunet_tcup.postprocessing.tuning import (
    ThresholdGrid,
    candidate_matrices,
    grid_search,
    named_grid,
    pick_best,
    summarise,
    tune_caches,
)

SPACING = (1.2, 0.9, 1.0)  # (z, y, x) mm, anisotropic on purpose (lesion volumes in mm^3)


@pytest.fixture(scope="module")
def cases():
    return [make_case((36, 60, 60), seed=s) for s in range(3)]


def candidate_list(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = [FilterParameters(0, 0, 0, 1), preset_parameters("GLI"), preset_parameters("SSA")]
    while len(out) < n:
        out.append(
            FilterParameters(
                float(rng.choice([0, 3, 8, 15, 30, 60, 120])),
                float(rng.choice([0, 2.5, 5, 10, 25, 50])),
                float(rng.choice([0, 1, 5, 10, 20])),
                int(rng.integers(1, 8)),
            )
        )
    return out


def lesionwise(evaluation) -> dict:
    return {r: evaluation[r].lesionwise_dice for r in REGION_NAMES}


@pytest.mark.parametrize("challenge", ["GLI", "MEN"])
def test_cached_scores_equal_evaluate_case_after_filtering(cases, challenge):
    caches = [
        build_case_cache(gt, pred, SPACING, challenge=challenge, name=str(k)) for k, (gt, pred) in enumerate(cases)
    ]
    candidates = candidate_list(8, seed=1 if challenge == "GLI" else 2)
    scorer = CandidateScorer(caches)
    matrix = np.array([[p.wt_threshold, p.tc_threshold, p.et_threshold, p.min_slices] for p in candidates])
    vectorised = np.stack([scorer.region_case_scores(r, matrix) for r in REGION_NAMES], axis=-1)
    distinct = set()
    for i, params in enumerate(candidates):
        for k, (gt, pred) in enumerate(cases):
            reference = lesionwise(
                evaluate_case(gt, filter_lesions(pred, **params.as_kwargs()), SPACING, challenge=challenge)
            )
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


def test_grid_search_matches_brute_force(cases):
    grid = ThresholdGrid(wt=(0, 20, 60), tc=(10, 0), et=(0, 8), min_slices=(1, 4))
    caches = [build_case_cache(gt, pred, SPACING, challenge="PED", name=f"c{k}") for k, (gt, pred) in enumerate(cases)]
    result = grid_search(CandidateScorer(caches), grid)
    naive = brute_force_objective(cases, grid.candidates(), SPACING, "PED")
    np.testing.assert_allclose(result.objective.ravel(), naive, rtol=0, atol=1e-12)
    # the per-case matrices used for selection: identity row first, then the grid in its order
    candidates, scores, removed = candidate_matrices(CandidateScorer(caches), grid)
    assert np.array_equal(candidates[1:], grid.candidates()) and tuple(candidates[0]) == (0, 0, 0, 1)
    np.testing.assert_allclose(scores[1:].mean(axis=1), naive, rtol=0, atol=1e-12)
    identity = brute_force_objective(cases, candidates[:1], SPACING, "PED")
    np.testing.assert_allclose(scores[0].mean(), identity[0], rtol=0, atol=1e-12)
    assert removed[0].sum() == 0 and scores.shape == removed.shape == (grid.size + 1, len(cases))
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


# ------------------------------------------------------------------------------- selection that generalises
def test_changed_voxels_equal_the_voxels_the_filter_changes(cases):
    caches = [build_case_cache(gt, pred, SPACING, challenge="GLI", name=str(k)) for k, (gt, pred) in enumerate(cases)]
    candidates = candidate_list(10, seed=5)
    matrix = np.array([[p.wt_threshold, p.tc_threshold, p.et_threshold, p.min_slices] for p in candidates])
    changed = CandidateScorer(caches).changed_voxels(matrix, max_cells=50)  # tiny chunks: chunking must not matter
    expected = np.array(
        [[np.count_nonzero(filter_lesions(pred, **p.as_kwargs()) != pred) for _, pred in cases] for p in candidates]
    )
    assert np.array_equal(changed, expected)
    assert expected[0].sum() == 0 and (expected[1:].sum(axis=1) > 0).all()


def loo_by_definition(scores, removed):
    """select() on the matrices without case i, for each i; gains against row 0 (the identity)."""
    chosen = np.array(
        [select(np.delete(scores, i, axis=1), np.delete(removed, i, axis=1)) for i in range(scores.shape[1])]
    )
    return chosen, scores[chosen, np.arange(scores.shape[1])] - scores[0]


@pytest.mark.parametrize("seed", range(6))
def test_leave_one_out_equals_its_definition(seed):
    rng = np.random.default_rng(seed)
    c, n = int(rng.integers(2, 40)), int(rng.integers(2, 12))
    gain = rng.normal(0, 0.05, size=(c, 1)) + rng.normal(0, rng.choice([0.01, 0.1]), size=(c, n))
    scores = np.clip(0.6 + gain, 0, 1)
    scores[0] = 0.6 + rng.normal(0, 0.05, size=n)
    if seed % 2:
        scores = np.round(scores, 1)  # many exact ties
    removed = rng.integers(1, 1000, size=(c, n)).astype(float)
    removed[0] = 0
    estimate = leave_one_out(scores, removed)
    chosen, gains = loo_by_definition(scores, removed)
    assert np.array_equal(estimate.chosen, chosen)
    np.testing.assert_allclose(estimate.gains, gains, rtol=0, atol=1e-15)
    assert estimate.se == pytest.approx(gains.std(ddof=1) / np.sqrt(n))


def test_select_prefers_the_least_aggressive_within_noise_and_the_identity_on_noise():
    # row 1 best by a hair, row 2 within one paired SE but removes less: row 2 wins; identity far below
    scores = np.array([[0.5, 0.5, 0.5, 0.5], [0.80, 0.72, 0.90, 0.70], [0.79, 0.73, 0.88, 0.70]])
    removed = np.array([[0, 0, 0, 0], [50, 50, 50, 50], [10, 10, 10, 10]], dtype=float)
    assert select(scores, removed) == 2
    removed[2] = 60
    assert select(scores, removed) == 1
    # a candidate whose gain is within noise of 'no filter' is not selected: identity (row 0) changes nothing
    noisy = np.array([[0.5, 0.5, 0.5, 0.5], [0.9, 0.2, 0.9, 0.3]])
    assert select(noisy, np.array([[0, 0, 0, 0], [1, 1, 1, 1]], dtype=float)) == 0


def test_decide():
    from nnunet_tcup.postprocessing.selection import OutOfSample

    good = OutOfSample(chosen=np.array([1, 1, 1]), gains=np.array([0.10, 0.12, 0.11]))
    noisy = OutOfSample(chosen=np.array([1, 1, 1]), gains=np.array([0.30, -0.25, 0.02]))
    assert decide(1, 0.2, good, 2.0).kept
    assert not decide(1, 0.2, noisy, 2.0).kept and "not above" in decide(1, 0.2, noisy, 2.0).reason
    assert not decide(0, 0.0, good, 2.0).kept
    assert not decide(1, 0.2, None, 2.0).kept
    assert not decide(1, 0.2, OutOfSample(chosen=np.zeros(3, int), gains=np.zeros(3)), 0.0).kept  # 0 is no gain


def model_caches(seeds, fp_rate, shape=(40, 80, 80)):
    return [
        build_case_cache(*make_model_case(s, shape, fp_rate=fp_rate), (1.0, 1.0, 1.0), challenge="GLI", name=f"m{s}")
        for s in seeds
    ]


def heldout_gain(caches, kwargs) -> np.ndarray:
    """Per held-out case: objective with the filter minus without (mean over WT, TC, ET of lesion-wise Dice)."""
    _, before = summarise(caches, None)
    _, after = summarise(caches, FilterParameters.from_kwargs(kwargs))
    return np.array([np.mean([after[c.name][r] - before[c.name][r] for r in REGION_NAMES]) for c in caches])


def test_tuned_filter_helps_unseen_cases_with_false_positives():
    report = tune_caches(model_caches(range(8), fp_rate=1.0), "GLI", named_grid("paper"), "paper")
    assert report["filter_kept"] and report["kwargs"] == report["selected"]["kwargs"]
    assert report["out_of_sample"]["gain_mean"] > 2 * report["out_of_sample"]["gain_se"] > 0
    assert report["lesionwise_dice_after"]["mean"] > report["lesionwise_dice_before"]["mean"]
    assert len(report["out_of_sample"]["per_case_gain"]) == 8 and report["n_candidates"] == 392
    assert any("only 8 cases" in w for w in report["warnings"])
    gain = heldout_gain(model_caches(range(100, 108), fp_rate=1.0), report["kwargs"])
    assert gain.mean() > 2 * gain.std(ddof=1) / np.sqrt(gain.size)  # held out, same kind: clearly better


def test_no_false_positives_gives_the_identity_and_says_why():
    caches = model_caches(range(200, 208), fp_rate=0.0)
    report = tune_caches(caches, "GLI", named_grid("wide"), "wide")
    assert not report["filter_kept"] and FilterParameters.from_kwargs(report["kwargs"]).is_identity
    assert report["lesionwise_dice_after"] == report["lesionwise_dice_before"]
    assert "no candidate beats" in report["decision"] or "not above" in report["decision"]
    assert any("wide grid" in w for w in report["warnings"])


def test_named_grids():
    paper, wide = named_grid("paper"), named_grid("wide")
    assert paper.min_slices == (5,) and paper.size == 392 and wide.size == 7920
    for challenge in ("GLI", "MEN", "PED", "SSA"):  # the paper's presets are paper-grid points
        p = preset_parameters(challenge)
        assert p.wt_threshold in paper.wt and p.tc_threshold in paper.tc and p.et_threshold in paper.et
    with pytest.raises(ValueError, match="unknown grid"):
        named_grid("huge")
