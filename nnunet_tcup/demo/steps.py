"""The demo's steps: the real user path, as the console commands a BraTS researcher runs.

synth (training and held-out cases) -> convert -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train (each fold)
-> nnUNetv2_predict (fold ensemble on the held-out cases) -> nnunet_tcup postprocess tune (on the cross-validation
predictions) -> nnUNetv2_apply_postprocessing -> nnunet_tcup evaluate (before and after post-processing)
-> nnunet_tcup export -> nnunet_tcup review (fold disagreement of the TCuP-GAN model) -> report. With a baseline,
the training-to-export part is repeated for stock nnU-Net.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from nnunet_tcup.demo.config import TrainingBudget
from nnunet_tcup.demo.layout import (
    DA_VARIABLE,
    DEMO_SHIM_DIR,
    NNUNET_PATH_VARIABLES,
    DemoPaths,
    ModelRun,
    baseline_budget,
    command_path,
    models_for,
)
from nnunet_tcup.demo.pipeline import ProgressSpec, Step
from nnunet_tcup.io_utils import atomic_output

__all__ = [  # the layout names are re-exported: callers import them from here
    "DA_VARIABLE",
    "DEMO_SHIM_DIR",
    "NNUNET_PATH_VARIABLES",
    "DemoPaths",
    "ModelRun",
    "baseline_budget",
    "build_steps",
    "collect_heldout_labels",
    "command_path",
    "da_workers",
    "model_steps",
    "models_for",
    "review_step",
    "subprocess_environment",
    "training_environment",
]


def subprocess_environment(
    paths: DemoPaths, device: str, num_processes: int, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment of the demo's subprocesses: nnU-Net folders, the demo trainers' shim and budget, CPU settings.

    The user's own environment is not modified; variables the user already set for CPU threads or torch.compile
    are kept. ``nnUNet_n_proc_DA`` is not inherited: each step that uses it sets its own (:func:`da_workers`),
    because a value that suits one command breaks another (0 crashes nnUNetv2_plan_and_preprocess).
    """
    env = dict(os.environ if base is None else base)
    env.pop(DA_VARIABLE, None)
    if paths.nnunet_dirs is None:
        for variable in NNUNET_PATH_VARIABLES:
            env[variable] = str(paths.nnunet_dir(variable))
    entries = [e for e in env.get("nnUNet_extTrainer", "").split(os.pathsep) if e]
    if str(DEMO_SHIM_DIR) not in entries:
        entries.append(str(DEMO_SHIM_DIR))
    env["nnUNet_extTrainer"] = os.pathsep.join(entries)
    if paths.settings.budget is not None:
        env.update(paths.settings.budget.as_environment())
    env["PYTHONUNBUFFERED"] = "1"  # live progress in the step logs
    env["MPLBACKEND"] = "Agg"
    # nnU-Net's default worker count (validation export, apply_postprocessing pools) is 8 spawned processes
    env.setdefault("nnUNet_def_n_proc", str(num_processes))
    if device == "cpu":
        env.setdefault("nnUNet_compile", "f")
        # nnUNetv2_train/_predict use one torch thread per core; on a busy machine OpenMP's spinning threads then
        # slow the many small ConvLSTM kernels down by an order of magnitude. Passive waiting avoids that.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def da_workers(
    step_kind: str, device: str, num_processes: int, inherited: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``nnUNet_n_proc_DA`` a step gets (as an env dict; empty: let nnU-Net choose), whatever was inherited.

    ``plan``: ``num_processes`` (>= 1; nnU-Net's planner calls ``torch.set_num_threads`` with it, 0 crashes it).
    ``train``: on CPU 0 (augmentation in the training process: workers would only compete for the few cores); on a
    GPU the user's value if it is a whole number >= 1, else nnU-Net's own default.
    """
    if step_kind == "plan":
        return {DA_VARIABLE: str(max(1, num_processes))}
    if step_kind != "train":
        raise ValueError(f"unknown step kind {step_kind!r}")
    if device == "cpu":
        return {DA_VARIABLE: "0"}
    value = (os.environ if inherited is None else inherited).get(DA_VARIABLE, "").strip()
    return {DA_VARIABLE: value} if value.isdigit() and int(value) >= 1 else {}


def training_environment(device: str, budget: TrainingBudget | None, num_processes: int = 1) -> dict[str, str]:
    """Extra variables of a training step: its budget and its data-augmentation workers (:func:`da_workers`)."""
    env = budget.as_environment() if budget is not None else {}
    env.update(da_workers("train", device, num_processes))
    return env


def _train_progress(budget: TrainingBudget | None) -> ProgressSpec | None:
    epochs = budget.epochs if budget is not None else 30  # nnUNetTrainerTCuPGAN: the paper's 30 epochs
    return ProgressSpec(
        pattern=r": Epoch \d+\s*$",
        total=epochs,
        unit="epoch",
        echo=r": (Epoch \d+\s*$|train_loss|val_loss|Pseudo dice|Epoch time|generator adversarial loss)",
    )


def build_steps(paths: DemoPaths, device: str, baseline: bool, num_processes: int, report_action) -> list[Step]:
    """All steps of a demo run, in order. ``report_action`` is the callable that writes the report."""
    s = paths.settings
    nnunet_tcup = command_path("nnunet_tcup")
    shape = [] if s.shape is None else ["--shape", *map(str, s.shape)]
    np_ = str(num_processes)
    steps: list[Step] = [
        Step(
            "synth_train",
            f"synthesise {s.train_cases} {s.challenge}-like training cases",
            command=[
                nnunet_tcup,
                "synth",
                paths.brats_train,
                "--challenge",
                s.challenge,
                "--cases",
                s.train_cases,
                "--seed",
                s.seed,
                "--num-workers",
                np_,
                *shape,
            ],
            outputs=[paths.brats_train],
        ),
        Step(
            "synth_heldout",
            f"synthesise {s.test_cases} held-out cases",
            command=[
                nnunet_tcup,
                "synth",
                paths.brats_heldout,
                "--challenge",
                s.challenge,
                "--cases",
                s.test_cases,
                "--seed",
                s.seed + 1,
                "--start-index",
                s.train_cases + 1,
                "--num-workers",
                np_,
                *shape,
            ],
            outputs=[paths.brats_heldout],
        ),
        Step(
            "convert",
            f"convert to nnU-Net's raw format ({s.dataset_name})",
            command=[
                nnunet_tcup,
                "convert",
                "--challenge",
                s.challenge,
                "--dataset-id",
                s.dataset_id,
                "--mode",
                s.dataset_mode,
                "--train",
                paths.brats_train,
                "--test",
                paths.brats_heldout,
                "--num-workers",
                np_,
                "--no-progress",
            ],
            outputs=[paths.raw_dataset / "dataset.json", paths.images_test],
        ),
        Step(
            "heldout_labels",
            "collect the held-out ground truth for evaluation",
            action=lambda: collect_heldout_labels(paths.images_test, paths.brats_heldout, paths.heldout_labels),
            outputs=[paths.heldout_labels],
        ),
        Step(
            "plan_and_preprocess",
            "nnU-Net fingerprint, plans and preprocessing (3d_fullres)",
            command=[
                command_path("nnUNetv2_plan_and_preprocess"),
                "-d",
                s.dataset_id,
                "-c",
                s.configuration,
                "-np",
                np_,
                "-npfp",
                np_,
                "--verify_dataset_integrity",
            ],
            outputs=[paths.plans_file],
            env=da_workers("plan", device, num_processes),
        ),
    ]
    for model in models_for(s, baseline):
        steps.extend(model_steps(paths, model, device, num_processes))
    steps.append(
        Step(
            "report",
            "write the report (tables, figures, overlays)",
            action=report_action,
            outputs=[paths.report_dir / "report.md"],
            always_run=True,
        )
    )
    return steps


def model_steps(paths: DemoPaths, model: ModelRun, device: str, num_processes: int) -> list[Step]:
    """Train every fold, predict the held-out cases with the fold ensemble, tune and apply post-processing,
    evaluate before and after it, and export BraTS submission files."""
    s = paths.settings
    nnunet_tcup = command_path("nnunet_tcup")
    folds = [str(f) for f in s.folds]
    np_ = str(num_processes)
    raw, pp = paths.predictions(model, False), paths.predictions(model, True)
    steps = [
        Step(
            f"train_{model.key}_fold{fold}",
            f"train {model.label} ({model.trainer}), fold {fold}",
            command=[
                command_path("nnUNetv2_train"),
                s.dataset_id,
                s.configuration,
                fold,
                "-tr",
                model.trainer,
                "-p",
                s.plans,
                "-device",
                device,
                "--c",
            ],
            outputs=[
                paths.fold_folder(model, fold) / "checkpoint_final.pth",
                paths.fold_folder(model, fold) / "progress.png",
            ],
            progress=_train_progress(model.budget or s.budget),
            env=training_environment(device, model.budget, num_processes),
        )
        for fold in s.folds
    ]
    steps += [
        Step(
            f"predict_{model.key}",
            f"predict the held-out cases with the ensemble of folds {' '.join(folds)}",
            command=[
                command_path("nnUNetv2_predict"),
                "-i",
                paths.images_test,
                "-o",
                raw,
                "-d",
                s.dataset_id,
                "-c",
                s.configuration,
                "-tr",
                model.trainer,
                "-p",
                s.plans,
                "-f",
                *folds,
                "-device",
                device,
                "-npp",
                "1",
                "-nps",
                "1",
                "--disable_progress_bar",
            ],
            outputs=[raw],
            progress=ProgressSpec(pattern=r"^Predicting ", total=s.test_cases, unit="case"),
        ),
        Step(
            f"postprocess_tune_{model.key}",
            "tune the lesion filter on the cross-validation predictions",
            command=[
                nnunet_tcup,
                "postprocess",
                "tune",
                "-d",
                s.dataset_id,
                "-tr",
                model.trainer,
                "-p",
                s.plans,
                "-c",
                s.configuration,
                "-f",
                *folds,
                "--challenge",
                s.challenge,
                "--num-workers",
                np_,
            ],
            outputs=[paths.postprocessing_pkl(model)],
        ),
        Step(
            f"postprocess_apply_{model.key}",
            "apply it with nnUNetv2_apply_postprocessing",
            command=[
                command_path("nnUNetv2_apply_postprocessing"),
                "-i",
                raw,
                "-o",
                pp,
                "-pp_pkl_file",
                paths.postprocessing_pkl(model),
                "-np",
                np_,
            ],
            outputs=[pp],
        ),
    ]
    for postprocessed, pred in ((False, raw), (True, pp)):
        when = "after" if postprocessed else "before"
        steps.append(
            Step(
                f"evaluate_{model.key}_{when}_pp",
                f"lesion-wise evaluation {when} post-processing",
                command=[
                    nnunet_tcup,
                    "evaluate",
                    "--gt",
                    paths.heldout_labels,
                    "--pred",
                    pred,
                    "--challenge",
                    s.challenge,
                    "-o",
                    paths.metrics_csv(model, postprocessed),
                    "--plot",
                    paths.metrics_plot(model, postprocessed),
                    "--num-workers",
                    np_,
                ],
                outputs=[paths.metrics_csv(model, postprocessed), paths.metrics_plot(model, postprocessed)],
            )
        )
    steps.append(
        Step(
            f"export_{model.key}",
            "export BraTS submission files",
            command=[
                nnunet_tcup,
                "export",
                pp,
                paths.submission(model),
                "--challenge",
                s.challenge,
                "--source",
                paths.brats_heldout,
                "--num-workers",
                np_,
                "--no-progress",
            ],
            outputs=[paths.submission(model)],
        )
    )
    if model.key == "tcupgan":
        steps.append(review_step(paths, model, device, num_processes))
    return steps


def review_step(paths: DemoPaths, model: ModelRun, device: str, num_processes: int) -> Step:
    """``nnunet_tcup review`` of the held-out cases: where the model's folds disagree, ranked for a reviewer."""
    s = paths.settings
    return Step(
        f"review_{model.key}",
        "rank the held-out cases by fold disagreement for human review",
        command=[
            command_path("nnunet_tcup"),
            "review",
            "--model",
            paths.results_folder(model),
            "-f",
            *[str(f) for f in s.folds],
            "-i",
            paths.images_test,
            "-o",
            paths.review_dir(model),
            "--gt",
            paths.heldout_labels,
            "--challenge",
            s.challenge,
            "--device",
            device,
            "--num-workers",
            str(num_processes),
            "--no-progress",
            "--overwrite",
        ],
        outputs=[paths.review_dir(model) / "review.html", paths.review_dir(model) / "review.csv"],
    )


def collect_heldout_labels(images_test: Path, brats_heldout: Path, out_dir: Path) -> None:
    """Copy each held-out case's ``-seg`` file to ``out_dir/CASE.nii.gz``, CASE being its nnU-Net identifier
    (the imagesTs file name without ``_0000.nii.gz``), so that GT and predictions have the same file names."""
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in Path(images_test).glob("*_0000.nii.gz"))
    if not cases:
        raise ValueError(f"{images_test}: no held-out images (*_0000.nii.gz)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for case in cases:
        seg = Path(brats_heldout) / case / f"{case}-seg.nii.gz"
        if not seg.is_file():
            raise ValueError(f"{seg}: ground truth of held-out case {case} not found")
        target = out_dir / f"{case}.nii.gz"
        with atomic_output(target) as tmp:
            shutil.copyfile(seg, tmp)
        print(f"{seg} -> {target}")
