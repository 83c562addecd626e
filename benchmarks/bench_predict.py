"""One full-size BraTS case through nnU-Net's own predictor on a CPU: TCuP-GAN vs nnU-Net's default network.

What it does (``--work-dir`` keeps everything; a re-run reuses the plan, the model folders and every finished row):
1. Plan: synthetic full-size GLI cases (240 x 240 x 155, 1 mm, ``nnunet_tcup.synthetic``) are converted and planned
   by nnU-Net's own fingerprint extractor and default ExperimentPlanner (``bench_gpu.make_plan``): the real
   3d_fullres patch and spacing.
2. Model folders: for each network a folder as ``nnUNetv2_train`` leaves it (``plans.json``, ``dataset.json``,
   ``fold_0/checkpoint_final.pth`` with random weights; timing does not depend on them), the network built by the
   trainer's own ``build_network_architecture``, as the predictor builds it:
   - ``tcup``   ``nnUNetTrainerTCuPGAN`` (the TCuP-GAN generator, paper widths);
   - ``nnunet`` ``nnUNetTrainer`` (nnU-Net's default PlainConvUNet for these plans);
   - ``tcup_trainpath`` (not run unless named): the ``tcup`` model forced through its training-path forward under
     inference mode (ConvLSTMs through ``FusedRecurrence``, decoder in the training layout), i.e. the code before the
     inference path (``network_architecture/_inference_recurrence.py``): the before/after in the same run.
3. Rows: each (network, mirroring on/off, threads) runs in a fresh process: ``nnUNetPredictor`` (step 0.5, Gaussian
   weighting, CPU) initialised from the model folder exactly as ``nnUNetv2_predict`` does, then one full-size case
   through ``predict_from_files_sequential`` (the stock preprocessing, sliding window, resampling and NIfTI export
   that ``nnUNetv2_predict`` runs in worker processes, here in one process so that CPU time and peak memory are
   the whole job's). Measured: wall and CPU seconds of the case (model loading excluded), peak RSS of the process,
   and where the time goes: ``network`` (every forward call of the network, timed by forward hooks),
   ``window`` (the rest of the sliding window: padding, patch copies, mirroring flips, Gaussian accumulation),
   ``preprocess`` (reading, cropping, normalisation) and ``export`` (resampling back and writing the NIfTI).

Every finished row is recorded in ``WORK/<mode>/results.json`` and skipped when the script is run again (``--redo``
re-measures). Ratios nnunet / tcup compare rows of the same run (same machine, same load).

Usage: python benchmarks/bench_predict.py --work-dir DIR [--threads 1 2] [--networks tcup nnunet] [--mirroring off on]
       python benchmarks/bench_predict.py --work-dir DIR --smoke    # tiny case, both networks, seconds (CI)
On a loaded machine compare CPU seconds (the table prints both and the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

FULL_SHAPE = (240, 240, 155)
SMOKE_SHAPE = (40, 36, 28)
NETWORKS = {"tcup": "nnUNetTrainerTCuPGAN", "nnunet": "nnUNetTrainer", "tcup_trainpath": "nnUNetTrainerTCuPGAN"}
MIRROR_AXES = (0, 1, 2)
PHASES = ("network", "window", "preprocess", "export")


def row_key(network: str, mirroring: str, threads: int) -> str:
    return f"{network}/mirror-{mirroring}/threads-{threads}"


def set_nnunet_paths(mode_dir: Path) -> None:
    """nnU-Net reads its folders from the environment once, at import: call before importing nnunetv2."""
    for var, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
        os.environ[var] = str(mode_dir / sub)
    os.environ["nnUNet_compile"] = "f"


# ------------------------------------------------------------------------------------------------ setup (parent)
def plan(mode_dir: Path, shape: tuple[int, int, int], cases: int, workers: int) -> dict:
    """Plan once (``plan.json`` records it); return the case files and the planned patch/spacing."""
    record = mode_dir / "plan.json"
    if record.is_file():
        return json.loads(record.read_text())
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu import make_plan

    from nnunet_tcup.io_utils import write_json_atomic

    start = time.perf_counter()
    _, configuration, _, case_files = make_plan(mode_dir, shape, cases, workers)
    info = {
        "shape_xyz": list(shape),
        "planning_cases": cases,
        "patch": list(configuration.patch_size),
        "spacing": list(configuration.spacing),
        "case_files": case_files,
        "plan_seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(info, record)
    return info


def make_model_folders(mode_dir: Path) -> None:
    """A model folder per network, as training leaves it, with random weights (skipped when present)."""
    import shutil

    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_tcup.io_utils import write_json_atomic

    preprocessed = next((mode_dir / "preprocessed").glob("Dataset*"))
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration("3d_fullres")
    num_inputs = determine_num_input_channels(plans_manager, configuration, dataset_json)
    num_outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    for name, trainer_name in NETWORKS.items():
        if name == "tcup_trainpath":
            continue  # uses the tcup model folder
        folder = mode_dir / "models" / name
        if (folder / "fold_0" / "checkpoint_final.pth").is_file():
            continue
        trainer_class = _trainer_class(trainer_name)
        torch.manual_seed(0)
        network = trainer_class.build_network_architecture(
            plans_manager, configuration, num_inputs, num_outputs, enable_deep_supervision=False
        )
        tmp = folder.with_name(f".{name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "fold_0").mkdir(parents=True)
        write_json_atomic(plans, tmp / "plans.json")
        write_json_atomic(dataset_json, tmp / "dataset.json")
        checkpoint = {
            "network_weights": network.state_dict(),
            "trainer_name": trainer_name,
            "init_args": {"configuration": "3d_fullres"},
            "inference_allowed_mirroring_axes": MIRROR_AXES,
        }
        torch.save(checkpoint, tmp / "fold_0" / "checkpoint_final.pth")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)


def _trainer_class(trainer_name: str):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if trainer_name == "nnUNetTrainer":
        return nnUNetTrainer
    from nnunet_tcup.trainers.nnUNetTrainerTCuPGAN import nnUNetTrainerTCuPGAN

    return nnUNetTrainerTCuPGAN


# ------------------------------------------------------------------------------------------------ one row (child)
class PhaseTimer:
    """Accumulated wall and CPU seconds per phase; ``wrap`` times a function, ``hook`` a module's forward calls."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(PHASES, 0.0)
        self.cpu = dict.fromkeys(PHASES, 0.0)
        self.calls = dict.fromkeys(PHASES, 0)

    def add(self, phase: str, wall: float, cpu: float) -> None:
        self.wall[phase] += wall
        self.cpu[phase] += cpu
        self.calls[phase] += 1

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - wall, time.process_time() - cpu)

        return timed

    def hook(self, module) -> None:
        start: list[float] = []

        def pre(_module, _args) -> None:
            start[:] = [time.perf_counter(), time.process_time()]

        def post(_module, _args, _output) -> None:
            self.add("network", time.perf_counter() - start[0], time.process_time() - start[1])

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def run_row(mode_dir: Path, network: str, mirroring: str, threads: int) -> dict:
    """Predict the case once with one network; return the row's measurements."""
    import torch

    torch.set_num_threads(threads)
    import nnunetv2.inference.predict_from_raw_data as stock
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    info = json.loads((mode_dir / "plan.json").read_text())
    if network == "tcup_trainpath":
        import nnunet_tcup.network_architecture.convlstm as convlstm
        import nnunet_tcup.network_architecture.generator as generator

        convlstm.needs_autograd = generator.needs_autograd = lambda *tensors: True  # type: ignore[assignment]
    timer = PhaseTimer()
    load_start = time.perf_counter()
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=mirroring == "on",
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    model = mode_dir / "models" / ("tcup" if network == "tcup_trainpath" else network)
    predictor.initialize_from_trained_model_folder(str(model), (0,), "checkpoint_final.pth")
    load_s = time.perf_counter() - load_start
    timer.hook(predictor.network)
    # the sliding window (everything between preprocessing and export) and the phases around it
    predictor.predict_logits_from_preprocessed_data = timer.wrap(  # type: ignore[method-assign]
        "window", predictor.predict_logits_from_preprocessed_data
    )
    stock.export_prediction_from_logits = timer.wrap("export", stock.export_prediction_from_logits)
    preprocessor_class = predictor.configuration_manager.preprocessor_class
    preprocessor_class.run_case = timer.wrap("preprocess", preprocessor_class.run_case)

    out = mode_dir / "predictions" / row_key(network, mirroring, threads).replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    predictor.predict_from_files_sequential([info["case_files"]], [str(out / "case")], False, True, None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not (out / "case.nii.gz").is_file():
        raise RuntimeError(f"{out}: the predictor wrote no case.nii.gz")
    timer.wall["window"] -= timer.wall["network"]  # the window phase's own work, without the network calls
    timer.cpu["window"] -= timer.cpu["network"]
    return {
        "network": network,
        "trainer": NETWORKS[network],
        "mirroring": mirroring,
        "threads": threads,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_model_s": round(load_s, 2),
        "forward_calls": timer.calls["network"],
        "phase_wall_s": {k: round(v, 2) for k, v in timer.wall.items()},
        "phase_cpu_s": {k: round(v, 2) for k, v in timer.cpu.items()},
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
    }


# ------------------------------------------------------------------------------------------------ table
def print_table(rows: list[dict], info: dict) -> None:
    print(
        f"\none case {info['shape_xyz']} (x, y, z) 1 mm, 3d_fullres patch {info['patch']} spacing {info['spacing']}, "
        "nnUNetPredictor step 0.5, Gaussian, CPU; network share = forward calls (hooks) / case"
    )
    print(
        "| network | mirroring | threads | forwards | wall s | CPU s | peak RSS MiB | network % of wall (CPU) "
        "| network s | window s | preprocess s | export s | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        wall, cpu = row["phase_wall_s"], row["phase_cpu_s"]
        phases = " | ".join(f"{wall[p]:.1f} ({cpu[p]:.1f})" for p in PHASES)
        print(
            f"| {row['network']} | {row['mirroring']} | {row['threads']} | {row['forward_calls']} | {row['wall_s']:.1f} "
            f"| {row['cpu_s']:.1f} | {row['peak_rss_mib']} | {100 * wall['network'] / row['wall_s']:.0f} % "
            f"({100 * cpu['network'] / row['cpu_s']:.0f} %) | {phases} | {row['load_average'][0]:.1f} |"
        )
    print("phase columns: wall s (CPU s); window = sliding window without the network's forward calls")
    by_key = {row_key(r["network"], r["mirroring"], r["threads"]): r for r in rows}
    for row in rows:
        if row["network"] != "tcup":
            continue
        for name in ("nnunet", "tcup_trainpath"):
            other = by_key.get(row_key(name, row["mirroring"], row["threads"]))
            if other is not None:
                print(
                    f"{name} / tcup, mirroring {row['mirroring']}, {row['threads']} thread(s): wall "
                    f"{other['wall_s'] / row['wall_s']:.2f}x, CPU {other['cpu_s'] / row['cpu_s']:.2f}x, network "
                    f"wall {other['phase_wall_s']['network'] / row['phase_wall_s']['network']:.2f}x, network CPU "
                    f"{other['phase_cpu_s']['network'] / row['phase_cpu_s']['network']:.2f}x"
                )


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="folder for the plan, models and results")
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=["tcup", "nnunet"])
    parser.add_argument("--mirroring", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--threads", nargs="+", type=int, default=None, help="torch threads per row (default 1 2)")
    parser.add_argument("--cases", type=int, default=3, help="synthetic cases to plan from (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="processes for synthesis, conversion, fingerprint")
    parser.add_argument("--redo", action="store_true", help="measure the selected rows again")
    parser.add_argument("--smoke", action="store_true", help="tiny case (40 x 36 x 28), 1 thread: every path, seconds")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure one row in this process
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = [1] if args.smoke else [1, 2]
    if args.smoke:
        args.cases, args.workers = 2, 1
    if any(t < 1 for t in args.threads):
        parser.error("--threads: expected positive integers")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode_dir = (args.work_dir / ("smoke" if args.smoke else "full")).resolve()
    set_nnunet_paths(mode_dir)
    if args.row:
        network, mirroring, threads = args.row.split(",")
        row = run_row(mode_dir, network, mirroring, int(threads))
        from nnunet_tcup.io_utils import write_json_atomic

        write_json_atomic(
            row, mode_dir / "rows" / f"{row_key(network, mirroring, int(threads)).replace('/', '_')}.json"
        )
        return 0

    from nnunet_tcup.io_utils import write_json_atomic

    info = plan(mode_dir, SMOKE_SHAPE if args.smoke else FULL_SHAPE, args.cases, args.workers)
    print(f"plan: patch {info['patch']}, spacing {info['spacing']} ({info['planning_cases']} cases)", flush=True)
    make_model_folders(mode_dir)
    results_file = mode_dir / "results.json"
    results: dict = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for network in args.networks:
        for mirroring in args.mirroring:
            for threads in args.threads:
                key = row_key(network, mirroring, threads)
                if key in results and not args.redo:
                    print(f"{key}: done before, reused", flush=True)
                    continue
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                command = [sys.executable, str(Path(__file__).resolve()), "--work-dir", str(args.work_dir)]
                command += ["--row", f"{network},{mirroring},{threads}"] + (["--smoke"] if args.smoke else [])
                print(f"{key}: running (load average {os.getloadavg()[0]:.1f})", flush=True)
                subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
                row_file = mode_dir / "rows" / f"{key.replace('/', '_')}.json"
                results[key] = json.loads(row_file.read_text())
                write_json_atomic(results, results_file)
                print(f"{key}: wall {results[key]['wall_s']} s, CPU {results[key]['cpu_s']} s", flush=True)
    selected = [
        results[row_key(n, m, t)]
        for n in args.networks
        for m in args.mirroring
        for t in args.threads
        if row_key(n, m, t) in results
    ]
    print_table(selected, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
