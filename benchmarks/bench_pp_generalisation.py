"""Benchmark: does the tuned lesion filter help cases it was not tuned on? Old rule vs the new rule, held out.

Synthetic model predictions (``tests/postprocessing_helpers.make_model_case``: a nested tumour, true small lesions
in half the cases, false positives of realistic sizes at a given rate) form a cross-validation-like tuning set and
a held-out set of the same kind, per seed. Two tuning rules choose a filter on the tuning set:

- **old**: the best in-sample mean lesion-wise Dice over the wide grid (7,920 candidates), as ``tune`` did;
- **new**: ``tune``'s default: the paper grid (area thresholds, min_slices 5), the least aggressive candidate
  within one paired standard error of the best, kept only when its leave-one-case-out gain exceeds 2 standard
  errors (otherwise no filter).

Each chosen filter is scored on the held-out cases (mean over WT, TC, ET of the mean lesion-wise Dice, exactly as
``evaluate``), against no filter; the gain's standard error is paired over held-out cases. The baseline is no
filter, measured in the same run on the same cases.

    python benchmarks/bench_pp_generalisation.py                  # 5 seeds, tuning sets of 7 and 25 cases
    python benchmarks/bench_pp_generalisation.py --seeds 2 --heldout-cases 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postprocessing_helpers import make_model_case  # noqa: E402

from nnunet_tcup.postprocessing.cache import REGION_NAMES, CandidateScorer, build_case_cache  # noqa: E402
from nnunet_tcup.postprocessing.lesion_filter import FilterParameters  # noqa: E402
from nnunet_tcup.postprocessing.tuning import (  # noqa: E402
    DEFAULT_NOISE_FACTOR,
    grid_search,
    named_grid,
    summarise,
    tune_caches,
)

#: (name, false-positive rate, look-alike blobs per case): see make_model_case.
SCENARIOS = (("many FPs", 1.0, 0.3), ("few FPs", 0.25, 0.1), ("look-alike FPs only", 0.0, 0.5), ("no FPs", 0.0, 0.0))


def case_scores(caches, params: FilterParameters | None) -> np.ndarray:
    """(n,) per-case objective: mean over WT, TC, ET of the case's lesion-wise Dice under ``params``."""
    _, per_case = summarise(caches, params)
    return np.array([np.mean([per_case[c.name][r] for r in REGION_NAMES]) for c in caches])


def make_caches(seed0: int, n: int, shape, fp_rate: float, lookalike: float, prefix: str) -> list:
    out = []
    for k in range(n):
        gt, pred = make_model_case(seed0 + k, shape, fp_rate=fp_rate, lookalike_rate=lookalike)
        out.append(build_case_cache(gt, pred, (1.0, 1.0, 1.0), challenge="GLI", name=f"{prefix}{k}"))
    return out


def run(args) -> bool:
    paper, wide = named_grid("paper"), named_grid("wide")
    rows, ok = [], True
    for scenario, fp_rate, lookalike in SCENARIOS:
        results = {
            n: {"none": [], "old": [], "new": [], "old_se": [], "new_se": [], "kept": 0, "oos": []}
            for n in args.cv_cases
        }
        for seed in range(args.seeds):
            base = 100_000 * (seed + 1) + int(fp_rate * 1000) + int(lookalike * 100)
            tuning = make_caches(base, max(args.cv_cases), args.shape, fp_rate, lookalike, "cv")
            heldout = make_caches(base + 50_000, args.heldout_cases, args.shape, fp_rate, lookalike, "ho")
            none = case_scores(heldout, None)
            for n in args.cv_cases:
                cv = tuning[:n]
                old = grid_search(CandidateScorer(cv), wide).best
                report = tune_caches(cv, "GLI", paper, "paper", noise_factor=args.min_gain_se)
                new = FilterParameters.from_kwargs(report["kwargs"])
                r = results[n]
                r["none"].append(none.mean())
                for key, params in (("old", old), ("new", new)):
                    gain = case_scores(heldout, params) - none
                    r[key].append(gain.mean())
                    r[f"{key}_se"].append(gain.std(ddof=1) / np.sqrt(gain.size))
                r["kept"] += int(report["filter_kept"])
                r["oos"].append(report["out_of_sample"]["gain_mean"])
        for n in args.cv_cases:
            r = results[n]
            old, new = np.array(r["old"]), np.array(r["new"])
            old_z = old / np.maximum(r["old_se"], 1e-12)
            new_z = new / np.maximum(r["new_se"], 1e-12)
            worse_new = int(np.sum(new_z < -2))
            worse_old = int(np.sum(old_z < -2))
            if worse_new:
                ok = False
            rows.append(
                (
                    scenario,
                    n,
                    float(np.mean(r["none"])),
                    old.mean(),
                    old.min(),
                    worse_old,
                    new.mean(),
                    new.min(),
                    worse_new,
                    r["kept"],
                    float(np.mean(r["oos"])),
                )
            )
    print(
        f"\nheld-out mean lesion-wise Dice (mean of WT, TC, ET), {args.seeds} seeds, {args.heldout_cases} held-out "
        f"cases per seed; gains vs no filter on the same cases; 'worse' = seeds where the gain is below -2 SE"
    )
    print(
        "| predictions | tuning cases | no filter | old rule: mean gain (worst seed) | old: seeds worse | "
        "new rule: mean gain (worst seed) | new: seeds worse | new: filter kept | new: LOO estimate |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for sc, n, none, om, omin, ow, nm, nmin, nw, kept, oos in rows:
        print(
            f"| {sc} | {n} | {none:.3f} | {om:+.3f} ({omin:+.3f}) | {ow}/{args.seeds} | {nm:+.3f} ({nmin:+.3f}) | "
            f"{nw}/{args.seeds} | {kept}/{args.seeds} | {oos:+.3f} |"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cv-cases", type=int, nargs="+", default=[7, 25], help="tuning-set sizes (default 7 25)")
    parser.add_argument("--heldout-cases", type=int, default=40)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 96, 96), help="(z, y, x) voxels at 1 mm")
    parser.add_argument(
        "--min-gain-se",
        type=float,
        default=DEFAULT_NOISE_FACTOR,
        help="the new rule's keep threshold in standard errors (tune's --min-gain-se, default 2)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    ok = run(args)
    print(f"\n{time.perf_counter() - start:.0f} s; new rule never worse beyond noise on held-out cases: {ok}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
