"""Statistics and tables of ``bench_learning.py`` (v2): per-arm summaries over seeds and paired bootstrap intervals.

A run's result (``result.json``) holds, per held-out case and region, the lesion-wise Dice and HD95, ``Num_FP`` and
the legacy (voxel) Dice, raw and after the arm's own post-processing (``raw`` / ``pp``). Differences to the
baseline arm are bootstrapped over cases and seeds: in every draw the held-out cases of each data seed are
resampled with replacement (the same cases for both arms: the comparison is paired over cases), and each arm's
seeds are resampled independently (seeds are not paired between arms). The interval is the 2.5 / 97.5 percentile.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

REGIONS = ("WT", "TC", "ET")
METRICS = ("dice", "hd95", "num_fp", "legacy_dice")


def case_matrix(runs: Sequence[dict], stage: str, metric: str, region: str | None) -> dict[int, np.ndarray]:
    """Per data seed: an array (seeds, cases) of ``metric`` for ``region`` (None: mean over WT, TC, ET).

    Cases are in the order of each run's ``cases`` list, which must be the same for every run of a data seed.
    """
    by_data: dict[int, list[dict]] = {}
    for run in runs:
        by_data.setdefault(int(run["data_seed"]), []).append(run)
    out: dict[int, np.ndarray] = {}
    for data_seed, group in sorted(by_data.items()):
        cases = group[0]["cases"]
        rows = []
        for run in sorted(group, key=lambda r: r["seed"]):
            if run["cases"] != cases:
                raise ValueError(f"data seed {data_seed}: runs scored different held-out cases")
            values = run[stage]
            regions = REGIONS if region is None else (region,)
            rows.append(np.mean([values[r][metric] for r in regions], axis=0))
        out[data_seed] = np.asarray(rows, dtype=float)
    return out


def pooled_mean(matrix: dict[int, np.ndarray]) -> float:
    """Mean over data seeds of the mean over seeds and cases."""
    return float(np.mean([m.mean() for m in matrix.values()]))


def seed_spread(matrix: dict[int, np.ndarray]) -> float:
    """Sample standard deviation across runs (seed x data seed) of each run's case mean; nan for one run."""
    means = np.concatenate([m.mean(axis=1) for m in matrix.values()])
    return float(means.std(ddof=1)) if means.size > 1 else float("nan")


def paired_bootstrap(
    arm: dict[int, np.ndarray], baseline: dict[int, np.ndarray], draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Difference ``arm - baseline`` of :func:`pooled_mean`, with a 95 % bootstrap interval over cases and seeds.

    Only data seeds present in both are used. Returns (difference, low, high).
    """
    shared = sorted(set(arm) & set(baseline))
    if not shared:
        raise ValueError("no data seed in common")
    for d in shared:
        if arm[d].shape[1] != baseline[d].shape[1]:
            raise ValueError(f"data seed {d}: different numbers of cases")
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([arm[d].mean() - baseline[d].mean() for d in shared]))
    samples = np.empty(draws)
    for i in range(draws):
        diffs = []
        for d in shared:
            n_cases = arm[d].shape[1]
            cases = rng.integers(0, n_cases, n_cases)
            seeds_a = rng.integers(0, arm[d].shape[0], arm[d].shape[0])
            seeds_b = rng.integers(0, baseline[d].shape[0], baseline[d].shape[0])
            diffs.append(arm[d][np.ix_(seeds_a, cases)].mean() - baseline[d][np.ix_(seeds_b, cases)].mean())
        samples[i] = np.mean(diffs)
    low, high = np.percentile(samples, [2.5, 97.5])
    return estimate, float(low), float(high)


def summary_rows(results: Iterable[dict], baseline_arm: str, order: Sequence[str], draws: int = 2000) -> list[dict]:
    """One row per (budget, arm, stage): means per region, spread, difference to the baseline with its interval."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["budget"], r["arm"]), []).append(r)
    rows = []
    rank = {name: i for i, name in enumerate(order)}
    for (budget, arm), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], rank.get(kv[0][1], 99))):
        base_runs = groups.get((budget, baseline_arm), [])
        for stage in ("raw", "pp"):
            row: dict = {
                "budget": budget,
                "arm": arm,
                "stage": stage,
                "runs": len(runs),
                "data_seeds": sorted({int(r["data_seed"]) for r in runs}),
                "train_cpu_s": float(np.mean([r.get("train_cpu_seconds", np.nan) for r in runs])),
            }
            for metric in METRICS:
                for region in REGIONS:
                    row[f"{metric}_{region}"] = pooled_mean(case_matrix(runs, stage, metric, region))
            mean_dice = case_matrix(runs, stage, "dice", None)
            row["dice_mean"] = pooled_mean(mean_dice)
            row["dice_mean_sd"] = seed_spread(mean_dice)
            row["delta"] = None
            if base_runs and arm != baseline_arm:
                row["delta"] = paired_bootstrap(mean_dice, case_matrix(base_runs, stage, "dice", None), draws)
            rows.append(row)
    return rows


def format_markdown(rows: Sequence[dict], labels: dict[str, str], baseline_label: str) -> str:
    """The v2 table: lesion-wise Dice per region and mean (± sd over runs), the difference to the baseline with its
    95 % interval, lesion-wise HD95, false positives per case, legacy Dice, training CPU time."""
    head = (
        "| budget | arm | stage | runs | LW Dice WT | TC | ET | mean ± sd | Δ mean vs "
        f"{baseline_label} [95 % CI] | LW HD95 WT / TC / ET | Num_FP WT / TC / ET | legacy Dice WT / TC / ET "
        "| train CPU s |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        delta = "—"
        if r["delta"] is not None:
            est, low, high = r["delta"]
            delta = f"{est:+.3f} [{low:+.3f}, {high:+.3f}]"
        sd = "" if r["dice_mean_sd"] != r["dice_mean_sd"] else f" ± {r['dice_mean_sd']:.3f}"
        lines.append(
            f"| {r['budget']} | {labels.get(r['arm'], r['arm'])} | {r['stage']} | {r['runs']} | "
            + " | ".join(f"{r[f'dice_{g}']:.3f}" for g in REGIONS)
            + f" | {r['dice_mean']:.3f}{sd} | {delta} | "
            + " / ".join(f"{r[f'hd95_{g}']:.1f}" for g in REGIONS)
            + " | "
            + " / ".join(f"{r[f'num_fp_{g}']:.2f}" for g in REGIONS)
            + " | "
            + " / ".join(f"{r[f'legacy_dice_{g}']:.3f}" for g in REGIONS)
            + f" | {r['train_cpu_s']:.0f} |"
        )
    return "\n".join(lines)
