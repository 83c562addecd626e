"""Where a demo run keeps everything (:class:`DemoPaths`), the models it trains (:class:`ModelRun`) and how console
scripts are found. Light module (no torch / nnU-Net imports)."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nnunet_tcup.demo.config import DemoSettings, TrainingBudget

__all__ = [
    "DA_VARIABLE",
    "DEMO_SHIM_DIR",
    "NNUNET_PATH_VARIABLES",
    "DemoPaths",
    "ModelRun",
    "baseline_budget",
    "command_path",
    "models_for",
]

DEMO_SHIM_DIR = Path(__file__).resolve().parent / "nnunet_ext"
NNUNET_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
DA_VARIABLE = "nnUNet_n_proc_DA"


def command_path(name: str) -> str:
    """A console script next to the running interpreter (the same environment), else the bare name for PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass(frozen=True)
class ModelRun:
    """One trained model of the demo: ``key`` names its folders and steps, ``label`` is shown in the report."""

    key: str
    label: str
    trainer: str
    budget: TrainingBudget | None = None  # None: the settings' budget (set for all subprocesses)


@dataclass(frozen=True)
class DemoPaths:
    """Where everything lives. nnU-Net's three folders are inside the work dir unless ``nnunet_dirs`` is given."""

    work_dir: Path
    settings: DemoSettings
    nnunet_dirs: Mapping[str, str] | None = None

    def nnunet_dir(self, variable: str) -> Path:
        if self.nnunet_dirs is not None:
            return Path(self.nnunet_dirs[variable])
        return self.work_dir / variable

    @property
    def brats_train(self) -> Path:
        return self.work_dir / "brats" / "train"

    @property
    def brats_heldout(self) -> Path:
        return self.work_dir / "brats" / "heldout"

    @property
    def raw_dataset(self) -> Path:
        return self.nnunet_dir("nnUNet_raw") / self.settings.dataset_name

    @property
    def images_test(self) -> Path:
        return self.raw_dataset / "imagesTs"

    @property
    def preprocessed_dataset(self) -> Path:
        return self.nnunet_dir("nnUNet_preprocessed") / self.settings.dataset_name

    @property
    def plans_file(self) -> Path:
        return self.preprocessed_dataset / f"{self.settings.plans}.json"

    @property
    def heldout_labels(self) -> Path:
        """Ground truth of the held-out cases, named like nnU-Net's predictions (``CASE.nii.gz``)."""
        return self.work_dir / "heldout_labels"

    @property
    def report_dir(self) -> Path:
        return self.work_dir / "report"

    def results_folder(self, model: ModelRun) -> Path:
        s = self.settings
        return self.nnunet_dir("nnUNet_results") / s.dataset_name / f"{model.trainer}__{s.plans}__{s.configuration}"

    def fold_folder(self, model: ModelRun, fold: int) -> Path:
        return self.results_folder(model) / f"fold_{fold}"

    def crossval_folder(self, model: ModelRun) -> Path:
        """Where nnUNetv2_find_best_configuration (and our tuner) put postprocessing.pkl for these folds."""
        folds = "_".join(str(f) for f in self.settings.folds)
        return self.results_folder(model) / f"crossval_results_folds_{folds}"

    def postprocessing_pkl(self, model: ModelRun) -> Path:
        return self.crossval_folder(model) / "postprocessing.pkl"

    def predictions(self, model: ModelRun, postprocessed: bool) -> Path:
        return self.work_dir / "predictions" / model.key / ("postprocessed" if postprocessed else "raw")

    def submission(self, model: ModelRun) -> Path:
        return self.work_dir / "submission" / model.key

    def review_dir(self, model: ModelRun) -> Path:
        """``nnunet_tcup review`` output of the model's folds on the held-out cases (review.html, review.csv, ...)."""
        return self.work_dir / "review" / model.key

    def metrics_csv(self, model: ModelRun, postprocessed: bool) -> Path:
        return self.report_dir / f"metrics_{model.key}_{'after' if postprocessed else 'before'}_pp.csv"

    def metrics_plot(self, model: ModelRun, postprocessed: bool) -> Path:
        return self.metrics_csv(model, postprocessed).with_suffix(".png")


def models_for(settings: DemoSettings, baseline: bool) -> list[ModelRun]:
    """TCuP-GAN, and stock nnU-Net with the same training budget when ``baseline``."""
    models = [ModelRun("tcupgan", "TCuP-GAN", settings.trainer)]
    if baseline:
        models.append(
            ModelRun("baseline", "stock nnU-Net", settings.baseline_trainer, budget=baseline_budget(settings))
        )
    return models


def baseline_budget(settings: DemoSettings) -> TrainingBudget:
    """The stock trainer's budget: the demo budget, or in full mode TCuP-GAN's own schedule (30 epochs of one pass
    over a fold's training cases at the batch size 2 that nnU-Net plans for full-size BraTS)."""
    if settings.budget is not None:
        return settings.budget
    n_train = settings.train_cases - settings.train_cases // 5  # nnU-Net's 5-fold split
    n_val = settings.train_cases // 5
    return TrainingBudget(
        epochs=30, iterations=max(1, math.ceil(n_train / 2)), val_iterations=max(1, min(50, math.ceil(n_val / 2)))
    )
