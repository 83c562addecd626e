"""``nnunet_tcup predict`` end to end on the shared tiny models (regions: ``tiny_gli_model``; classes:
``tiny_classes_model``): its output equals, voxel for voxel, the stock path ``nnUNetv2_predict`` + ``postprocess
apply`` (the model's tuned filter) + ``export --source``; a two-part run equals a one-part run; one case given as four
files (BraTS 2021 names, uncompressed ``.nii``: ET = 4); one-line errors that leave nothing behind.

The regions model is copied (checkpoint_final only) so that a lesion filter can be put where ``postprocess tune``
writes it without touching the shared model's folders.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pytest
from conftest import run_command
from shared_models import TINY_CLASSES_DATASET_ID, TINY_GLI_DATASET_ID, TINY_TRAINER, TinyGLIModel
from test_trainer_support import predict_on_cpu

from nnunet_tcup.postprocessing.lesion_filter import FilterParameters, filter_lesions
from nnunet_tcup.postprocessing.nnunet_results import postprocessing_json, write_postprocessing_files

# the shared models' tests run on one worker with `--dist loadgroup` (one training per run)
pytestmark = pytest.mark.slow
# one xdist group mark per test (two marks make a third group): each model's tests run on the worker that trains it
REGIONS_GROUP = pytest.mark.xdist_group("tiny_gli_model")
CLASSES_GROUP = pytest.mark.xdist_group("tiny_classes_model")

CASES = ("BraTS-GLI-00900-000", "BraTS-GLI-00901-000")
QUIET = ("--device", "cpu", "--num-workers", "1", "--no-progress")


class RegionsRun(NamedTuple):
    env: dict[str, str]
    cases: Path  # the BraTS case folders of the 2 test cases
    model: Path  # copy of the tiny model with a lesion filter in crossval_results_folds_0_1
    stock_raw: Path  # nnUNetv2_predict + export
    stock_pp: Path  # nnUNetv2_predict + postprocess apply + export
    predicted: Path  # nnunet_tcup predict -i cases -m model


def _segmentation(path: Path) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine, image.get_data_dtype()


def assert_same_segmentations(folder: Path, expected: Path, label_map: dict[int, int] | None = None) -> None:
    """Same file names, voxels (``expected`` mapped by ``label_map``), affine and data type (uint8)."""
    names = sorted(p.name for p in expected.glob("*.nii.gz"))
    assert sorted(p.name for p in folder.iterdir()) == names
    for name in names:
        data, affine, dtype = _segmentation(folder / name)
        want, want_affine, want_dtype = _segmentation(expected / name)
        for old, new in (label_map or {}).items():
            want = np.where(want == old, new, want)
        assert dtype == want_dtype == np.uint8
        np.testing.assert_array_equal(affine, want_affine)
        assert data.shape == want.shape and np.array_equal(data, want), f"{name}: voxels differ from {expected}"


def _export(env: dict[str, str], predictions: Path, out: Path, source: Path) -> Path:
    command = ["nnunet_tcup", "export", predictions, out, "--challenge", "GLI", "--source", source]
    run_command([*command, "--num-workers", 1, "--no-progress"], env=env)
    return out


def _copy_model(models: Path, target: Path) -> Path:
    skip = shutil.ignore_patterns("checkpoint_best.pth", "validation", "crossval_results_folds_*", "*.png")
    return Path(shutil.copytree(models, target, ignore=skip))


def _changing_filter(raw_predictions: Path) -> FilterParameters:
    """The first candidate filter that changes at least one of the raw predictions (nnU-Net's ``CASE.nii.gz``,
    2023 labels) and leaves every case with a tumour label: the tiny model's output varies between trainings."""
    import SimpleITK as sitk

    raw = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(raw_predictions.glob("*.nii.gz"))]
    candidates = [(5.0, 2.0, 2.0, 5), (0.0, 0.0, 2.0, 1), (0.0, 2.0, 0.0, 1), (0.0, 0.0, 1e6, 1), (0.0, 1e6, 0.0, 1)]
    candidates += [(0.0, 0.0, 0.0, n) for n in (3, 5, 8, 12)]
    for wt, tc, et, slices in candidates:
        filtered = [filter_lesions(r, wt, tc, et, slices) for r in raw]
        changed = any(not np.array_equal(r, f) for r, f in zip(raw, filtered))
        if changed and all(len(np.unique(f)) >= 2 for f in filtered):
            return FilterParameters(wt, tc, et, slices)
    pytest.fail(f"no candidate filter changes the tiny model's predictions in {raw_predictions}")


@pytest.fixture(scope="module")
def regions(tiny_gli_model: TinyGLIModel, tmp_path_factory: pytest.TempPathFactory) -> RegionsRun:
    work = tmp_path_factory.mktemp("predict_regions")
    dataset = tiny_gli_model.dataset
    env, cases = dataset.env, dataset.root / f"synth_GLI_{TINY_GLI_DATASET_ID}_test"
    model = _copy_model(tiny_gli_model.models, work / "model")
    predict_on_cpu(env, dataset.raw / "imagesTs", work / "nnunet", TINY_GLI_DATASET_ID, TINY_TRAINER, (0, 1))
    # a filter that changes the tiny model's predictions without emptying them (so that the comparison below can
    # fail), written where `postprocess tune -d ... -f 0 1` writes it
    crossval = model / "crossval_results_folds_0_1"
    params = _changing_filter(work / "nnunet")
    write_postprocessing_files(crossval, params, postprocessing_json(params, "test filter"))
    apply = ["nnunet_tcup", "postprocess", "apply", "-i", work / "nnunet", "-o", work / "nnunet_pp"]
    run_command([*apply, "--json", crossval / "postprocessing.json", "--num-workers", 1], env=env)
    stock_raw = _export(env, work / "nnunet", work / "stock_raw", cases)
    stock_pp = _export(env, work / "nnunet_pp", work / "stock_pp", cases)

    predicted = work / "predicted"
    proc = run_command(["nnunet_tcup", "predict", "-i", cases, "-o", predicted, "-m", model, *QUIET], env=env)
    assert "post-processing: A_WT > " in proc.stdout, proc.stdout  # the filter was found and applied
    return RegionsRun(env, cases, model, stock_raw, stock_pp, predicted)


@REGIONS_GROUP
def test_predict_equals_stock_predict_postprocess_export(regions: RegionsRun) -> None:
    assert_same_segmentations(regions.predicted, regions.stock_pp)
    for case in CASES:  # the source geometry, exactly
        source = nib.load(str(regions.cases / case / f"{case}-t1n.nii.gz"))
        out = nib.load(str(regions.predicted / f"{case}.nii.gz"))
        assert out.shape == source.shape
        np.testing.assert_array_equal(out.affine, source.affine)
    # the comparison can fail: the raw predictions are not trivial and the filter changed them
    raw = [_segmentation(regions.stock_raw / f"{c}.nii.gz")[0] for c in CASES]
    assert all(len(np.unique(r)) >= 2 for r in raw)
    filtered = [_segmentation(regions.stock_pp / f"{c}.nii.gz")[0] for c in CASES]
    assert any(not np.array_equal(r, f) for r, f in zip(raw, filtered))
    assert all(len(np.unique(f)) >= 2 for f in filtered)


@REGIONS_GROUP
def test_two_parts_equal_one_part(regions: RegionsRun, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    base = ["nnunet_tcup", "predict", "-i", regions.cases, "-o", out, "-m", regions.model, *QUIET]
    run_command([*base, "-num_parts", 2, "-part_id", 0], env=regions.env)
    assert sorted(p.name for p in out.iterdir()) == [f"{CASES[0]}.nii.gz"]  # nnU-Net's split: every 2nd case
    run_command([*base, "--num-parts", 2, "--part-id", 1], env=regions.env)
    assert_same_segmentations(out, regions.predicted)


@REGIONS_GROUP
def test_one_case_from_four_files(regions: RegionsRun, tmp_path: Path) -> None:
    """BraTS 2021 file names, uncompressed: the case id comes from the t1n name and ET is written as 4;
    --no-postprocessing gives the stock path without the filter."""
    # a case where the tiny model predicts ET, if any (its output varies between trainings), so that ET = 4 is seen
    with_et = [c for c in CASES if 3 in np.unique(_segmentation(regions.stock_raw / f"{c}.nii.gz")[0])]
    case, legacy = (with_et or CASES)[0], "BraTS2021_00900"
    files = {}
    for modality, name in (("t1n", "t1"), ("t1c", "t1ce"), ("t2w", "t2"), ("t2f", "flair")):
        files[modality] = tmp_path / f"{legacy}_{name}.nii"
        with gzip.open(regions.cases / case / f"{case}-{modality}.nii.gz") as f:
            files[modality].write_bytes(f.read())
    out = tmp_path / "out"
    modalities = [a for m, path in files.items() for a in (f"--{m}", path)]
    command = ["nnunet_tcup", "predict", *modalities, "-o", out, "-m", regions.model, "--no-postprocessing"]
    run_command([*command, *QUIET], env=regions.env)
    expected = tmp_path / "expected"
    expected.mkdir()
    shutil.copy(regions.stock_raw / f"{case}.nii.gz", expected / f"{legacy}.nii.gz")
    assert_same_segmentations(out, expected, label_map={3: 4})
    labels = np.unique(_segmentation(out / f"{legacy}.nii.gz")[0])
    assert 3 not in labels and (4 in labels) == bool(with_et)


def _assert_one_line_error(proc, *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnunet_tcup predict: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@REGIONS_GROUP
def test_existing_different_output_is_an_error_and_nothing_is_written(regions: RegionsRun, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / f"{CASES[1]}.nii.gz"
    image = nib.load(str(regions.predicted / blocker.name))
    labels = np.asarray(image.dataobj).copy()
    labels[0, 0, 0] = 1 - min(labels[0, 0, 0], 1)  # one voxel differs from what predict writes
    nib.save(nib.Nifti1Image(labels, image.affine, image.header), str(blocker))
    before = blocker.read_bytes()
    command = ["nnunet_tcup", "predict", "-i", regions.cases, "-o", out, "-m", regions.model, *QUIET]
    proc = run_command(command, env=regions.env, check=False)
    _assert_one_line_error(proc, str(blocker), "already exists and differs")
    assert [p.name for p in out.iterdir()] == [blocker.name] and blocker.read_bytes() == before


@REGIONS_GROUP
def test_input_and_model_errors_are_one_line_and_write_nothing(regions: RegionsRun, tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    shutil.copytree(regions.cases, cases)
    missing = cases / CASES[1] / f"{CASES[1]}-t2f.nii.gz"
    missing.unlink()
    out = tmp_path / "out"
    predict = ["nnunet_tcup", "predict", "-o", out, *QUIET]
    proc = run_command([*predict, "-i", cases, "-m", regions.model], env=regions.env, check=False)
    _assert_one_line_error(proc, str(missing), "missing t2f image")

    empty = tmp_path / "model_without_checkpoints"
    (empty / "fold_0").mkdir(parents=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copy(regions.model / name, empty / name)
    proc = run_command([*predict, "-i", regions.cases, "-m", empty], env=regions.env, check=False)
    _assert_one_line_error(proc, str(empty), "no fold_K/checkpoint_final.pth found")

    proc = run_command([*predict, "-i", regions.cases, "--t1n", missing, "-m", empty], env=regions.env, check=False)
    _assert_one_line_error(proc, "either as -i INPUT or as --t1n")
    assert not out.exists()


@CLASSES_GROUP
def test_classes_formulation_equals_stock_path(tiny_classes_model: TinyGLIModel, tmp_path: Path) -> None:
    """The classes model, named as nnUNetv2_predict names it (-d -tr -c, $nnUNet_results)."""
    dataset = tiny_classes_model.dataset
    env, cases = dataset.env, dataset.root / f"synth_GLI_{TINY_CLASSES_DATASET_ID}_test"
    predict_on_cpu(env, dataset.raw / "imagesTs", tmp_path / "nnunet", TINY_CLASSES_DATASET_ID, TINY_TRAINER, (0, 1))
    stock = _export(env, tmp_path / "nnunet", tmp_path / "stock", cases)
    out = tmp_path / "predicted"
    model = ["-d", TINY_CLASSES_DATASET_ID, "-tr", TINY_TRAINER, "-c", "3d_fullres"]
    proc = run_command(["nnunet_tcup", "predict", "-i", cases, "-o", out, *model, *QUIET], env=env)
    assert "folds 0 1" in proc.stdout and "post-processing: not applied" in proc.stdout, proc.stdout
    assert_same_segmentations(out, stock)
    assert any(len(np.unique(_segmentation(f)[0])) >= 2 for f in out.iterdir())
