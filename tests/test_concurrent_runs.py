"""Runs that overlap (issue 20): `convert` and `postprocess apply` take their lock before they look at the output,
so a second run meanwhile fails at once with one line and changes nothing, and what a run that exits 0 leaves is
consistent (nnU-Net's integrity check passes). Real console commands started 0.3 s apart, both orders; the lock
itself (a lock file removed by its holder; a folder created for the lock and removed after a failure)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import command_path
from test_conversion import write_cases

from nnunet_tcup.io_utils import is_partial_file
from nnunet_tcup.locking import exclusive_lock, locked_folder

LOCKED = "another process is writing"


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [command_path(argv[0]), *argv[1:]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_overlapping(first: list[str], second: list[str], env: dict[str, str], gap_s: float = 0.3, when=None):
    """Start ``first``, then ``second`` ``gap_s`` later (or, with ``when``, as soon as ``when()`` is true while
    ``first`` runs); ``[(returncode, stdout, stderr)]`` of both."""
    procs = [start(first, env)]
    deadline = time.time() + (300 if when is not None else gap_s)
    while when is not None and not when() and procs[0].poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if when is None:
        time.sleep(gap_s)
    else:
        assert procs[0].poll() is None, "the first run ended before the second started"
    procs.append(start(second, env))
    outputs = [p.communicate(timeout=900) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def error_line(result, command: str) -> str:
    code, _, err = result
    assert code == 1, err
    first = err.strip("\n").split("\n")[0]
    assert first.startswith(f"nnunet_tcup {command}: error: "), err
    return first


# ------------------------------------------------------------------------------------------------ the lock itself
def test_lock_file_is_removed_by_its_holder(tmp_path):
    lock = tmp_path / "state" / "lock"
    with exclusive_lock(lock, "X", remove=True):
        assert lock.is_file()
        with pytest.raises(ValueError, match=f"{lock}: {LOCKED} X right now"):
            with exclusive_lock(lock, "X", remove=True):
                pass
        assert lock.is_file()  # the refused second holder removed nothing
    assert not lock.exists()


def test_lock_taken_on_a_file_removed_meanwhile_is_taken_again(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder removed it must not hold a lock on the dead file
    (a third process would then lock the new file too)."""
    lock = tmp_path / "lock"
    real_open = os.open
    calls = []

    def open_then_replaced(path, *args, **kwargs):  # the holder removes the file right after this open
        fd = real_open(path, *args, **kwargs)
        calls.append(path)
        if len(calls) == 1:
            os.unlink(path)
            Path(path).write_text("")
        return fd

    monkeypatch.setattr(os, "open", open_then_replaced)
    with exclusive_lock(lock, "X"):
        monkeypatch.setattr(os, "open", real_open)
        assert len(calls) == 2  # locked the first file, saw it was gone, locked the new one
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the file now at the path is the one held
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_locked_folder_removes_only_an_empty_folder_it_created(tmp_path):
    made = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), locked_folder(made, ".lock", "X"):
        assert (made / ".lock").is_file()
        raise RuntimeError("failed")
    assert not made.exists() and (tmp_path / "new").is_dir()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError), locked_folder(kept, ".lock", "X"):
        raise RuntimeError("failed")
    assert kept.is_dir() and list(kept.iterdir()) == []
    with locked_folder(made, ".lock", "X"):
        (made / "result").write_text("1")
    assert sorted(p.name for p in made.iterdir()) == ["result"]


def test_a_refused_second_run_removes_nothing(tmp_path):
    out = tmp_path / "out"
    with locked_folder(out, ".lock", "X"):
        (out / ".x.partial-1.nii.gz").write_text("the first run's staged file")
        with pytest.raises(ValueError, match=LOCKED), locked_folder(out, ".lock", "X"):
            pass
        assert sorted(p.name for p in out.iterdir()) == [".lock", ".x.partial-1.nii.gz"]


# ------------------------------------------------------------------------------------------------------- convert
def convert_argv(train: Path) -> list[str]:
    return ["nnunet_tcup", "convert", "--challenge", "GLI", "--dataset-id", "7", "--train", str(train)] + [
        "--num-workers",
        "1",
        "--no-progress",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["2 cases first", "5 cases first"])
def test_two_converts_into_one_dataset(tmp_path, nnunet_env, order):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    # the 2 cases are larger (slower to check) than the 5: a run that checked the output before taking the lock
    # would write its 2 cases and a dataset.json for 2 after the other run wrote its 5 (issue 20)
    two = write_cases(tmp_path / "two", range(1, 3), shape=(128, 128, 96))
    five = write_cases(tmp_path / "five", range(3, 8), shape=(32, 32, 24))
    runs = [convert_argv(two), convert_argv(five)]
    if order == "5 cases first":
        runs.reverse()
    results = run_overlapping(*runs, env=nnunet_env)
    raw = Path(nnunet_env["nnUNet_raw"])
    target = raw / "Dataset007_BraTS2023_GLI"
    assert any(code == 0 for code, _, _ in results), results
    for result in results:
        if result[0] != 0:  # refused: locked, or (run after the 5-case one) the other run's cases are foreign
            line = error_line(result, "convert")
            assert LOCKED in line or "not outputs of the given cases" in line, line
    dataset = json.loads((target / "dataset.json").read_text())
    labels = sorted(p.name for p in (target / "labelsTr").iterdir())
    assert dataset["numTraining"] == len(labels) == len(list((target / "imagesTr").iterdir())) // 4
    five_ok = results[1 if order == "2 cases first" else 0][0] == 0
    assert dataset["numTraining"] == (5 if five_ok else 2)  # the 5 cases, unless only the 2-case run succeeded
    verify_dataset_integrity(str(target), 1)
    assert sorted(p.name for p in raw.iterdir()) == [target.name]  # no lock file left
    assert not [p for p in target.rglob("*") if is_partial_file(p)]


# ---------------------------------------------------------------------------------------------- postprocess apply
@pytest.mark.slow
def test_two_postprocess_applies_into_one_folder(tmp_path, nnunet_env):
    from postprocessing_helpers import make_case, write_label_image

    from nnunet_tcup.io_utils import read_array_zyx
    from nnunet_tcup.postprocessing.lesion_filter import filter_lesions, preset_parameters
    from nnunet_tcup.postprocessing.nnunet_results import postprocessing_json, write_postprocessing_files

    params = preset_parameters("GLI")
    _, js, _ = write_postprocessing_files(tmp_path / "pp", params, postprocessing_json(params, "test", {}))
    predictions = {}
    for i in range(12):
        _, pred = make_case((64, 96, 96), seed=i)
        write_label_image(pred, tmp_path / "in" / f"case_{i}.nii.gz")
        predictions[f"case_{i}.nii.gz"] = pred
    out = tmp_path / "out"
    argv = ["nnunet_tcup", "postprocess", "apply", "-i", str(tmp_path / "in"), "-o", str(out), "--json", str(js)]
    argv += ["--num-workers", "1"]

    def staging() -> bool:
        return out.is_dir() and any(is_partial_file(p) for p in out.iterdir())

    results = run_overlapping(argv, argv, env=nnunet_env, when=staging)  # the second starts while the first stages
    assert sorted(code for code, _, _ in results) == [0, 1], results
    line = error_line(next(r for r in results if r[0] == 1), "postprocess apply")
    assert LOCKED in line or "exist already" in line, line  # overlapping: locked; else: the first's outputs exist
    assert sorted(p.name for p in out.iterdir()) == sorted(predictions)  # no staged file, no lock file
    for name, pred in predictions.items():
        expected = filter_lesions(
            pred, params.wt_threshold, params.tc_threshold, params.et_threshold, params.min_slices
        )
        assert np.array_equal(read_array_zyx(out / name, labels=True)[0], expected), name
