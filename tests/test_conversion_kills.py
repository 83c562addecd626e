"""Hard kills of `nnunet_tcup convert`: SIGKILL of the parent alone and of the whole process group, then an
immediate re-run must give the dataset of an uninterrupted run, byte for byte, that nnU-Net's integrity check accepts;
no worker may outlive its parent. Real console command, 2 workers, small synthetic-like cases."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import command_path, run_command
from test_conversion import write_cases

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _dataset_bytes(target: Path) -> dict[str, bytes]:
    """Every file nnU-Net reads (images, labels, dataset.json), by relative path."""
    files = [p for p in target.rglob("*") if p.is_file() and ".nnunet_tcup" not in p.parts]
    return {str(p.relative_to(target)): p.read_bytes() for p in sorted(files)}


@pytest.mark.parametrize("kill", ["parent", "group"])
def test_sigkill_then_rerun_gives_the_uninterrupted_dataset(tmp_path, nnunet_env, kill):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    train = write_cases(tmp_path / "train", range(1, 9), shape=(48, 48, 32))
    argv = [
        command_path("nnunet_tcup"),
        "convert",
        "--challenge",
        "GLI",
        "--dataset-id",
        "2",
        "--train",
        str(train),
        "--num-workers",
        "2",
        "--no-progress",
    ]
    clean_env = dict(nnunet_env, nnUNet_raw=str(tmp_path / "clean_raw"))
    run_command(argv, env=clean_env)
    clean = _dataset_bytes(tmp_path / "clean_raw" / "Dataset002_BraTS2023_GLI")

    target = Path(nnunet_env["nnUNet_raw"]) / "Dataset002_BraTS2023_GLI"
    proc = subprocess.Popen(
        argv, env=nnunet_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    cases = target / ".nnunet_tcup" / "cases"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (cases.is_dir() and any(cases.iterdir())):
        time.sleep(0.005)
    workers = _children(proc.pid)
    assert proc.poll() is None and workers, "the conversion ended before it could be killed"
    if kill == "parent":
        os.kill(proc.pid, signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (target / "dataset.json").exists(), "killed mid-way"
    # a leftover partial whose PID is alive (here: this test's own PID, as after PID reuse) must not survive either
    stray = target / "imagesTr" / f".BraTS-GLI-00008-000_0001.partial-{os.getpid()}.nii.gz"
    stray.write_bytes(b"half a file")
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], f"workers {survivors} outlived the killed parent"

    done = run_command(argv, env=nnunet_env)  # immediately, as a user would
    assert "case(s) converted" in done.stdout
    assert _dataset_bytes(target) == clean
    verify_dataset_integrity(str(target), 1)  # nnU-Net's own check (raises on stray or missing files)
