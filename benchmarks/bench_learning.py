"""Learning ablation: does TCuP-GAN learn, which formulation is best, and how does it compare with stock nnU-Net?

Settings (``--settings``, run in the order given; ``--list`` shows them):

* ``nnunet_regions``: stock ``nnUNetTrainer`` on the region dataset (nnU-Net's BraTS recipe, SGD + poly + DC/CE);
* ``nnunet_classes``: stock ``nnUNetTrainer`` on the plain label dataset (softmax);
* ``tcup_regions_paperW``: ``nnUNetTrainerTCuPGAN`` on regions with the paper's weight formula applied to the nested
  regions (the package's earlier default);
* ``tcup_regions``: ``nnUNetTrainerTCuPGAN`` on regions with the disjoint-class weights (today's region default);
* ``tcup_classes``: ``nnUNetTrainerTCuPGAN`` on the label dataset, the paper's formulation (3 sigmoid classes,
  paper weights, background = 1 - sum P);
* ``tcup_classes_dicebce`` / ``_priorbias`` / ``_noclip``: the named variants (``trainers/variants/loss.py``).

Every run: stock ``nnUNetv2_train`` (fold ``all``, same plans, patch and batch for every setting) through thin
benchmark subclasses (budget + seed only) written into a benchmark-only ``nnUNet_extTrainer`` folder, then
``nnUNetv2_predict`` of held-out synthetic cases and the BraTS 2023 lesion-wise evaluation (Dice and HD95 per region).

Budgets (``--budget``): ``iterations`` (``--epochs`` x ``--iterations`` training steps for everyone; the stock trainer's
poly schedule spans exactly these epochs) or ``cpu`` (``--cpu-minutes`` of *process CPU time* of the training
process, counted from its first epoch: wall time is meaningless on a shared machine; the stock trainer's poly horizon
is re-estimated after every epoch so its rate reaches 0 when the budget runs out).

Resumable: each finished run writes ``WORK_DIR/runs/<budget>/<setting>/seed<N>/result.json`` (atomically); a re-run skips
it, so the ablation can be completed in pieces and extended with more seeds; several invocations can share a work dir
(a run in progress is locked by its process id). ``--report`` only prints the table (mean
and standard deviation across seeds per setting and region) and writes ``WORK_DIR/ablation.md`` and ``ablation.png``.
The seed sets the training randomness (``torch``/``numpy``/``random``; data augmentation included); the synthetic data
(``--data-seed``) is the same for every run so that settings are compared on the same cases.

Usage::

    python benchmarks/bench_learning.py --work-dir ablation_work --seeds 0 --jobs 2
    python benchmarks/bench_learning.py --work-dir ablation_work --settings nnunet_regions tcup_classes --seeds 1 2
    python benchmarks/bench_learning.py --work-dir ablation_work --report
    python benchmarks/bench_learning.py --step-timing
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REGIONS = ("WT", "TC", "ET")
REGIONS_DATASET_ID, CLASSES_DATASET_ID = 771, 772


@dataclass(frozen=True)
class Setting:
    """One ablation setting: a trainer class (module, name) trained on the regions or the classes dataset."""

    label: str
    module: str
    trainer: str
    dataset: str  # "regions" or "classes"


_TCUP = "nnunet_tcup.trainers.nnUNetTrainerTCuPGAN"
_VARIANTS = "nnunet_tcup.trainers.variants.loss"
_STOCK = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer"
SETTINGS: dict[str, Setting] = {
    "nnunet_regions": Setting("stock nnU-Net, regions", _STOCK, "nnUNetTrainer", "regions"),
    "nnunet_classes": Setting("stock nnU-Net, softmax classes", _STOCK, "nnUNetTrainer", "classes"),
    "tcup_regions_paperW": Setting(
        "TCuP-GAN regions, paper formula on regions (old)",
        _VARIANTS,
        "nnUNetTrainerTCuPGAN_paperRegionWeights",
        "regions",
    ),
    "tcup_regions": Setting("TCuP-GAN regions, disjoint-class weights", _TCUP, "nnUNetTrainerTCuPGAN", "regions"),
    "tcup_classes": Setting("TCuP-GAN classes (paper)", _TCUP, "nnUNetTrainerTCuPGAN", "classes"),
    "tcup_classes_dicebce": Setting(
        "TCuP-GAN classes + soft Dice", _VARIANTS, "nnUNetTrainerTCuPGAN_DiceBCE", "classes"
    ),
    "tcup_classes_priorbias": Setting(
        "TCuP-GAN classes, prior output bias", _VARIANTS, "nnUNetTrainerTCuPGAN_priorBias", "classes"
    ),
    "tcup_classes_noclip": Setting(
        "TCuP-GAN classes, no gradient clipping", _VARIANTS, "nnUNetTrainerTCuPGAN_noClip", "classes"
    ),
}

BENCH_TRAINER_HEADER = '''
"""Budget + seed subclasses for benchmarks/bench_learning.py only (generated; do not edit)."""
import json
import math
import os
import random
import time

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import join


class _Budget:
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        # same signature as nnUNetTrainer.__init__ (nnU-Net records the init arguments by name)
        seed = int(os.environ["TCUP_BENCH_SEED"])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ["TCUP_BENCH_EPOCHS"])
        self.num_iterations_per_epoch = int(os.environ["TCUP_BENCH_ITERATIONS"])
        self.num_val_iterations_per_epoch = 1
        self.save_every = 10 ** 6
        if hasattr(self, "epoch_is_pass_over_training_cases"):
            self.epoch_is_pass_over_training_cases = False

    def run_training(self):
        cpu_budget = float(os.environ.get("TCUP_BENCH_CPU_SECONDS", "0"))
        if cpu_budget > 0:
            self.num_epochs = 10 ** 6
        self.bench_iterations = 0
        self.on_train_start()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while self.current_epoch < self.num_epochs:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = []
            for _ in range(self.num_iterations_per_epoch):
                outputs.append(self.train_step(next(self.dataloader_train)))
                self.bench_iterations += 1
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val))
                       for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
            if cpu_budget > 0:
                used = time.process_time() - cpu0
                if used >= cpu_budget:
                    break
                if hasattr(self.lr_scheduler, "max_steps"):  # stock poly: reach 0 when the budget runs out
                    remaining = max(0, round((cpu_budget - used) / (used / self.current_epoch)))
                    self.lr_scheduler.max_steps = self.current_epoch + remaining + 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        self.num_epochs = self.current_epoch
        self.on_train_end()
        with open(join(self.output_folder, "bench_timing.json"), "w") as f:
            json.dump({"epochs": self.current_epoch, "iterations": self.bench_iterations, "train_cpu_seconds": cpu,
                       "train_wall_seconds": wall}, f)

    def perform_actual_validation(self, save_probabilities=False):
        pass  # the benchmark scores held-out cases instead
'''


def bench_trainer_name(key: str) -> str:
    return f"benchTrainer_{key}"


def bench_trainer_source() -> str:
    """Python source of every setting's budget subclass."""
    lines = [BENCH_TRAINER_HEADER]
    for key, s in SETTINGS.items():
        lines.append(
            f"from {s.module} import {s.trainer} as _{key}_base\n\n\n"
            f"class {bench_trainer_name(key)}(_Budget, _{key}_base):\n    pass\n"
        )
    return "\n".join(lines)


def run_command(args: list, env: dict[str, str], log: Path | None = None) -> None:
    """Run a console script of this venv (or PATH); RuntimeError with the output tail on failure."""
    exe = Path(sys.executable).parent / str(args[0])
    argv = [str(exe) if exe.exists() else str(args[0]), *map(str, args[1:])]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if log is not None:
        log.write_text(proc.stdout + "\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


def base_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "nnUNet_raw": str(work / "raw"),
            "nnUNet_preprocessed": str(work / "preprocessed"),
            "nnUNet_results": str(work / "results_unused"),
            "nnUNet_compile": "f",
            "nnUNet_n_proc_DA": "0",
            "nnUNet_def_n_proc": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "nnUNet_extTrainer": str(work / "bench_trainers"),
        }
    )
    return env


def prepare(work: Path, args: argparse.Namespace) -> dict[str, str]:
    """Synthetic data, both raw datasets (regions, classes), plans with the benchmark patch/batch; once per work dir."""
    env = base_env(work)
    trainers = work / "bench_trainers"
    trainers.mkdir(parents=True, exist_ok=True)
    (trainers / "tcup_bench_learning_trainers.py").write_text(bench_trainer_source())
    done = work / "prepared.json"
    wanted = {
        "shape": list(args.shape),
        "train_cases": args.train_cases,
        "test_cases": args.test_cases,
        "data_seed": args.data_seed,
    }
    if done.is_file():
        recorded = json.loads(done.read_text())
        if recorded != wanted:
            raise SystemExit(
                f"bench_learning: error: {work} holds data made with {recorded}, not {wanted}; "
                f"use another --work-dir or the same data options"
            )
        set_patch_and_batch(work, args)
        return env
    for sub in ("raw", "preprocessed"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    shape = [str(s) for s in args.shape]
    for name, cases, seed, start in (
        ("train", args.train_cases, args.data_seed, 0),
        ("test", args.test_cases, args.data_seed + 1000, 500),
    ):
        if not (work / name).is_dir():
            run_command(
                [
                    "nnunet_tcup",
                    "synth",
                    work / name,
                    "--challenge",
                    "GLI",
                    "--cases",
                    cases,
                    "--shape",
                    *shape,
                    "--seed",
                    seed,
                    "--start-index",
                    start,
                ],
                env,
            )
    for dataset_id, mode in ((REGIONS_DATASET_ID, "regions"), (CLASSES_DATASET_ID, "classes")):
        run_command(
            [
                "nnunet_tcup",
                "convert",
                "--challenge",
                "GLI",
                "--dataset-id",
                dataset_id,
                "--mode",
                mode,
                "--train",
                work / "train",
                "--test",
                work / "test",
                "--num-workers",
                1,
                "--no-progress",
            ],
            env,
        )
        run_command(
            ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", 1, "-npfp", 1],
            {**env, "nnUNet_n_proc_DA": "1"},
        )  # nnU-Net 2.8.1's planner fails with nnUNet_n_proc_DA=0
    set_patch_and_batch(work, args)
    gt = work / "gt_test"
    gt.mkdir(exist_ok=True)
    for case in sorted((work / "test").iterdir()):
        shutil.copyfile(case / f"{case.name}-seg.nii.gz", gt / f"{case.name}.nii.gz")
    done.write_text(json.dumps(wanted, indent=2))
    return env


def set_patch_and_batch(work: Path, args: argparse.Namespace) -> None:
    """Write ``--patch`` and ``--batch`` into the 3d_fullres plans of both datasets (same for every setting)."""
    for dataset_id in (REGIONS_DATASET_ID, CLASSES_DATASET_ID):
        plans_file = next((work / "preprocessed").glob(f"Dataset{dataset_id:03d}_*")) / "nnUNetPlans.json"
        plans = json.loads(plans_file.read_text())
        plans["configurations"]["3d_fullres"]["patch_size"] = list(args.patch)
        plans["configurations"]["3d_fullres"]["batch_size"] = args.batch
        plans_file.write_text(json.dumps(plans, indent=2))


def budget_name(args: argparse.Namespace) -> str:
    """Folder name of a budget: what every run under it shares (length, patch, batch)."""
    length = f"{args.epochs}x{args.iterations}it" if args.budget == "iterations" else f"cpu{args.cpu_minutes:g}min"
    return f"{length}_patch{'x'.join(map(str, args.patch))}_b{args.batch}"


def run_folder(work: Path, budget: str, key: str, seed: int) -> Path:
    return work / "runs" / budget / key / f"seed{seed}"


def train_predict_score(work: Path, env: dict[str, str], args: argparse.Namespace, key: str, seed: int) -> dict:
    """One run: train (budget, seed), predict the held-out cases, lesion-wise evaluation; the result dict."""
    from nnunet_tcup.evaluation import evaluate_folders

    setting = SETTINGS[key]
    folder = run_folder(work, budget_name(args), key, seed)
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished earlier attempt: start it again
    (folder / "results").mkdir(parents=True)
    dataset_id = REGIONS_DATASET_ID if setting.dataset == "regions" else CLASSES_DATASET_ID
    trainer = bench_trainer_name(key)
    run_env = {
        **env,
        "nnUNet_results": str(folder / "results"),
        "TCUP_BENCH_SEED": str(seed),
        "TCUP_BENCH_EPOCHS": str(args.epochs),
        "TCUP_BENCH_ITERATIONS": str(args.iterations),
        "TCUP_BENCH_CPU_SECONDS": str(args.cpu_minutes * 60 if args.budget == "cpu" else 0),
    }
    run_command(
        ["nnUNetv2_train", dataset_id, "3d_fullres", "all", "-tr", trainer, "-device", "cpu"],
        run_env,
        log=folder / "train.log",
    )
    raw = next((work / "raw").glob(f"Dataset{dataset_id:03d}_*"))
    model = folder / "results" / raw.name / f"{trainer}__nnUNetPlans__3d_fullres"
    timing = json.loads((model / "fold_all" / "bench_timing.json").read_text())
    predictions = folder / "pred"
    cpu0 = time.process_time()
    run_command(
        [
            "nnUNetv2_predict",
            "-i",
            raw / "imagesTs",
            "-o",
            predictions,
            "-d",
            dataset_id,
            "-c",
            "3d_fullres",
            "-tr",
            trainer,
            "-f",
            "all",
            "-device",
            "cpu",
            "-npp",
            1,
            "-nps",
            1,
            "--disable_tta",
        ],
        run_env,
        log=folder / "predict.log",
    )
    table = evaluate_folders(work / "gt_test", predictions, challenge="GLI", progress=False)
    result: dict = {
        "setting": key,
        "label": setting.label,
        "seed": seed,
        "budget": budget_name(args),
        "patch": list(args.patch),
        "batch": args.batch,
        "epochs_requested": args.epochs,
        "iterations_per_epoch": args.iterations,
        "cpu_minutes": args.cpu_minutes if args.budget == "cpu" else None,
        **timing,
        "eval_cpu_seconds": time.process_time() - cpu0,
    }
    for region in REGIONS:
        rows = table[table["Labels"] == region]
        result[f"dice_{region}"] = float(rows["LesionWise_Score_Dice"].mean())
        result[f"hd95_{region}"] = float(rows["LesionWise_Score_HD95"].mean())
        result[f"case_dice_{region}"] = [float(v) for v in rows["LesionWise_Score_Dice"]]
    result["mean_dice"] = sum(result[f"dice_{r}"] for r in REGIONS) / len(REGIONS)
    result["all_zero_predictions"] = bool(all(v == 0 for r in REGIONS for v in result[f"case_dice_{r}"]))
    tmp = folder / "result.json.partial"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(folder / "result.json")
    if args.drop_checkpoints:
        shutil.rmtree(model / "fold_all", ignore_errors=True)
    return result


def claim(folder: Path) -> bool:
    """Take the run folder's lock (``run.lock`` with this process id); False if a live process holds it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f"{folder.name}.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or "0"), 0)
            return False  # another invocation is running this run
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)  # left by a dead process
            return claim(folder)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def release(folder: Path) -> None:
    (folder.parent / f"{folder.name}.lock").unlink(missing_ok=True)


def load_results(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*/*/seed*/result.json"))]


def summarise(results: list[dict]) -> list[dict]:
    """One row per (budget, setting): seeds, mean and sample standard deviation per metric."""
    import numpy as np

    rows = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["budget"], r["setting"]), []).append(r)
    order = list(SETTINGS)
    for (budget, key), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
        row: dict = {
            "budget": budget,
            "setting": key,
            "label": SETTINGS[key].label,
            "seeds": sorted(r["seed"] for r in runs),
            "iterations": float(np.mean([r["iterations"] for r in runs])),
            "train_cpu_s": float(np.mean([r["train_cpu_seconds"] for r in runs])),
        }
        for metric in [f"dice_{g}" for g in REGIONS] + [f"hd95_{g}" for g in REGIONS] + ["mean_dice"]:
            values = np.array([r[metric] for r in runs], dtype=float)
            row[metric] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan"))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table: mean ± std over seeds (std blank for one seed)."""

    def cell(pair: tuple[float, float], digits: int) -> str:
        mean, std = pair
        return f"{mean:.{digits}f}" + ("" if std != std else f" ± {std:.{digits}f}")

    head = (
        "| budget | setting | seeds | iters | train CPU s | Dice WT | Dice TC | Dice ET | mean Dice "
        "| HD95 WT | HD95 TC | HD95 ET |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['budget']} | {r['label']} | {len(r['seeds'])} | {r['iterations']:.0f} | "
            f"{r['train_cpu_s']:.0f} | "
            + " | ".join(cell(r[f"dice_{g}"], 3) for g in REGIONS)
            + f" | {cell(r['mean_dice'], 3)} | "
            + " | ".join(cell(r[f"hd95_{g}"], 1) for g in REGIONS)
            + " |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars of lesion-wise Dice per region, error bars = std across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(rows)), 4.0))
    width = 0.8 / len(REGIONS)
    for i, region in enumerate(REGIONS):
        means = [r[f"dice_{region}"][0] for r in rows]
        stds = [0.0 if r[f"dice_{region}"][1] != r[f"dice_{region}"][1] else r[f"dice_{region}"][1] for r in rows]
        ax.bar([k + (i - 1) * width for k in range(len(rows))], means, width, yerr=stds, capsize=3, label=region)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(
        [f"{r['setting']}\n({r['budget']}, n={len(r['seeds'])})" for r in rows], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylabel("held-out lesion-wise Dice")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(work: Path) -> str:
    rows = summarise(load_results(work))
    if not rows:
        return f"no finished runs under {work / 'runs'}"
    table = format_table(rows)
    settings = json.loads((work / "prepared.json").read_text()) if (work / "prepared.json").is_file() else {}
    text = f"Held-out lesion-wise Dice / HD95 (mm), mean ± std across seeds; data: {settings}\n\n{table}\n"
    (work / "ablation.md").write_text(text)
    plot(rows, work / "ablation.png")
    return text


def _time_patch(patch: tuple[int, int, int], reps: int) -> dict[str, float]:
    """CPU seconds per generator-only step and per TCuP-GAN step (G + D) at ``patch`` (z, y, x), batch 2."""
    import contextlib

    import torch

    from nnunet_tcup.network_architecture import PatchDiscriminator3D, TCuPGenerator
    from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, backward_and_step, gan_train_step
    from nnunet_tcup.trainers.losses import RegionWeightedBCELoss, nonzero_gaussian_noise

    torch.manual_seed(0)
    generator, discriminator = TCuPGenerator(4, 3), PatchDiscriminator3D(7)
    g_slot = OptimiserSlot(torch.optim.Adam(generator.parameters(), 5e-4, betas=(0.5, 0.999)))
    d_slot = OptimiserSlot(torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)))
    data = torch.randn(2, 4, *patch)
    target = (torch.rand(2, 3, *patch) > 0.8).to(torch.int16)
    loss = RegionWeightedBCELoss()

    def gan_step() -> None:
        gan_train_step(
            generator,
            discriminator,
            nonzero_gaussian_noise(data, 0.1),
            target,
            loss,
            GANTargets(True, 3),
            g_slot,
            d_slot,
            contextlib.nullcontext,
        )

    def generator_only_step() -> None:
        g_slot.optimizer.zero_grad(set_to_none=True)
        backward_and_step(loss(generator(nonzero_gaussian_noise(data, 0.1)), target), generator, g_slot)

    timings = {}
    for name, fn in (("generator only", generator_only_step), ("TCuP-GAN (G + D)", gan_step)):
        fn()  # warm-up
        start = time.process_time()
        for _ in range(reps):
            fn()
        timings[name] = (time.process_time() - start) / reps
    return timings


def step_timing(reps: int) -> None:
    """Seconds per TCuP-GAN training step (in-process, paper widths, batch 2) vs the generator-only step."""
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    for patch in ((16, 32, 32), (32, 64, 64)):
        timings = _time_patch(patch, reps)
        print(
            f"patch {'x'.join(map(str, patch))}, batch 2: generator-only step {timings['generator only']:.3f} s, "
            f"TCuP-GAN step {timings['TCuP-GAN (G + D)']:.3f} s CPU/iteration "
            f"(ratio {timings['TCuP-GAN (G + D)'] / timings['generator only']:.2f}x)"
        )


def run_all(work: Path, args: argparse.Namespace) -> None:
    env = prepare(work, args)
    todo = [
        (key, seed)
        for seed in args.seeds
        for key in args.settings
        if not (run_folder(work, budget_name(args), key, seed) / "result.json").is_file()
    ]
    print(f"{len(todo)} runs to do (budget {budget_name(args)}): {todo}", flush=True)

    def one(item: tuple[str, int]) -> None:
        key, seed = item
        started = time.perf_counter()
        folder = run_folder(work, budget_name(args), key, seed)
        if not claim(folder):
            print(f"skipped {key} seed {seed}: another invocation is running it", flush=True)
            return
        try:
            r = train_predict_score(work, env, args, key, seed)
        except Exception as e:  # keep going: the failed run is retried by the next invocation
            print(f"FAILED {key} seed {seed}: {str(e).splitlines()[0]} (log: {folder})", flush=True)
            return
        finally:
            release(folder)
        print(
            f"done {key} seed {seed}: Dice WT {r['dice_WT']:.3f} TC {r['dice_TC']:.3f} ET {r['dice_ET']:.3f}, "
            f"{r['iterations']} iterations, {r['train_cpu_seconds']:.0f} s train CPU, "
            f"{time.perf_counter() - started:.0f} s wall",
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, todo))
    print(report(work))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("bench_learning_work"),
        help="folder for data, models, predictions and results (re-used: finished runs are skipped; "
        "default: ./bench_learning_work)",
    )
    parser.add_argument("--workdir", dest="work_dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=list(SETTINGS),
        metavar="SETTING",
        help="settings to run, in this order (default: all; --list shows them)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument(
        "--budget",
        choices=("iterations", "cpu"),
        default="iterations",
        help="equal training iterations, or equal process CPU time of training",
    )
    parser.add_argument("--epochs", type=int, default=6, help="epochs (iterations budget)")
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--cpu-minutes", type=float, default=5.0, help="training CPU minutes per run (cpu budget)")
    parser.add_argument("--train-cases", type=int, default=16, help="synthetic training cases")
    parser.add_argument("--test-cases", type=int, default=6, help="synthetic held-out cases")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(64, 64, 48),
        metavar=("X", "Y", "Z"),
        help="synthetic volume size in voxels (x y z)",
    )
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=(32, 64, 64),
        metavar=("Z", "Y", "X"),
        help="nnU-Net patch size written into the plans (z y x)",
    )
    parser.add_argument("--batch", type=int, default=2, help="batch size written into the plans")
    parser.add_argument("--data-seed", type=int, default=7, help="synthetic data seed")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time")
    parser.add_argument("--drop-checkpoints", action="store_true", help="delete each run's model after scoring")
    parser.add_argument("--report", action="store_true", help="only print the table of the finished runs")
    parser.add_argument("--list", action="store_true", help="list the settings")
    parser.add_argument("--step-timing", action="store_true", help="only time in-process training steps")
    parser.add_argument("--reps", type=int, default=5, help="repetitions for --step-timing")
    args = parser.parse_args(argv)

    if args.list:
        for key, s in SETTINGS.items():
            print(f"{key:<24} {s.label} ({s.trainer} on the {s.dataset} dataset)")
        return 0
    if args.step_timing:
        step_timing(args.reps)
        return 0
    if args.report:
        print(report(args.work_dir))
        return 0
    args.work_dir.mkdir(parents=True, exist_ok=True)
    run_all(args.work_dir, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
