"""Demo settings: the presets (smoke, quick, full), user overrides, and the check that a work dir is reused with
the same settings. Light module (no torch / nnU-Net imports)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nnunet_tcup.challenges import check_challenge

ENV_EPOCHS = "NNUNET_TCUP_DEMO_EPOCHS"
ENV_ITERATIONS = "NNUNET_TCUP_DEMO_ITERATIONS"
ENV_VAL_ITERATIONS = "NNUNET_TCUP_DEMO_VAL_ITERATIONS"

#: Trainer classes used by the demo. The ``_demo`` ones only change the training length (see demo/trainers.py).
TCUPGAN_DEMO_TRAINER = "nnUNetTrainerTCuPGAN_demo"
BASELINE_DEMO_TRAINER = "nnUNetTrainer_demo"
TCUPGAN_TRAINER = "nnUNetTrainerTCuPGAN"

SETTINGS_FILE = "demo_settings.json"

#: ``nnunet_tcup convert --mode`` of the demo's dataset: ``regions`` (WT / TC / ET sigmoids), the package's default
#: formulation on every path (convert's default); ``classes`` is the paper's NETC / SNFH / ET formulation.
DATASET_MODES = ("regions", "classes")
DEFAULT_DATASET_MODE = "regions"


@dataclass(frozen=True)
class TrainingBudget:
    """Training length: ``epochs`` x ``iterations`` training steps, ``val_iterations`` validation steps per epoch."""

    epochs: int = 10
    iterations: int = 25
    val_iterations: int = 5

    def __post_init__(self) -> None:
        for name in ("epochs", "iterations", "val_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"training budget: {name} must be a positive integer, got {value!r}")

    def as_environment(self) -> dict[str, str]:
        """The environment variables that make the demo trainers use this budget."""
        return {
            ENV_EPOCHS: str(self.epochs),
            ENV_ITERATIONS: str(self.iterations),
            ENV_VAL_ITERATIONS: str(self.val_iterations),
        }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TrainingBudget:
        """Budget from ``NNUNET_TCUP_DEMO_*`` variables (defaults for unset ones); ValueError naming a bad one."""
        environ = os.environ if environ is None else environ
        default = cls()
        values = {}
        for field_name, key in (
            ("epochs", ENV_EPOCHS),
            ("iterations", ENV_ITERATIONS),
            ("val_iterations", ENV_VAL_ITERATIONS),
        ):
            raw = environ.get(key)
            if raw is None or raw.strip() == "":
                values[field_name] = getattr(default, field_name)
                continue
            try:
                values[field_name] = int(raw)
            except ValueError:
                raise ValueError(f"environment variable {key}={raw!r}: expected a positive integer") from None
            if values[field_name] < 1:
                raise ValueError(f"environment variable {key}={raw!r}: expected a positive integer")
        return cls(**values)

    def describe(self) -> str:
        return (
            f"{self.epochs} epochs x {self.iterations} iterations "
            f"(+{self.val_iterations} validation iterations per epoch)"
        )


@dataclass(frozen=True)
class DemoSettings:
    """Everything that determines the demo's results (a work dir is only reused with equal settings).

    ``shape`` is the synthetic volume size (x, y, z) in voxels (1 mm), ``None`` for full BraTS size 240x240x155.
    ``budget`` ``None`` means the trainer's own schedule (the paper's, in ``full`` mode). ``dataset_mode`` is the
    ``nnunet_tcup convert --mode``: ``regions`` (default: WT / TC / ET, as everywhere in the package) or ``classes``
    (the paper's formulation, NETC / SNFH / ET with the paper's label rule).
    """

    mode: str
    challenge: str = "GLI"
    train_cases: int = 16
    test_cases: int = 6
    shape: tuple[int, int, int] | None = (64, 64, 48)
    seed: int = 0
    folds: tuple[int, ...] = (0, 1)
    trainer: str = TCUPGAN_DEMO_TRAINER
    baseline_trainer: str = BASELINE_DEMO_TRAINER
    budget: TrainingBudget | None = field(default_factory=TrainingBudget)
    dataset_id: int = 901
    configuration: str = "3d_fullres"
    plans: str = "nnUNetPlans"
    dataset_mode: str = DEFAULT_DATASET_MODE

    def __post_init__(self) -> None:
        if self.mode not in PRESETS:
            raise ValueError(f"demo mode {self.mode!r}: expected one of {', '.join(PRESETS)}")
        if self.dataset_mode not in DATASET_MODES:
            raise ValueError(f"dataset mode {self.dataset_mode!r}: expected one of {', '.join(DATASET_MODES)}")
        check_challenge(self.challenge)
        if self.train_cases < 5:
            raise ValueError(f"--cases {self.train_cases}: nnU-Net's 5-fold split needs at least 5 training cases")
        if self.test_cases < 1:
            raise ValueError(f"--test-cases {self.test_cases}: need at least one held-out case")
        if self.shape is not None:
            if len(self.shape) != 3 or any(int(s) < 16 for s in self.shape):
                raise ValueError(f"--shape {self.shape}: expected three sizes X Y Z, each at least 16 voxels")
        if not self.folds:
            raise ValueError("--folds: give at least one fold")
        if len(set(self.folds)) != len(self.folds) or any(f < 0 or f > 4 for f in self.folds):
            raise ValueError(f"--folds {' '.join(map(str, self.folds))}: expected distinct folds among 0 1 2 3 4")
        if not 1 <= self.dataset_id <= 999:
            raise ValueError(f"--dataset-id {self.dataset_id}: expected 1..999")

    @property
    def dataset_name(self) -> str:
        return f"Dataset{self.dataset_id:03d}_BraTS2023_{self.challenge}"

    def to_json(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape) if self.shape is not None else None
        data["folds"] = list(self.folds)
        return data

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else "240x240x155"
        budget = self.budget.describe() if self.budget else "the trainer's own (paper) schedule"
        return (
            f"{self.mode}: {self.train_cases} training + {self.test_cases} held-out synthetic {self.challenge} "
            f"cases of {shape} voxels ({self.dataset_mode} dataset); {self.trainer}, {budget}; "
            f"folds {' '.join(map(str, self.folds))}"
        )


#: Presets. smoke: minutes, for CI. quick: the default on every machine (CPU or GPU), a CPU-sized run.
#: full: the paper's recipe (full-size volumes, 5 folds, nnUNetTrainerTCuPGAN's own schedule), only when asked.
PRESETS: dict[str, dict] = {
    "smoke": dict(
        train_cases=5,
        test_cases=2,
        shape=(32, 32, 24),
        folds=(0, 1),
        budget=TrainingBudget(epochs=2, iterations=3, val_iterations=1),
    ),
    "quick": dict(
        train_cases=16,
        test_cases=6,
        shape=(64, 64, 48),
        folds=(0, 1),
        budget=TrainingBudget(epochs=6, iterations=25, val_iterations=3),
    ),
    "full": dict(
        train_cases=60, test_cases=10, shape=None, folds=(0, 1, 2, 3, 4), trainer=TCUPGAN_TRAINER, budget=None
    ),
}


def make_settings(mode: str, **overrides) -> DemoSettings:
    """Settings of preset ``mode`` with the non-None ``overrides`` applied (budget fields: epochs, iterations,
    val_iterations)."""
    if mode not in PRESETS:
        raise ValueError(f"demo mode {mode!r}: expected one of {', '.join(PRESETS)}")
    values = dict(PRESETS[mode])
    budget_overrides = {
        k: overrides.pop(k) for k in ("epochs", "iterations", "val_iterations") if overrides.get(k) is not None
    }
    overrides = {
        k: v for k, v in overrides.items() if v is not None and k not in ("epochs", "iterations", "val_iterations")
    }
    values.update(overrides)
    if "shape" in values and values["shape"] is not None:
        values["shape"] = tuple(int(s) for s in values["shape"])
    if "folds" in values:
        values["folds"] = tuple(int(f) for f in values["folds"])
    if budget_overrides:
        base = values.get("budget")
        if base is None:  # full mode: an explicit budget switches to the budget-controlled trainer
            base = TrainingBudget()
            values["trainer"] = TCUPGAN_DEMO_TRAINER
        values["budget"] = replace(base, **budget_overrides)
    return DemoSettings(mode=mode, **values)


def check_work_dir_settings(work_dir: Path, settings: DemoSettings) -> None:
    """Record ``settings`` in a new (or empty) work dir; raise ValueError for a non-empty folder that is not a demo
    work dir, or when the recorded settings differ (the finished steps would not match the requested run)."""
    path = Path(work_dir) / SETTINGS_FILE
    current = settings.to_json()
    if not path.is_file() and Path(work_dir).is_dir() and any(Path(work_dir).iterdir()):
        raise ValueError(
            f"work dir {work_dir} is not empty and holds no demo run ({SETTINGS_FILE} missing); "
            f"choose a new or empty folder so that nothing of yours is overwritten"
        )
    if not path.is_file():
        from nnunet_tcup.io_utils import write_json_atomic

        Path(work_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(current, path)
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the settings of the earlier demo run ({e})") from e
    differences = [
        f"{key}: {recorded.get(key)!r} -> {current[key]!r}" for key in current if recorded.get(key) != current[key]
    ]
    if differences:
        raise ValueError(
            f"work dir {work_dir} holds a demo run with other settings ({'; '.join(differences)}). "
            f"Use another --work-dir, or repeat the earlier settings to resume that run."
        )
