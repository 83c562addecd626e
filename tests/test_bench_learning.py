"""``benchmarks/bench_learning.py`` (v2) and its statistics (``benchmarks/learning_stats.py``): the protocol's runs,
the paired bootstrap and the table, on hand-made results (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_learning  # noqa: E402
import learning_stats  # noqa: E402


def test_protocol_has_the_issues_seeds_and_budgets() -> None:
    runs = bench_learning.protocol_runs([250, 1000], [0, 1])
    count: dict[tuple[int, str], int] = {}
    for budget, data_seed, arm, _ in runs:
        count[(budget, arm)] = count.get((budget, arm), 0) + 1
        if budget == 1000:
            assert data_seed == 0  # one data seed at 1,000 iterations
    # 2 data seeds x 5 seeds for stock nnU-Net (both formulations) and the default, 3 for the paper's classes
    assert count[(250, "nnunet_regions")] == count[(250, "nnunet_classes")] == count[(250, "tcup_regions")] == 10
    assert count[(250, "tcup_classes")] == 6
    assert count[(250, "ensemble_regions")] == 10 and count[(250, "ensemble_classes")] == 6
    assert count[(1000, "nnunet_regions")] == count[(1000, "tcup_regions")] == count[(1000, "tcup_classes")] == 3
    assert (1000, "nnunet_classes") not in count
    assert len(set(runs)) == len(runs)
    # an ensemble comes after both of its members in the run order
    for i, (budget, data_seed, arm, seed) in enumerate(runs):
        if arm in bench_learning.ENSEMBLES:
            for member in bench_learning.ENSEMBLES[arm]:
                assert runs.index((budget, data_seed, member, seed)) < i


def test_no_arm_gets_a_prior_and_plans_are_not_edited() -> None:
    source = bench_learning.bench_trainer_source()
    for key, arm in bench_learning.ARMS.items():
        assert "priorBias" not in arm.trainer
        assert f"class {bench_learning.bench_trainer_name(key)}(" in source
    assert "patch_size" not in Path(bench_learning.__file__).read_text()  # nnU-Net's own plans for every arm


def _result(arm: str, seed: int, data_seed: int, dice: list[float]) -> dict:
    per_region = {"dice": dice, "hd95": [1.0] * len(dice), "num_fp": [0.0] * len(dice), "legacy_dice": dice}
    stage = {r: per_region for r in learning_stats.REGIONS}
    cases = [f"c{i}" for i in range(len(dice))]
    return {"budget": "250it", "arm": arm, "seed": seed, "data_seed": data_seed, "cases": cases, "raw": stage}


def test_paired_bootstrap_is_paired_over_cases() -> None:
    rng = np.random.default_rng(1)
    hard = rng.uniform(0.0, 1.0, 40)  # cases differ a lot from each other
    base = {0: np.stack([hard, hard])}
    arm = {0: np.stack([hard + 0.05, hard + 0.05])}  # the same cases, each 0.05 better
    estimate, low, high = learning_stats.paired_bootstrap(arm, base, draws=500)
    assert estimate == pytest.approx(0.05)
    # paired: the case-to-case spread cancels, the interval is the constant difference itself
    assert low == pytest.approx(0.05) and high == pytest.approx(0.05)


def test_paired_bootstrap_interval_covers_zero_for_seed_noise() -> None:
    rng = np.random.default_rng(2)
    base = {0: rng.uniform(0.4, 0.6, (5, 40)), 1: rng.uniform(0.4, 0.6, (5, 40))}
    arm = {d: m[::-1] + rng.normal(0, 0.01, m.shape) for d, m in base.items()}
    _, low, high = learning_stats.paired_bootstrap(arm, base, draws=500)
    assert low < 0 < high
    shifted = {d: m + 0.2 for d, m in base.items()}
    estimate, low, high = learning_stats.paired_bootstrap(shifted, base, draws=500)
    assert estimate == pytest.approx(0.2) and low > 0.1


def test_summary_and_table() -> None:
    results = [_result("nnunet_regions", s, 0, [0.5, 0.7]) for s in range(3)]
    results += [_result("tcup_regions", s, 0, [0.6, 0.8]) for s in range(2)]
    for r in results:
        r["pp"] = r["raw"]
        r["train_cpu_seconds"] = 10.0
    rows = learning_stats.summary_rows(results, "nnunet_regions", list(bench_learning.ARMS), draws=100)
    by = {(r["arm"], r["stage"]): r for r in rows}
    assert by[("nnunet_regions", "raw")]["dice_mean"] == pytest.approx(0.6)
    assert by[("nnunet_regions", "raw")]["delta"] is None
    estimate, low, high = by[("tcup_regions", "pp")]["delta"]
    assert estimate == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    table = learning_stats.format_markdown(rows, bench_learning.LABELS, "stock nnU-Net, regions")
    assert "+0.100 [+0.100, +0.100]" in table and table.count("\n") == 1 + len(rows)


def test_runs_on_different_cases_are_refused() -> None:
    a, b = _result("x", 0, 0, [0.5, 0.6]), _result("x", 1, 0, [0.5, 0.6])
    b["cases"] = ["c0", "other"]
    with pytest.raises(ValueError, match="different held-out cases"):
        learning_stats.case_matrix([a, b], "raw", "dice", None)
