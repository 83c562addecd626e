"""Unit tests of the lesion filter and the probability step on hand-built label maps (z, y, x)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nnunet_tcup.challenges import PAPER_FILTER_PRESETS, PAPER_MIN_SLICES
from nnunet_tcup.postprocessing.lesion_filter import (
    FilterParameters,
    component_sizes,
    filter_lesions,
    label_components,
    preset_parameters,
)
from nnunet_tcup.postprocessing.probabilities import probabilities_to_labels

NO_FILTER = dict(wt_threshold=0, tc_threshold=0, et_threshold=0, min_slices=1)


def block(shape=(12, 16, 16)) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint8)


def test_area_per_slice_is_voxels_over_slices_and_strict():
    seg = block()
    seg[2:5, 3:5, 3:8] = 2  # 3 slices x 10 voxels: mean area 10
    comps, n = label_components(seg > 0)
    voxels, slices = component_sizes(comps, n)
    assert (n, voxels[1], slices[1]) == (1, 30, 3)
    kept = filter_lesions(seg, wt_threshold=9.99, tc_threshold=0, et_threshold=0, min_slices=3)
    assert np.array_equal(kept, seg)
    removed = filter_lesions(seg, wt_threshold=10, tc_threshold=0, et_threshold=0, min_slices=3)  # 10 > 10 false
    assert not removed.any()
    too_thin = filter_lesions(seg, wt_threshold=0, tc_threshold=0, et_threshold=0, min_slices=4)
    assert not too_thin.any()


def test_uneven_slices_use_the_mean_area():
    seg = block()
    seg[1, 0:10, 0:10] = 2  # 100 voxels
    seg[2, 0:2, 0:1] = 2  # 2 voxels, connected to the slice above
    seg[3, 0:1, 0:1] = 2  # 1 voxel  -> 103 voxels over 3 slices: 34.33
    assert np.array_equal(filter_lesions(seg, 34.3, 0, 0, min_slices=3), seg)
    assert not filter_lesions(seg, 34.34, 0, 0, min_slices=3).any()


def test_slices_are_counted_along_the_first_axis_z():
    seg = block((12, 16, 16))
    seg[5, 2, 0:12] = 2  # a line in x: 1 slice, area 12
    seg[0:10, 10, 10] = 2  # a line in z: 10 slices, area 1
    out = filter_lesions(seg, wt_threshold=0.5, tc_threshold=0, et_threshold=0, min_slices=2)
    assert not out[5, 2].any() and out[0:10, 10, 10].all()
    out = filter_lesions(seg, wt_threshold=2, tc_threshold=0, et_threshold=0, min_slices=1)
    assert out[5, 2, 0:12].all() and not out[0:10, 10, 10].any()


def test_slice_span_of_a_diagonal_26_connected_component():
    seg = block()
    for k in range(6):
        seg[3 + k, 2 + k, 2 + k] = 3  # touches only by corners: one 26-connected component
    comps, n = label_components(seg > 0)
    voxels, slices = component_sizes(comps, n)
    assert (n, voxels[1], slices[1]) == (1, 6, 6)
    assert np.array_equal(filter_lesions(seg, 0.99, 0.99, 0.99, min_slices=6), seg)
    assert not filter_lesions(seg, 1.0, 0, 0, min_slices=6).any()


def nested_tumour() -> np.ndarray:
    """WT component: edema block (z 1-8); inside a core block (z 2-7) holding an ET block (z 3-6)."""
    seg = block((12, 20, 20))
    seg[1:9, 2:14, 2:14] = 2
    seg[2:8, 4:12, 4:12] = 1
    seg[3:7, 6:10, 6:10] = 3
    return seg


def test_removed_wt_component_becomes_background_with_everything_inside():
    seg = nested_tumour()
    out = filter_lesions(seg, wt_threshold=1000, tc_threshold=0, et_threshold=0, min_slices=1)
    assert not out.any()


def test_removed_tc_component_becomes_edema_including_its_et():
    seg = nested_tumour()
    out = filter_lesions(seg, wt_threshold=0, tc_threshold=1000, et_threshold=0, min_slices=1)
    expected = np.where(seg > 0, 2, 0)
    assert np.array_equal(out, expected)


def test_removed_et_component_becomes_core():
    seg = nested_tumour()
    out = filter_lesions(seg, wt_threshold=0, tc_threshold=0, et_threshold=1000, min_slices=1)
    expected = np.where(seg == 3, 1, seg)
    assert np.array_equal(out, expected)


def test_min_slices_applies_per_region():
    seg = nested_tumour()  # WT spans 8 slices, TC 6, ET 4
    out = filter_lesions(seg, 0, 0, 0, min_slices=5)
    assert np.array_equal(out, np.where(seg == 3, 1, seg))  # only ET (4 slices) removed
    out = filter_lesions(seg, 0, 0, 0, min_slices=7)
    assert np.array_equal(out, np.where(seg > 0, 2, 0))  # TC (6 slices) removed with its ET
    assert not filter_lesions(seg, 0, 0, 0, min_slices=9).any()


def test_small_specks_inside_and_outside_a_tumour():
    seg = nested_tumour()
    seg[10, 18, 18] = 3  # isolated ET speck: its own WT component -> background
    seg[1, 2, 13] = 3  # ET speck in the edema: own TC and ET component -> edema
    seg[6, 15, 2] = 1  # core speck outside: own WT component -> background
    out = filter_lesions(seg, wt_threshold=5, tc_threshold=5, et_threshold=5, min_slices=2)
    assert out[10, 18, 18] == 0 and out[6, 15, 2] == 0
    assert out[1, 2, 13] == 2
    assert np.array_equal(out[3:7, 6:10, 6:10], seg[3:7, 6:10, 6:10])  # the real tumour is intact


def test_filter_keeps_dtype_and_does_not_modify_its_input():
    seg = nested_tumour().astype(np.float32)  # nnU-Net's readers give float32
    seg[10, 18, 18] = 3
    before = seg.copy()
    out = filter_lesions(seg, 5, 5, 5, 2)
    assert out.dtype == np.float32 and np.array_equal(seg, before) and out[10, 18, 18] == 0


def test_no_filter_setting_is_the_identity():
    from postprocessing_helpers import make_case

    _, pred = make_case((24, 40, 40), seed=3)
    assert np.array_equal(filter_lesions(pred, **NO_FILTER), pred)


def test_presets_and_pickle_round_trip():
    for challenge, preset in PAPER_FILTER_PRESETS.items():
        params = preset_parameters(challenge.lower())
        assert params.as_kwargs() == {
            "wt_threshold": preset["WT"],
            "tc_threshold": preset["TC"],
            "et_threshold": preset["ET"],
            "min_slices": PAPER_MIN_SLICES,
        }
        assert all(type(v) in (int, float) for v in params.as_kwargs().values())
    fns, kwargs = pickle.loads(pickle.dumps(([filter_lesions], [preset_parameters("GLI").as_kwargs()])))
    seg = nested_tumour()
    assert np.array_equal(fns[0](seg, **kwargs[0]), filter_lesions(seg, 125, 75, 20, 5))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((4, 4, 4), 4, np.uint8), "outside 0-3"),
        (np.full((4, 4, 4), -1, np.int16), "outside 0-3"),
        (np.full((4, 4, 4), 1.5, np.float32), "non-integer"),
        (np.full((4, 4, 4), np.nan, np.float32), "outside 0-3"),
        (np.zeros((4, 4), np.uint8), "3D"),
        (np.zeros((1, 4, 4, 4), np.uint8), "3D"),
        (np.zeros((4, 4, 4), bool), "dtype"),
    ],
)
def test_bad_label_maps_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        filter_lesions(bad, 1, 1, 1, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(wt_threshold=-1, tc_threshold=0, et_threshold=0), "wt_threshold"),
        (dict(wt_threshold=0, tc_threshold="75", et_threshold=0), "tc_threshold"),
        (dict(wt_threshold=0, tc_threshold=0, et_threshold=None), "et_threshold"),
        (dict(wt_threshold=float("nan"), tc_threshold=0, et_threshold=0), "wt_threshold"),
        (dict(wt_threshold=float("inf"), tc_threshold=0, et_threshold=0), "wt_threshold"),
        (dict(wt_threshold=True, tc_threshold=0, et_threshold=0), "wt_threshold"),
        (dict(wt_threshold=0, tc_threshold=0, et_threshold=0, min_slices=0), "min_slices"),
        (dict(wt_threshold=0, tc_threshold=0, et_threshold=0, min_slices=2.5), "min_slices"),
        (dict(wt_threshold=0, tc_threshold=0, et_threshold=0, min_slices="5"), "min_slices"),
    ],
)
def test_bad_thresholds_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        filter_lesions(block(), **kwargs)


def test_from_kwargs_rejects_unknown_or_missing_keys():
    with pytest.raises(ValueError, match="unknown: \\['wt'\\]"):
        FilterParameters.from_kwargs({"wt": 1, "wt_threshold": 1, "tc_threshold": 1, "et_threshold": 1})
    with pytest.raises(ValueError, match="missing: \\['et_threshold'\\]"):
        FilterParameters.from_kwargs({"wt_threshold": 1, "tc_threshold": 1})


def test_probabilities_to_labels_follows_the_paper():
    p = np.zeros((3, 1, 1, 5), dtype=np.float32)
    p[:, 0, 0, 0] = (0.1, 0.1, 0.1)  # background 0.7
    p[:, 0, 0, 1] = (0.6, 0.3, 0.2)  # sum > 1: background -0.1, NETC wins
    p[:, 0, 0, 2] = (0.2, 0.7, 0.05)  # SNFH
    p[:, 0, 0, 3] = (0.3, 0.3, 0.35)  # ET
    p[:, 0, 0, 4] = (0.0, 0.0, 0.0)  # background 1
    labels = probabilities_to_labels(p)
    assert labels.dtype == np.uint8 and labels.shape == (1, 1, 5)
    assert labels.ravel().tolist() == [0, 1, 2, 3, 0]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 2, 2, 2), np.float32), "shape"),
        (np.zeros((3, 2, 2), np.float32), "shape"),
        (np.zeros((3, 2, 2, 2), np.int64), "floating"),
        (np.full((3, 2, 2, 2), 1.5, np.float32), r"\[0, 1\]"),
    ],
)
def test_probabilities_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        probabilities_to_labels(bad)
