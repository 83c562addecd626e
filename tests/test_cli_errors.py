"""Every command answers an output it cannot write with one line ``nnunet_tcup CMD: error: PATH: PROBLEM`` and exit
code 1 (no traceback, no ``[Errno N]``): an output path under a regular file (NotADirectoryError / "File exists")
and one where even root may not create anything (``/sys/kernel/...``: PermissionError). In-process calls of
:func:`nnunet_tcup.cli.main` on tiny files written at test time."""

from __future__ import annotations

import errno
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_tcup.cli import describe_os_error, main

UNWRITABLE = Path("/sys/kernel/nnunet_tcup_test")  # sysfs: mkdir is refused even for root (EPERM)
SHAPE = (16, 16, 12)


def _labels(seed: int) -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    c = 5 + seed
    seg[c - 3 : c + 3, 5:11, 3:9] = 2
    seg[c - 1 : c + 2, 7:10, 5:8] = 3
    seg[c, 8, 6] = 1
    return seg


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A regular file to put outputs under, a GT and a prediction folder with two cases, a postprocessing.json."""
    blocker = tmp_path / "afile"
    blocker.write_text("I am a file")
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for i in (1, 2):
        name = f"BraTS-GLI-{i:05d}-000.nii.gz"
        nib.save(nib.Nifti1Image(_labels(i), np.diag([-1.0, -1.0, 1.0, 1.0])), gt / name)
        nib.save(nib.Nifti1Image(_labels(i + 1), np.diag([-1.0, -1.0, 1.0, 1.0])), pred / name)
    assert main(["postprocess", "preset", "--challenge", "GLI", "-o", str(tmp_path / "pp")]) == 0
    return {"file": blocker, "gt": gt, "pred": pred, "json": tmp_path / "pp" / "postprocessing.json"}


def _commands(inputs: dict[str, Path], out: Path) -> dict[str, list[str]]:
    """Each command with its output at ``out`` (a folder, or a file inside ``out`` where a file is written)."""
    gt, pred = str(inputs["gt"]), str(inputs["pred"])
    return {
        "export": ["export", pred, str(out), "--challenge", "GLI", "--num-workers", "1", "--no-progress"],
        "evaluate": [
            "evaluate",
            "--gt",
            gt,
            "--pred",
            pred,
            "--challenge",
            "GLI",
            "-o",
            str(out / "r.csv"),
            "--num-workers",
            "1",
            "--no-progress",
        ],
        "synth": [
            "synth",
            str(out),
            "--challenge",
            "GLI",
            "--cases",
            "1",
            "--shape",
            "16",
            "16",
            "16",
            "--anatomy",
            "analytic",
        ],
        "postprocess preset": ["postprocess", "preset", "--challenge", "GLI", "-o", str(out)],
        "postprocess tune": [
            "postprocess",
            "tune",
            "--challenge",
            "GLI",
            "--pred",
            pred,
            "--gt",
            gt,
            "-o",
            str(out),
            "--num-workers",
            "1",
        ],
        "postprocess apply": [
            "postprocess",
            "apply",
            "-i",
            pred,
            "-o",
            str(out),
            "--json",
            str(inputs["json"]),
            "--num-workers",
            "1",
        ],
    }


def _check_one_line_error(capsys, argv: list[str], command: str, path: Path) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("nnunet_tcup")]
    assert code == 1, (argv, err)
    assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
    assert lines[0].startswith(f"nnunet_tcup {command}: error: {path}"), err
    assert "Traceback" not in err and "Errno" not in err, err
    return lines[0]


COMMANDS = ["convert", "export", "evaluate", "synth", "postprocess preset", "postprocess tune", "postprocess apply"]


def _argv(command: str, inputs: dict[str, Path], out: Path, tmp_path: Path, monkeypatch) -> list[str]:
    if command == "convert":  # the output folder is $nnUNet_raw
        monkeypatch.setenv("nnUNet_raw", str(out))
        train = tmp_path / "train"
        from test_conversion import write_cases

        write_cases(train, [1])
        return [
            "convert",
            "--challenge",
            "GLI",
            "--dataset-id",
            "1",
            "--train",
            str(train),
            "--num-workers",
            "1",
            "--no-progress",
        ]
    return _commands(inputs, out)[command]


@pytest.mark.parametrize("command", COMMANDS)
def test_output_under_a_file(command, inputs, tmp_path, capsys, monkeypatch):
    out = inputs["file"] / "out"
    line = _check_one_line_error(capsys, _argv(command, inputs, out, tmp_path, monkeypatch), command, out)
    assert f"{inputs['file']} is a file, not a" in line or "not a directory" in line, line
    assert inputs["file"].read_text() == "I am a file"


@pytest.mark.parametrize("command", COMMANDS)
def test_output_where_nobody_may_write(command, inputs, tmp_path, capsys, monkeypatch):
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs Linux sysfs")
    out = UNWRITABLE / "out"
    line = _check_one_line_error(capsys, _argv(command, inputs, out, tmp_path, monkeypatch), command, UNWRITABLE)
    assert "operation not permitted" in line or "permission denied" in line, line


def test_evaluate_output_file_under_a_file_names_it(inputs, capsys):
    """`evaluate -o afile/r.csv` used to say "[Errno 17] File exists: 'afile'"."""
    out = inputs["file"] / "r.csv"
    argv = [
        "evaluate",
        "--gt",
        str(inputs["gt"]),
        "--pred",
        str(inputs["pred"]),
        "--challenge",
        "GLI",
        "-o",
        str(out),
        "--num-workers",
        "1",
        "--no-progress",
    ]
    line = _check_one_line_error(capsys, argv, "evaluate", out)
    assert "not a directory" in line, line


def test_debug_shows_the_traceback(inputs):
    argv = ["--debug", "postprocess", "preset", "--challenge", "GLI", "-o", str(inputs["file"] / "out")]
    with pytest.raises(OSError):
        main(argv)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/tmp/x/y"), "/tmp/x/y: permission denied"),
        (OSError(errno.ENOSPC, "No space left on device", "/tmp/x/y"), "/tmp/x/y: no space left on device"),
        (OSError(errno.EROFS, "Read-only file system", "/tmp/x/y"), "/tmp/x/y: read-only file system"),
        (
            FileExistsError("/tmp/x/y: exists with different content; refusing"),
            "/tmp/x/y: exists with different content",
        ),
    ],
)
def test_describe_os_error(error, expected):
    assert describe_os_error(error).startswith(expected)


def test_describe_os_error_for_a_path_under_a_file(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    try:
        (blocker / "sub").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        assert describe_os_error(e) == f"{blocker / 'sub'}: {blocker} is a file, not a directory"
    try:
        blocker.mkdir(parents=True, exist_ok=True)  # "[Errno 17] File exists"
    except OSError as e:
        assert describe_os_error(e) == f"{blocker}: is a file, but a directory is needed here"
