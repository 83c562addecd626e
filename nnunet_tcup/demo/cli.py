"""``nnunet_tcup demo``: the whole user path on synthetic data, with the stock nnU-Net commands, and a report."""

from __future__ import annotations

import argparse

from nnunet_tcup.parallel import positive_int

DEFAULT_WORK_DIR = "demo_output"

DESCRIPTION = """\
Run the real BraTS workflow end to end on synthetic data it makes itself, with the stock nnU-Net commands:
synth (training and held-out cases) -> convert -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train with TCuP-GAN
on each fold -> nnUNetv2_predict (fold ensemble) -> nnunet_tcup postprocess tune (on the cross-validation
predictions) -> nnUNetv2_apply_postprocessing -> nnunet_tcup evaluate (before and after post-processing) ->
nnunet_tcup export -> nnunet_tcup review (the held-out cases ranked by the disagreement of the folds, for human
review), then a report folder (WORK/report/report.md) with metrics, figures, overlays and a link to the review.
The dataset is converted with --mode regions (WT / TC / ET sigmoids, the package's default formulation);
--dataset-mode classes runs the paper's NETC / SNFH / ET formulation instead.

Presets: --quick (the default on every machine, CPU or GPU: small volumes, short training; on a GPU it is just
faster), --full (only when asked: full-size volumes, nnUNetTrainerTCuPGAN with the paper's schedule, 5 folds;
meant for a GPU, long), --smoke (the smallest run, for CI). Options below override the preset.

nnU-Net's folders (nnUNet_raw, nnUNet_preprocessed, nnUNet_results) are created inside the work dir and set for
the demo's subprocesses only; your shell's variables are not used or changed unless you pass --use-nnunet-env.
Every step's output goes to WORK/logs/STEP.log. Re-running the same command resumes: finished steps are skipped.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole workflow on synthetic data (train, predict, post-process, evaluate, export, review) "
        "and write a report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--work-dir",
        default=DEFAULT_WORK_DIR,
        help=f"folder for all data, models, logs and the report (default: ./{DEFAULT_WORK_DIR}); "
        "re-running with the same folder and settings resumes",
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument(
        "--smoke",
        dest="mode",
        action="store_const",
        const="smoke",
        help="smallest settings (tiny volumes, 2 epochs x 3 iterations): checks the path in minutes",
    )
    preset.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="the default, on CPU and GPU alike: 16 training + 6 held-out cases of 64x64x48, 6 epochs x 25 "
        "iterations, folds 0 1",
    )
    preset.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="the paper's recipe: 60 full-size cases, nnUNetTrainerTCuPGAN's own schedule, 5 folds (meant for "
        "a GPU, long; only when asked)",
    )
    p.add_argument("--cases", type=int, default=None, help="number of synthetic training cases (at least 5)")
    p.add_argument("--test-cases", type=int, default=None, help="number of synthetic held-out cases")
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help="synthetic volume size in voxels (1 mm); the full BraTS size is 240 240 155",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs per fold")
    p.add_argument("--iterations", type=int, default=None, help="training iterations per epoch")
    p.add_argument("--val-iterations", type=int, default=None, help="validation iterations per epoch")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="folds to train and ensemble, e.g. 0 1")
    p.add_argument("--seed", type=int, default=None, help="seed of the synthetic data (default 0)")
    p.add_argument(
        "--challenge", default=None, help="BraTS challenge the synthetic data imitates: GLI (default), MEN, PED or SSA"
    )
    p.add_argument("--dataset-id", type=int, default=None, help="nnU-Net dataset id (default 901)")
    p.add_argument(
        "--dataset-mode",
        choices=("regions", "classes"),
        default=None,
        help="nnunet_tcup convert --mode: regions (default; WT / TC / ET sigmoids) or classes (the paper's "
        "NETC / SNFH / ET sigmoid outputs and its label rule)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also train stock nnU-Net (nnUNetTrainer) with the same budget and report it side by side",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="device for training and prediction (default: cuda if available, else cpu)",
    )
    p.add_argument(
        "--num-workers",
        type=positive_int,
        default=2,
        metavar="N",
        help="worker processes for preprocessing, conversion, evaluation, post-processing and review (default 2)",
    )
    # the earlier name, kept working but not shown
    p.add_argument(
        "--num-processes", dest="num_workers", type=positive_int, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.add_argument("--overlay-cases", type=int, default=3, help="number of held-out cases drawn in the report")
    p.add_argument(
        "--use-nnunet-env",
        action="store_true",
        help="use the nnUNet_raw / nnUNet_preprocessed / nnUNet_results folders of your environment "
        "instead of folders inside the work dir (the dataset id must then be free there)",
    )
    p.set_defaults(func=run_demo)


def _resolve_device(requested: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu. Asked in a subprocess: importing torch here would inflate
    this process and with it the peak memory measured for every step (a child starts with its parent's size)."""
    if requested != "auto":
        return requested
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("nvidia-smi") is None and not os.path.exists("/dev/nvidiactl"):
        return "cpu"  # no NVIDIA driver: skip the seconds-long torch import

    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
    )
    return "cuda" if probe.returncode == 0 and probe.stdout.strip() == "True" else "cpu"


def run_demo(args: argparse.Namespace) -> int:
    """Build the settings and steps, run them, print where the report is. Returns the exit code."""
    import os
    import sys
    import time
    from pathlib import Path

    from nnunet_tcup.demo.config import check_work_dir_settings, make_settings
    from nnunet_tcup.demo.pipeline import PipelineRunner, StepFailed, format_bytes, format_seconds
    from nnunet_tcup.demo.pp_check import check_postprocessing, checks_headline, checks_table
    from nnunet_tcup.demo.report import ReportInputs, collect_results, results_table, write_report
    from nnunet_tcup.demo.steps import NNUNET_PATH_VARIABLES, DemoPaths, build_steps, models_for, subprocess_environment

    if args.overlay_cases < 0:
        raise ValueError(f"--overlay-cases {args.overlay_cases}: expected 0 or more")
    device = _resolve_device(args.device)
    mode = args.mode or "quick"  # the quick run on every machine (on a GPU it is just faster); --full when asked
    settings = make_settings(
        mode,
        train_cases=args.cases,
        test_cases=args.test_cases,
        shape=args.shape,
        epochs=args.epochs,
        iterations=args.iterations,
        val_iterations=args.val_iterations,
        folds=args.folds,
        seed=args.seed,
        challenge=args.challenge,
        dataset_id=args.dataset_id,
        dataset_mode=args.dataset_mode,
    )
    work_dir = Path(args.work_dir).expanduser().resolve()
    nnunet_dirs = None
    if args.use_nnunet_env:
        unset = [v for v in NNUNET_PATH_VARIABLES if not os.environ.get(v)]
        if unset:
            raise ValueError(f"--use-nnunet-env: environment variable(s) {', '.join(unset)} not set")
        nnunet_dirs = {v: os.environ[v] for v in NNUNET_PATH_VARIABLES}
    if work_dir.exists() and not work_dir.is_dir():
        raise ValueError(f"--work-dir {work_dir}: exists and is not a folder")
    check_work_dir_settings(work_dir, settings)

    paths = DemoPaths(work_dir, settings, nnunet_dirs)
    env = subprocess_environment(paths, device, args.num_workers)
    models = models_for(settings, args.baseline)
    runner = PipelineRunner(work_dir, env)
    started = time.monotonic()
    shown_env = {
        k: env[k]
        for k in (*NNUNET_PATH_VARIABLES, "nnUNet_extTrainer", "nnUNet_def_n_proc", "nnUNet_compile", "OMP_WAIT_POLICY")
        if k in env
    }
    if settings.budget is not None:
        shown_env.update(settings.budget.as_environment())

    def report_action() -> None:
        write_report(
            ReportInputs(
                paths=paths,
                models=models,
                device=device,
                records=list(runner.records),
                run_seconds=time.monotonic() - started,
                commands_env=shown_env,
                overlay_cases=args.overlay_cases,
            )
        )

    steps = build_steps(paths, device, args.baseline, args.num_workers, report_action)
    print(f"nnunet_tcup demo ({settings.describe()}; device {device})")
    print(f"work dir: {work_dir}")
    try:
        records = runner.run(steps)
    except StepFailed as e:
        print(f"nnunet_tcup demo: error: {e.message()}", file=sys.stderr)
        print("Fix the problem and run the same command again: finished steps are skipped.", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    peak = max((r.peak_rss_bytes for r in records), default=0)
    checks = [check_postprocessing(paths, m) for m in models]
    print()
    print(checks_headline(checks))
    print(checks_table(checks))
    print()
    print(results_table(collect_results(paths, models)))
    print()
    print(
        f"wall time of this run {format_seconds(elapsed)} (sum of step times {format_seconds(sum(r.seconds for r in records))}); "
        f"peak memory of a step {format_bytes(peak)}"
    )
    print(f"report: {paths.report_dir / 'report.md'}")
    return 0
