"""Real TCuP-GAN folds for ``bench_review.py --fold-model nnunet-ablation``: the learning ablation's setup that
learns on a CPU in minutes (benchmarks/bench_learning.py, README "Learning ablation": held-out lesion-wise Dice
0.6 after 150 iterations), trained as five cross-validation folds.

What it takes from the ablation (imported, not copied): the budget + seed trainer subclasses
(``bench_learning.bench_trainer_source``; ``benchTrainer_tcup_classes_priorbias`` = ``nnUNetTrainerTCuPGAN_priorBias``
with ``TCUP_BENCH_EPOCHS`` x ``TCUP_BENCH_ITERATIONS`` training steps), the paper's class formulation
(``convert --mode classes``) and the patch and batch it writes into the plans (16 x 48 x 48 as z, y, x; batch 2).
Each fold is the stock ``nnUNetv2_train DATASET 3d_fullres K -tr benchTrainer_tcup_classes_priorbias`` and
``nnUNetv2_predict -f K --save_probabilities``.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_learning import bench_trainer_name, bench_trainer_source

from nnunet_tcup.demo.pipeline import Step

SETTING = "tcup_classes_priorbias"  # bench_learning's best setting at 150 iterations (README "Learning ablation")
TRAINER = bench_trainer_name(SETTING)
CONVERT_MODE = "classes"
PATCH_ZYX = (16, 48, 48)
BATCH = 2
EPOCHS, ITERATIONS = 6, 25  # the ablation's budget: 150 training iterations


def trainer_folder(work: Path) -> Path:
    """Folder (for ``nnUNet_extTrainer``) holding the ablation's budget + seed trainer subclasses."""
    return work / "bench_trainers"


def write_trainers(work: Path) -> None:
    """Write the ablation's trainer subclasses into :func:`trainer_folder`."""
    folder = trainer_folder(work)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tcup_bench_learning_trainers.py").write_text(bench_trainer_source())


def set_patch_and_batch(plans_file: Path, marker: Path) -> None:
    """Write the ablation's patch (z, y, x) and batch into the 3d_fullres configuration of ``plans_file``; then
    ``marker`` (the step's output) records them."""
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = list(PATCH_ZYX)
    plans["configurations"]["3d_fullres"]["batch_size"] = BATCH
    plans_file.write_text(json.dumps(plans, indent=2))
    marker.write_text(json.dumps({"patch_size_zyx": list(PATCH_ZYX), "batch_size": BATCH}))


def setup_steps(work: Path, plans_file: Path) -> list[Step]:
    """Steps between planning and training: the trainer subclasses and the ablation's patch and batch."""
    return [
        Step(
            "ablation_trainers",
            f"write the learning ablation's trainer subclasses ({TRAINER})",
            action=lambda: write_trainers(work),
            outputs=[trainer_folder(work) / "tcup_bench_learning_trainers.py"],
        ),
        Step(
            "ablation_plans",
            f"patch {'x'.join(map(str, PATCH_ZYX))} (z, y, x), batch {BATCH} in the plans",
            action=lambda: set_patch_and_batch(plans_file, work / "ablation_plans.json"),
            outputs=[work / "ablation_plans.json"],
        ),
    ]


def fold_environment(seed: int, fold: int, epochs: int, iterations: int) -> dict[str, str]:
    """Environment of one fold's training and prediction (the ablation trainers read their budget and seed here)."""
    return {
        "TCUP_BENCH_SEED": str(seed * 100 + fold),
        "TCUP_BENCH_EPOCHS": str(epochs),
        "TCUP_BENCH_ITERATIONS": str(iterations),
        "TCUP_BENCH_CPU_SECONDS": "0",
        "OMP_NUM_THREADS": "1",
    }
