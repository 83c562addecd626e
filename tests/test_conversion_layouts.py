"""`nnunet_tcup convert` / `export` on the other common layouts: BraTS 2021/2020 folders, uncompressed `.nii`,
macOS junk, test cases with segmentations (labelsTs). Tiny volumes written at test time; in-process CLI calls."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_conversion import (  # the shared helpers of the conversion tests
    SHAPE,
    brats_affine,
    case_id,
    convert_args,
    file_state,
    raw,  # noqa: F401  (fixture)
    run_cli,
    tumour_labels,
    write_cases,
)

LEGACY_NAMES = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


def write_legacy_case(root: Path, cid: str, seed: int, ending: str = ".nii.gz") -> Path:
    """A BraTS 2021-style folder ``cid/cid_{t1,t1ce,t2,flair,seg}`` with ET labelled 4."""
    folder = Path(root) / cid
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in LEGACY_NAMES:
        nib.save(
            nib.Nifti1Image(rng.integers(0, 1200, SHAPE).astype(np.int16), brats_affine()),
            folder / f"{cid}_{name}{ending}",
        )
    seg = tumour_labels(SHAPE, seed)
    seg[seg == 3] = 4
    nib.save(nib.Nifti1Image(seg, brats_affine()), folder / f"{cid}_seg{ending}")
    return folder


def test_brats2021_layout_is_converted_with_2023_names_and_labels(tmp_path, raw, capsys):  # noqa: F811
    train = tmp_path / "train"
    for i in (1, 2):
        write_legacy_case(train, f"BraTS2021_{i:05d}", seed=i)
    code, out, err = run_cli(convert_args(train), capsys)
    assert code == 0, err
    assert "from brats2021 case folders (label 4 written as 3)" in out
    target = raw / "Dataset001_BraTS2023_GLI"
    for channel, name in enumerate(LEGACY_NAMES):  # t1 -> 0000 (t1n), t1ce -> 0001 (t1c), t2 -> 0002, flair -> 0003
        out_file = target / "imagesTr" / f"BraTS2021_00001_{channel:04d}.nii.gz"
        assert out_file.read_bytes() == (train / "BraTS2021_00001" / f"BraTS2021_00001_{name}.nii.gz").read_bytes()
    labels = np.asanyarray(nib.load(target / "labelsTr" / "BraTS2021_00002.nii.gz").dataobj)
    expected = tumour_labels(SHAPE, 2)  # the 2023 labelling of the same tumour
    np.testing.assert_array_equal(labels, expected)
    assert (expected == 3).any()
    ds = json.loads((target / "dataset.json").read_text())
    assert ds["source_layout"] == "brats2021" and ds["label_map"] == {"4": 3} and ds["numTraining"] == 2
    state = json.loads((target / ".nnunet_tcup" / "conversion.json").read_text())
    assert state["source_layout"] == "brats2021" and state["label_map"] == {"4": 3}

    # export gives BraTS 2021 labels back (ET = 4), in the source geometry
    preds = tmp_path / "preds"
    preds.mkdir()
    shutil.copyfile(target / "labelsTr" / "BraTS2021_00002.nii.gz", preds / "BraTS2021_00002.nii.gz")
    code, out, err = run_cli(
        [
            "export",
            preds,
            tmp_path / "sub",
            "--challenge",
            "GLI",
            "--source",
            train,
            "--allow-missing",
            "--num-workers",
            1,
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert "1 source case(s) have no prediction" in err and "BraTS2021_00001" in err
    exported = np.asanyarray(nib.load(tmp_path / "sub" / "BraTS2021_00002.nii.gz").dataobj)
    original = np.asanyarray(nib.load(train / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(exported, original)


def test_brats2021_refusals(tmp_path, raw, capsys):  # noqa: F811
    train = tmp_path / "train"
    write_legacy_case(train, "BraTS2021_00001", seed=1)
    code, _, err = run_cli(
        ["convert", "--challenge", "MEN", "--dataset-id", 1, "--train", train, "--num-workers", 1, "--no-progress"],
        capsys,
    )
    assert (
        code == 1 and "BraTS2021_00001: a BraTS 2021/2020 case (adult glioma); convert it with --challenge GLI" in err
    )
    write_cases(train, [2])
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and "mixes case layouts (brats2023 and brats2021, e.g. BraTS-GLI-00002-000 and" in err, err
    shutil.rmtree(train / case_id(2))
    seg = train / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz"
    labels = tumour_labels(SHAPE, 1)  # 2023 labelling (3 = ET) in a 2021 folder: 3 is not a 2021 label
    nib.save(nib.Nifti1Image(labels, brats_affine()), seg)
    code, _, err = run_cli(convert_args(train), capsys)
    assert code == 1 and str(seg) in err and "unexpected label value(s) [3]; allowed: [0, 1, 2, 4]" in err, err
    assert list(raw.iterdir()) == []


def test_uncompressed_nii_sources(tmp_path, raw, capsys):  # noqa: F811
    train = write_cases(tmp_path / "train", [1, 2])
    folder = train / case_id(2)
    for path in sorted(folder.glob("*.nii.gz")):  # case 2 as uncompressed .nii
        (folder / path.name[: -len(".gz")]).write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    code, out, err = run_cli(convert_args(train), capsys)
    assert code == 0, err
    target = raw / "Dataset001_BraTS2023_GLI"
    converted = target / "imagesTr" / f"{case_id(2)}_0001.nii.gz"
    assert gzip.decompress(converted.read_bytes()) == (folder / f"{case_id(2)}-t1c.nii").read_bytes()
    assert nib.load(converted).get_filename().endswith(".nii.gz")
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(target / "labelsTr" / f"{case_id(2)}.nii.gz").dataobj), tumour_labels(SHAPE, 2)
    )
    # deterministic: a fresh conversion elsewhere gives the same bytes; a re-run verifies and skips
    before = {k: (target / k).read_bytes() for k in file_state(target) if k.startswith(("images", "labels"))}
    code, out, err = run_cli(convert_args(train), capsys)
    assert code == 0 and "2 already complete and verified" in out, err
    shutil.rmtree(target)
    assert run_cli(convert_args(train), capsys)[0] == 0
    assert {k: (target / k).read_bytes() for k in before} == before


def test_macos_junk_is_skipped_with_a_note(tmp_path, raw, capsys):  # noqa: F811
    train = write_cases(tmp_path / "train", [1])
    (train / "__MACOSX" / case_id(1)).mkdir(parents=True)
    (train / "__MACOSX" / case_id(1) / f"._{case_id(1)}-t1n.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    (train / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (train / case_id(1) / f"._{case_id(1)}-seg.nii.gz").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble file
    code, out, err = run_cli(convert_args(train), capsys)
    assert code == 0, err
    assert f"note: {train / '__MACOSX'}: skipped" in out and f"note: {train / '.DS_Store'}: skipped" in out


@pytest.mark.parametrize("with_seg", [True, False])
def test_test_cases_with_segmentations_give_labelsTs(tmp_path, raw, capsys, with_seg):  # noqa: F811
    train = write_cases(tmp_path / "train", [1])
    test = write_cases(tmp_path / "test", [2, 3], with_seg=with_seg)
    code, out, err = run_cli(convert_args(train, 1, "--test", test), capsys)
    assert code == 0, err
    target = raw / "Dataset001_BraTS2023_GLI"
    ds = json.loads((target / "dataset.json").read_text())
    assert ds["numTest"] == 2 and ds["numTestLabels"] == (2 if with_seg else 0)
    labels_ts = sorted(p.name for p in (target / "labelsTs").iterdir()) if (target / "labelsTs").exists() else []
    assert labels_ts == ([f"{case_id(i)}.nii.gz" for i in (2, 3)] if with_seg else [])
    if with_seg:
        np.testing.assert_array_equal(
            np.asanyarray(nib.load(target / "labelsTs" / f"{case_id(3)}.nii.gz").dataobj), tumour_labels(SHAPE, 3)
        )
