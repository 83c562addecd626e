"""Unit tests of ``nnunet_tcup review``: every uncertainty definition on small arrays, lesion matching against the
official evaluation, ranking, the NIfTI geometry, the tables and the Zooniverse manifest, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from review_inputs import (
    DIRECTION,
    LABEL_DATASET_JSON,
    ORIGIN_XYZ,
    SPACING_XYZ,
    ball,
    fold_dirs,
    make_review_inputs,
    region_probabilities,
    tumour_labels,
    write_case,
)

from nnunet_tcup.evaluation.lesionwise import evaluate_case
from nnunet_tcup.review import uncertainty as unc
from nnunet_tcup.review.core import run_review
from nnunet_tcup.review.inputs import load_probabilities, output_kind
from nnunet_tcup.review.lesions import lesionwise_dice, region_lesions
from nnunet_tcup.review.tables import MANIFEST_COLUMNS


# ------------------------------------------------------------------------------------------ per-voxel definitions
def test_binary_entropy_in_bits():
    h = unc.binary_entropy(np.array([0.0, 0.5, 1.0, 0.2]))
    assert h[0] == 0 and h[2] == 0
    assert h[1] == pytest.approx(1.0, abs=1e-6)
    assert h[3] == pytest.approx(-(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)), abs=1e-5)


def test_voxel_maps_mutual_information_is_entropy_of_mean_minus_mean_entropy():
    p1 = np.full((3, 1, 1, 2), 0.2, np.float32)
    p2 = np.full((3, 1, 1, 2), 0.8, np.float32)
    p2[:, 0, 0, 1] = 0.2  # second voxel: both folds agree on 0.2
    masks = [p > 0.5 for p in (p1, p2)]
    maps = unc.voxel_maps([p1, p2], masks)
    h02 = -(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8))
    assert maps.mean[0, 0, 0, 0] == pytest.approx(0.5)
    assert maps.entropy[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-5)
    assert maps.expected_entropy[0, 0, 0, 0] == pytest.approx(h02, abs=1e-5)
    assert maps.mutual_information[0, 0, 0, 0] == pytest.approx(1.0 - h02, abs=1e-5)
    assert maps.std[0, 0, 0, 0] == pytest.approx(0.3, abs=1e-6)
    # agreeing folds: no disagreement, however unsure each fold is
    assert maps.mutual_information[0, 0, 0, 1] == pytest.approx(0.0, abs=1e-6)
    assert maps.entropy[0, 0, 0, 1] == pytest.approx(h02, abs=1e-5)
    assert maps.std[0, 0, 0, 1] == pytest.approx(0.0, abs=1e-6)
    assert maps.fold_masks.shape == (2, 3, 1, 1, 2) and maps.num_folds == 2


def test_voxel_maps_full_disagreement_is_one_bit():
    zeros, ones = np.zeros((3, 2, 2, 2), np.float32), np.ones((3, 2, 2, 2), np.float32)
    maps = unc.voxel_maps([zeros, ones], [zeros > 0.5, ones > 0.5])
    assert np.allclose(maps.mutual_information, 1.0, atol=1e-4)


def test_label_probabilities_sum_into_regions():
    classes = np.zeros((4, 1, 1, 1), np.float32)
    classes[:, 0, 0, 0] = [0.1, 0.2, 0.3, 0.4]  # background, NETC, SNFH, ET
    regions = unc.labels_to_region_probabilities(classes)
    assert regions[:, 0, 0, 0] == pytest.approx([0.9, 0.6, 0.4])


def test_consensus_paints_regions_like_nnunet_and_argmaxes_labels():
    mean = np.zeros((3, 1, 1, 4), np.float32)
    mean[0, 0, 0, 1:] = 0.9  # WT
    mean[1, 0, 0, 2:] = 0.9  # TC
    mean[2, 0, 0, 3] = 0.9  # ET
    assert unc.consensus_labels(mean)[0, 0].tolist() == [0, 2, 1, 3]
    classes = np.zeros((4, 1, 1, 2), np.float32)
    classes[1, 0, 0, 0] = 0.4
    classes[0, 0, 0, 0] = 0.3
    classes[2, 0, 0, 0] = 0.3  # argmax NETC although WT = 0.7 and TC = 0.4
    classes[0, 0, 0, 1] = 1.0
    assert unc.consensus_labels(None, classes)[0, 0].tolist() == [1, 0]


def test_region_masks_are_those_of_the_painted_label_map():
    probs = np.zeros((3, 1, 1, 2), np.float32)
    probs[1, 0, 0, 0] = 0.9  # TC without WT: nnU-Net paints label 1, which is WT and TC
    masks = unc.fold_region_masks(probs)
    assert masks[:, 0, 0, 0].tolist() == [True, True, False]
    assert not masks[:, 0, 0, 1].any()


def test_doubtful_slices_keep_a_gap_and_skip_zero():
    values = np.array([0, 5, 9, 8, 0, 0, 7, 0, 0, 0.0])
    assert unc.doubtful_slices(values, 3, min_gap=3) == [2, 6]
    assert unc.doubtful_slices(values, 2, min_gap=1) == [2, 3]
    assert unc.doubtful_slices(np.zeros(5), 3) == []


def test_disputed_share_is_one_minus_intersection_over_union_of_the_folds():
    masks = np.zeros((3, 1, 1, 8), dtype=bool)
    masks[0, ..., 0:4] = True  # voxels 0 1 2 3
    masks[1, ..., 1:4] = True  # voxels 1 2 3
    masks[2, ..., 2:5] = True  # voxels 2 3 4; union 0-4 (5), all three folds: 2 3 (2), a majority: 1 2 3 (3)
    assert unc.disputed_share(masks) == pytest.approx(1 - 2 / 5)
    assert unc.disputed_share(masks[:2]) == pytest.approx(1 - 3 / 4)
    assert unc.disputed_share(np.repeat(masks[:1], 4, axis=0)) == 0.0  # identical folds: nothing disputed
    assert unc.disputed_share(np.zeros((5, 2, 3, 4), dtype=bool)) == 0.0  # no fold labels anything
    disjoint = np.zeros((2, 1, 1, 4), dtype=bool)
    disjoint[0, ..., 0], disjoint[1, ..., 3] = True, True
    assert unc.disputed_share(disjoint) == 1.0


def test_case_score_is_the_mean_disputed_share_over_regions():
    assert unc.case_score({"WT": 0.6, "TC": 0.0, "ET": 0.3}) == pytest.approx(0.3)
    assert unc.case_score({"ET": 0.9, "WT": 0.0, "TC": 0.0}) == pytest.approx(0.3)


# ----------------------------------------------------------------------------------------------- lesion level
def _random_labels(rng: np.random.Generator, shape=(24, 30, 30)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    for _ in range(5):
        z, y, x = (int(rng.integers(2, s - 2)) for s in shape)
        r = int(rng.integers(1, 4))
        labels[max(z - r, 0) : z + r, max(y - r, 0) : y + r, max(x - r, 0) : x + r] = rng.integers(1, 4)
    return labels


@pytest.mark.parametrize("seed", range(4))
def test_lesionwise_dice_equals_the_official_evaluation(seed: int):
    rng = np.random.default_rng(seed)
    gt, pred = _random_labels(rng), _random_labels(rng)
    pred[gt > 0] = np.where(rng.random(np.count_nonzero(gt)) < 0.7, gt[gt > 0], 0)
    spacing = (1.0, 1.0, 1.5)
    official = evaluate_case(gt, pred, spacing, "GLI")
    for r, region in enumerate(unc.REGION_NAMES):
        got = lesionwise_dice(unc.labels_to_region_masks(gt)[r], unc.labels_to_region_masks(pred)[r], spacing, 3, 50.0)
        assert got == pytest.approx(official[region].lesionwise_dice, abs=1e-12), region


def test_region_lesions_counts_folds_and_fold_only_lesions():
    consensus = ball((10, 14, 16), 5)
    shifted = np.roll(consensus, 2, axis=2)
    extra = ball((3, 4, 4), 2)
    folds = np.stack([consensus, shifted, np.zeros_like(consensus) | extra])
    prob = np.where(consensus, 0.8, 0.1).astype(np.float32)
    mi = np.zeros_like(prob)
    records, scores = region_lesions("WT", consensus, folds, prob, mi, (1.0, 1.0, 1.0), 3, 50.0)
    main = [r for r in records if r.in_consensus]
    only = [r for r in records if not r.in_consensus]
    assert len(main) == 1 and len(only) == 1
    inter = np.count_nonzero(consensus & shifted)
    dice_shifted = 2 * inter / (2 * np.count_nonzero(consensus))
    assert main[0].folds_found == 2 and main[0].num_folds == 3
    assert main[0].agreement == pytest.approx((1.0 + dice_shifted + 0.0) / 3)
    assert main[0].agreement_class == "majority"
    assert main[0].mean_probability == pytest.approx(0.8)
    assert main[0].slices == (5, 15)
    assert only[0].folds_found == 1 and only[0].agreement_class == "minority" and only[0].agreement == 0
    # fold 2 misses the lesion and adds a false positive: (0) / (1 lesion + 1 FP)
    assert scores == pytest.approx([1.0, dice_shifted, 0.0])


def test_region_lesions_nothing_anywhere_is_perfect_agreement():
    empty = np.zeros((5, 6, 7), bool)
    records, scores = region_lesions(
        "ET", empty, np.stack([empty, empty]), empty.astype(np.float32), empty.astype(np.float32), (1, 1, 1), 3, 50.0
    )
    assert records == [] and scores == [1.0, 1.0]


# --------------------------------------------------------------------------------------------- inputs / outputs
def test_output_kind_reads_regions_in_dataset_order(tmp_path: Path):
    ds = {
        "labels": {"background": 0, "enhancing tumor": [3], "whole tumor": [1, 2, 3], "tumor core": [1, 3]},
        "regions_class_order": [3, 2, 1],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(ds))
    kind = output_kind(tmp_path / "dataset.json")
    assert kind.kind == "regions" and kind.region_channels == (1, 2, 0)
    np.savez(tmp_path / "c.npz", probabilities=np.stack([np.full((1, 1, 1), v, np.float32) for v in (0.3, 0.9, 0.6)]))
    regions, classes = load_probabilities(tmp_path / "c.npz", kind)
    assert regions[:, 0, 0, 0] == pytest.approx([0.9, 0.6, 0.3]) and classes is None


def test_tcup_classes_probabilities_are_read_as_the_averaged_sigmoids(tmp_path: Path):
    """A TCuP-GAN classes model (plans.json records it) saves softmax(z), z = [1 - sum sigma, sigma_k]: the review
    reads z back (argmax = the paper's rule, linear across folds) and the paper's region probabilities."""
    (tmp_path / "dataset.json").write_text(json.dumps(LABEL_DATASET_JSON))
    assert output_kind(tmp_path / "dataset.json").kind == "labels"  # no plans.json: a softmax label model
    (tmp_path / "plans.json").write_text(json.dumps({"tcup_gan": {"formulation": "classes"}}))
    kind = output_kind(tmp_path / "dataset.json")
    assert kind.kind == "tcup_classes"
    sigma = np.array([0.6, 0.3, 0.5])  # sums above 1: background score -0.4
    z = np.concatenate([[1 - sigma.sum()], sigma])
    p = np.exp(z) / np.exp(z).sum()
    np.savez(tmp_path / "c.npz", probabilities=p.astype(np.float32).reshape(4, 1, 1, 1))
    regions, scores = load_probabilities(tmp_path / "c.npz", kind)
    assert scores is not None and scores[:, 0, 0, 0] == pytest.approx(z, abs=1e-5)
    assert regions[:, 0, 0, 0] == pytest.approx([1.0, 1.1 / 1.4, 0.5 / 1.4], abs=1e-5)  # WT, TC, ET
    (tmp_path / "plans.json").write_text("{not json")
    with pytest.raises(ValueError, match="plans.json: not a readable"):
        output_kind(tmp_path / "dataset.json")


def test_output_kind_rejects_other_datasets(tmp_path: Path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    with pytest.raises(ValueError, match="dataset.json: label dataset must have"):
        output_kind(tmp_path / "dataset.json")
    with pytest.raises(ValueError, match="missing.json: not found"):
        output_kind(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("review")
    make_review_inputs(root)
    out = root / "out"
    run_review(fold_dirs(root), root / "images", out, gt_dir=root / "gt", num_workers=1, progress=False)
    return root, out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_review_csv_ranks_doubtful_cases_first(reviewed):
    _, out = reviewed
    rows = _rows(out / "review.csv")
    assert [r["case"] for r in rows] == ["case_missed", "case_split", "case_agree"]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    scores = [float(r["score"]) for r in rows]
    assert scores[0] == pytest.approx(1.0) and scores[-1] == 0.0  # half the folds see no tumour: nothing undisputed
    split = next(r for r in rows if r["case"] == "case_split")
    # WT: the false-positive fold's extra ball is the only disputed WT volume; TC and ET: one fold has none at all
    wt, fp = np.isin(tumour_labels(), (1, 2, 3)), ball((4, 5, 5), 2.5)
    disputed_wt = np.count_nonzero(fp & ~wt) / np.count_nonzero(fp | wt)
    assert float(split["WT_disputed_share"]) == pytest.approx(disputed_wt, abs=1e-6)
    assert float(split["TC_disputed_share"]) == 1.0 and float(split["ET_disputed_share"]) == 1.0
    assert float(split["score"]) == pytest.approx((disputed_wt + 2) / 3, abs=1e-6)
    assert float(split["WT_expected_dice"]) == pytest.approx((1 + 1 + 0.5) / 3)  # FP fold: 1 / (1 lesion + 1 FP)
    assert float(split["TC_expected_dice"]) == pytest.approx(2 / 3)  # one fold has no core at all
    assert split["WT_lesions_minority"] == "1" and split["TC_lesions_majority"] == "1"
    assert float(split["true_dice_mean"]) == pytest.approx(1.0)
    assert len(split["slices"].split()) == 3 and (out / split["montage"]).is_file()


def test_nifti_maps_have_the_source_geometry_and_values(reviewed):
    import SimpleITK as sitk

    root, out = reviewed
    for name in ("consensus", "probability_WT", "disagreement_TC", "entropy_ET", "votes_TC"):
        image = sitk.ReadImage(str(out / "maps" / "case_split" / f"{name}.nii.gz"))
        assert image.GetSpacing() == pytest.approx(SPACING_XYZ)
        assert image.GetOrigin() == pytest.approx(ORIGIN_XYZ)
        assert image.GetDirection() == pytest.approx(DIRECTION)
    votes = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "maps" / "case_split" / "votes_TC.nii.gz")))
    assert votes[10, 14, 16] == 2 and votes[0, 0, 0] == 0  # one of three folds lost the core
    prob = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "maps" / "case_split" / "probability_TC.nii.gz")))
    assert prob[10, 14, 16] == round(100 * (0.9 + 0.9 + 0.1) / 3)
    consensus = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "maps" / "case_agree" / "consensus.nii.gz")))
    assert np.array_equal(consensus, tumour_labels())


def test_lesions_csv_and_zooniverse_manifest(reviewed):
    _, out = reviewed
    lesions = _rows(out / "lesions.csv")
    fold_only = [r for r in lesions if r["case"] == "case_split" and r["in_consensus"] == "0"]
    assert len(fold_only) == 1 and fold_only[0]["region"] == "WT" and fold_only[0]["folds_found"] == "1"
    with open(out / "zooniverse" / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
        manifest = list(reader)
    ranks = [int(r["#case_rank"]) for r in manifest]
    assert ranks == sorted(ranks) and ranks[0] == 1
    assert len({r["subject_id"] for r in manifest}) == len(manifest)
    for row in manifest:
        png = out / "zooniverse" / row["image_1"]
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["subject_id"] == f"{row['#case']}_z{int(row['#slice_z']):03d}"


def test_label_model_gives_the_same_review_as_region_model(tmp_path: Path):
    truth = tumour_labels()
    onehot = np.stack([truth == v for v in range(4)]).astype(np.float32) * 0.85 + 0.05
    missing = onehot.copy()
    missing[:, truth == 1] = [[0.8], [0.1], [0.05], [0.05]]  # one fold calls the necrosis background
    write_case(tmp_path, "c1", [onehot, onehot, missing], truth, dataset_json=LABEL_DATASET_JSON)
    result = run_review(
        fold_dirs(tmp_path),
        tmp_path / "images",
        tmp_path / "out",
        gt_dir=tmp_path / "gt",
        num_workers=1,
        progress=False,
        zooniverse=False,
        write_maps=False,
    )
    row = result.rows[0]
    assert row["true_dice_mean"] == pytest.approx(1.0)
    assert row["WT_expected_dice"] < 1.0 and row["ET_expected_dice"] == pytest.approx(1.0)
    necrosis = np.count_nonzero(truth == 1)  # the voxels one fold leaves out of WT and TC
    assert row["WT_disputed_share"] == pytest.approx(necrosis / np.count_nonzero(truth > 0), abs=1e-6)
    assert row["TC_disputed_share"] == pytest.approx(necrosis / np.count_nonzero(np.isin(truth, (1, 3))), abs=1e-6)
    assert row["ET_disputed_share"] == 0.0
    assert row["score"] == pytest.approx(np.mean([row[f"{r}_disputed_share"] for r in ("WT", "TC", "ET")]), abs=2e-6)
    assert not (tmp_path / "out" / "maps").exists() and not (tmp_path / "out" / "zooniverse").exists()


def test_disputed_share_counts_the_folds_label_maps_not_the_consensus(tmp_path: Path):
    # one voxel outside the tumour: fold 0 says edema (SNFH), fold 1 background; the mean of the two says necrosis
    truth = tumour_labels()
    onehot = np.stack([truth == v for v in range(4)]).astype(np.float32)
    fold0, fold1, voxel = onehot.copy(), onehot.copy(), (2, 3, 3)
    fold0[(slice(None), *voxel)] = [0.0, 0.4, 0.6, 0.0]
    fold1[(slice(None), *voxel)] = [0.6, 0.4, 0.0, 0.0]
    write_case(tmp_path, "c1", [fold0, fold1], truth, dataset_json=LABEL_DATASET_JSON)
    result = run_review(
        fold_dirs(tmp_path, 2), tmp_path / "images", tmp_path / "out", num_workers=1, progress=False, zooniverse=False
    )
    row = result.rows[0]
    import SimpleITK as sitk

    consensus = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "maps" / "c1" / "consensus.nii.gz")))
    assert consensus[voxel] == 1  # the consensus has a tumour core voxel there that no fold has ...
    assert row["TC_disputed_share"] == 0.0  # ... but the folds agree on every TC voxel they label
    assert row["WT_disputed_share"] == pytest.approx(1 / (np.count_nonzero(truth > 0) + 1), abs=1e-6)


# ------------------------------------------------------------------------------------------------------ errors
def test_missing_case_in_one_fold_names_the_folder_and_writes_nothing(tmp_path: Path):
    make_review_inputs(tmp_path)
    (tmp_path / "fold_1" / "case_split.npz").unlink()
    with pytest.raises(ValueError, match=r"fold_1: no probabilities for case_split"):
        run_review(fold_dirs(tmp_path), tmp_path / "images", tmp_path / "out", num_workers=1, progress=False)
    assert not (tmp_path / "out").exists()  # the folder this run created is removed again


def test_shape_mismatch_names_the_npz(tmp_path: Path):
    truth = tumour_labels()
    write_case(tmp_path, "c1", [region_probabilities(truth)] * 2, truth)
    np.savez(tmp_path / "fold_1" / "c1.npz", probabilities=np.zeros((3, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"fold_1/c1.npz: probabilities of shape"):
        run_review(fold_dirs(tmp_path, 2), tmp_path / "images", tmp_path / "out", num_workers=1, progress=False)
    assert not (tmp_path / "out" / "review.csv").exists()


def test_existing_review_is_kept_without_overwrite(reviewed, tmp_path: Path):
    root, _ = reviewed
    out = tmp_path / "out"
    out.mkdir()
    (out / "review.csv").write_text("mine\n")
    (out / "notes.txt").write_text("user file\n")
    with pytest.raises(ValueError, match="already holds a review"):
        run_review(fold_dirs(root), root / "images", out, num_workers=1, progress=False)
    assert (out / "review.csv").read_text() == "mine\n"
    run_review(
        fold_dirs(root),
        root / "images",
        out,
        num_workers=1,
        progress=False,
        overwrite=True,
        zooniverse=False,
        write_maps=False,
    )
    assert (out / "review.csv").read_text().startswith("rank,case,score")
    assert (out / "notes.txt").read_text() == "user file\n"
    assert not any(p.name.startswith(".review-staging-") for p in out.iterdir())


def test_one_fold_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="at least 2 folds"):
        run_review([tmp_path], tmp_path, tmp_path / "out")


def test_stale_staging_is_removed_and_a_running_review_blocks_a_second(reviewed, tmp_path: Path):
    from nnunet_tcup.io_utils import exclusive_lock
    from nnunet_tcup.review.core import LOCK_NAME

    root, _ = reviewed
    out = tmp_path / "out"
    (out / ".review-staging-99999" / "montages").mkdir(parents=True)
    with exclusive_lock(out / LOCK_NAME, "a review"):
        with pytest.raises(ValueError, match="another process is writing a review"):
            run_review(fold_dirs(root), root / "images", out, num_workers=1, progress=False)
    run_review(fold_dirs(root), root / "images", out, num_workers=1, progress=False, zooniverse=False, write_maps=False)
    assert sorted(p.name for p in out.iterdir()) == [  # the lock file is removed at the end
        "lesions.csv",
        "montages",
        "review.csv",
        "review.html",
    ]


def test_ground_truth_on_another_grid_is_refused(tmp_path: Path):
    import SimpleITK as sitk

    make_review_inputs(tmp_path)
    gt = tmp_path / "gt" / "case_split.nii.gz"
    image = sitk.ReadImage(str(gt))
    image.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(image, str(gt), True)
    with pytest.raises(ValueError, match=r"case_split.nii.gz: geometry differs from .*case_split_0000.nii.gz: origin"):
        run_review(
            fold_dirs(tmp_path),
            tmp_path / "images",
            tmp_path / "out",
            gt_dir=tmp_path / "gt",
            num_workers=1,
            progress=False,
        )
