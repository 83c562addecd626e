"""Does ``nnunet_tcup review`` point a reviewer at the worst cases first? Measured on held-out synthetic cases.

The benchmark runs the real user path with the stock nnU-Net commands (resumable: a re-run skips finished steps):
synth (training + held-out cases) -> convert -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train, one short
TCuP-GAN training per fold -> ``nnUNetv2_predict -f K --save_probabilities``, one output folder per fold ->
``nnunet_tcup.review.run_review`` with the held-out ground truth. Then, from ``review.csv``:

- Spearman correlation between the case doubt score (mean over WT, TC, ET of the disputed share of the volume the
  folds label; higher = more doubtful) and the true lesion-wise Dice of the consensus segmentation (mean over WT,
  TC, ET; goal: -0.5 or stronger), and the same for the first version's score (1 - mean expected lesion-wise Dice
  between folds);
- the share of the total Dice error (sum over cases of 1 - true Dice) found by checking the top 20 % of cases in
  review order, against the same share for random order (the baseline, averaged over 10,000 random orders in the
  same run: its expectation is 20 %), and against the best possible order (ranking by the true error).

Modes: the default trains 5 folds (4 epochs x 12 iterations each) on 20 cases of 64x64x48 and reviews 12 held-out
cases (measured: 12-16 minutes per fold on a busy 2-core CPU; predictions without test-time mirroring unless
``--tta``); ``--fast`` trains 3 folds (2 epochs x 8 iterations) on 12 cases and reviews 8;
``--fold-model nnunet-ablation`` trains the folds with the learning ablation's setup that learns on a CPU
(review_nnunet_folds.py: TCuP-GAN priorBias on the class dataset, patch 16x48x48, 6 x 25 iterations; measured 3-6
minutes of training and 1-1.5 minutes of predicting 40 cases per fold, 37 minutes in all, on a busy 2-core CPU);
``--fold-model voxel``
replaces the TCuP-GAN folds by scikit-learn voxel classifiers (about a minute per fold, see review_voxel_folds.py);
``--fold-dirs`` skips training and measures existing per-fold predictions (``--images`` and ``--gt`` then name
the images and labels).
Such short TCuP-GAN trainings give weak models (held-out Dice 0.04 after 48 iterations here), too weak to rank
anything; the voxel folds are the quick informative run on a CPU.

    python benchmarks/bench_review.py --work-dir review_work
    python benchmarks/bench_review.py --work-dir review_work_fast --fast
    python benchmarks/bench_review.py --work-dir review_work_nn --seed 11 --test-cases 40 \
        --fold-model nnunet-ablation
    python benchmarks/bench_review.py --fold-dirs pred/fold_0 pred/fold_1 pred/fold_2 --images imagesTs --gt labelsTs
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_tcup.demo.config import TrainingBudget
from nnunet_tcup.demo.pipeline import PipelineRunner, ProgressSpec, Step, StepFailed
from nnunet_tcup.demo.steps import DEMO_SHIM_DIR, collect_heldout_labels, command_path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules
import review_nnunet_folds as rnf  # noqa: E402

TRAINER = "nnUNetTrainerTCuPGAN_demo"  # TCuP-GAN with the budget from NNUNET_TCUP_DEMO_* (see demo/trainers.py)
PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"


@dataclass(frozen=True)
class BenchSettings:
    """What the benchmark trains and predicts (``shape`` is x, y, z in voxels of 1 mm)."""

    challenge: str
    dataset_id: int
    train_cases: int
    test_cases: int
    folds: tuple[int, ...]
    budget: TrainingBudget
    shape: tuple[int, int, int]
    seed: int

    @property
    def dataset_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_BraTS2023_{self.challenge}"


def environment(work: Path, budget: TrainingBudget, ablation: bool = False) -> dict[str, str]:
    """Subprocess environment: nnU-Net folders inside ``work``, the demo trainers' shim, the budget, CPU settings."""
    env = dict(os.environ)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[variable] = str(work / variable)
    entries = [e for e in env.get("nnUNet_extTrainer", "").split(os.pathsep) if e]
    extra = [str(rnf.trainer_folder(work))] if ablation else []
    env["nnUNet_extTrainer"] = os.pathsep.join([*entries, str(DEMO_SHIM_DIR), *extra])
    env.update(budget.as_environment())
    env.update(PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    env.setdefault("nnUNet_def_n_proc", "1")
    env.setdefault("nnUNet_compile", "f")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def build_steps(
    work: Path,
    s: BenchSettings,
    device: str,
    tta: bool = False,
    ablation: bool = False,
) -> list[Step]:
    """Steps from synthetic data to one prediction folder per fold (``work/predictions/fold_K``); ``ablation``: the
    learning ablation's trainer, class dataset, patch and budget (review_nnunet_folds.py) instead of the demo's."""
    tcup = command_path("nnunet_tcup")
    trainer = rnf.TRAINER if ablation else TRAINER
    shape = ["--shape", *map(str, s.shape)]
    brats_train, brats_test = work / "brats" / "train", work / "brats" / "heldout"
    raw = work / "nnUNet_raw" / s.dataset_name
    plans = work / "nnUNet_preprocessed" / s.dataset_name / f"{PLANS}.json"
    results = work / "nnUNet_results" / s.dataset_name / f"{trainer}__{PLANS}__{CONFIGURATION}"
    steps = [
        Step(
            "synth_train",
            "synthesise training cases",
            command=[
                tcup,
                "synth",
                brats_train,
                "--challenge",
                s.challenge,
                "--cases",
                s.train_cases,
                "--seed",
                s.seed,
                *shape,
            ],
            outputs=[brats_train],
        ),
        Step(
            "synth_heldout",
            "synthesise held-out cases",
            command=[
                tcup,
                "synth",
                brats_test,
                "--challenge",
                s.challenge,
                "--cases",
                s.test_cases,
                "--seed",
                s.seed + 1,
                "--start-index",
                s.train_cases + 1,
                *shape,
            ],
            outputs=[brats_test],
        ),
        Step(
            "convert",
            "convert to nnU-Net raw",
            command=[
                tcup,
                "convert",
                "--challenge",
                s.challenge,
                "--dataset-id",
                s.dataset_id,
                "--train",
                brats_train,
                "--test",
                brats_test,
                *(["--mode", rnf.CONVERT_MODE] if ablation else []),
                "--num-workers",
                1,
                "--no-progress",
            ],
            outputs=[raw / "dataset.json", raw / "imagesTs"],
        ),
        Step(
            "heldout_labels",
            "collect the held-out ground truth",
            action=lambda: collect_heldout_labels(raw / "imagesTs", brats_test, work / "heldout_labels"),
            outputs=[work / "heldout_labels"],
        ),
        Step(
            "plan_and_preprocess",
            "nnU-Net plans and preprocessing",
            command=[
                command_path("nnUNetv2_plan_and_preprocess"),
                "-d",
                s.dataset_id,
                "-c",
                CONFIGURATION,
                "-np",
                1,
                "-npfp",
                1,
            ],
            outputs=[plans],
        ),
    ]
    if ablation:
        steps += rnf.setup_steps(work, plans)
    for fold in s.folds:  # train and predict fold by fold: an interrupted run still has whole folds to review
        out = work / "predictions" / f"fold_{fold}"
        fold_env = rnf.fold_environment(s.seed, fold, s.budget.epochs, s.budget.iterations) if ablation else {}
        steps.append(
            Step(
                f"train_fold{fold}",
                f"train {trainer} fold {fold} ({s.budget.describe()})",
                command=[
                    command_path("nnUNetv2_train"),
                    s.dataset_id,
                    CONFIGURATION,
                    fold,
                    "-tr",
                    trainer,
                    "-p",
                    PLANS,
                    "-device",
                    device,
                    "--c",
                ],
                outputs=[results / f"fold_{fold}" / "checkpoint_final.pth"],
                progress=ProgressSpec(pattern=r": Epoch \d+\s*$", total=s.budget.epochs, unit="epoch"),
                env={"nnUNet_n_proc_DA": os.environ.get("nnUNet_n_proc_DA", "0"), **fold_env},
            )
        )
        steps.append(
            Step(
                f"predict_fold{fold}",
                f"predict the held-out cases with fold {fold} (--save_probabilities)",
                command=[
                    command_path("nnUNetv2_predict"),
                    "-i",
                    raw / "imagesTs",
                    "-o",
                    out,
                    "-d",
                    s.dataset_id,
                    "-c",
                    CONFIGURATION,
                    "-tr",
                    trainer,
                    "-p",
                    PLANS,
                    "-f",
                    fold,
                    "-device",
                    device,
                    "--save_probabilities",
                    *([] if tta else ["--disable_tta"]),
                    "-npp",
                    1,
                    "-nps",
                    1,
                    "--disable_progress_bar",
                ],
                outputs=[out / "plans.json"],
                env=fold_env or None,
            )
        )
    return steps


def read_rows(review_csv: Path) -> list[dict[str, str]]:
    """``review.csv`` rows in review order (rank 1 first); ValueError unless it has the true Dice columns."""
    with open(review_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "true_dice_mean" not in rows[0]:
        raise ValueError(f"{review_csv}: no rows with true_dice_mean (was the review run with ground truth?)")
    return sorted(rows, key=lambda r: int(r["rank"]))


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import spearmanr

    result = spearmanr(a, b)
    return float(result[0]), float(result[1])


def share_caught(errors_in_order: np.ndarray, fraction: float) -> float:
    """Share of the total error found by checking the first ``ceil(fraction * n)`` cases of an order."""
    k = max(1, math.ceil(fraction * len(errors_in_order)))
    total = float(errors_in_order.sum())
    return float(errors_in_order[:k].sum()) / total if total > 0 else float("nan")


def summarise(review_csv: Path, fraction: float = 0.2, random_orders: int = 10_000, seed: int = 0) -> dict:
    """Spearman correlation and the error share caught by the review order vs random and best orders."""
    rows = read_rows(review_csv)
    score = np.array([float(r["score"]) for r in rows])
    dice = np.array([float(r["true_dice_mean"]) for r in rows])
    errors = 1.0 - dice  # in review order (rank 1 first)
    rng = np.random.default_rng(seed)
    random_shares = [share_caught(errors[rng.permutation(len(errors))], fraction) for _ in range(random_orders)]
    rho, p = _spearman(score, dice)
    column = lambda name: np.array([float(r[name]) for r in rows])  # noqa: E731
    regions = ("WT", "TC", "ET")
    per_region = {r: _spearman(column(f"{r}_disputed_share"), column(f"true_dice_{r}"))[0] for r in regions}
    # the first version's doubt score, 1 - mean expected lesion-wise Dice between folds, for comparison
    old_score = 1.0 - np.mean([column(f"{r}_expected_dice") for r in regions], axis=0)
    old_order = np.argsort(-old_score, kind="stable")
    return {
        "cases": len(rows),
        "spearman_rho": rho,
        "spearman_p": p,
        "region_rho": per_region,
        "review_share": share_caught(errors, fraction),
        "old_spearman_rho": _spearman(old_score, dice)[0],
        "old_review_share": share_caught(errors[old_order], fraction),
        "random_share": float(np.mean(random_shares)),
        "random_share_p95": float(np.percentile(random_shares, 95)),
        "best_share": share_caught(np.sort(errors)[::-1], fraction),
        "mean_true_dice": float(dice.mean()),
    }


def print_summary(summary: dict, fraction: float) -> None:
    pct = f"{fraction:.0%}"
    print(f"cases: {summary['cases']}   mean true lesion-wise Dice (WT/TC/ET mean): {summary['mean_true_dice']:.3f}")
    print(
        f"Spearman(case score, true lesion-wise Dice) = {summary['spearman_rho']:+.3f} "
        f"(p = {summary['spearman_p']:.3g}; goal <= -0.5)"
    )
    regions = ", ".join(f"{r} {v:+.3f}" for r, v in summary["region_rho"].items())
    print(f"per region, Spearman(disputed share, true lesion-wise Dice): {regions}")
    ratio = summary["review_share"] / summary["random_share"] if summary["random_share"] > 0 else float("nan")
    print(
        f"Dice error caught in the top {pct}: review order {summary['review_share']:.1%}, random order "
        f"{summary['random_share']:.1%} (95th percentile {summary['random_share_p95']:.1%}), best possible "
        f"{summary['best_share']:.1%}  -> {ratio:.2f}x random"
    )
    print(
        f"first version's score (1 - mean expected lesion-wise Dice between folds): Spearman "
        f"{summary['old_spearman_rho']:+.3f}, Dice error in the top {pct}: {summary['old_review_share']:.1%}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=Path("review_bench"), help="everything goes here (resumable)")
    p.add_argument("--fast", action="store_true", help="3 folds, 12 training + 8 held-out cases, 2 epochs x 8 it.")
    p.add_argument("--challenge", default="GLI")
    p.add_argument("--dataset-id", type=int, default=913)
    p.add_argument("--train-cases", type=int, default=None, help="default 20 (fast: 12)")
    p.add_argument("--test-cases", type=int, default=None, help="default 12 (fast: 8)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="default 0 1 2 3 4 (fast: 0 1 2)")
    p.add_argument("--epochs", type=int, default=None, help="per fold; default 4 (fast: 2)")
    p.add_argument("--iterations", type=int, default=None, help="per epoch; default 12 (fast: 8)")
    p.add_argument("--shape", type=int, nargs=3, default=(64, 64, 48), metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fold-model",
        choices=("nnunet", "nnunet-ablation", "voxel"),
        default="nnunet",
        help="nnunet: TCuP-GAN folds trained and predicted with the stock commands; nnunet-ablation: the same with "
        "the learning ablation's trainer, class dataset, patch and budget (review_nnunet_folds.py: folds that "
        "learn on a CPU); voxel: fast cross-validated voxel classifiers (review_voxel_folds.py) on the same data",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--tta", action="store_true", help="predict with mirroring (nnU-Net's default; off here: 8x CPU time)"
    )
    p.add_argument(
        "--until",
        choices=("predict", "all"),
        default="all",
        help="'predict': stop after the per-fold predictions (review later with a second run)",
    )
    p.add_argument(
        "--fold-dirs",
        type=Path,
        nargs="+",
        default=None,
        help="existing per-fold prediction folders (skip training; needs --images and --gt)",
    )
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--gt", type=Path, default=None)
    p.add_argument("--fraction", type=float, default=0.2, help="share of cases checked first (default 0.2)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> BenchSettings:
    fast = args.fast
    pick = lambda value, default, quick: value if value is not None else (quick if fast else default)  # noqa: E731
    if args.fold_model == "nnunet-ablation":  # the learning ablation's budget unless given
        budget = TrainingBudget(
            epochs=pick(args.epochs, rnf.EPOCHS, rnf.EPOCHS),
            iterations=pick(args.iterations, rnf.ITERATIONS, rnf.ITERATIONS),
            val_iterations=1,
        )
    else:
        budget = TrainingBudget(
            epochs=pick(args.epochs, 4, 2), iterations=pick(args.iterations, 12, 8), val_iterations=2
        )
    return BenchSettings(
        challenge=args.challenge,
        dataset_id=args.dataset_id,
        train_cases=pick(args.train_cases, 20, 12),
        test_cases=pick(args.test_cases, 12, 8),
        folds=tuple(pick(args.folds, [0, 1, 2, 3, 4], [0, 1, 2])),
        budget=budget,
        shape=tuple(args.shape),
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir.resolve()
    if args.fold_dirs is not None:
        if args.images is None or args.gt is None:
            print("bench_review: --fold-dirs needs --images and --gt", file=sys.stderr)
            return 2
        fold_dirs, images, gt = list(args.fold_dirs), args.images, args.gt
    else:
        s = settings_from(args)
        work.mkdir(parents=True, exist_ok=True)
        ablation = args.fold_model == "nnunet-ablation"
        runner = PipelineRunner(work, env=environment(work, s.budget, ablation))
        steps = build_steps(work, s, args.device, args.tta, ablation)
        if args.fold_model == "voxel":  # data only: the folds are voxel classifiers, trained below
            steps = [step for step in steps if not step.name.startswith(("plan_", "train_", "predict_"))]
        try:
            runner.run(steps)
        except StepFailed as e:
            print(e.message(), file=sys.stderr)
            return 1
        images, gt = work / "nnUNet_raw" / s.dataset_name / "imagesTs", work / "heldout_labels"
        if args.fold_model == "voxel":
            from review_voxel_folds import write_voxel_folds

            fold_dirs = write_voxel_folds(
                work / "brats" / "train", images, work / "predictions_voxel", folds=len(s.folds), seed=args.seed
            )
        else:
            fold_dirs = [work / "predictions" / f"fold_{f}" for f in s.folds]
        if args.until == "predict":
            return 0
    from nnunet_tcup.review import run_review

    out = work / ("review_voxel" if args.fold_model == "voxel" and args.fold_dirs is None else "review")
    run_review(fold_dirs, images, out, gt_dir=gt, challenge=args.challenge, overwrite=True)
    summary = summarise(out / "review.csv", args.fraction)
    print_summary(summary, args.fraction)
    return 0


if __name__ == "__main__":
    sys.exit(main())
