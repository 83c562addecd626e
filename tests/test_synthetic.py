"""Tests of the synthetic BraTS 2023-like generator and the ``nnunet_tcup synth`` command."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_command
from scipy import ndimage

from nnunet_tcup import cli
from nnunet_tcup.challenges import CHALLENGES, MODALITIES
from nnunet_tcup.synthetic import (
    SyntheticCase,
    brats_affine,
    brats_like,
    case_seed,
    geometry,
    synthesize_case,
    write_case,
    write_dataset,
)
from nnunet_tcup.synthetic import anatomy as anatomy_module
from nnunet_tcup.synthetic.tumour import Lesion, TumourPlan, mass_effect, render_tumour

SMALL = (48, 48, 32)


def _load(path: Path):
    img = nib.load(str(path))
    return img, np.asarray(img.dataobj)


def _best_threshold_dice(values: np.ndarray, target: np.ndarray) -> float:
    """Best Dice of ``values > t`` or ``values < t`` against ``target`` over every threshold t (prefixes of the
    sorted values; splitting ties makes it an upper bound, i.e. generous to the threshold)."""
    order = np.argsort(values, kind="stable")
    hits = target[order].astype(np.int64)
    total = hits.sum()
    best = 0.0
    for seq in (hits[::-1], hits):  # above-threshold, below-threshold
        tp = np.cumsum(seq)
        k = np.arange(1, seq.size + 1)
        best = max(best, float((2.0 * tp / (k + total)).max()))
    return best


# ------------------------------------------------------------------------------------------------ command line


@pytest.mark.slow
def test_cli_writes_brats_case_folders_and_resumes(tmp_path, capsys):
    out = tmp_path / "synth"
    run_command(["nnunet_tcup", "synth", out, "--challenge", "gli", "--cases", "2", "--shape", *SMALL, "--seed", "3"])
    cases = sorted(p.name for p in out.iterdir())
    assert cases == ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000"]
    expected_affine = brats_affine(SMALL)
    for case in cases:
        files = sorted(p.name for p in (out / case).iterdir())
        assert files == sorted(f"{case}-{k}.nii.gz" for k in (*MODALITIES, "seg"))
        for key in (*MODALITIES, "seg"):
            img, data = _load(out / case / f"{case}-{key}.nii.gz")
            assert data.shape == SMALL
            assert data.dtype == (np.uint8 if key == "seg" else np.int16), (key, data.dtype)
            np.testing.assert_allclose(img.affine, expected_affine)
            assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)
            assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
        _, seg = _load(out / case / f"{case}-seg.nii.gz")
        assert set(np.unique(seg)) <= {0, 1, 2, 3} and (seg > 0).sum() > 50
        _, t1n = _load(out / case / f"{case}-t1n.nii.gz")
        assert (t1n[seg > 0] > 0).all(), "tumour voxels must lie inside the (non-zero) brain"
        assert t1n[0, 0, 0] == 0 and t1n.min() >= 0, "skull-stripped images are zero outside the brain"

    # identical re-run with one more case: existing files are kept untouched, the missing case is added
    first = out / cases[0] / f"{cases[0]}-t1c.nii.gz"
    stamp = first.stat().st_mtime_ns
    (out / cases[0] / f".{cases[0]}-t2f.partial-999.nii.gz").write_bytes(b"stale")
    # (the follow-up runs go through the same entry point in-process, to keep the test fast)
    assert (
        cli.main(["synth", str(out), "--challenge", "GLI", "--cases", "3", "--shape", *map(str, SMALL), "--seed", "3"])
        == 0
    )
    assert first.stat().st_mtime_ns == stamp
    assert (out / "BraTS-GLI-00003-000" / "BraTS-GLI-00003-000-seg.nii.gz").is_file()
    assert not any(p.name.startswith(".") for p in (out / cases[0]).iterdir()), "stale partial not removed"

    # a different seed would overwrite case 1 with other content: refused, naming the file, nothing written
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert (
        cli.main(["synth", str(out), "--challenge", "GLI", "--cases", "1", "--shape", *map(str, SMALL), "--seed", "4"])
        == 1
    )
    err = capsys.readouterr().err
    assert "BraTS-GLI-00001-000-t1n.nii.gz" in err and "different content" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_cli_no_seg_and_start_index_match_api(tmp_path):
    out = tmp_path / "val"
    assert (
        cli.main(
            [
                "synth",
                str(out),
                "--challenge",
                "PED",
                "--cases",
                "1",
                "--shape",
                *map(str, SMALL),
                "--seed",
                "5",
                "--start-index",
                "7",
                "--no-seg",
            ]
        )
        == 0
    )
    case = out / "BraTS-PED-00007-000"
    assert sorted(p.name for p in case.iterdir()) == sorted(f"{case.name}-{m}.nii.gz" for m in MODALITIES)
    reference = synthesize_case("PED", SMALL, seed=case_seed(5, 7))
    for m in MODALITIES:
        np.testing.assert_array_equal(_load(case / f"{case.name}-{m}.nii.gz")[1], reference.images[m])


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["synth", "-h"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "OUT",
        "--challenge",
        "--cases",
        "--seed",
        "--shape",
        "--no-seg",
        "--start-index",
        "--num-workers",
        "--anatomy",
        "GLI",
        "MEN",
        "PED",
        "SSA",
    ):
        assert option in text, option


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--challenge", "XYZ", "--cases", "1"], "unknown challenge 'XYZ'"),
        (["--challenge", "GLI", "--cases", "1", "--shape", "8", "64", "64"], "between 16 and 1024"),
    ],
)
def test_cli_bad_values_give_clear_errors(tmp_path, capsys, argv, message):
    assert cli.main(["synth", str(tmp_path / "o"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nnunet_tcup synth: error:") and message in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--challenge", "GLI", "--cases", "0"], "expected a positive integer"),
        (["--challenge", "GLI", "--cases", "-2"], "expected a positive integer"),
        (["--challenge", "GLI", "--cases", "1", "--shape", "64", "64"], "--shape"),
        (["--challenge", "GLI", "--cases", "1", "--seed", "x"], "non-negative integer"),
    ],
)
def test_cli_bad_arguments_are_rejected_by_the_parser(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(["synth", str(tmp_path / "o"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- API


def test_api_is_deterministic_and_seed_dependent():
    a = synthesize_case("GLI", SMALL, seed=11)
    b = synthesize_case("GLI", SMALL, seed=11)
    c = synthesize_case("GLI", SMALL, seed=12, with_seg=False)
    d = synthesize_case("GLI", SMALL, seed=11, with_seg=False)
    assert isinstance(a, SyntheticCase) and a.seg is not None and c.seg is None
    for m in MODALITIES:
        assert a.images[m].shape == SMALL and a.images[m].dtype == np.int16
        assert a.images[m].tobytes() == b.images[m].tobytes()
        assert a.images[m].tobytes() == d.images[m].tobytes(), "images must not depend on with_seg"
        assert not np.array_equal(a.images[m], c.images[m])
    assert a.seg.tobytes() == b.seg.tobytes() and a.seg.dtype == np.uint8
    np.testing.assert_array_equal(a.affine, brats_affine(SMALL))
    assert case_seed(0, 1) == case_seed(0, 1) != case_seed(0, 2) != case_seed(1, 1)


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_each_challenge_generates_learnable_tumours(challenge):
    shape = (64, 64, 48)
    wt_sizes, all_labels = [], 0
    for seed in range(3):
        case = synthesize_case(challenge, shape, seed=seed)
        seg = case.seg
        labels = set(np.unique(seg).tolist())
        assert labels <= {0, 1, 2, 3} and 3 in labels, (challenge, seed, labels)
        all_labels += labels >= {1, 2, 3}
        wt = seg > 0
        wt_sizes.append(int(wt.sum()))
        brain = case.images["t1n"] > 0
        healthy = brain & ~wt
        # tumours are visible: edema bright on FLAIR, enhancing tumour bright on T1c
        t2f, t1c = case.images["t2f"].astype(float), case.images["t1c"].astype(float)
        if (seg == 2).any():
            assert t2f[seg == 2].mean() > 1.1 * np.median(t2f[healthy]), (challenge, seed)
        assert np.percentile(t1c[seg == 3], 90) > 1.4 * np.median(t1c[healthy]), (challenge, seed)
        if challenge == "MEN":  # extra-axial: the tumour core reaches the outer surface of the brain
            core = (seg == 1) | (seg == 3)
            assert (ndimage.binary_dilation(core) & ~brain).any(), (challenge, seed)
    assert min(wt_sizes) > 150, (challenge, wt_sizes)
    if challenge in ("GLI", "SSA"):
        assert all_labels == 3, f"{challenge}: every case should have NETC, SNFH and ET"


def test_challenge_variants_differ_plausibly():
    anat = anatomy_module.load_anatomy()
    grid = geometry.FovGrid(geometry.REFERENCE_SHAPE)

    def plans(challenge, n=40):
        profile = brats_like.PROFILES[challenge]
        out = []
        for seed in range(n):
            rng = np.random.default_rng(seed)
            placement = geometry.sample_placement(rng, anat, profile)
            out.append((placement, brats_like.sample_tumour_plan(rng, anat, placement, profile, grid.step_mm)))
        return out

    def depth_at(placement, point_fov):
        mni = placement.fov_to_mni(point_fov)
        ijk = np.rint(np.linalg.solve(anat.affine[:3, :3], mni - anat.affine[:3, 3])).astype(int)
        ijk = np.clip(ijk, 0, np.array(anat.mask.shape) - 1)
        return float(anat.deep[tuple(ijk)]), mni

    gli = [depth_at(p, plan.main.centre_mm)[0] for p, plan in plans("GLI")]
    assert min(gli) > 0.85, "gliomas are centred deep in the white matter"
    ped = plans("PED")
    infratentorial = np.mean([depth_at(p, plan.main.centre_mm)[1][2] < -15 for p, plan in ped])
    assert 0.3 < infratentorial < 0.8, f"PED posterior-fossa fraction {infratentorial}"
    ped_scale = [1 / np.cbrt(abs(np.linalg.det(p.matrix[:3, :3]))) for p, _ in ped]
    gli_scale = [1 / np.cbrt(abs(np.linalg.det(p.matrix[:3, :3]))) for p, _ in plans("GLI")]
    assert max(ped_scale) < min(gli_scale) + 0.02, "paediatric heads are smaller"

    def z_sharpness(image):  # mean |d/dz| over mean |d/dx| inside the brain: thick slices blur along z
        inside = ndimage.binary_erosion(image > 0, iterations=2)
        x = image.astype(np.float32)
        return np.abs(np.diff(x, axis=2))[inside[:, :, 1:]].mean() / np.abs(np.diff(x, axis=0))[inside[1:]].mean()

    ssa = [z_sharpness(synthesize_case("SSA", (64, 64, 48), seed=s).images["t2w"]) for s in range(2)]
    gli = [z_sharpness(synthesize_case("GLI", (64, 64, 48), seed=s).images["t2w"]) for s in range(2)]
    assert max(ssa) < min(gli) - 0.05, (ssa, gli)


def test_best_single_threshold_does_not_separate_tumour():
    """No single intensity threshold on one modality (either direction, within the brain) separates the whole
    tumour: per case the best WT Dice over all modalities and thresholds stays below 0.9, on average below 0.8."""
    per_case = {}
    for challenge, seed in [("GLI", s) for s in range(4)] + [("MEN", 0), ("PED", 0), ("SSA", 0)]:
        case = synthesize_case(challenge, (96, 96, 64), seed=seed)
        brain = case.images["t1n"] > 0
        wt = case.seg[brain] > 0
        per_case[(challenge, seed)] = {
            m: _best_threshold_dice(case.images[m][brain].astype(float), wt) for m in MODALITIES
        }
    best = {k: max(v.values()) for k, v in per_case.items()}
    print("best single-threshold WT Dice per case:", {k: round(v, 3) for k, v in best.items()})
    assert max(best.values()) < 0.9, per_case
    assert np.mean(list(best.values())) < 0.8, per_case
    assert max(v["t2f"] for v in per_case.values()) > 0.5, "FLAIR must still show the edema"


def test_edema_spreads_along_white_matter():
    shape = (40, 40, 40)
    step = np.ones(3)
    axes = tuple(
        (np.arange(40, dtype=np.float32) - 20).reshape([-1 if k == i else 1 for k in range(3)]) for i in range(3)
    )
    wm = np.zeros(shape, np.float32)
    wm[:20] = 1.0  # white matter on the low-x side, grey matter on the other
    tissue = {
        "wm": wm,
        "gm": 1.0 - wm,
        "csf": np.zeros(shape, np.float32),
        "mask": np.ones(shape, np.float32),
        "deep": np.ones(shape, np.float32),
    }
    lesion = Lesion(
        centre_mm=np.zeros(3),
        radii_mm=np.full(3, 6.0),
        rotation=np.eye(3),
        necrosis_fraction=0.5,
        edema_mm=10.0,
        lobulation=0.0,
    )
    plan = TumourPlan(main=lesion, satellites=(), mass_effect=0.0, mass_effect_length_mm=7.0)
    maps = render_tumour(plan, axes, step, tissue, np.random.default_rng(0))
    edema = maps.labels == 2
    assert edema[:20].sum() > 2 * edema[20:].sum() > 0
    assert (maps.labels == 1).sum() > 0 and (maps.labels == 3).sum() > 0
    # mass effect: identity far away, tissue pushed outwards near the lesion
    pushed = TumourPlan(main=lesion, satellites=(), mass_effect=0.5, mass_effect_length_mm=7.0)
    far = np.array([[30.0, 0, 0]])
    near = np.array([[7.0, 0, 0]])
    np.testing.assert_allclose(mass_effect(far, pushed), far)
    assert 0 < mass_effect(near, pushed)[0, 0] < 7.0


def test_analytic_fallback_when_template_absent(monkeypatch):
    real_find_spec = anatomy_module.importlib.util.find_spec
    monkeypatch.setattr(
        anatomy_module.importlib.util,
        "find_spec",
        lambda name, *args, **kwargs: None if name == "nilearn" else real_find_spec(name, *args, **kwargs),
    )
    assert anatomy_module.find_mni_template_files() is None
    assert anatomy_module.resolve_anatomy_source("auto") == "analytic"
    with pytest.raises(FileNotFoundError, match="MNI152"):
        anatomy_module.resolve_anatomy_source("mni152")
    case = synthesize_case("MEN", (64, 64, 48), seed=2)
    assert case.anatomy == "analytic"
    brain = case.images["t1n"] > 0
    assert 0.05 < brain.mean() < 0.6
    assert (case.seg > 0).sum() > 50 and (case.seg[~brain] == 0).all()


def test_api_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown challenge"):
        synthesize_case("BRAIN", SMALL)
    with pytest.raises(ValueError, match="three integers"):
        synthesize_case("GLI", (64, 64))
    with pytest.raises(ValueError, match="three integers"):
        synthesize_case("GLI", (64.5, 64, 64))
    with pytest.raises(ValueError, match="between 16 and 1024"):
        synthesize_case("GLI", (64, 0, 64))
    with pytest.raises(ValueError, match="seed"):
        synthesize_case("GLI", SMALL, seed=-1)
    with pytest.raises(ValueError, match="unknown anatomy"):
        synthesize_case("GLI", SMALL, anatomy="atlas")
    with pytest.raises(ValueError, match="number of cases"):
        write_dataset(tmp_path, "GLI", 0, shape=SMALL)
    with pytest.raises(ValueError, match="unknown anatomy"):
        write_dataset(tmp_path / "new", "GLI", 1, shape=SMALL, anatomy="atlas")
    with pytest.raises(ValueError, match="5-digit"):
        write_dataset(tmp_path, "GLI", 2, shape=SMALL, start_index=99999)
    case = synthesize_case("GLI", SMALL, seed=0)
    with pytest.raises(ValueError, match="case id"):
        write_case(case, tmp_path, "case1")
    assert not any(tmp_path.iterdir())


def test_write_dataset_with_workers_matches_serial(tmp_path):
    folders = write_dataset(tmp_path / "par", "SSA", 2, seed=9, shape=SMALL, num_workers=2, progress=False)
    assert [f.name for f in folders] == ["BraTS-SSA-00001-000", "BraTS-SSA-00002-000"]
    for index, folder in enumerate(folders, start=1):
        expected = synthesize_case("SSA", SMALL, seed=case_seed(9, index))
        _, seg = _load(folder / f"{folder.name}-seg.nii.gz")
        np.testing.assert_array_equal(seg, expected.seg)
    assert not [p for p in (tmp_path / "par").rglob("*") if p.name.startswith(".")]
