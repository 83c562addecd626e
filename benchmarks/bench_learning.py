"""Learning benchmark: TCuP-GAN vs stock nnU-Net for the same CPU wall time on the same synthetic data.

Both are trained by the stock ``nnUNetv2_train`` (fold ``all``, same plans, patch and batch size) through thin
time-budget subclasses written into a benchmark-only ``nnUNet_extTrainer`` folder: each trains for ``--minutes`` of
wall time counted from its first epoch, an epoch being one pass over the training cases (``ceil(n / batch)``
iterations) plus one validation iteration. TCuP-GAN keeps its paper schedule (Adam, x0.95 every 5 epochs); the
stock trainer keeps SGD + poly decay, with the poly horizon re-estimated after every epoch so that the rate reaches
0 when the budget runs out. Both then predict held-out synthetic cases with ``nnUNetv2_predict`` (TTA on) and are
scored with the BraTS 2023 lesion-wise evaluation (``nnunet_tcup.evaluation.evaluate_folders``).

Printed: seconds per training iteration of each trainer (data loading excluded), iterations done, lesion-wise Dice
per region (WT, TC, ET) and the TCuP-GAN / stock ratios measured in this run.

``--step-timing`` only times one in-process TCuP-GAN step (generator + discriminator) at a tiny patch (16x32x32)
and at 32x64x64, batch 2, against the generator-only supervised step at the same patch (the adversarial overhead).

Usage::

    python benchmarks/bench_learning.py --workdir /tmp/bench_learning --minutes 15
    python benchmarks/bench_learning.py --step-timing
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

TIMED_TRAINERS_SOURCE = '''
"""Time-budget variants of the TCuP-GAN and stock trainers, for benchmarks/bench_learning.py only."""
import json
import math
import os
import time

import torch
from batchgenerators.utilities.file_and_folder_operations import join
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN


class _TimedTraining:
    def on_train_start(self):
        super().on_train_start()
        train_keys, _ = self.do_split()
        self.num_iterations_per_epoch = max(1, math.ceil(len(train_keys) / self.configuration_manager.batch_size))
        self.num_val_iterations_per_epoch = 1

    def train_step(self, batch):
        start = time.perf_counter()
        out = super().train_step(batch)
        self.bench_train_seconds += time.perf_counter() - start
        self.bench_iterations += 1
        return out

    def adapt_schedule(self, elapsed, budget):
        pass

    def run_training(self):
        budget = float(os.environ["TCUP_BENCH_SECONDS"])
        self.bench_train_seconds, self.bench_iterations = 0.0, 0
        self.num_epochs = 10 ** 6
        self.on_train_start()
        start = time.perf_counter()
        while self.current_epoch < self.num_epochs and time.perf_counter() - start < budget:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val)) for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
            self.adapt_schedule(time.perf_counter() - start, budget)
        wall = time.perf_counter() - start
        self.num_epochs = self.current_epoch
        self.on_train_end()
        with open(join(self.output_folder, "bench_timing.json"), "w") as f:
            json.dump({"epochs": self.current_epoch, "iterations": self.bench_iterations,
                       "train_step_seconds": self.bench_train_seconds, "wall_seconds": wall,
                       "seconds_per_iteration": self.bench_train_seconds / max(1, self.bench_iterations)}, f)

    def perform_actual_validation(self, save_probabilities=False):
        pass  # the benchmark scores held-out cases instead


class nnUNetTrainerTCuPGAN_benchtime(_TimedTraining, nnUNetTrainerTCuPGAN):
    pass


class nnUNetTrainer_benchtime(_TimedTraining, nnUNetTrainer):
    def adapt_schedule(self, elapsed, budget):
        per_epoch = elapsed / self.current_epoch
        remaining = max(0, round((budget - elapsed) / per_epoch))
        self.num_epochs = self.current_epoch + remaining
        self.lr_scheduler.max_steps = max(self.num_epochs, self.current_epoch + 1)
'''

TRAINERS = {"TCuP-GAN": "nnUNetTrainerTCuPGAN_benchtime", "nnU-Net": "nnUNetTrainer_benchtime"}
REGIONS = ("WT", "TC", "ET")


def run(args: Sequence[str], env: Dict[str, str]) -> None:
    """Run a console script of this venv (or PATH), failing loudly with its output tail."""
    exe = Path(sys.executable).parent / str(args[0])
    argv = [str(exe) if exe.exists() else str(args[0]), *map(str, args[1:])]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def prepare(work: Path, args: argparse.Namespace) -> Dict[str, str]:
    """Synthetic data, nnU-Net raw dataset, plans (patch/batch set), benchmark trainers; returns the env."""
    env = dict(os.environ)
    for key, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
        (work / sub).mkdir(parents=True, exist_ok=True)
        env[key] = str(work / sub)
    trainers = work / "bench_trainers"
    trainers.mkdir(exist_ok=True)
    (trainers / "tcup_bench_timed_trainers.py").write_text(TIMED_TRAINERS_SOURCE)
    env.update({"nnUNet_extTrainer": str(trainers), "nnUNet_compile": "f", "nnUNet_n_proc_DA": "0",
                "nnUNet_def_n_proc": "1", "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg"})
    shape = [str(s) for s in args.shape]
    run(["nnunet_tcup", "synth", work / "train", "--challenge", "GLI", "--cases", args.train_cases, "--shape",
         *shape, "--seed", args.seed], env)
    run(["nnunet_tcup", "synth", work / "test", "--challenge", "GLI", "--cases", args.test_cases, "--shape", *shape,
         "--seed", args.seed + 1000, "--start-index", 500], env)
    run(["nnunet_tcup", "convert", "--challenge", "GLI", "--dataset-id", args.dataset_id, "--train", work / "train",
         "--test", work / "test", "--num-workers", 1, "--no-progress"], env)
    gt = work / "gt_test"
    gt.mkdir(exist_ok=True)
    for case in sorted((work / "test").iterdir()):
        shutil.copyfile(case / f"{case.name}-seg.nii.gz", gt / f"{case.name}.nii.gz")
    run(["nnUNetv2_plan_and_preprocess", "-d", args.dataset_id, "-c", "3d_fullres", "-np", 1, "-npfp", 1],
        {**env, "nnUNet_n_proc_DA": "1"})  # nnU-Net 2.8.1's planner fails with nnUNet_n_proc_DA=0
    plans_file = next(Path(env["nnUNet_preprocessed"]).glob(f"Dataset{args.dataset_id:03d}_*")) / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = list(args.patch)
    plans["configurations"]["3d_fullres"]["batch_size"] = args.batch
    plans_file.write_text(json.dumps(plans, indent=2))
    return env


def train_and_score(work: Path, env: Dict[str, str], args: argparse.Namespace, trainer: str) -> Dict[str, float]:
    """Time-budget training (fold all), prediction of the held-out cases, lesion-wise evaluation."""
    from nnunet_tcup.evaluation import evaluate_folders

    run(["nnUNetv2_train", args.dataset_id, "3d_fullres", "all", "-tr", trainer, "-device", "cpu"],
        {**env, "TCUP_BENCH_SECONDS": str(args.minutes * 60)})
    raw = next(Path(env["nnUNet_raw"]).glob(f"Dataset{args.dataset_id:03d}_*"))
    model = Path(env["nnUNet_results"]) / raw.name / f"{trainer}__nnUNetPlans__3d_fullres"
    timing = json.loads((model / "fold_all" / "bench_timing.json").read_text())
    predictions = work / f"pred_{trainer}"
    run(["nnUNetv2_predict", "-i", raw / "imagesTs", "-o", predictions, "-d", args.dataset_id, "-c", "3d_fullres",
         "-tr", trainer, "-f", "all", "-device", "cpu", "-npp", 1, "-nps", 1], env)
    table = evaluate_folders(work / "gt_test", predictions, challenge="GLI", progress=False)
    scores = {region: float(table.loc[table["Labels"] == region, "LesionWise_Score_Dice"].mean())
              for region in REGIONS}
    return {**timing, **scores, "mean_dice": float(sum(scores.values()) / len(scores))}


def step_timing(reps: int) -> None:
    """Seconds per TCuP-GAN training step (in-process, paper widths, batch 2) vs the generator-only step."""
    import contextlib

    import torch

    from nnunet_tcup.network_architecture import PatchDiscriminator3D, TCuPGenerator
    from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, backward_and_step, gan_train_step
    from nnunet_tcup.trainers.losses import RegionWeightedBCELoss, nonzero_gaussian_noise

    print(f"torch threads: {torch.get_num_threads()}")
    for patch in ((16, 32, 32), (32, 64, 64)):
        torch.manual_seed(0)
        generator, discriminator = TCuPGenerator(4, 3), PatchDiscriminator3D(7)
        g_slot = OptimiserSlot(torch.optim.Adam(generator.parameters(), 5e-4, betas=(0.5, 0.999)))
        d_slot = OptimiserSlot(torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)))
        data = torch.randn(2, 4, *patch)
        target = (torch.rand(2, 3, *patch) > 0.8).to(torch.int16)
        loss = RegionWeightedBCELoss()

        def gan_step() -> None:
            gan_train_step(generator, discriminator, nonzero_gaussian_noise(data, 0.1), target, loss,
                           GANTargets(True, 3), g_slot, d_slot, contextlib.nullcontext)

        def generator_only_step() -> None:
            g_slot.optimizer.zero_grad(set_to_none=True)
            backward_and_step(loss(generator(nonzero_gaussian_noise(data, 0.1)), target), generator, g_slot)

        timings = {}
        for name, fn in (("generator only", generator_only_step), ("TCuP-GAN (G + D)", gan_step)):
            fn()  # warm-up
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            timings[name] = (time.perf_counter() - start) / reps
        print(f"patch {'x'.join(map(str, patch))}, batch 2: generator-only step {timings['generator only']:.3f} s, "
              f"TCuP-GAN step {timings['TCuP-GAN (G + D)']:.3f} s/iteration "
              f"(ratio {timings['TCuP-GAN (G + D)'] / timings['generator only']:.2f}x)")


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/nnunet_tcup_bench_learning"),
                        help="empty or missing folder for data, models and predictions")
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall time per trainer (minutes)")
    parser.add_argument("--train-cases", type=int, default=12, help="synthetic training cases")
    parser.add_argument("--test-cases", type=int, default=6, help="synthetic held-out cases")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 48), metavar=("X", "Y", "Z"),
                        help="synthetic volume size in voxels (x y z)")
    parser.add_argument("--patch", type=int, nargs=3, default=(32, 64, 64), metavar=("Z", "Y", "X"),
                        help="nnU-Net patch size written into the plans (z y x)")
    parser.add_argument("--batch", type=int, default=2, help="batch size written into the plans")
    parser.add_argument("--dataset-id", type=int, default=777, help="nnU-Net dataset id used in the workdir")
    parser.add_argument("--seed", type=int, default=7, help="synthetic data seed")
    parser.add_argument("--step-timing", action="store_true", help="only time in-process training steps")
    parser.add_argument("--reps", type=int, default=5, help="repetitions for --step-timing")
    args = parser.parse_args(argv)

    if args.step_timing:
        step_timing(args.reps)
        return 0
    work = args.workdir
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"bench_learning: error: workdir {work} is not empty")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = prepare(work, args)
    results = {name: train_and_score(work, env, args, trainer) for name, trainer in TRAINERS.items()}
    print(f"\nSame CPU wall time per trainer: {args.minutes:g} min; {args.train_cases} training / {args.test_cases} "
          f"held-out synthetic GLI cases of {'x'.join(map(str, args.shape))} voxels; patch "
          f"{'x'.join(map(str, args.patch))}, batch {args.batch}; threads {os.cpu_count()}")
    print(f"{'trainer':<10} {'epochs':>6} {'iters':>6} {'s/iter':>7} " + " ".join(f"{r:>6}" for r in REGIONS)
          + f" {'mean':>6}   (lesion-wise Dice, held-out cases)")
    for name, r in results.items():
        print(f"{name:<10} {r['epochs']:>6} {r['iterations']:>6} {r['seconds_per_iteration']:>7.2f} "
              + " ".join(f"{r[reg]:>6.3f}" for reg in REGIONS) + f" {r['mean_dice']:>6.3f}")
    tcup, stock = results["TCuP-GAN"], results["nnU-Net"]
    ratio = tcup["mean_dice"] / stock["mean_dice"] if stock["mean_dice"] > 0 else math.inf
    print(f"TCuP-GAN / nnU-Net: mean lesion-wise Dice ratio {ratio:.2f}, seconds per iteration ratio "
          f"{tcup['seconds_per_iteration'] / stock['seconds_per_iteration']:.2f}")
    print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    (work / "bench_learning.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
