"""A worker process that dies (SIGKILL, as the out-of-memory killer sends) is one error line naming the item it was
working on, never a ``BrokenProcessPool`` traceback; the partial files of the run's workers are removed, another
run's are not. ``parallel_map`` directly, then the real ``nnunet_tcup convert --num-workers 2`` with one of its
workers killed from outside while it writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import command_path
from parallel_workers import square, write_or_die
from test_conversion import write_cases
from test_conversion_kills import _children

from nnunet_tcup.io_utils import is_partial_file, remove_partials_of
from nnunet_tcup.parallel import WorkerDiedError, parallel_map

KILLED = "worker died (signal 9; out of memory?)"


def test_a_killed_worker_names_its_item_and_its_runs_partials_are_removed(tmp_path):
    foreign = tmp_path / ".other.partial-1.txt"  # another process's (PID 1 is never one of our workers)
    foreign.write_text("not ours")
    jobs = [(str(tmp_path), item, 3) for item in range(6)]
    with pytest.raises(WorkerDiedError) as info:
        parallel_map(write_or_die, jobs, num_workers=2, progress=False, label=lambda job: f"job {job[1]}")
    assert str(info.value) == f"job 3: {KILLED}"
    left = sorted(p.name for p in tmp_path.iterdir() if is_partial_file(p))
    assert left == [foreign.name]  # the victim's and its terminated sibling's partials are gone, not the foreign one
    assert not (tmp_path / "3.txt").exists()
    # the default label of a non-string item is its position; the next map gets a fresh pool
    with pytest.raises(WorkerDiedError, match=re.escape(f"item 4 of 6: {KILLED}")):
        parallel_map(write_or_die, jobs, num_workers=2, progress=False)
    assert parallel_map(square, [1, 2, 3], num_workers=2, progress=False) == [1, 4, 9]


def test_remove_partials_of_takes_only_the_given_pids(tmp_path):
    names = [".a.partial-123.nii.gz", ".b.partial-1234.nii.gz", ".c.partial-123", "d.partial-123.json", ".e.json"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_partials_of(tmp_path, [123]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:2] + names[3:])
    assert remove_partials_of(tmp_path / "missing", [123]) == 0


def _partials_of(pid: int, folder: Path) -> list[Path]:
    return [p for p in folder.rglob(f"*.partial-{pid}*") if is_partial_file(p)]


@pytest.mark.slow
def test_convert_with_a_worker_killed_mid_write_is_one_line_and_leaves_no_partial(tmp_path, nnunet_env):
    train = write_cases(tmp_path / "train", range(1, 13), shape=(64, 64, 48))
    target = Path(nnunet_env["nnUNet_raw"]) / "Dataset002_BraTS2023_GLI"
    argv = [command_path("nnunet_tcup"), "convert", "--challenge", "GLI", "--dataset-id", "2", "--train", str(train)]
    proc = subprocess.Popen(
        [*argv, "--num-workers", "2", "--no-progress"],
        env=nnunet_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim, case, foreign = 0, "", target / "imagesTr" / ".BraTS-GLI-00099-000_0000.partial-1.nii.gz"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not victim:
        for pid in _children(proc.pid):
            partials = _partials_of(pid, target) if target.is_dir() else []
            if not partials:
                continue
            os.kill(pid, signal.SIGSTOP)  # caught mid-write: freeze it, then check its partial is still there
            partials = [p for p in partials if p.exists()]
            if not partials:
                os.kill(pid, signal.SIGCONT)
                continue
            victim, case = pid, re.match(r"\.(BraTS-GLI-\d{5}-000)", partials[0].name).group(1)
            foreign.write_text("another run's partial file")
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    out, err = proc.communicate(timeout=300)
    assert victim, f"no worker was caught writing (exit {proc.returncode}): {err[-2000:]}"
    assert proc.returncode == 1, err
    assert err.strip().splitlines() == [f"nnunet_tcup convert: error: {case}: {KILLED}"], err
    assert _partials_of(victim, target) == []
    leftover = [p.name for p in target.rglob("*") if is_partial_file(p)]
    assert leftover == [foreign.name], leftover  # only the foreign one: every worker of this run is cleaned up
    assert not (target / "dataset.json").exists()
