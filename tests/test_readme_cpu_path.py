"""The README's "CPU, two folds" block, run verbatim (bash -e) on small synthetic cases with nnU-Net folders in a
temporary directory: convert, plan and preprocess, train folds 0 and 1 on the CPU, find the best configuration,
predict with the two-fold ensemble, evaluate and export must all succeed as written."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import VENV_BIN, run_command

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## CPU, two folds"


def readme_block(heading: str = HEADING) -> str:
    """The first ```bash block after ``heading`` in README.md."""
    text = README.read_text()
    start = text.index(heading)
    match = re.compile(r"```bash\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no bash block after {heading!r} in {README}"
    return match.group(1)


def test_block_uses_cpu_flags_and_two_folds():
    block = readme_block()
    for line in block.replace("\\\n", " ").splitlines():
        if line.startswith(("nnUNetv2_train", "nnUNetv2_predict")):
            assert "-device cpu" in line, line
        if line.startswith(("nnUNetv2_find_best_configuration", "nnUNetv2_predict")):
            assert "-f 0 1" in line, line
    assert "nnUNet_n_proc_DA=0" not in README.read_text(), "README must not suggest a setting that breaks planning"


def test_readme_cpu_path_runs_verbatim(tmp_path, nnunet_env):
    env = dict(nnunet_env)
    env.pop("nnUNet_n_proc_DA", None)  # a user's shell does not have the test default (0 breaks planning)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    for folder, start in (("GLI-train", 1), ("GLI-test", 101)):
        cases = "5" if folder == "GLI-train" else "2"
        run_command(
            [
                "nnunet_tcup",
                "synth",
                work / folder,
                "--challenge",
                "GLI",
                "--cases",
                cases,
                "--shape",
                "32",
                "32",
                "24",
                "--start-index",
                str(start),
                "--anatomy",
                "analytic",
            ],
            env=env,
        )
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"README block failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    with open(work / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["case"] for r in rows} == {"BraTS-GLI-00101-000", "BraTS-GLI-00102-000"}
    submission = sorted(p.name for p in (work / "submission").iterdir())
    assert submission == ["BraTS-GLI-00101-000.nii.gz", "BraTS-GLI-00102-000.nii.gz"]
    for name in submission:
        img = nib.load(work / "submission" / name)
        source = nib.load(work / "GLI-test" / name[: -len(".nii.gz")] / name.replace(".nii.gz", "-t1n.nii.gz"))
        assert img.get_data_dtype() == np.uint8 and img.shape == source.shape
        np.testing.assert_allclose(img.affine, source.affine)
        assert set(np.unique(np.asanyarray(img.dataobj))) <= {0, 1, 2, 3}
