"""Conversion throughput of ``nnunet_tcup convert``: N worker processes vs 1, measured in the same run.

Generates synthetic BraTS cases (full size 240x240x155 by default; not timed), converts them with 1 worker and with
N workers into fresh nnU-Net raw folders (repeated, alternating the order, best time kept), then times a re-run on the
finished dataset (every case verified and skipped). Prints cases/s and the ratio N workers / 1 worker.

    python benchmarks/bench_convert.py                      # 8 full-size GLI cases, N = CPU count (max 8)
    python benchmarks/bench_convert.py --cases 4 --shape 96 96 64 --num-workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from nnunet_tcup.dataset_conversion.brats2023 import convert_brats2023, dataset_name
from nnunet_tcup.parallel import default_num_workers
from nnunet_tcup.synthetic import write_dataset


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children, in seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_conversion(train: Path, raw: Path, challenge: str, dataset_id: int, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one conversion into a fresh dataset folder."""
    shutil.rmtree(raw / dataset_name(dataset_id, challenge), ignore_errors=True)
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = convert_brats2023(challenge, dataset_id, train, num_workers=workers, raw_dir=raw, progress=False)
    elapsed = time.perf_counter() - start
    assert not summary.skipped and len(summary.converted) == summary.num_training
    return elapsed, cpu_seconds() - cpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="number of synthetic training cases (default 8)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(240, 240, 155),
        metavar=("X", "Y", "Z"),
        help="volume shape in voxels (default 240 240 155, the BraTS size)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=default_num_workers(),
        help=f"N, the parallel worker count compared with 1 (default {default_num_workers()})",
    )
    parser.add_argument("--workers", dest="num_workers", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=2, help="timed conversions per setting; best kept (default 2)")
    parser.add_argument("--challenge", default="GLI", help="challenge of the synthetic cases (default GLI)")
    parser.add_argument(
        "--work-dir", default=None, help="folder for data and outputs (default: a temporary folder, removed afterwards)"
    )
    parser.add_argument("--workdir", dest="work_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        train, raw = work / "train", work / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if not train.is_dir():
            write_dataset(
                train,
                args.challenge,
                args.cases,
                seed=0,
                shape=tuple(args.shape),
                num_workers=args.num_workers,
                progress=False,
            )
        print(
            f"data: {args.cases} synthetic {args.challenge} cases {tuple(args.shape)} in {train} "
            f"({time.perf_counter() - start:.1f} s to make, not timed below)"
        )
        size_mb = sum(p.stat().st_size for p in train.rglob("*.nii.gz")) / 1e6
        print(
            f"source size: {size_mb:.1f} MB; CPUs: {os.cpu_count()}; load average before: "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )

        times: dict[int, list[tuple[float, float]]] = {1: [], args.num_workers: []}
        for r in range(args.repeats):
            order = (1, args.num_workers) if r % 2 == 0 else (args.num_workers, 1)
            for workers in order:
                times[workers].append(time_conversion(train, raw, args.challenge, 900 + workers, workers))
        start = time.perf_counter()
        summary = convert_brats2023(
            args.challenge, 900 + args.num_workers, train, num_workers=args.num_workers, raw_dir=raw, progress=False
        )
        verify_time = time.perf_counter() - start
        assert len(summary.skipped) == args.cases and not summary.converted

        print(f"{'run':<34}{'best s':>9}{'all s':>20}{'cases/s':>10}{'CPU s':>8}{'CPU/wall':>10}")
        for workers in (1, args.num_workers):
            wall, cpu = min(times[workers])
            all_times = ", ".join(f"{t:.2f}" for t, _ in times[workers])
            print(
                f"{f'convert, {workers} worker(s)':<34}{wall:9.2f}{all_times:>20}{args.cases / wall:10.2f}"
                f"{cpu:8.2f}{cpu / wall:10.2f}"
            )
        print(
            f"{f're-run (verify+skip), {args.num_workers} worker(s)':<34}{verify_time:9.2f}{'':>20}"
            f"{args.cases / verify_time:10.2f}"
        )
        ratio = min(times[1])[0] / min(times[args.num_workers])[0]
        print(
            f"throughput ratio {args.num_workers} workers / 1 worker: {ratio:.2f}x "
            f"(load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; CPU/wall near 1 per worker "
            f"means the workers got their cores, well below means the machine was busy)"
        )
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
