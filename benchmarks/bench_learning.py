"""Learning benchmark v2: does TCuP-GAN learn, and how does it compare with stock nnU-Net, fairly?

The protocol (issue 19; every choice below is the same for every arm):

* **Data**: per data seed (``--data-seeds``), synthetic GLI-like cases made by ``nnunet_tcup synth`` (64x64x48 by
  default): ``--train-cases`` training (20), ``--val-cases`` validation (8) and ``--heldout-cases`` held-out (40),
  each set with its own synthesis seed. Converted twice: ``--mode regions`` (WT / TC / ET sigmoids) and
  ``--mode classes`` (NETC / SNFH / ET).
* **Plans**: nnU-Net's own ``nnUNetv2_plan_and_preprocess`` for each dataset, never edited: patch, batch and
  topology are what nnU-Net plans, for every arm. ``--gpu-memory-target GB`` re-plans with nnU-Net's planner for a
  smaller patch (the topology follows the patch), the same for every arm.
* **Arms** (``--list``): stock nnU-Net on regions (the baseline) and on classes; TCuP-GAN on regions (the package's
  default) and on classes as the paper states it; no arm gets an output-bias prior. **Ensembles**: the
  cross-trainer ensemble of TCuP-GAN and stock nnU-Net on the same formulation and seed (``nnUNetv2_ensemble`` of
  their saved probabilities), scored like an arm.
* **Budgets** (``--budgets``): 250 and 1,000 training iterations (25 per epoch), each with its own schedule horizon
  (nnU-Net's poly over exactly these epochs; TCuP-GAN's step schedule over them), fold ``all`` on the training
  cases, one validation iteration per epoch.
* **Seeds** (the default protocol, ``protocol_runs``): at 250 iterations, 2 data seeds x 5 training seeds for
  stock nnU-Net (both formulations) and TCuP-GAN regions, 3 for TCuP-GAN classes; at 1,000 iterations data seed
  0 x 3 seeds for stock nnU-Net regions, TCuP-GAN regions and TCuP-GAN classes.
* **Choices on validation only**: each arm's post-processing is ``nnunet_tcup postprocess tune`` on its own
  validation predictions; it is then applied to the held-out predictions. Nothing is chosen on held-out cases.
* **Metrics** on the held-out cases, raw and post-processed: lesion-wise Dice and HD95, ``Num_FP`` and legacy
  (voxel) Dice per region; paired bootstrap 95 % intervals (over cases and seeds, ``learning_stats.py``) of every
  arm's difference in mean lesion-wise Dice to stock nnU-Net on regions. Training CPU time is reported per arm; it
  is not a speed comparison (runs share a CPU).
* **Jobs**: one thread per job, ``--jobs`` (2) at a time; prediction without test-time mirroring for every arm
  (``--tta`` turns it on for every arm).

Resumable: each finished run writes ``WORK/runs/<budget>/data<D>/<arm>/seed<S>/result.json`` atomically and is
skipped when re-run; a run in progress is locked by its process id, so several invocations can share a work
folder; an interrupted run is started again. ``--report`` writes ``WORK/learning_v2.md`` from what is finished.

Usage::

    python benchmarks/bench_learning.py --work-dir learning_v2 --jobs 2            # the whole protocol (many hours)
    python benchmarks/bench_learning.py --work-dir learning_v2 --budgets 250 --data-seeds 0 --max-runs 4
    python benchmarks/bench_learning.py --work-dir learning_v2 --report
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_stats import REGIONS, format_markdown, summary_rows  # noqa: E402

REGIONS_DATASET_ID, CLASSES_DATASET_ID, HELDOUT_DATASET_ID = 771, 772, 773
ITERATIONS_PER_EPOCH = 25


@dataclass(frozen=True)
class Arm:
    """One arm: a trainer class (module, name) trained on the regions or the classes dataset."""

    label: str
    module: str
    trainer: str
    dataset: str  # "regions" or "classes"


_TCUP = "nnunet_tcup.trainers.nnUNetTrainerTCuPGAN"
_VARIANTS = "nnunet_tcup.trainers.variants.loss"
_STOCK = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer"
ARMS: dict[str, Arm] = {
    "nnunet_regions": Arm("stock nnU-Net, regions", _STOCK, "nnUNetTrainer", "regions"),
    "nnunet_classes": Arm("stock nnU-Net, classes (softmax)", _STOCK, "nnUNetTrainer", "classes"),
    "tcup_regions": Arm("TCuP-GAN, regions (default)", _TCUP, "nnUNetTrainerTCuPGAN", "regions"),
    "tcup_classes": Arm("TCuP-GAN, classes (paper)", _TCUP, "nnUNetTrainerTCuPGAN", "classes"),
}
#: Trainers that have a benchmark subclass but are not protocol arms (used by ``review_nnunet_folds.py``).
EXTRA_TRAINERS: dict[str, Arm] = {
    "tcup_classes_priorbias": Arm(
        "TCuP-GAN classes, prior output bias", _VARIANTS, "nnUNetTrainerTCuPGAN_priorBias", "classes"
    ),
}
#: Cross-trainer ensembles: name -> (stock nnU-Net arm, TCuP-GAN arm) on the same formulation.
ENSEMBLES: dict[str, tuple[str, str]] = {
    "ensemble_regions": ("nnunet_regions", "tcup_regions"),
    "ensemble_classes": ("nnunet_classes", "tcup_classes"),
}
BASELINE = "nnunet_regions"
LABELS = {**{k: a.label for k, a in ARMS.items()}, "ensemble_regions": "ensemble nnU-Net + TCuP-GAN, regions"}
LABELS["ensemble_classes"] = "ensemble nnU-Net + TCuP-GAN, classes"


def protocol_runs(budgets: list[int], data_seeds: list[int]) -> list[tuple[int, int, str, int]]:
    """(iterations, data seed, arm, seed) of the protocol, seed-major so that partial results stay balanced."""
    seeds_250 = {"nnunet_regions": 5, "nnunet_classes": 5, "tcup_regions": 5, "tcup_classes": 3}
    seeds_1000 = {"nnunet_regions": 3, "tcup_regions": 3, "tcup_classes": 3}
    runs = []
    for budget in budgets:
        plan = seeds_250 if budget <= 250 else seeds_1000
        datas = data_seeds if budget <= 250 else data_seeds[:1]
        for seed in range(max(plan.values())):
            for data_seed in datas:
                for arm, n in plan.items():
                    if seed < n:
                        runs.append((budget, data_seed, arm, seed))
                for name, (a, b) in ENSEMBLES.items():
                    if seed < min(plan.get(a, 0), plan.get(b, 0)):
                        runs.append((budget, data_seed, name, seed))
    return runs


BENCH_TRAINER_HEADER = '''
"""Budget + seed subclasses for benchmarks/bench_learning.py (generated; do not edit)."""
import json
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
        cpu0, wall0 = time.process_time(), time.perf_counter()
        super().run_training()
        with open(join(self.output_folder, "bench_timing.json"), "w") as f:
            json.dump({"epochs": self.current_epoch, "iterations": self.current_epoch * self.num_iterations_per_epoch,
                       "train_cpu_seconds": time.process_time() - cpu0,
                       "train_wall_seconds": time.perf_counter() - wall0}, f)

    def perform_actual_validation(self, save_probabilities=False):
        pass  # the benchmark predicts its own validation and held-out cases
'''


def bench_trainer_name(key: str) -> str:
    return f"benchTrainer_{key}"


def bench_trainer_source() -> str:
    """Python source of every arm's (and extra trainer's) budget + seed subclass."""
    lines = [BENCH_TRAINER_HEADER]
    for key, s in {**ARMS, **EXTRA_TRAINERS}.items():
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
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-1500:]}")


def data_env(work: Path, data_seed: int) -> dict[str, str]:
    """Environment of one data seed's nnU-Net folders; one thread per job."""
    root = work / f"data{data_seed}"
    env = dict(os.environ)
    env.update(
        {
            "nnUNet_raw": str(root / "raw"),
            "nnUNet_preprocessed": str(root / "preprocessed"),
            "nnUNet_results": str(root / "results_unused"),
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


def prepare_data(work: Path, data_seed: int, args: argparse.Namespace) -> None:
    """Synthesise, convert (regions, classes, held-out images) and plan one data seed's datasets; once per seed."""
    root = work / f"data{data_seed}"
    done = root / "prepared.json"
    wanted = {
        "shape": list(args.shape),
        "train": args.train_cases,
        "val": args.val_cases,
        "heldout": args.heldout_cases,
        "gpu_memory_target": args.gpu_memory_target,
    }
    if done.is_file():
        if json.loads(done.read_text()) != wanted:
            raise SystemExit(
                f"bench_learning: error: {root} holds data made with other options; use another --work-dir"
            )
        return
    if root.exists():
        shutil.rmtree(root)  # an interrupted preparation: start it again
    env = data_env(work, data_seed)
    for sub in ("raw", "preprocessed"):
        (root / sub).mkdir(parents=True)
    for offset, (name, cases) in enumerate(
        (("train", args.train_cases), ("val", args.val_cases), ("heldout", args.heldout_cases))
    ):
        run_command(
            ["nnunet_tcup", "synth", root / name, "--challenge", "GLI", "--cases", cases, "--shape", *args.shape]
            + ["--seed", 1000 * data_seed + 100 * offset, "--start-index", 1000 * offset, "--num-workers", 1],
            env,
        )
    converts = ((REGIONS_DATASET_ID, "regions", "val"), (CLASSES_DATASET_ID, "classes", "val"))
    for dataset_id, mode, test in (*converts, (HELDOUT_DATASET_ID, "regions", "heldout")):
        run_command(
            ["nnunet_tcup", "convert", "--challenge", "GLI", "--dataset-id", dataset_id, "--mode", mode]
            + ["--train", root / "train", "--test", root / test, "--num-workers", 1, "--no-progress"],
            env,
        )
    plan = ["nnUNetv2_plan_and_preprocess", "-d", REGIONS_DATASET_ID, CLASSES_DATASET_ID, "-c", "3d_fullres"]
    plan += ["-np", 1, "-npfp", 1]
    if args.gpu_memory_target:
        plan += ["-gpu_memory_target", args.gpu_memory_target]
    run_command(plan, {**env, "nnUNet_n_proc_DA": "1"})  # nnU-Net 2.8.1's planner fails with 0
    done.write_text(json.dumps(wanted, indent=2))


def dataset_folder(work: Path, data_seed: int, dataset_id: int) -> Path:
    return next((work / f"data{data_seed}" / "raw").glob(f"Dataset{dataset_id:03d}_*"))


def run_folder(work: Path, budget: int, data_seed: int, arm: str, seed: int) -> Path:
    return work / "runs" / f"{budget}it" / f"data{data_seed}" / arm / f"seed{seed}"


def score(gt: Path, pred: Path) -> tuple[list[str], dict[str, dict[str, list[float]]]]:
    """Cases and, per region, lesion-wise Dice / HD95, Num_FP and legacy Dice per case (BraTS 2023 GLI rules)."""
    from nnunet_tcup.evaluation import evaluate_folders

    table = evaluate_folders(gt, pred, challenge="GLI", progress=False)
    cases = sorted(table["case"].unique())
    out: dict[str, dict[str, list[float]]] = {}
    for region in REGIONS:
        rows = table[table["Labels"] == region].set_index("case").loc[cases]
        out[region] = {
            "dice": [float(v) for v in rows["LesionWise_Score_Dice"]],
            "hd95": [float(v) for v in rows["LesionWise_Score_HD95"]],
            "num_fp": [float(v) for v in rows["Num_FP"]],
            "legacy_dice": [float(v) for v in rows["Legacy_Dice"]],
        }
    return cases, out


def tune_and_score(folder: Path, work: Path, data_seed: int, env: dict[str, str]) -> dict:
    """Tune the arm's post-processing on its validation predictions, apply it to the held-out predictions, score."""
    regions_raw = dataset_folder(work, data_seed, REGIONS_DATASET_ID)
    heldout_raw = dataset_folder(work, data_seed, HELDOUT_DATASET_ID)
    run_command(
        ["nnunet_tcup", "postprocess", "tune", "--challenge", "GLI", "--pred", folder / "pred_val"]
        + ["--gt", regions_raw / "labelsTs", "-o", folder / "pp", "--num-workers", 1],
        env,
        log=folder / "tune.log",
    )
    run_command(
        ["nnunet_tcup", "postprocess", "apply", "-i", folder / "pred_heldout", "-o", folder / "pred_heldout_pp"]
        + ["--json", folder / "pp" / "postprocessing.json", "--num-workers", 1],
        env,
    )
    cases, raw = score(heldout_raw / "labelsTs", folder / "pred_heldout")
    _, pp = score(heldout_raw / "labelsTs", folder / "pred_heldout_pp")
    _, val = score(regions_raw / "labelsTs", folder / "pred_val")
    return {
        "cases": cases,
        "raw": raw,
        "pp": pp,
        "val_raw_mean_dice": sum(sum(val[r]["dice"]) / len(val[r]["dice"]) for r in REGIONS) / len(REGIONS),
        "postprocessing": json.loads((folder / "pp" / "postprocessing.json").read_text()),
    }


def predict(work: Path, data_seed: int, dataset_id: int, trainer: str, env: dict, folder: Path, tta: bool) -> None:
    """``nnUNetv2_predict`` (fold ``all``, probabilities saved) of the validation and held-out images."""
    inputs = {
        "pred_val": dataset_folder(work, data_seed, dataset_id) / "imagesTs",
        "pred_heldout": dataset_folder(work, data_seed, HELDOUT_DATASET_ID) / "imagesTs",
    }
    for name, images in inputs.items():
        command = ["nnUNetv2_predict", "-i", images, "-o", folder / name, "-d", dataset_id, "-c", "3d_fullres"]
        command += ["-tr", trainer, "-f", "all", "-device", "cpu", "-npp", 1, "-nps", 1, "--save_probabilities"]
        run_command(command + ([] if tta else ["--disable_tta"]), env, log=folder / f"{name}.log")


def train_run(work: Path, args: argparse.Namespace, budget: int, data_seed: int, arm: str, seed: int) -> dict:
    """One arm run: train (budget, seed), predict validation + held-out, tune on validation, score held-out."""
    setting = ARMS[arm]
    folder = run_folder(work, budget, data_seed, arm, seed)
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished earlier attempt: start it again
    (folder / "results").mkdir(parents=True)
    dataset_id = REGIONS_DATASET_ID if setting.dataset == "regions" else CLASSES_DATASET_ID
    trainer = bench_trainer_name(arm)
    env = {
        **data_env(work, data_seed),
        "nnUNet_results": str(folder / "results"),
        "TCUP_BENCH_SEED": str(seed),
        "TCUP_BENCH_EPOCHS": str(budget // ITERATIONS_PER_EPOCH),
        "TCUP_BENCH_ITERATIONS": str(ITERATIONS_PER_EPOCH),
    }
    command = ["nnUNetv2_train", dataset_id, "3d_fullres", "all", "-tr", trainer, "-device", "cpu"]
    run_command(command, env, log=folder / "train.log")
    model = folder / "results" / dataset_folder(work, data_seed, dataset_id).name
    timing = json.loads((model / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_all" / "bench_timing.json").read_text())
    predict(work, data_seed, dataset_id, trainer, env, folder, args.tta)
    if args.drop_checkpoints:
        shutil.rmtree(model, ignore_errors=True)
    return {**timing, **tune_and_score(folder, work, data_seed, env)}


def ensemble_run(work: Path, budget: int, data_seed: int, name: str, seed: int) -> dict:
    """The cross-trainer ensemble of two finished arm runs (``nnUNetv2_ensemble`` of their probabilities)."""
    members = [run_folder(work, budget, data_seed, arm, seed) for arm in ENSEMBLES[name]]
    if not all((m / "result.json").is_file() for m in members):
        raise RuntimeError(f"members of {name} seed {seed} not finished yet")
    folder = run_folder(work, budget, data_seed, name, seed)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    env = data_env(work, data_seed)
    for sub in ("pred_val", "pred_heldout"):
        command = ["nnUNetv2_ensemble", "-i", *(m / sub for m in members), "-o", folder / sub, "-np", 1]
        run_command(command, env, log=folder / f"{sub}.log")
    cpu = sum(json.loads((m / "result.json").read_text())["train_cpu_seconds"] for m in members)
    return {"train_cpu_seconds": cpu, **tune_and_score(folder, work, data_seed, env)}


def claim(folder: Path) -> bool:
    """Take the run's lock (a file holding this process id); False if a live process holds it."""
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


def one_run(work: Path, args: argparse.Namespace, item: tuple[int, int, str, int]) -> str:
    """Do one protocol run unless finished or locked; a line saying what happened."""
    budget, data_seed, arm, seed = item
    folder = run_folder(work, budget, data_seed, arm, seed)
    if (folder / "result.json").is_file():
        return f"finished earlier: {item}"
    if not claim(folder):
        return f"skipped (another invocation runs it): {item}"
    started = time.perf_counter()
    try:
        if arm in ENSEMBLES:
            result = ensemble_run(work, budget, data_seed, arm, seed)
        else:
            result = train_run(work, args, budget, data_seed, arm, seed)
    except Exception as e:  # keep going: a failed run is retried by the next invocation
        return f"FAILED {item}: {str(e).splitlines()[0] if str(e) else type(e).__name__} (folder {folder})"
    finally:
        (folder.parent / f"{folder.name}.lock").unlink(missing_ok=True)
    result |= {"budget": f"{budget}it", "data_seed": data_seed, "arm": arm, "seed": seed}
    tmp = folder / "result.json.partial"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(folder / "result.json")
    dice = [sum(result["raw"][r]["dice"]) / len(result["cases"]) for r in REGIONS]
    return f"done {item}: held-out Dice WT {dice[0]:.3f} TC {dice[1]:.3f} ET {dice[2]:.3f} in {time.perf_counter() - started:.0f} s"


def report(work: Path, draws: int) -> str:
    """Write ``WORK/learning_v2.md`` (the table of the finished runs) and return it."""
    results = [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*/*/*/seed*/result.json"))]
    if not results:
        return f"no finished runs under {work / 'runs'}"
    rows = summary_rows(results, BASELINE, [*ARMS, *ENSEMBLES], draws)
    text = (
        "Held-out cases: lesion-wise (LW) Dice and HD95 (mm), false positives per case, legacy (voxel) Dice; "
        "raw and after each arm's post-processing tuned on its validation cases; mean over data seeds of the mean "
        "over seeds and cases; sd over runs; 95 % paired bootstrap interval over cases and seeds.\n\n"
        + format_markdown(rows, LABELS, LABELS[BASELINE])
        + "\n"
    )
    (work / "learning_v2.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work-dir",
        dest="work_dir",
        type=Path,
        default=Path("bench_learning_work"),
        help="folder for data, models, predictions and results (re-used: finished runs are skipped)",
    )
    parser.add_argument("--workdir", dest="work_dir", type=Path, help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--budgets", type=int, nargs="+", default=[250, 1000], help="training iterations per run")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1], help="synthetic data seeds")
    parser.add_argument(
        "--arms", nargs="+", default=None, metavar="ARM", help="only these arms / ensembles (default: the protocol)"
    )
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (to work in pieces)")
    parser.add_argument("--train-cases", type=int, default=20, help="synthetic training cases per data seed")
    parser.add_argument("--val-cases", type=int, default=8, help="synthetic validation cases per data seed")
    parser.add_argument("--heldout-cases", type=int, default=40, help="synthetic held-out cases per data seed")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(64, 64, 48), metavar=("X", "Y", "Z"), help="synthetic volume size"
    )
    parser.add_argument(
        "--gpu-memory-target",
        type=float,
        default=None,
        help="re-plan with nnU-Net's planner for this GPU memory target (GB): a smaller patch, same for every arm",
    )
    parser.add_argument("--tta", action="store_true", help="predict with test-time mirroring (every arm)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at the same time (one thread each)")
    parser.add_argument("--drop-checkpoints", action="store_true", help="delete each run's model after predicting")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap draws for the report")
    parser.add_argument("--report", action="store_true", help="only write and print the table of finished runs")
    parser.add_argument("--list", action="store_true", help="list the arms and the protocol's runs")
    args = parser.parse_args(argv)
    runs = protocol_runs(args.budgets, args.data_seeds)
    if args.arms:
        runs = [r for r in runs if r[2] in args.arms]
    if args.list:
        for key, label in LABELS.items():
            print(f"{key:<18} {label}")
        print(f"{len(runs)} runs: " + ", ".join(f"{b}it/data{d}/{a}/seed{s}" for b, d, a, s in runs))
        return 0
    if args.report:
        print(report(args.work_dir, args.draws))
        return 0
    work = args.work_dir.resolve()
    (work / "bench_trainers").mkdir(parents=True, exist_ok=True)
    (work / "bench_trainers" / "tcup_bench_learning_trainers.py").write_text(bench_trainer_source())
    for data_seed in sorted({d for _, d, _, _ in runs}):
        prepare_data(work, data_seed, args)
    todo = [r for r in runs if not (run_folder(work, *r) / "result.json").is_file()][: args.max_runs]
    print(f"{len(todo)} runs to do", flush=True)
    # arms first, then the ensembles that need them
    for batch in ([r for r in todo if r[2] in ARMS], [r for r in todo if r[2] in ENSEMBLES]):
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(lambda item: one_run(work, args, item), batch):
                print(line, flush=True)
    print(report(work, args.draws))
    return 0


if __name__ == "__main__":
    sys.exit(main())
