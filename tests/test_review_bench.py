"""``benchmarks/bench_review.py``: the figures it reports (Spearman, share of the Dice error caught) on a hand-made
``review.csv``, and the steps of ``--fold-model nnunet-ablation`` (the learning ablation's trainer, class dataset,
patch and budget, one seed per fold)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_review  # noqa: E402
import review_nnunet_folds  # noqa: E402

REGIONS = ("WT", "TC", "ET")


def _write_review_csv(path: Path, cases: list[tuple[float, float, float]]) -> Path:
    """``cases``: (doubt score, true Dice of every region, expected Dice of every region); written in rank order."""
    columns = ["rank", "case", "score"]
    columns += [f"{r}_disputed_share" for r in REGIONS] + [f"{r}_expected_dice" for r in REGIONS]
    columns += [f"true_dice_{r}" for r in REGIONS] + ["true_dice_mean"]
    ranked = sorted(cases, key=lambda c: -c[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for rank, (score, dice, expected) in enumerate(ranked, start=1):
            row: dict[str, object] = {"rank": rank, "case": f"c{rank}", "score": score, "true_dice_mean": dice}
            for r in REGIONS:
                row |= {f"{r}_disputed_share": score, f"{r}_expected_dice": expected, f"true_dice_{r}": dice}
            writer.writerow(row)
    return path


def test_summary_of_a_perfect_doubt_score(tmp_path: Path) -> None:
    # the doubt score orders the cases exactly by their true error; the first version's score (1 - expected Dice)
    # orders them exactly the wrong way round
    cases = [(0.9, 0.1, 0.9), (0.7, 0.3, 0.7), (0.5, 0.6, 0.5), (0.3, 0.8, 0.3), (0.1, 0.9, 0.1)]
    summary = bench_review.summarise(_write_review_csv(tmp_path / "review.csv", cases), random_orders=2000)
    assert summary["cases"] == 5
    assert summary["spearman_rho"] == pytest.approx(-1.0)
    assert summary["region_rho"] == pytest.approx({r: -1.0 for r in REGIONS})
    assert summary["old_spearman_rho"] == pytest.approx(1.0)
    errors = [0.9, 0.7, 0.4, 0.2, 0.1]  # 1 - true Dice; top 20 % of 5 cases = the first case
    assert summary["review_share"] == pytest.approx(0.9 / sum(errors))
    assert summary["best_share"] == pytest.approx(0.9 / sum(errors))
    assert summary["old_review_share"] == pytest.approx(0.1 / sum(errors))
    assert summary["random_share"] == pytest.approx(0.2, abs=0.02)  # a random case holds a fifth of the error
    assert summary["mean_true_dice"] == pytest.approx(0.54)


def test_summary_needs_the_true_dice(tmp_path: Path) -> None:
    path = tmp_path / "review.csv"
    path.write_text("rank,case,score\n1,c1,0.5\n")
    with pytest.raises(ValueError, match="true_dice_mean"):
        bench_review.summarise(path)


def test_nnunet_ablation_steps_use_the_ablation_setup(tmp_path: Path) -> None:
    args = bench_review.parse_args(["--fold-model", "nnunet-ablation", "--folds", "0", "3", "--seed", "11"])
    settings = bench_review.settings_from(args)
    assert (settings.budget.epochs, settings.budget.iterations) == (6, 25)  # 150 iterations, as in the ablation
    steps = {s.name: s for s in bench_review.build_steps(tmp_path, settings, "cpu", ablation=True)}
    convert = [str(c) for c in steps["convert"].command]
    assert convert[convert.index("--mode") + 1] == "classes"
    train, predict = steps["train_fold3"], steps["predict_fold3"]
    assert str(train.command[train.command.index("-tr") + 1]) == "benchTrainer_tcup_classes_priorbias"
    assert str(predict.command[predict.command.index("-tr") + 1]) == "benchTrainer_tcup_classes_priorbias"
    assert "--save_probabilities" in predict.command
    assert train.env["TCUP_BENCH_EPOCHS"] == "6" and train.env["TCUP_BENCH_ITERATIONS"] == "25"
    assert train.env["TCUP_BENCH_SEED"] != steps["train_fold0"].env["TCUP_BENCH_SEED"]  # one seed per fold
    assert predict.env == {k: v for k, v in train.env.items() if k != "nnUNet_n_proc_DA"}
    names = list(steps)
    assert names.index("plan_and_preprocess") < names.index("ablation_plans") < names.index("train_fold0")
    env = bench_review.environment(tmp_path, settings.budget, ablation=True)
    assert str(review_nnunet_folds.trainer_folder(tmp_path)) in env["nnUNet_extTrainer"]
    # the plan step: the ablation's patch (z, y, x) and batch in the 3d_fullres configuration
    plans = tmp_path / "nnUNetPlans.json"
    plans.write_text(json.dumps({"configurations": {"3d_fullres": {"patch_size": [48, 64, 64], "batch_size": 4}}}))
    review_nnunet_folds.set_patch_and_batch(plans, tmp_path / "marker.json")
    config = json.loads(plans.read_text())["configurations"]["3d_fullres"]
    assert config == {"patch_size": [16, 48, 48], "batch_size": 2}
    review_nnunet_folds.write_trainers(tmp_path)
    source = (review_nnunet_folds.trainer_folder(tmp_path) / "tcup_bench_learning_trainers.py").read_text()
    assert "class benchTrainer_tcup_classes_priorbias(" in source


def test_default_steps_keep_the_demo_trainer_and_region_dataset(tmp_path: Path) -> None:
    settings = bench_review.settings_from(bench_review.parse_args(["--fast"]))
    steps = {s.name: s for s in bench_review.build_steps(tmp_path, settings, "cpu")}
    assert "--mode" not in [str(c) for c in steps["convert"].command] and "ablation_plans" not in steps
    train = steps["train_fold0"]
    assert str(train.command[train.command.index("-tr") + 1]) == bench_review.TRAINER
    assert "TCUP_BENCH_SEED" not in (train.env or {})
