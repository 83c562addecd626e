"""``benchmarks/bench_predict.py --smoke``: a tiny case through nnU-Net's predictor for both networks, mirroring off
and on, every row recorded and skipped when the script is run again. The full-size figures come from running the
script without ``--smoke`` (README, Benchmarks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_predict.py"


def _run(work: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", nnUNet_n_proc_DA="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--work-dir", str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_bench_predict_smoke_measures_every_row_and_resumes(tmp_path):
    out = _run(tmp_path)
    results = json.loads((tmp_path / "smoke" / "results.json").read_text())
    assert sorted(results) == [
        "nnunet/mirror-off/threads-1",
        "nnunet/mirror-on/threads-1",
        "tcup/mirror-off/threads-1",
        "tcup/mirror-on/threads-1",
    ]
    for network in ("tcup", "nnunet"):
        off, on = results[f"{network}/mirror-off/threads-1"], results[f"{network}/mirror-on/threads-1"]
        assert off["forward_calls"] >= 1 and on["forward_calls"] == 8 * off["forward_calls"]  # 7 mirrorings + 1
        for row in (off, on):
            assert 0 < row["phase_wall_s"]["network"] < row["wall_s"] and row["cpu_s"] > 0 and row["peak_rss_mib"] > 0
            assert set(row["phase_cpu_s"]) == {"network", "window", "preprocess", "export"}
    assert results["tcup/mirror-off/threads-1"]["trainer"] == "nnUNetTrainerTCuPGAN"
    assert results["nnunet/mirror-off/threads-1"]["trainer"] == "nnUNetTrainer"
    assert len(list((tmp_path / "smoke" / "predictions").glob("*/case.nii.gz"))) == 4  # the stock NIfTI export ran
    table = out[out.index("| network |") :]
    for network in ("tcup", "nnunet"):
        for mirroring in ("off", "on"):
            assert f"| {network} | {mirroring} | 1 |" in table, table
    assert "nnunet / tcup, mirroring off, 1 thread(s): wall" in out

    again = _run(tmp_path)  # resumable: every row is reused, none is measured again
    assert again.count("done before, reused") == 4 and "running" not in again
    assert json.loads((tmp_path / "smoke" / "results.json").read_text()) == results
