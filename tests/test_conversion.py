"""Tests of `nnunet_tcup convert` / `nnunet_tcup export`: layout, validation errors, resume, conflicts, round trip.

Tiny volumes (32x32x24) written with nibabel at test time; one real `nnUNetv2_plan_and_preprocess
--verify_dataset_integrity` run on a converted dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import command_path, run_command
from test_trainer_support import extract_fingerprint

from nnunet_tcup.cli import main as cli_main
from nnunet_tcup.dataset_conversion import case_io
from nnunet_tcup.dataset_conversion.brats2023 import PLAIN_LABELS, REGION_LABELS, REGIONS_CLASS_ORDER, convert_brats2023
from nnunet_tcup.dataset_conversion.export import export_predictions
from nnunet_tcup.io_utils import is_partial_file
from nnunet_tcup.synthetic import write_dataset

SHAPE = (32, 32, 24)
MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def brats_affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 239.0, 0.0)) -> np.ndarray:
    """LPS-style BraTS affine (x and y flipped), voxel sizes in mm."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    return affine


def tumour_labels(shape: Sequence[int], seed: int) -> np.ndarray:
    """Nested edema (2) / necrosis (1) / enhancing (3) blobs, position varying with seed (i, j, k)."""
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, np.uint8)
    c = [int(rng.integers(s // 3, 2 * s // 3)) for s in shape]
    grid = np.indices(shape)
    r2 = sum((g - ci) ** 2 for g, ci in zip(grid, c))
    seg[r2 < 49] = 2
    seg[r2 < 16] = 3
    seg[r2 < 4] = 1
    return seg


def write_case(
    root: Path,
    cid: str,
    shape=SHAPE,
    seed: int = 0,
    with_seg: bool = True,
    affine: np.ndarray | None = None,
    seg_dtype=np.uint8,
) -> Path:
    """A BraTS case folder with int16 images and a seg; returns the folder."""
    affine = brats_affine() if affine is None else affine
    folder = Path(root) / cid
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for m in MODALITIES:
        nib.save(nib.Nifti1Image(rng.integers(0, 1200, shape).astype(np.int16), affine), folder / f"{cid}-{m}.nii.gz")
    if with_seg:
        nib.save(nib.Nifti1Image(tumour_labels(shape, seed).astype(seg_dtype), affine), folder / f"{cid}-seg.nii.gz")
    return folder


def case_id(i: int, challenge: str = "GLI") -> str:
    return f"BraTS-{challenge}-{i:05d}-000"


def write_cases(root: Path, indices: Sequence[int], challenge: str = "GLI", with_seg: bool = True, **kw) -> Path:
    for i in indices:
        write_case(root, case_id(i, challenge), seed=i, with_seg=with_seg, **kw)
    return Path(root)


def partial_files(folder: Path):
    return [p for p in Path(folder).rglob("*") if is_partial_file(p)]


def run_cli(argv: Sequence[str], capsys) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def raw(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "nnUNet_raw"
    folder.mkdir()
    monkeypatch.setenv("nnUNet_raw", str(folder))
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    monkeypatch.delenv("nnUNet_results", raising=False)
    return folder


def convert_args(train: Path, dataset_id: int = 1, *extra) -> list:
    return [
        "convert",
        "--challenge",
        "GLI",
        "--dataset-id",
        dataset_id,
        "--train",
        train,
        "--num-workers",
        1,
        "--no-progress",
        *extra,
    ]


def file_state(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file below folder."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------------------------------
# Layout + the real nnU-Net integrity check


@pytest.mark.slow
def test_convert_regions_passes_nnunet_integrity_check(tmp_path, nnunet_env):
    train, test = tmp_path / "train", tmp_path / "test"
    write_dataset(train, "GLI", 2, seed=3, shape=SHAPE, progress=False)
    write_dataset(test, "GLI", 1, seed=3, shape=SHAPE, with_seg=False, start_index=7, progress=False)
    proc = run_command(
        [
            "nnunet_tcup",
            "convert",
            "--challenge",
            "gli",
            "--dataset-id",
            "11",
            "--train",
            train,
            "--test",
            test,
            "--num-workers",
            "2",
        ],
        env=nnunet_env,
        timeout=300,
    )
    dataset = Path(nnunet_env["nnUNet_raw"]) / "Dataset011_BraTS2023_GLI"
    assert "2 training, 1 test" in proc.stdout
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [
        f"{case_id(i)}_{c:04d}.nii.gz" for i in (1, 2) for c in range(4)
    ]
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == [f"{case_id(i)}.nii.gz" for i in (1, 2)]
    assert sorted(p.name for p in (dataset / "imagesTs").iterdir()) == [
        f"{case_id(7)}_{c:04d}.nii.gz" for c in range(4)
    ]
    for c, m in enumerate(MODALITIES):  # channel order t1n, t1c, t2w, t2f; byte copies
        src = train / case_id(2) / f"{case_id(2)}-{m}.nii.gz"
        assert (dataset / "imagesTr" / f"{case_id(2)}_{c:04d}.nii.gz").read_bytes() == src.read_bytes()
    label = nib.load(dataset / "labelsTr" / f"{case_id(1)}.nii.gz")
    source_seg = nib.load(train / case_id(1) / f"{case_id(1)}-seg.nii.gz")
    assert label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(label.dataobj), source_seg.get_fdata())
    np.testing.assert_array_equal(label.affine, source_seg.affine)

    ds = json.loads((dataset / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}
    assert ds["labels"] == REGION_LABELS and ds["regions_class_order"] == [2, 1, 3]
    assert (ds["numTraining"], ds["numTest"], ds["file_ending"]) == (2, 1, ".nii.gz")
    assert (ds["challenge"], ds["mode"], ds["source"]["train"]) == ("GLI", "regions", str(train.resolve()))

    # nnUNet_n_proc_DA=0 (the fixture's single-process loader) makes the planner call torch.set_num_threads(0)
    plan_env = dict(nnunet_env, nnUNet_n_proc_DA="1")
    extract_fingerprint(nnunet_env, 11)  # nnU-Net's extractor with fewer intensity samples; the planner reuses it
    proc = run_command(
        [
            "nnUNetv2_plan_and_preprocess",
            "-d",
            "11",
            "--verify_dataset_integrity",
            "-c",
            "3d_fullres",
            "-np",
            "1",
            "-npfp",
            "1",
            "--no_pp",
            "--no_pbar",
        ],
        env=plan_env,
        timeout=600,
    )
    assert "verify_dataset_integrity Done" in proc.stdout
    plans = json.loads(
        (Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset011_BraTS2023_GLI" / "nnUNetPlans.json").read_text()
    )
    assert plans["dataset_name"] == "Dataset011_BraTS2023_GLI"
    assert plans["configurations"]["3d_fullres"]["spacing"] == [1.0, 1.0, 1.0]


def test_classes_mode_dataset_json_and_labels_alias(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1])
    code, out, err = run_cli(convert_args(train, 3, "--mode", "classes"), capsys)
    assert code == 0, err
    target = raw / "Dataset003_BraTS2023_GLI"
    ds = json.loads((target / "dataset.json").read_text())
    assert ds["labels"] == PLAIN_LABELS == {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}
    assert "regions_class_order" not in ds and ds["mode"] == "classes"
    # --mode labels is an alias: the same dataset, found complete and verified, dataset.json unchanged
    before = file_state(raw)
    code, out, err = run_cli(convert_args(train, 3, "--mode", "labels"), capsys)
    assert code == 0 and "1 already complete" in out and "dataset.json unchanged" in out, (out, err)
    assert file_state(raw) == before
    # the same id in the other mode is refused, nothing touched
    code, out, err = run_cli(convert_args(train, 3), capsys)
    assert code == 1 and "mode 'classes'" in err and "'regions'" in err
    assert file_state(raw) == before


def test_dataset_of_an_older_labels_mode_counts_as_classes(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1])
    assert run_cli(convert_args(train, 3, "--mode", "classes"), capsys)[0] == 0
    for record in (
        raw / "Dataset003_BraTS2023_GLI" / "dataset.json",
        raw / "Dataset003_BraTS2023_GLI" / ".nnunet_tcup" / "conversion.json",
    ):
        obj = json.loads(record.read_text())
        obj["mode"] = "labels"
        record.write_text(json.dumps(obj))
    code, out, err = run_cli(convert_args(train, 3, "--mode", "classes"), capsys)
    assert code == 0 and "1 already complete" in out, err


def test_nnunet_raw_unset_is_a_clear_error(tmp_path):
    train = write_cases(tmp_path / "train", [1])
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_raw"}
    proc = run_command(
        ["nnunet_tcup", "convert", "--challenge", "GLI", "--dataset-id", "1", "--train", train], env=env, check=False
    )
    assert proc.returncode == 1
    assert "nnUNet_raw is not set" in proc.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs: non-zero exit, message naming case + file + problem, nothing written


def _replace_image(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    img = nib.load(path)
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), path)


def _break(case: Path, kind: str) -> tuple[Path, str]:
    """Damage one file of the case folder; return the file and a phrase the error must contain."""
    cid = case.name
    f = {m: case / f"{cid}-{m}.nii.gz" for m in MODALITIES + ("seg",)}
    if kind == "missing_modality":
        f["t2w"].unlink()
        return f["t2w"], "missing t2w image"
    if kind == "missing_seg":
        f["seg"].unlink()
        return f["seg"], "missing segmentation"
    if kind == "shape":
        _replace_image(f["t1c"], np.zeros((32, 32, 23), np.int16))
        return f["t1c"], "shape (32, 32, 23) differs from t1n's (32, 32, 24)"
    if kind == "spacing":
        _replace_image(f["t2f"], np.zeros(SHAPE, np.int16), brats_affine(spacing=(1.0, 1.0, 1.5)))
        return f["t2f"], "spacing (1.0, 1.0, 1.5) mm differs"
    if kind == "affine":
        _replace_image(f["t2w"], np.zeros(SHAPE, np.int16), brats_affine(origin=(0.0, 239.0, 2.0)))
        return f["t2w"], "affine differs from t1n's"
    if kind == "seg_affine":
        _replace_image(f["seg"], tumour_labels(SHAPE, 0), brats_affine(origin=(1.0, 239.0, 0.0)))
        return f["seg"], "affine differs"
    if kind == "label_outside":
        seg = tumour_labels(SHAPE, 0)
        seg[seg == 3] = 4
        _replace_image(f["seg"], seg)
        return f["seg"], "unexpected label value(s) [4]"
    if kind == "non_integer_label":
        seg = tumour_labels(SHAPE, 0).astype(np.float32)
        seg[seg == 1] = 1.5
        _replace_image(f["seg"], seg)
        return f["seg"], "non-integer label value(s) [1.5]"
    if kind == "nan_image":
        data = np.ones(SHAPE, np.float32)
        data[3, 4, 5] = np.nan
        data[4, 4, 5] = np.inf
        _replace_image(f["t1n"], data)
        return f["t1n"], "2 non-finite voxel value(s)"
    if kind == "truncated":
        raw_bytes = f["t1c"].read_bytes()
        f["t1c"].write_bytes(raw_bytes[: len(raw_bytes) // 2])
        return f["t1c"], "truncated or corrupt gzip stream"
    if kind == "garbage":
        f["seg"].write_bytes(b"this is not a nifti file at all" * 20)
        return f["seg"], "truncated or corrupt gzip stream (BadGzipFile"
    if kind == "not_3d":
        _replace_image(f["t1n"], np.zeros(SHAPE + (2,), np.int16))
        return f["t1n"], "expected a 3D volume"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing_modality",
        "missing_seg",
        "shape",
        "spacing",
        "affine",
        "seg_affine",
        "label_outside",
        "non_integer_label",
        "nan_image",
        "truncated",
        "garbage",
        "not_3d",
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, raw, capsys, kind):
    train = write_cases(tmp_path / "train", [1, 2, 3])
    bad_file, phrase = _break(train / case_id(2), kind)
    code, out, err = run_cli(convert_args(train), capsys)
    assert code == 1
    assert f"case {case_id(2)}" in err and str(bad_file) in err and phrase in err, err
    assert list(raw.iterdir()) == [], "nothing may be written when a case is bad"


def test_bad_input_exit_code_from_console_script(tmp_path, nnunet_env):
    train = write_cases(tmp_path / "train", [1, 2])
    bad_file, phrase = _break(train / case_id(1), "label_outside")
    proc = run_command(
        ["nnunet_tcup", "convert", "--challenge", "GLI", "--dataset-id", "1", "--train", train, "--num-workers", "2"],
        env=nnunet_env,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("nnunet_tcup convert: error:") == 1 and str(bad_file) in proc.stderr
    assert phrase in proc.stderr and "1 of 2 case(s) failed" in proc.stderr
    assert list(Path(nnunet_env["nnUNet_raw"]).iterdir()) == []


def test_duplicate_case_ids_across_train_and_test(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1, 2])
    test = write_cases(tmp_path / "test", [2], with_seg=False)
    code, out, err = run_cli(convert_args(train, 1, "--test", test), capsys)
    assert code == 1 and f"case {case_id(2)}: duplicate case id" in err
    assert str(train / case_id(2)) in err and str(test / case_id(2)) in err
    assert list(raw.iterdir()) == []


def test_wrong_folders_are_refused(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1])
    write_case(train, case_id(2, "MEN"))
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and "case of challenge MEN, but --challenge is GLI" in err
    shutil.rmtree(train / case_id(2, "MEN"))
    (train / "notes").mkdir()
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and f"{train / 'notes'}: not a BraTS case folder" in err
    code, _, err = run_cli(convert_args(tmp_path / "empty"), capsys)
    assert code == 1 and "not a directory" in err
    assert list(raw.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------------
# Existing datasets: never overwritten


def test_other_dataset_with_same_id_is_refused(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1])
    (raw / "Dataset004_SomethingElse" / "imagesTr").mkdir(parents=True)
    code, _, err = run_cli(convert_args(train, 4), capsys)
    assert code == 1 and "Dataset004_SomethingElse" in err and "already used" in err
    assert not (raw / "Dataset004_BraTS2023_GLI").exists()
    # the same id for another challenge
    assert run_cli(convert_args(train, 6), capsys)[0] == 0
    men = write_cases(tmp_path / "men", [1], challenge="MEN")
    code, _, err = run_cli(
        ["convert", "--challenge", "MEN", "--dataset-id", 6, "--train", men, "--no-progress"], capsys
    )
    assert code == 1 and "Dataset006_BraTS2023_GLI" in err and not (raw / "Dataset006_BraTS2023_MEN").exists()


def test_foreign_files_and_foreign_dataset_json_are_refused(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1])
    target = raw / "Dataset001_BraTS2023_GLI"
    (target / "imagesTr").mkdir(parents=True)
    foreign = target / "imagesTr" / "patient7_0000.nii.gz"
    foreign.write_bytes(b"user data")
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and str(foreign) in err and "not outputs of the given cases" in err
    assert foreign.read_bytes() == b"user data" and sorted(p.name for p in (target / "imagesTr").iterdir()) == [
        foreign.name
    ]
    foreign.unlink()
    (target / "dataset.json").write_text(json.dumps({"labels": {"background": 0}, "channel_names": {}}))
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and "was not made by nnunet_tcup convert" in err
    assert json.loads((target / "dataset.json").read_text()) == {"labels": {"background": 0}, "channel_names": {}}


def test_existing_output_that_differs_is_never_overwritten(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1, 2])
    assert run_cli(convert_args(train), capsys)[0] == 0
    target = raw / "Dataset001_BraTS2023_GLI"
    # a converted image changed by someone after conversion
    changed = target / "imagesTr" / f"{case_id(2)}_0001.nii.gz"
    shutil.copyfile(train / case_id(1) / f"{case_id(1)}-t1c.nii.gz", changed)
    before = file_state(raw)
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and str(changed) in err and "modified after conversion" in err
    assert file_state(raw) == before
    # same file without any record (e.g. made by hand): compared by content, still refused
    shutil.rmtree(target / ".nnunet_tcup")
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and str(changed) in err and "already exists and differs" in err
    # a label file made elsewhere with other labels
    changed.unlink()
    label = target / "labelsTr" / f"{case_id(1)}.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), brats_affine()), label)
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and str(label) in err and "already exists and differs" in err
    assert not np.asanyarray(nib.load(label).dataobj).any()


def test_source_changed_after_conversion_is_refused(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1])
    assert run_cli(convert_args(train), capsys)[0] == 0
    write_case(train, case_id(1), seed=99)  # new data under the same case id
    before = file_state(raw)
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and "changed since it was converted" in err and str(train / case_id(1)) in err
    assert file_state(raw) == before


# ---------------------------------------------------------------------------------------------------------------------
# Resume after interruption


def test_rerun_skips_verified_cases_and_restores_missing_outputs(tmp_path, raw, capsys):
    train = write_cases(tmp_path / "train", [1, 2, 3])
    code, out, _ = run_cli(convert_args(train), capsys)
    assert code == 0 and "3 case(s) converted, 0 already" in out
    target = raw / "Dataset001_BraTS2023_GLI"
    reference = {k: (target / k).read_bytes() for k in file_state(target)}
    code, out, _ = run_cli(convert_args(train), capsys)
    assert code == 0 and "0 case(s) converted, 3 already complete and verified" in out and "unchanged" in out

    (target / "labelsTr" / f"{case_id(2)}.nii.gz").unlink()
    (target / "dataset.json").unlink()
    stale = target / "imagesTr" / f".{case_id(3)}_0002.partial-999999999.nii.gz"  # left by a killed writer
    stale.write_bytes(b"half a file")
    untouched = file_state(target / "imagesTr")
    untouched.pop(stale.name)
    code, out, _ = run_cli(convert_args(train), capsys)
    assert code == 0 and "1 case(s) converted, 2 already complete" in out
    assert not stale.exists() and partial_files(raw) == []
    after = file_state(target / "imagesTr")
    assert after == untouched, "complete outputs are not rewritten"
    assert {k: (target / k).read_bytes() for k in file_state(target)} == reference


def test_interrupted_run_leaves_nothing_taken_for_complete(tmp_path, raw, monkeypatch, capsys):
    train = write_cases(tmp_path / "train", [1, 2, 3])
    calls = {"n": 0}
    real_copy = case_io._copy_image

    def copy_then_interrupt(source, target, expected_sha):
        calls["n"] += 1
        if calls["n"] == 6:  # second image of the second case: inside atomic_output
            with case_io.atomic_output(target) as tmp:
                tmp.write_bytes(source.read_bytes()[:100])
                raise KeyboardInterrupt
        return real_copy(source, target, expected_sha)

    monkeypatch.setattr(case_io, "_copy_image", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert_brats2023("GLI", 1, train, num_workers=1, progress=False)
    target = raw / "Dataset001_BraTS2023_GLI"
    assert not (target / "dataset.json").exists(), "an interrupted run must not look complete to nnU-Net"
    assert partial_files(raw) == []
    assert sorted(p.stem for p in (target / ".nnunet_tcup" / "cases").iterdir()) == [case_id(1)]
    assert (target / "imagesTr" / f"{case_id(2)}_0000.nii.gz").exists()
    assert not (target / "imagesTr" / f"{case_id(2)}_0001.nii.gz").exists()

    monkeypatch.setattr(case_io, "_copy_image", real_copy)
    summary = convert_brats2023("GLI", 1, train, num_workers=1, progress=False)
    assert summary.skipped == [case_id(1)] and summary.converted == [case_id(2), case_id(3)]
    ds = json.loads((target / "dataset.json").read_text())
    assert ds["numTraining"] == 3
    assert len(list((target / "imagesTr").iterdir())) == 12 and len(list((target / "labelsTr").iterdir())) == 3


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_dataset(tmp_path, nnunet_env):
    """SIGKILL a real conversion mid-way (wherever it is), re-run, compare with an uninterrupted conversion."""
    train = write_cases(tmp_path / "train", [1, 2, 3, 4, 5, 6], shape=(64, 64, 48))
    argv = [
        command_path("nnunet_tcup"),
        "convert",
        "--challenge",
        "GLI",
        "--dataset-id",
        "2",
        "--train",
        str(train),
        "--num-workers",
        "1",
        "--no-progress",
    ]
    target = Path(nnunet_env["nnUNet_raw"]) / "Dataset002_BraTS2023_GLI"
    proc = subprocess.Popen(
        argv, env=nnunet_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    first_manifest = target / ".nnunet_tcup" / "cases" / f"{case_id(1)}.json"
    deadline = time.time() + 120
    while time.time() < deadline and not first_manifest.exists() and proc.poll() is None:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert first_manifest.exists() and not (target / "dataset.json").exists(), "killed after the first case"
    done = run_command(argv, env=nnunet_env)
    assert "already complete and verified" in done.stdout

    clean_env = dict(nnunet_env, nnUNet_raw=str(tmp_path / "clean_raw"))
    run_command(argv, env=clean_env)
    clean = tmp_path / "clean_raw" / "Dataset002_BraTS2023_GLI"
    for sub in ("imagesTr", "labelsTr"):
        names = sorted(p.name for p in (target / sub).iterdir())
        assert names == sorted(p.name for p in (clean / sub).iterdir())
        for name in names:
            a, b = nib.load(target / sub / name), nib.load(clean / sub / name)
            np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
    assert partial_files(target) == []


# ---------------------------------------------------------------------------------------------------------------------
# Export and round trip


def test_round_trip_convert_then_export_gives_the_original_seg(tmp_path, raw, capsys):
    """Case 1: a synthetic BraTS case. Case 2: float32 seg, rotated anisotropic affine."""
    train = tmp_path / "train"
    write_dataset(train, "GLI", 1, seed=5, shape=SHAPE, progress=False)
    oblique = brats_affine(spacing=(0.9, 1.1, 1.3))
    rotation = np.array([[np.cos(0.2), -np.sin(0.2), 0], [np.sin(0.2), np.cos(0.2), 0], [0, 0, 1]])
    oblique[:3, :3] = rotation @ oblique[:3, :3]
    write_case(train, case_id(2), seed=2, affine=oblique, seg_dtype=np.float32)
    assert np.unique(nib.load(train / case_id(1) / f"{case_id(1)}-seg.nii.gz").get_fdata()).tolist() == [0, 1, 2, 3]
    assert run_cli(convert_args(train), capsys)[0] == 0
    dataset = raw / "Dataset001_BraTS2023_GLI"
    preds = tmp_path / "preds"
    preds.mkdir()
    for i in (1, 2):  # the converted labels play the part of nnU-Net predictions
        shutil.copyfile(dataset / "labelsTr" / f"{case_id(i)}.nii.gz", preds / f"{case_id(i)}.nii.gz")
    for source in (train, dataset, dataset / "imagesTr", None):
        out = tmp_path / f"out_{'none' if source is None else Path(source).name}"
        args = ["export", preds, out, "--challenge", "GLI", "--num-workers", 1, "--no-progress"]
        code, stdout, err = run_cli(args + (["--source", source] if source is not None else []), capsys)
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == [f"{case_id(1)}.nii.gz", f"{case_id(2)}.nii.gz"]
        for i in (1, 2):
            original = nib.load(train / case_id(i) / f"{case_id(i)}-seg.nii.gz")
            exported = nib.load(out / f"{case_id(i)}.nii.gz")
            assert exported.get_data_dtype() == np.uint8 and exported.shape == original.shape
            np.testing.assert_array_equal(exported.affine, original.affine)
            np.testing.assert_array_equal(np.asanyarray(exported.dataobj), original.get_fdata())
    # re-export: identical files are left alone
    code, stdout, _ = run_cli(
        [
            "export",
            preds,
            tmp_path / "out_train",
            "--challenge",
            "GLI",
            "--source",
            train,
            "--num-workers",
            1,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0 and "0 submission file(s) written, 2 already identical" in stdout


def test_export_of_prediction_written_by_nnunet_simpleitk(tmp_path, raw, capsys):
    """A prediction written the way nnUNetv2_predict writes it (SimpleITKIO.write_seg with the properties of the
    input images) passes the geometry check against the original BraTS case."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    test = tmp_path / "test"
    affine = brats_affine(spacing=(1.0, 1.0, 1.2), origin=(3.5, 200.25, -7.0))
    write_case(test, case_id(5), seed=5, with_seg=False, affine=affine)
    assert run_cli(convert_args(write_cases(tmp_path / "train", [1]), 1, "--test", test), capsys)[0] == 0
    images = sorted(str(p) for p in (raw / "Dataset001_BraTS2023_GLI" / "imagesTs").iterdir())
    io = SimpleITKIO()
    data, props = io.read_images(images)
    seg_zyx = np.transpose(tumour_labels(SHAPE, 5), (2, 1, 0))  # nnU-Net arrays are (z, y, x)
    preds = tmp_path / "preds"
    preds.mkdir()
    io.write_seg(seg_zyx, str(preds / f"{case_id(5)}.nii.gz"), props)
    code, _, err = run_cli(
        [
            "export",
            preds,
            tmp_path / "out",
            "--challenge",
            "GLI",
            "--source",
            test,
            "--num-workers",
            1,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    exported = nib.load(tmp_path / "out" / f"{case_id(5)}.nii.gz")
    source_affine = nib.load(test / case_id(5) / f"{case_id(5)}-t1n.nii.gz").affine  # as stored (float32 header)
    np.testing.assert_allclose(source_affine, affine, atol=1e-6)
    np.testing.assert_array_equal(exported.affine, source_affine)
    np.testing.assert_array_equal(np.asanyarray(exported.dataobj), tumour_labels(SHAPE, 5))


def _export_error(tmp_path, capsys, preds: Path, source: Path | None, *extra) -> str:
    out = tmp_path / "out"
    args = ["export", preds, out, "--challenge", "GLI", "--num-workers", 1, "--no-progress", *extra]
    code, _, err = run_cli(args + (["--source", source] if source else []), capsys)
    assert code == 1
    assert not out.exists() or list(out.iterdir()) == [], "nothing may be written"
    return err


def test_export_errors(tmp_path, capsys):
    source = write_cases(tmp_path / "brats", [1, 2])
    preds = tmp_path / "preds"
    preds.mkdir()
    good = preds / f"{case_id(1)}.nii.gz"
    nib.save(nib.Nifti1Image(tumour_labels(SHAPE, 1), brats_affine()), good)
    bad = preds / f"{case_id(2)}.nii.gz"

    nib.save(nib.Nifti1Image(np.zeros((32, 32, 20), np.uint8), brats_affine()), bad)
    err = _export_error(tmp_path, capsys, preds, source)
    reference = source / case_id(2) / f"{case_id(2)}-t1n.nii.gz"
    assert f"{bad}: geometry differs from {reference}: shape (z, y, x) (20, 32, 32) vs (24, 32, 32)" in err, err

    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), brats_affine(origin=(0.0, 236.0, 0.0))), bad)  # 3 mm shift
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(bad) in err and "origin (x, y, z) (-0, -236, 0) mm vs (-0, -239, 0) mm" in err, err

    flipped = brats_affine()
    flipped[:3, 0] *= -1  # same shape, spacing and origin: x flipped
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), flipped), bad)
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(bad) in err and "direction (-1, " in err, err

    labels = tumour_labels(SHAPE, 2)
    labels[labels == 3] = 4
    nib.save(nib.Nifti1Image(labels, brats_affine()), bad)
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(bad) in err and "unexpected label value(s) [4]" in err

    bad.write_bytes(b"\x1f\x8b broken")
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(bad) in err and "truncated or corrupt gzip stream" in err
    nib.save(nib.Nifti1Image(tumour_labels(SHAPE, 2), brats_affine()), bad)
    bad.write_bytes(bad.read_bytes()[:-20])  # truncated prediction: SimpleITK would zero-fill it silently
    err = _export_error(tmp_path, capsys, preds, source)
    assert f"{bad}: truncated or corrupt gzip stream" in err, err
    bad.unlink()

    other = preds / f"{case_id(3)}.nii.gz"
    shutil.copyfile(good, other)
    err = _export_error(tmp_path, capsys, preds, source)
    assert f"case {case_id(3)}: no source image found in {source}" in err
    other.unlink()

    odd = preds / "patient1.nii.gz"
    shutil.copyfile(good, odd)
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(odd) in err and "not a BraTS case name" in err
    odd.unlink()
    (tmp_path / "no_preds").mkdir()
    err = _export_error(tmp_path, capsys, tmp_path / "no_preds", source)
    assert "no *.nii.gz predictions found" in err

    wrong = preds / f"{case_id(1, 'PED')}.nii.gz"
    shutil.copyfile(good, wrong)
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(wrong) in err and "case of challenge PED" in err
    wrong.unlink()

    (preds / "dataset.json").write_text(
        json.dumps(
            {  # BraTS 2021-style remapped labels: would give wrong labels
                "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
                "regions_class_order": [1, 2, 3],
            }
        )
    )
    err = _export_error(tmp_path, capsys, preds, source)
    assert str(preds / "dataset.json") in err and "do not paint BraTS 2023 labels" in err
    (preds / "dataset.json").write_text(
        json.dumps({"labels": REGION_LABELS, "regions_class_order": REGIONS_CLASS_ORDER})
    )

    out = tmp_path / "out"
    out.mkdir()
    existing = out / f"{case_id(1)}.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), brats_affine()), existing)
    before = existing.read_bytes()
    err = _export_error_keep(tmp_path, capsys, preds, source)  # case 2 of the source has no prediction
    assert f"{source}: 1 source case(s) have no prediction in {preds}: {case_id(2)}; nothing was written" in err
    err = _export_error_keep(tmp_path, capsys, preds, source, "--allow-missing")
    assert str(existing) in err and "not overwriting it" in err and existing.read_bytes() == before
    summary = export_predictions(
        preds, out, "GLI", source=source, num_workers=1, overwrite=True, progress=False, allow_missing=True
    )
    assert summary.written == [case_id(1)] and summary.missing == [case_id(2)]
    np.testing.assert_array_equal(np.asanyarray(nib.load(existing).dataobj), tumour_labels(SHAPE, 1))
    assert partial_files(tmp_path) == []


def _export_error_keep(tmp_path, capsys, preds, source, *extra) -> str:
    out = tmp_path / "out"
    before = sorted(p.name for p in out.iterdir())
    code, _, err = run_cli(
        ["export", preds, out, "--challenge", "GLI", "--source", source, "--num-workers", 1, "--no-progress", *extra],
        capsys,
    )
    assert code == 1 and sorted(p.name for p in out.iterdir()) == before
    return err


def test_help_documents_every_option(capsys):
    for sub, options in (
        (
            "convert",
            [
                "--challenge",
                "--dataset-id",
                "--train",
                "--test",
                "--mode",
                "--num-workers",
                "0000 = t1n, 0001 = t1c, 0002 = t2w, 0003 = t2f",
            ],
        ),
        ("export", ["PRED_DIR", "OUT_DIR", "--challenge", "--source", "--overwrite"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli_main([sub, "-h"])
        assert exit_info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        missing = [o for o in options if o not in text]
        assert not missing, f"{sub} -h does not mention {missing}"
