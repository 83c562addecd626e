"""Zero-config discovery: the stock ``nnUNetv2_*`` commands find the TCuP-GAN trainers from a fresh shell.

"Fresh shell": a subprocess environment holding only ``PATH`` and the three nnU-Net folders (no
``nnUNet_extTrainer``, no ``PYTHONPATH``); the package's ``.pth`` hook must do the rest. ``nnUNetv2_train`` and
``nnUNetv2_predict`` from such a shell (plus CPU settings) also run in tests/test_trainer_e2e.py, whose stock-command
chain never sets ``nnUNet_extTrainer``. The user's-own-folder check uses nnU-Net's own lookup function
(``recursive_find_trainer_class_by_name``, what ``nnUNetv2_train`` and the predictor call), in one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nnunetv2
from conftest import run_command
from test_trainer_support import with_user_trainer_folder, write_user_trainers


def _installed_package_dir() -> Path:
    """Folder of the *installed* nnunet_tcup, as a fresh interpreter outside the checkout sees it (pytest run from
    the repository root imports the source tree instead, which differs from site-packages for a normal install)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import nnunet_tcup, os; print(os.path.dirname(nnunet_tcup.__file__))"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


SHIM_DIR = _installed_package_dir() / "trainers" / "nnunet_ext"
NNUNET_DIR = Path(nnunetv2.__file__).resolve().parent
#: Every trainer the shim re-exports (the paper's, its training-length variants and the loss ablations).
OUR_TRAINERS = (
    "nnUNetTrainerTCuPGAN",
    "nnUNetTrainerTCuPGAN_finetune",
    "nnUNetTrainerTCuPGAN_tiny",
    "nnUNetTrainerTCuPGAN_5epochs",
    "nnUNetTrainerTCuPGAN_DiceBCE",
    "nnUNetTrainerTCuPGAN_noClip",
    "nnUNetTrainerTCuPGAN_paperRegionWeights",
    "nnUNetTrainerTCuPGAN_priorBias",
)
#: Where each class really lives (the shim only re-exports: pickling, spawned workers and checkpoints need these).
HOME_MODULE = {
    "nnUNetTrainerTCuPGAN": "nnunet_tcup.trainers.nnUNetTrainerTCuPGAN",
    **dict.fromkeys(OUR_TRAINERS[1:4], "nnunet_tcup.trainers.variants.training_length"),
    **dict.fromkeys(OUR_TRAINERS[4:], "nnunet_tcup.trainers.variants.loss"),
}

USER_TRAINER_SOURCE = '''
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerUsersOwnForDiscoveryTest(nnUNetTrainer):
    """A user's own trainer in their own nnUNet_extTrainer folder."""
'''


def _minimal_env(tmp_path: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        folder = tmp_path / key
        folder.mkdir(exist_ok=True)
        env[key] = str(folder)
    return env


def _nnunet_listing() -> list[str]:
    """Files of the installed nnunetv2 package (bytecode caches excluded: Python writes those on any import)."""
    return sorted(
        str(p.relative_to(NNUNET_DIR))
        for p in NNUNET_DIR.rglob("*")
        if "__pycache__" not in p.parts and not p.name.endswith(".pyc")
    )


def _python(code: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_nnunetv2_train_finds_trainer_from_fresh_shell(tmp_path: Path) -> None:
    env = _minimal_env(tmp_path)
    before = _nnunet_listing()
    proc = run_command(
        ["nnUNetv2_train", "998", "3d_fullres", "0", "-tr", "nnUNetTrainerTCuPGAN", "-device", "cpu"],
        env=env,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert f"Using trainer 'nnUNetTrainerTCuPGAN' from: {SHIM_DIR}" in output, output[-3000:]
    assert "Could not find requested nnunet trainer" not in output
    # after finding the trainer it fails only because dataset 998 does not exist
    assert proc.returncode != 0 and "998" in proc.stderr
    assert _nnunet_listing() == before, "something was written into nnunetv2's installed folder"


def test_users_own_entries_kept_and_all_variants_found_outside_nnunetv2(tmp_path: Path) -> None:
    """With a user's own nnUNet_extTrainer folders: their trainer and all of ours are found (nnU-Net's lookup)."""
    user_folder = write_user_trainers(
        tmp_path / "my_trainers", "users_own_trainers_for_discovery_test", USER_TRAINER_SOURCE
    )
    other = tmp_path / "another_user_folder"
    other.mkdir()
    env = with_user_trainer_folder(_minimal_env(tmp_path), [user_folder, other])
    code = (
        "import json, os, sys\n"
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
        f"names = {list(OUR_TRAINERS) + ['nnUNetTrainerUsersOwnForDiscoveryTest']!r}\n"
        "modules = {n: find(n).__module__ for n in names}\n"
        "found = {n: [m, getattr(sys.modules.get(m), '__file__', None)] for n, m in modules.items()}\n"
        "try:\n"
        "    find('nnUNetTrainerTCuPGAN_NoSuchVariant')\n"
        "    unknown = 'found'\n"
        "except RuntimeError as e:\n"
        "    unknown = str(e)\n"
        "print(json.dumps({'ext': os.environ.get('nnUNet_extTrainer'), 'found': found, 'unknown': unknown}))\n"
    )
    result = json.loads(_python(code, env, tmp_path).strip().splitlines()[-1])
    assert result["ext"].split(os.pathsep) == [str(user_folder), str(other), str(SHIM_DIR)]
    assert "Could not find requested nnunet trainer" in result["unknown"]
    # nnU-Net imports ext modules by file name (and drops them from sys.modules afterwards): the user's module name
    assert result["found"]["nnUNetTrainerUsersOwnForDiscoveryTest"][0] == "users_own_trainers_for_discovery_test"
    for name in OUR_TRAINERS:
        module, path = result["found"][name]
        assert module == HOME_MODULE[name], (name, module)
        assert not Path(path).resolve().is_relative_to(NNUNET_DIR), (name, path)


def test_installed_files_stay_out_of_nnunetv2(tmp_path: Path) -> None:
    """pip's RECORD (what ``pip uninstall`` removes) holds the .pth hook and nothing inside nnunetv2."""
    code = (
        "import importlib.metadata as m, json\n"
        "d = [d for d in m.distributions() if d.metadata['Name'] == 'nnunet_tcup' and d.read_text('RECORD')][0]\n"
        "print(json.dumps([str(d.locate_file(f).resolve()) for f in d.files]))\n"
    )
    files = [
        Path(p)
        for p in json.loads(_python(code, {"PATH": os.environ.get("PATH", "")}, tmp_path).strip().splitlines()[-1])
    ]
    assert any(f.name == "nnunet_tcup_trainers.pth" for f in files), files
    assert not any(f.is_relative_to(NNUNET_DIR) for f in files)
