"""``benchmarks/bench_gpu.py --smoke`` runs every section on CPU (plan, GAN/nnU-Net steps, predictor) and prints its
table. The GPU figures themselves come from running the script on a GPU (README, Benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_smoke_prints_every_row(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", nnUNet_n_proc_DA="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("| what") :]
    for row in (
        "TCuP-GAN G+D train step (fused ConvLSTM)",
        "TCuP-GAN G+D train step (fast ConvLSTM)",
        "nnU-Net default network train step",
        "generator fwd+bwd (per_slice)",
        "generator inference, one patch, eager",
        "predict one full-size case, mirroring off",
        "predict one full-size case, mirroring on",
    ):
        assert f"| {row}" in table, table
    fast_row = next(line for line in table.splitlines() if line.startswith("| generator fwd+bwd (fast)"))
    assert "x of 'generator fwd+bwd (fused)'" in fast_row  # same-run ratio against the fused generator
    assert (tmp_path / "preprocessed").is_dir()  # the plan came from nnU-Net's planner on real files


def test_bench_gpu_refuses_cuda_without_a_gpu(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setattr(bench_gpu.torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and len(err.strip().splitlines()) == 1
