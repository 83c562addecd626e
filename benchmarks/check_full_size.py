"""One-off check (not CI): full-size synthetic cases of all four BraTS 2023 challenges convert, pass nnU-Net's
dataset integrity check, and round-trip through ``nnunet_tcup export`` voxel for voxel.

For each challenge: synthesise training cases and one test case at 240x240x155, run the real
``nnunet_tcup convert`` (dataset ids 901-904), then ONE ``nnUNetv2_extract_fingerprint -d 901 902 903 904
--verify_dataset_integrity`` (the same integrity check ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity``
runs before planning), then treat each converted label as a prediction, ``nnunet_tcup export`` it with
``--source`` = the original BraTS folder and = the converted dataset, and compare with the original ``-seg``
(data, shape, affine; uint8).

    python benchmarks/check_full_size.py [--cases 2] [--work-dir DIR] [--shape 240 240 155]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from nnunet_tcup.challenges import CHALLENGES
from nnunet_tcup.synthetic import write_dataset

BIN = Path(sys.executable).parent


def run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    exe = BIN / argv[0]
    proc = subprocess.run([str(exe) if exe.exists() else argv[0], *argv[1:]], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"FAILED ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2, help="training cases per challenge (default 2)")
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155), metavar=("X", "Y", "Z"))
    parser.add_argument("--num-workers", type=int, default=2, help="worker processes for synth/convert/export")
    parser.add_argument("--workers", dest="num_workers", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default=None, help="working folder (default: temporary, removed afterwards)")
    parser.add_argument("--workdir", dest="work_dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="check_full_size_"))
    env = dict(os.environ, nnUNet_compile="f", nnUNet_def_n_proc=str(args.num_workers))
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[key] = str(work / key)
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    try:
        ids = {}
        for n, challenge in enumerate(CHALLENGES):
            dataset_id = 901 + n
            ids[challenge] = dataset_id
            train, test = work / challenge / "train", work / challenge / "test"
            start = time.perf_counter()
            write_dataset(
                train,
                challenge,
                args.cases,
                seed=n,
                shape=tuple(args.shape),
                num_workers=args.num_workers,
                progress=False,
            )
            write_dataset(
                test, challenge, 1, seed=n, shape=tuple(args.shape), with_seg=False, start_index=101, progress=False
            )
            made = time.perf_counter() - start
            start = time.perf_counter()
            proc = run(
                [
                    "nnunet_tcup",
                    "convert",
                    "--challenge",
                    challenge,
                    "--dataset-id",
                    str(dataset_id),
                    "--train",
                    str(train),
                    "--test",
                    str(test),
                    "--num-workers",
                    str(args.num_workers),
                    "--no-progress",
                ],
                env,
            )
            print(
                f"{challenge}: synth {made:.1f} s; convert {time.perf_counter() - start:.1f} s: {proc.stdout.strip()}"
            )

        start = time.perf_counter()
        proc = run(
            [
                "nnUNetv2_extract_fingerprint",
                "-d",
                *map(str, ids.values()),
                "--verify_dataset_integrity",
                "-np",
                str(args.num_workers),
                "--no_pbar",
            ],
            env,
        )
        passed = proc.stdout.count("verify_dataset_integrity Done")
        print(
            f"nnUNetv2_extract_fingerprint -d {' '.join(map(str, ids.values()))} --verify_dataset_integrity: "
            f"exit 0, integrity check passed for {passed}/{len(ids)} datasets ({time.perf_counter() - start:.1f} s)"
        )
        assert passed == len(ids)
        for challenge, dataset_id in ids.items():
            fp = (
                Path(env["nnUNet_preprocessed"])
                / f"Dataset{dataset_id:03d}_BraTS2023_{challenge}"
                / "dataset_fingerprint.json"
            )
            assert fp.is_file(), fp

        for challenge, dataset_id in ids.items():
            dataset = Path(env["nnUNet_raw"]) / f"Dataset{dataset_id:03d}_BraTS2023_{challenge}"
            train = work / challenge / "train"
            preds = work / challenge / "preds"
            preds.mkdir(exist_ok=True)
            for label in sorted((dataset / "labelsTr").glob("*.nii.gz")):
                shutil.copyfile(label, preds / label.name)
            for source in (train, dataset):
                out = work / challenge / f"export_{source.name}"
                run(
                    [
                        "nnunet_tcup",
                        "export",
                        str(preds),
                        str(out),
                        "--challenge",
                        challenge,
                        "--source",
                        str(source),
                        "--num-workers",
                        str(args.num_workers),
                        "--no-progress",
                    ],
                    env,
                )
                labels = []
                for exported_path in sorted(out.glob("*.nii.gz")):
                    case = exported_path.name[: -len(".nii.gz")]
                    original = nib.load(train / case / f"{case}-seg.nii.gz")
                    exported = nib.load(exported_path)
                    data = np.asanyarray(exported.dataobj)
                    assert exported.shape == original.shape and exported.get_data_dtype() == np.uint8
                    assert np.array_equal(exported.affine, original.affine), exported_path
                    assert np.array_equal(data, original.get_fdata()), exported_path
                    labels.append(f"{case} {exported.shape} labels {np.unique(data).tolist()}")
                print(
                    f"{challenge}: round trip via --source {source.name}: {len(labels)} case(s) identical "
                    f"(data, shape, affine, uint8): {'; '.join(labels)}"
                )
        print("ALL CHECKS PASSED")
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
