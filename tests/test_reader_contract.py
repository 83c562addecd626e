"""The one NIfTI reader contract (``nnunet_tcup.nifti_checks``) in every command, and one-line library messages.

Issue 20's bad inputs, made at test time over small good files (``bad_nifti``): a ``.nii.gz`` whose complete gzip
stream is short of the voxel bytes its header declares; a ~100-byte file declaring 640^3 voxels; a 261 KB gzip of a
1024x1024x256 zero volume (valid, refused when it would not fit in memory); a 32x32x0 volume; a complex64 image.
Each goes through ``convert``, ``export``, ``evaluate``, ``postprocess tune`` / ``apply`` and ``review``
(:func:`nnunet_tcup.cli.main`, in process): one error line naming the file, exit code 1, no output file. Peak memory
of the real console commands (a fresh process each, measured with ``wait4``) shows the refusal comes before any
voxel memory is allocated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_nifti import make_complex, make_header_only, make_short, make_zero_size, make_zero_volume
from conftest import command_path
from review_inputs import fold_dirs, make_review_inputs
from test_conversion import write_cases

from nnunet_tcup.cli import error_message, main
from nnunet_tcup.errors import ErrorList, one_line
from nnunet_tcup.io_utils import load_nifti, read_geometry, read_image_zyx, verify_nifti_file
from nnunet_tcup.nifti_checks import available_memory_bytes, check_nifti_file

CASE = "BraTS-GLI-00001-000"
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])
KINDS = {  # bad input -> (rewrite a good file into it, does it change the header's shape, expected problem)
    "short gzip stream": (make_short, False, r"incomplete image data: the gzip stream holds \d+ bytes, the header"),
    "640^3 header, no voxels": (make_header_only, True, r"incomplete image data: .* \(shape 640x640x640, int16\)"),
    "32x32x0 volume": (make_zero_size, True, r"image shape 32x32x0 has a zero-size or negative dimension"),
    "complex64 image": (make_complex, False, r"voxel type complex64 is not supported"),
}
COMMANDS = ["convert", "export", "evaluate", "postprocess tune", "postprocess apply", "review"]


def _labels(shift: int) -> np.ndarray:
    seg = np.zeros((16, 16, 12), np.uint8)
    seg[4 + shift : 10 + shift, 5:11, 3:9] = 2
    seg[6 + shift : 9 + shift, 7:10, 5:8] = 3
    return seg


def _label_folders(root: Path) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    for folder, shift in ((gt, 0), (pred, 1)):
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(_labels(shift), AFFINE), folder / f"{CASE}.nii.gz")
    return gt, pred


def _setup(command: str, root: Path, monkeypatch) -> tuple[list[str], list[Path], Path]:
    """``(argv, files to spoil (the first is the one the issue names), output root)`` of ``command`` on one good
    case under ``root``."""
    out = root / "out"
    if command == "convert":
        monkeypatch.setenv("nnUNet_raw", str(out))
        train = write_cases(root / "train", [1])
        argv = ["convert", "--challenge", "GLI", "--dataset-id", "1", "--train", str(train), "--no-progress"]
        return argv, [train / CASE / f"{CASE}-t1c.nii.gz"], out
    if command == "review":
        make_review_inputs(root)
        folds = [str(f) for f in fold_dirs(root)]
        argv = ["review", "--pred", *folds, "-i", str(root / "images"), "-o", str(out), "--no-progress"]
        return argv, [root / "images" / "case_agree_0000.nii.gz"], out
    gt, pred = _label_folders(root)
    spoil = [pred / f"{CASE}.nii.gz", gt / f"{CASE}.nii.gz"]
    if command == "export":
        return ["export", str(pred), str(out), "--challenge", "GLI", "--no-progress"], spoil[:1], out
    if command == "evaluate":
        argv = ["evaluate", "--gt", str(gt), "--pred", str(pred), "--challenge", "GLI", "-o", str(out / "r.csv")]
        return [*argv, "--no-progress"], spoil, out
    if command == "postprocess tune":
        return (
            ["postprocess", "tune", "--challenge", "GLI", "--pred", str(pred), "--gt", str(gt), "-o", str(out)],
            spoil,
            out,
        )
    assert main(["postprocess", "preset", "--challenge", "GLI", "-o", str(root / "pp")]) == 0
    argv = ["postprocess", "apply", "-i", str(pred), "-o", str(out), "--json", str(root / "pp" / "postprocessing.json")]
    return argv, spoil[:1], out


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_the_bad_file_in_one_line(command, kind, tmp_path, capsys, monkeypatch):
    make, changes_shape, problem = KINDS[kind]
    argv, spoil, out = _setup(command, tmp_path, monkeypatch)
    bad = spoil if changes_shape else spoil[:1]  # a prediction of another shape than its GT fails a geometry check
    for path in bad:
        make(path)
    capsys.readouterr()
    code = main([*argv, "--num-workers", "1"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("nnunet_tcup") or line.startswith("  - ")]
    assert code == 1 and "Traceback" not in err, err
    if command in ("convert", "export"):  # one header line, then one line per failing case
        what = "case(s)" if command == "convert" else "prediction(s)"
        assert lines[0] == f"nnunet_tcup {command}: error: 1 of 1 {what} failed the checks; nothing was written:", err
        assert len(lines) == 2 and lines[1].startswith("  - "), err
        message = lines[1][4:].removeprefix(f"case {CASE}: ")
    else:
        assert len(lines) == 1 and lines[0].startswith(f"nnunet_tcup {command}: error: "), err
        message = lines[0].split(": error: ", 1)[1]
    assert any(message.startswith(f"{path}: ") for path in bad), message
    assert re.search(problem, message), message
    assert _files(out) == []


# ----------------------------------------------------------------------------------------------- the contract itself
def _image(tmp_path: Path, name: str = "a.nii.gz", dtype=np.int16) -> tuple[Path, np.ndarray]:
    data = np.arange(10 * 8 * 6, dtype=dtype).reshape(10, 8, 6)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path, data


@pytest.mark.parametrize("reader", [verify_nifti_file, read_image_zyx, load_nifti])
def test_short_complete_gzip_stream_is_refused_by_every_reader(tmp_path, reader):
    path, _ = _image(tmp_path)
    with pytest.raises(
        ValueError, match=r"a.nii.gz: incomplete image data: the gzip stream holds 832 bytes, the header needs 1312 "
    ):
        reader(make_short(path))


def test_nii_must_be_exactly_as_long_as_its_header_says(tmp_path):
    path, data = _image(tmp_path, "a.nii")
    raw = path.read_bytes()
    np.testing.assert_array_equal(read_image_zyx(path)[0], data.T)
    path.write_bytes(raw + b"\0" * 7)
    with pytest.raises(ValueError, match=r"a.nii: 7 byte\(s\) more than the header declares"):
        read_image_zyx(path)
    gz = tmp_path / "b.nii.gz"
    import gzip

    gz.write_bytes(gzip.compress(raw + b"\0"))
    with pytest.raises(ValueError, match="b.nii.gz: the gzip stream holds more bytes than the header declares"):
        load_nifti(gz)


def test_header_limits_come_before_any_voxel_is_read(tmp_path, monkeypatch):
    path, _ = _image(tmp_path)
    make_header_only(path, (2048, 2048, 1024), np.uint8)  # 2^32 voxels
    with pytest.raises(ValueError, match=r"declares 4294967296 voxels .* more than the 2\^31"):
        read_geometry(path)
    make_zero_volume(path, (64, 64, 64), np.uint8)  # valid: accepted, then refused when memory is short
    assert check_nifti_file(path).voxels == 64**3
    monkeypatch.setattr("nnunet_tcup.nifti_checks.available_memory_bytes", lambda: 10**6)
    with pytest.raises(ValueError, match=r"reading it needs about 0.00 GiB of memory, 0.00 GiB are available"):
        load_nifti(path)
    monkeypatch.undo()
    available = available_memory_bytes()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert available is not None and 0 < available <= total


def test_big_endian_files_are_read_and_nifti2_and_pairs_are_refused(tmp_path):
    data = np.arange(10 * 8 * 6, dtype=np.float32).reshape(10, 8, 6)
    big = nib.Nifti1Image(data.astype(">f4"), AFFINE, nib.Nifti1Header(endianness=">"))
    nib.save(big, tmp_path / "big.nii")
    np.testing.assert_array_equal(read_image_zyx(tmp_path / "big.nii")[0], data.T)
    np.testing.assert_array_equal(load_nifti(tmp_path / "big.nii").get_fdata(dtype=np.float32), data)
    nib.save(nib.Nifti2Image(data, AFFINE), tmp_path / "two.nii.gz")
    for reader in (read_geometry, read_image_zyx, load_nifti):
        with pytest.raises(ValueError, match=r"two.nii.gz: NIfTI-2 files are not supported: SimpleITK"):
            reader(tmp_path / "two.nii.gz")
    pair = tmp_path / "pair.nii"
    raw = bytearray((tmp_path / "big.nii").read_bytes())
    raw[344:348] = b"ni1\0"
    pair.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"pair.nii: not a single-file NIfTI-1 image \(a header of a .hdr/.img pair\)"):
        read_geometry(pair)


# --------------------------------------------------------------------------------- memory of the real commands
# The command is started by a small launcher process that measures it: Linux records the old address space's
# peak at exec time, so a command started straight from this (large) pytest process would report pytest's peak.
_LAUNCHER = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, s, u = os.wait4(p.pid, 0); "
    "open(sys.argv[1], 'w').write(str(u.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(s))"
)


def _peak_run(argv: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``argv``; return ``(exit code, stderr, peak resident memory in MB of the process and its children)``."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(peak_file), *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return proc.returncode, proc.stderr, int(peak_file.read_text()) / 1024


_PATCHED_CLI = (
    "import sys, nnunet_tcup.nifti_checks as n; n.available_memory_bytes = lambda: 2**29; "  # 0.5 GiB available
    "from nnunet_tcup.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.slow  # fresh interpreters
@pytest.mark.parametrize("command", ["convert", "evaluate"])
@pytest.mark.parametrize("kind", ["640^3 header, 105 bytes", "1024x1024x256 zeros, 261 KB, 0.5 GiB free"])
def test_a_huge_header_is_refused_before_allocating(command, kind, tmp_path, nnunet_env, monkeypatch):
    argv, spoil, out = _setup(command, tmp_path, monkeypatch)
    env = dict(nnunet_env, nnUNet_raw=os.environ.get("nnUNet_raw", nnunet_env["nnUNet_raw"]))
    for path in spoil:
        make_header_only(path) if kind.startswith("640") else make_zero_volume(path)
    assert spoil[0].stat().st_size < (150 if kind.startswith("640") else 300_000)
    run = [command_path("nnunet_tcup")] if kind.startswith("640") else [sys.executable, "-c", _PATCHED_CLI]
    code, err, peak_mb = _peak_run([*run, *argv, "--num-workers", "1"], env)
    assert code == 1 and "Traceback" not in err, err
    wanted = "incomplete image data" if kind.startswith("640") else "reading it needs about 1.50 GiB of memory"
    assert wanted in err and any(f" {path}: " in err for path in spoil), err
    assert peak_mb < 300, f"peak {peak_mb:.0f} MB"
    assert _files(out) == []


# ------------------------------------------------------------------------------------------------- one line
def test_library_messages_are_joined_into_one_line():
    assert one_line("Expected 8 bytes, got 4 bytes from object\n - could the file be damaged?\r\n") == (
        "Expected 8 bytes, got 4 bytes from object - could the file be damaged?"
    )
    assert (
        error_message(ValueError("a.nii.gz: cannot read (EOFError: one\ntwo)"))
        == "a.nii.gz: cannot read (EOFError: one two)"
    )
    listed = ErrorList("2 of 2 case(s) failed:", ["case 1: x.nii.gz: first\nsecond", "case 2: y.nii.gz: z"])
    assert (
        error_message(listed) == "2 of 2 case(s) failed:\n  - case 1: x.nii.gz: first second\n  - case 2: y.nii.gz: z"
    )


@pytest.mark.parametrize("command", ["evaluate", "postprocess apply", "review"])
def test_itk_multi_line_refusal_is_one_line_with_its_reason(command, tmp_path, capsys, monkeypatch):
    argv, spoil, out = _setup(command, tmp_path, monkeypatch)
    image = nib.load(str(spoil[0]))
    skewed = image.affine.copy()
    skewed[:3, :3] = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # no orthonormal directions: ITK refuses
    for path in spoil[:1]:
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), skewed), str(path))
    capsys.readouterr()
    assert main([*argv, "--num-workers", "1"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nnunet_tcup")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nnunet_tcup {command}: error: {spoil[0]}: cannot read image"), lines
    reason = r"\(RuntimeError: ITK ERROR: ITK only supports orthonormal direction cosines\.\s+No orthonormal definition"
    assert re.search(reason + r" found!\)$", lines[0]), lines
    assert _files(out) == []
