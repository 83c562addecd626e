"""Tests of the shared reader, geometry check, partial-file cleanup, folder lock and parallel map.

Small NIfTI files are written with nibabel at test time.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from parallel_workers import fail_on_three, square

from nnunet_tcup.io_utils import (
    ImageGeometry,
    atomic_output,
    check_same_geometry,
    exclusive_lock,
    load_nifti,
    read_array_zyx,
    read_geometry,
    read_image_zyx,
    remove_stale_partials,
)
from nnunet_tcup.parallel import default_num_workers, parallel_map, positive_int

AFFINE = np.array([[-1.0, 0, 0, 10.0], [0, -1.5, 0, 239.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]])


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def volume(shape=(12, 10, 8), dtype=np.int16, seed=0) -> np.ndarray:
    """Random (i, j, k) volume; every voxel differs from its neighbours so axis order mistakes show."""
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def test_read_image_zyx_axis_order_and_geometry(tmp_path):
    data = volume()
    path = save(tmp_path / "a.nii.gz", data)
    array, geometry = read_image_zyx(path)
    np.testing.assert_array_equal(array, data.transpose(2, 1, 0))  # (i, j, k) -> (z, y, x)
    assert geometry.shape_zyx == (8, 10, 12)
    assert geometry.spacing_zyx == (2.0, 1.5, 1.0)
    # ITK uses LPS: nibabel's RAS origin (10, 239, -5) is (-10, -239, -5); flipped x/y axes become +1
    assert geometry.origin_xyz == (-10.0, -239.0, -5.0)
    assert geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert read_geometry(path) == geometry
    arr2, spacing = read_array_zyx(path)
    np.testing.assert_array_equal(arr2, array)
    assert spacing == (2.0, 1.5, 1.0)
    uncompressed = save(tmp_path / "a.nii", data)
    np.testing.assert_array_equal(read_image_zyx(uncompressed)[0], array)


@pytest.mark.parametrize("reader", [read_image_zyx, read_array_zyx, load_nifti])
def test_truncated_and_corrupt_files_are_refused(tmp_path, reader):
    path = save(tmp_path / "a.nii.gz", volume((40, 40, 30)))
    raw = path.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "no trailer": raw[:-8],  # all deflate data there, CRC-32 and length missing
        "bad crc": raw[:-8] + bytes([raw[-8] ^ 0xFF]) + raw[-7:],  # voxels intact, checksum wrong
        "not gzip": b"not a gzip file at all" * 10,
    }
    for what, content in cases.items():
        bad = tmp_path / f"bad_{what.replace(' ', '_')}.nii.gz"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match="truncated or corrupt gzip stream") as info:
            reader(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value), what
    plain = save(tmp_path / "b.nii", volume((40, 40, 30)))
    plain.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated file \(\d+ bytes, the header needs \d+\)"):
        reader(plain)
    with pytest.raises(ValueError, match="file not found"):
        reader(tmp_path / "missing.nii.gz")


def test_label_files_refuse_nan_inf_and_fractions(tmp_path):
    data = np.zeros((6, 6, 6), np.float32)
    data[1, 1, 1] = 3
    path = save(tmp_path / "ok.nii.gz", data)
    array, _ = read_image_zyx(path, labels=True)
    assert array.sum() == 3
    data[0, 0, 0], data[0, 0, 1], data[2, 2, 2] = np.nan, np.inf, 1.5
    bad = save(tmp_path / "bad.nii.gz", data)
    read_image_zyx(bad)  # an image may hold anything
    with pytest.raises(ValueError, match=r"bad.nii.gz: 2 non-finite voxel value\(s\) \(NaN/Inf\) in a label file"):
        read_image_zyx(bad, labels=True)
    data[0, 0, 0] = data[0, 0, 1] = 0
    with pytest.raises(ValueError, match=r"1 voxel\(s\) with non-integer values in a label file"):
        read_array_zyx(save(tmp_path / "frac.nii.gz", data), labels=True)


def _geometry(**changes) -> ImageGeometry:
    base = {
        "shape_zyx": (8, 10, 12),
        "spacing_zyx": (2.0, 1.5, 1.0),
        "origin_xyz": (-10.0, -239.0, -5.0),
        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    }
    base.update(changes)
    return ImageGeometry(**base)


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"shape_zyx": (8, 10, 11)}, "shape (z, y, x) (8, 10, 11) vs (8, 10, 12)"),
        ({"spacing_zyx": (2.0, 1.5, 1.01)}, "spacing (z, y, x) (2, 1.5, 1.01) mm vs (2, 1.5, 1) mm"),
        ({"origin_xyz": (-10.0, -236.0, -5.0)}, "origin (x, y, z) (-10, -236, -5) mm vs (-10, -239, -5) mm"),
        ({"direction": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "direction (-1, 0, 0, 0, 1, 0, 0, 0, 1) vs"),
    ],
)
def test_check_same_geometry_names_both_files_and_the_difference(changes, phrase):
    check_same_geometry(_geometry(), _geometry(), "ref.nii.gz", "other.nii.gz")
    with pytest.raises(ValueError) as info:
        check_same_geometry(_geometry(), _geometry(**changes), "ref.nii.gz", "other.nii.gz")
    message = str(info.value)
    assert message.startswith("other.nii.gz: geometry differs from ref.nii.gz: ") and phrase in message, message


def test_check_same_geometry_tolerances():
    near = _geometry(
        spacing_zyx=(2.0005, 1.5, 1.0),
        origin_xyz=(-10.005, -239.0, -5.0),
        direction=(1.0, 0.0005, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    )
    check_same_geometry(_geometry(), near, "a", "b")
    with pytest.raises(ValueError, match="origin"):
        check_same_geometry(_geometry(), near, "a", "b", origin_tol_mm=1e-3)


def test_remove_stale_partials_removes_every_partial_whatever_its_pid(tmp_path):
    keep = tmp_path / "case.nii.gz"
    keep.write_bytes(b"x")
    partials = [tmp_path / f".case.partial-{pid}.nii.gz" for pid in (os.getpid(), os.getppid(), 1, 999999999)]
    for p in partials:
        p.write_bytes(b"partial")
    assert remove_stale_partials(tmp_path) == 4
    assert sorted(tmp_path.iterdir()) == [keep]
    assert remove_stale_partials(tmp_path / "missing") == 0


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "sub" / "x.nii.gz"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.name.startswith(".x.partial-")
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(target.parent.iterdir()) == []


def test_exclusive_lock_refuses_a_second_holder_and_is_released(tmp_path):
    lock = tmp_path / "state" / "lock"
    with exclusive_lock(lock, "dataset X"):
        with pytest.raises(ValueError, match=rf"{lock}: another process is writing dataset X"):
            with exclusive_lock(lock, "dataset X"):
                pass
    with exclusive_lock(lock, "dataset X"):
        pass


def test_default_num_workers_and_positive_int(monkeypatch):
    monkeypatch.setenv("nnUNet_def_n_proc", "3")
    assert default_num_workers() == 3
    monkeypatch.setenv("nnUNet_def_n_proc", "zero")
    with pytest.raises(ValueError, match="nnUNet_def_n_proc='zero'"):
        default_num_workers()
    monkeypatch.delenv("nnUNet_def_n_proc")
    assert default_num_workers() == max(1, min(4, os.cpu_count() or 1))
    assert positive_int("2") == 2
    for bad in ("0", "-1", "x"):
        with pytest.raises(Exception, match="expected a positive integer"):
            positive_int(bad)


def test_parallel_map_keeps_order_and_raises_the_first_error():
    items = list(range(7))
    assert parallel_map(square, items, num_workers=2, progress=False) == [x * x for x in items]
    assert parallel_map(square, items, num_workers=1, progress=False) == [x * x for x in items]
    with pytest.raises(ValueError, match="item 3 is bad"):
        parallel_map(fail_on_three, items, num_workers=2, progress=False)
    with pytest.raises(ValueError, match="number of workers"):
        parallel_map(square, items, num_workers=0)


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from nnunet_tcup.parallel import parallel_map

    def work(path):
        open(path, "w").write(str(os.getpid()))
        time.sleep(600)

    if __name__ == "__main__":
        folder = sys.argv[1]
        parallel_map(work, [os.path.join(folder, f"w{i}") for i in range(2)], num_workers=2, progress=False)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())  # a zombie has exited


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("w*"))) < 2 or any(not p.read_text() for p in tmp_path.glob("w*")):
        assert time.monotonic() < deadline and parent.poll() is None, "workers did not start"
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in tmp_path.glob("w*")]
    parent.send_signal(signal.SIGKILL)  # the parent alone: workers would otherwise wait forever for work
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    still = [pid for pid in workers if _alive(pid)]
    for pid in still:
        os.kill(pid, signal.SIGKILL)
    assert still == [], "worker processes outlived their killed parent"


def test_gzip_verification_reads_multi_member_files(tmp_path):
    path = save(tmp_path / "a.nii.gz", volume())
    raw = gzip.decompress(path.read_bytes())
    half = len(raw) // 2
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))  # valid: gzip allows several members
    np.testing.assert_array_equal(read_image_zyx(multi)[0], read_image_zyx(path)[0])
