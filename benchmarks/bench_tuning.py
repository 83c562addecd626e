"""Benchmark: lesion-filter tuning with the per-component cache vs the naive loop (filter + evaluate per candidate).

Both score the same grid on the same procedurally generated cases (full-ish BraTS size by default, with specks,
flat and thin components, nested tumours). The naive loop applies ``filter_lesions`` and runs
``evaluate_case`` for every candidate and case; the cached path builds each case's cache once and scores every
candidate with :class:`CandidateScorer`. The script checks both pick the same best thresholds with the same
objective, then prints candidates per second for each and their ratio. The cached throughput is also measured on
the default tuning grid (7920 candidates), which is what ``postprocess tune`` searches.

    python benchmarks/bench_tuning.py                      # 3 cases 155x240x240, 16-candidate shared grid
    python benchmarks/bench_tuning.py --cases 2 --shape 96 160 160

It also builds the cache of a case whose prediction has ~1,100 small ET components (an under-trained model's output)
and compares its CPU time with that of a typical case of the same size: the cost must grow with voxels plus
components (ratio near 1), not with their product.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postprocessing_helpers import brute_force_objective, make_case  # noqa: E402

from nnunet_tcup.postprocessing.cache import REGION_NAMES, CandidateScorer, build_case_cache  # noqa: E402
from nnunet_tcup.postprocessing.tuning import ThresholdGrid, grid_search, pick_best  # noqa: E402


def naive_search(cases, spacing, grid: ThresholdGrid, challenge: str):
    """Filter + evaluate_case per candidate and case (the shared brute force); returns (objective, seconds)."""
    start = time.perf_counter()
    objective = brute_force_objective(cases, grid.candidates(), spacing, challenge)
    return objective, time.perf_counter() - start


def many_component_case(shape, seed: int, n: int = 1100):
    """A typical case whose prediction also has ``n`` scattered 1x2x2-voxel ET specks (separate components)."""
    gt, pred = make_case(tuple(shape), seed=seed)
    rng = np.random.default_rng(seed)
    for z, y, x in zip(
        rng.integers(0, shape[0], n), rng.integers(0, shape[1] - 1, n), rng.integers(0, shape[2] - 1, n)
    ):
        pred[z, y : y + 2, x : x + 2] = 3
    return gt, pred


def cliff_check(shape, challenge: str, seed: int) -> None:
    """CPU time of the cache of a many-component case vs a typical case of the same size; and the full tune."""
    from nnunet_tcup.postprocessing.tuning import named_grid, tune_caches

    build_case_cache(*make_case((16, 24, 24), seed=seed), (1.0, 1.0, 1.0), challenge=challenge)  # warm-up (imports)
    timings, caches = {}, {}
    for name, (gt, pred) in (
        ("typical", make_case(tuple(shape), seed=seed)),
        ("many", many_component_case(shape, seed)),
    ):
        t = time.process_time()
        caches[name] = build_case_cache(gt, pred, (1.0, 1.0, 1.0), challenge=challenge, name=name)
        timings[name] = time.process_time() - t
    n_many = {r: caches["many"].regions[r].n_components for r in REGION_NAMES}
    n_typ = {r: caches["typical"].regions[r].n_components for r in REGION_NAMES}
    print(
        f"many-component case {tuple(shape)}: cache {timings['many']:.2f} s CPU ({n_many} components) vs typical "
        f"{timings['typical']:.2f} s CPU ({n_typ}); RATIO {timings['many'] / timings['typical']:.2f}x"
    )
    t = time.process_time()
    from nnunet_tcup.postprocessing.cache import CaseCache

    four = [CaseCache(f"{name}{k}", caches[name].regions) for k in range(2) for name in ("typical", "many")]
    tune_caches(four, challenge, named_grid("wide"), "wide")
    print(
        f"  tune (wide grid, leave-one-case-out) on 4 cases incl. 2 many-component ones: "
        f"{time.process_time() - t:.2f} s CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="number of synthetic cases (default 3)")
    parser.add_argument("--shape", type=int, nargs=3, default=(155, 240, 240), help="(z, y, x) voxels")
    parser.add_argument("--challenge", default="GLI", help="evaluation parameters (default GLI)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the cached search (best time kept)")
    args = parser.parse_args()
    cliff_check(args.shape, args.challenge, args.seed)

    spacing = (1.0, 1.0, 1.0)
    t0 = time.perf_counter()
    cases = [make_case(tuple(args.shape), seed=args.seed + k) for k in range(args.cases)]
    print(f"{args.cases} synthetic cases {tuple(args.shape)} generated in {time.perf_counter() - t0:.1f} s")

    small = ThresholdGrid(wt=(0, 125), tc=(0, 75), et=(0, 20), min_slices=(1, 5))
    t0 = time.perf_counter()
    caches = [
        build_case_cache(gt, pred, spacing, challenge=args.challenge, name=f"c{k}")
        for k, (gt, pred) in enumerate(cases)
    ]
    t_cache = time.perf_counter() - t0
    n_comp = {r: sum(c.regions[r].n_components for c in caches) for r in REGION_NAMES}
    n_les = {r: sum(c.regions[r].n_lesions for c in caches) for r in REGION_NAMES}
    print(
        f"cache built in {t_cache:.2f} s ({t_cache / args.cases:.2f} s/case); predicted components {n_comp}, "
        f"GT lesions {n_les}"
    )
    scorer = CandidateScorer(caches)

    def timed_search(grid):
        best_t, result = float("inf"), None
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = grid_search(scorer, grid)
            best_t = min(best_t, time.perf_counter() - t)
        return result, best_t

    cached_small, t_small = timed_search(small)
    naive_obj, t_naive = naive_search(cases, spacing, small, args.challenge)
    index, naive_best = pick_best(naive_obj, small.candidates())
    a, b, c, m = small.candidates()[index]
    same = (
        cached_small.best.wt_threshold,
        cached_small.best.tc_threshold,
        cached_small.best.et_threshold,
        cached_small.best.min_slices,
    ) == (a, b, c, int(m))
    max_diff = float(np.abs(cached_small.objective.ravel() - naive_obj).max())
    print(f"shared grid: {small.size} candidates")
    print(
        f"  naive  (filter + evaluate_case): {t_naive:8.2f} s  {small.size / t_naive:12.2f} candidates/s  "
        f"best {(float(a), float(b), float(c), int(m))} objective {naive_best:.6f}"
    )
    print(
        f"  cached (score from cache)      : {t_small:8.4f} s  {small.size / t_small:12.1f} candidates/s  "
        f"best {cached_small.best.as_kwargs()} objective {cached_small.best_objective:.6f}"
    )
    print(f"  same best thresholds: {same}; max |objective difference| over the grid: {max_diff:.1e}")

    full = ThresholdGrid()
    cached_full, t_full = timed_search(full)
    naive_rate = small.size / t_naive
    print(
        f"default tuning grid: {full.size} candidates scored from the cache in {t_full:.3f} s "
        f"({full.size / t_full:.0f} candidates/s); best {cached_full.best.as_kwargs()}"
    )
    print(
        f"RATIO candidates/s cached vs naive: shared grid {small.size / t_small / naive_rate:.0f}x, "
        f"default grid {full.size / t_full / naive_rate:.0f}x"
    )
    naive_full_estimate = full.size / naive_rate
    print(
        f"end to end on the default grid (cache build included): {t_cache + t_full:.1f} s vs an estimated "
        f"{naive_full_estimate:.0f} s naive ({naive_full_estimate / (t_cache + t_full):.0f}x)"
    )
    if not same:
        raise SystemExit("cached and naive searches disagree on the best thresholds")


if __name__ == "__main__":
    main()
