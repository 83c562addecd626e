"""Helpers shared by the trainer tests (tiny synthetic BraTS datasets run through the real nnU-Net commands)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from conftest import run_command

#: Patch (z, y, x) and batch size written into the plans so CPU training stays tiny.
TINY_PATCH = (16, 32, 32)
TINY_BATCH = 2


def fresh_shell_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without ``nnUNet_extTrainer`` (as in a new shell: only the package's .pth hook may add it).

    The pytest process itself ran the hook, so its own environment already holds the variable; dropping it shows
    that each subprocess finds the trainers by itself. ``OMP_WAIT_POLICY=PASSIVE`` keeps torch's two CPU threads
    from spinning against each other on a busy machine (no effect on results).
    """
    env = {k: v for k, v in env.items() if k != "nnUNet_extTrainer" and k != "PYTHONPATH"}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def make_brats_dataset(
    env: dict[str, str],
    work: Path,
    dataset_id: int,
    challenge: str = "GLI",
    n_train: int = 6,
    n_test: int = 0,
    shape: Sequence[int] = (48, 48, 32),
    seed: int = 1,
    mode: str = "regions",
    test_seg: bool = False,
) -> Path:
    """Synthetic BraTS cases (``nnunet_tcup synth``) converted to ``$nnUNet_raw`` (``nnunet_tcup convert --mode``).

    Returns the raw dataset folder. ``shape`` is (x, y, z) in voxels. ``test_seg``: the test cases keep their
    ``-seg`` files (ground truth for scoring predictions; the converter does not copy them).
    """
    shape_args = [str(s) for s in shape]
    train = work / f"synth_{challenge}_{dataset_id}_train"
    run_command(
        [
            "nnunet_tcup",
            "synth",
            train,
            "--challenge",
            challenge,
            "--cases",
            n_train,
            "--shape",
            *shape_args,
            "--seed",
            seed,
        ],
        env=env,
    )
    convert = [
        "nnunet_tcup",
        "convert",
        "--challenge",
        challenge,
        "--dataset-id",
        dataset_id,
        "--train",
        train,
        "--mode",
        mode,
        "--num-workers",
        1,
        "--no-progress",
    ]
    if n_test:
        test = work / f"synth_{challenge}_{dataset_id}_test"
        run_command(
            [
                "nnunet_tcup",
                "synth",
                test,
                "--challenge",
                challenge,
                "--cases",
                n_test,
                "--shape",
                *shape_args,
                "--seed",
                seed + 1000,
                *([] if test_seg else ["--no-seg"]),
                "--start-index",
                900,
            ],
            env=env,
        )
        convert += ["--test", test]
    run_command(convert, env=env)
    folders = list(Path(env["nnUNet_raw"]).glob(f"Dataset{dataset_id:03d}_*"))
    assert len(folders) == 1, folders
    return folders[0]


def planning_env(env: dict[str, str]) -> dict[str, str]:
    """nnU-Net 2.8.1's planner calls ``torch.set_num_threads(nnUNet_n_proc_DA)``, which fails for 0: use 1 there."""
    return {**env, "nnUNet_n_proc_DA": "1"}


def shrink_plans(plans_file: Path, patch: Sequence[int] = TINY_PATCH, batch: int = TINY_BATCH) -> None:
    """Set the 3d_fullres patch size (z, y, x) and batch size of an nnU-Net plans file."""
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = list(patch)
    config["batch_size"] = int(batch)
    plans_file.write_text(json.dumps(plans, indent=2))


#: Foreground intensity samples of the tests' dataset fingerprints. nnU-Net 2.8.1 samples 10^8 voxels per channel
#: whatever the dataset's size (for 5 tiny cases: about 20 s of CPU and a 5 GB peak); the statistics only drive CT
#: normalisation, and BraTS channels are MRI (z-score per case), so the plans' patch, spacing and topology are the
#: same with fewer.
FINGERPRINT_SAMPLES = 100_000

_FINGERPRINT_CODE = """import sys
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
extractor = DatasetFingerprintExtractor(int(sys.argv[1]), 1)
extractor.num_foreground_voxels_for_intensitystats = float(sys.argv[2])
extractor.run()
"""


def extract_fingerprint(env: dict[str, str], dataset_id: int, samples: int = FINGERPRINT_SAMPLES) -> None:
    """nnU-Net's own ``DatasetFingerprintExtractor`` (one process) with ``samples`` foreground intensity samples in
    all instead of 10^8: ``nnUNetv2_plan_and_preprocess`` (without ``--clean``) then plans from this fingerprint."""
    run_command(["python", "-c", _FINGERPRINT_CODE, dataset_id, samples], env=planning_env(env))


def plan_and_preprocess(
    env: dict[str, str], dataset_id: int, patch: Sequence[int] = TINY_PATCH, batch: int = TINY_BATCH
) -> Path:
    """:func:`extract_fingerprint`, then ``nnUNetv2_plan_and_preprocess -c 3d_fullres`` with one process, then
    :func:`shrink_plans`.

    Returns the preprocessed dataset folder.
    """
    extract_fingerprint(env, dataset_id)
    run_command(
        ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", "3d_fullres", "-np", 1, "-npfp", 1],
        env=planning_env(env),
    )
    folders = list(Path(env["nnUNet_preprocessed"]).glob(f"Dataset{dataset_id:03d}_*"))
    assert len(folders) == 1, folders
    shrink_plans(folders[0] / "nnUNetPlans.json", patch, batch)
    return folders[0]


def model_folder(
    env: dict[str, str], dataset_name: str, trainer: str, plans: str = "nnUNetPlans", configuration: str = "3d_fullres"
) -> Path:
    """``$nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>``."""
    return Path(env["nnUNet_results"]) / dataset_name / f"{trainer}__{plans}__{configuration}"


def predict_on_cpu(
    env: dict[str, str], images: Path, out: Path, dataset_id: int, trainer: str, folds: Sequence[int], *extra: object
) -> None:
    """The stock ``nnUNetv2_predict`` of 3d_fullres folds ``folds`` on the CPU with probabilities saved, in one
    process (``-npp 0 -nps 0``: nnU-Net's sequential path, the same probabilities without two spawned worker
    interpreters, half the CPU time of ``-npp 1 -nps 1``; the README block and the demo run the worker path);
    ``extra``: further arguments, e.g. ``--disable_tta``."""
    command: list[object] = ["nnUNetv2_predict", "-i", images, "-o", out, "-d", dataset_id, "-c", "3d_fullres"]
    command += ["-tr", trainer, "-f", *folds, "--save_probabilities", "-device", "cpu", "-npp", 0, "-nps", 0, *extra]
    run_command(command, env=env)


def write_user_trainers(folder: Path, module_name: str, source: str) -> Path:
    """A user's own trainer folder (for ``nnUNet_extTrainer``) holding one module; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module_name}.py").write_text(source)
    return folder


def with_user_trainer_folder(env: dict[str, str], folders: Iterable[Path]) -> dict[str, str]:
    """``env`` whose ``nnUNet_extTrainer`` lists only the user's ``folders`` (the package's hook appends its own)."""
    return {**env, "nnUNet_extTrainer": os.pathsep.join(str(f) for f in folders)}


def test_shrink_plans_edits_only_patch_and_batch(tmp_path: Path) -> None:
    plans_file = tmp_path / "nnUNetPlans.json"
    plans_file.write_text(
        json.dumps(
            {"configurations": {"3d_fullres": {"patch_size": [128, 128, 128], "batch_size": 2, "spacing": [1, 1, 1]}}}
        )
    )
    shrink_plans(plans_file, (16, 32, 40), 3)
    config = json.loads(plans_file.read_text())["configurations"]["3d_fullres"]
    assert config == {"patch_size": [16, 32, 40], "batch_size": 3, "spacing": [1, 1, 1]}
