"""Per-case cache that scores any lesion-filter setting without touching voxels again.

Why it is exact. In a prediction, every TC component lies inside one WT component and every ET component inside
one TC component (TC = {1, 3} is a subset of WT = {1, 2, 3}, ET = {3} of TC). The filter removes whole components,
removing a WT component removes all the labels inside it, a removed TC component becomes edema (WT unchanged) and a
removed ET component becomes core (TC unchanged). Hence, for thresholds ``(A_WT, A_TC, A_ET, m)``:

- the filtered WT mask is the union of the unfiltered WT components kept by their own rule;
- the filtered TC mask is the union of the unfiltered TC components kept by their own rule whose WT parent is kept;
- the filtered ET mask likewise, with its TC parent kept (and hence its WT grandparent);

and every kept component stays one intact 26-connected component of the filtered region mask (removal never
merges or splits the others: two kept components would already have been one component before). The lesion-wise
evaluation only sees predicted components as wholes: per GT lesion, the union of the components touching its
dilated ROI; components touching no ROI are false positives. So per case and region we cache, per unfiltered
predicted component: voxel count, slice count, parent component, overlap (voxels) with each GT lesion, and which
dilated GT lesions it touches; per GT lesion: voxel count and whether it is scored (volume above the threshold).
Scoring a candidate is then arithmetic on these small arrays (:class:`CandidateScorer` does it for thousands of
candidates at once).

The GT lesions, their ROIs and the component labelling are those of :mod:`nnunet_tcup.evaluation.lesionwise`
(official BraTS 2023 algorithm, DESIGN.md section 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnunet_tcup.postprocessing.lesion_filter import (
    FILTER_REGIONS,
    FilterParameters,
    check_label_map,
    component_sizes,
    keep_components,
    label_components,
    region_mask,
)

REGION_NAMES: tuple[str, ...] = tuple(r for r, _, _ in FILTER_REGIONS)
PARENT_REGION: dict[str, str | None] = {"WT": None, "TC": "WT", "ET": "TC"}


@dataclass
class RegionCache:
    """Cached statistics of one region of one case. Component indices are 0-based (component label - 1)."""

    voxels: np.ndarray  # (n,) voxel count per predicted component
    slices: np.ndarray  # (n,) z slices occupied per predicted component
    parent: np.ndarray  # (n,) index of the enclosing component of the parent region, -1 for WT
    lesion_voxels: np.ndarray  # (L,) voxel count per GT lesion (merged GT components)
    lesion_scored: np.ndarray  # (L,) bool: lesion volume above the evaluation's threshold
    overlap_pairs: np.ndarray  # (P, 3) int64 rows (component, lesion, overlapping voxels), overlap > 0
    touch_pairs: np.ndarray  # (T, 2) int64 rows (component, lesion): component touches the lesion's ROI

    @property
    def n_components(self) -> int:
        return int(self.voxels.shape[0])

    @property
    def n_lesions(self) -> int:
        return int(self.lesion_voxels.shape[0])

    @property
    def touches_any(self) -> np.ndarray:
        """(n,) bool: component touches at least one GT lesion's ROI (else it is a false positive when kept)."""
        out = np.zeros(self.n_components, dtype=bool)
        out[self.touch_pairs[:, 0]] = True
        return out


@dataclass
class CaseCache:
    """Everything needed to score any filter setting on one case: one :class:`RegionCache` per WT, TC, ET."""

    name: str
    regions: dict[str, RegionCache] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- cache building
def _evaluation_parameters(
    challenge: str | None, dilation_iterations: int | None, volume_threshold_mm3: float | None
) -> tuple[int, float]:
    """(dilation iterations, volume threshold mm^3) exactly as the evaluation resolves them."""
    from nnunet_tcup.evaluation.lesionwise import resolve_parameters

    return resolve_parameters(challenge, dilation_iterations, volume_threshold_mm3)


def _parent_index(child_components: np.ndarray, parent_components: np.ndarray, n_child: int) -> np.ndarray:
    """0-based parent component of each child component (child region is a subset of the parent region)."""
    inside = child_components > 0
    child = child_components[inside].astype(np.int64)
    parent = parent_components[inside].astype(np.int64)
    out = np.full(n_child + 1, -1, dtype=np.int64)
    out[child] = parent - 1
    if n_child and not np.array_equal(out[child], parent - 1):  # every child must lie in exactly one parent
        raise AssertionError("a component of a sub-region spans two components of its parent region")
    return out[1:]


def _region_cache(
    pred_components: np.ndarray,
    n_pred: int,
    parent: np.ndarray,
    gt_mask: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int,
    volume_threshold_mm3: float,
) -> RegionCache:
    """Cache one region with the evaluation's own primitives (lesion merging, ROI matching, overlaps, volumes).

    The GT work happens in the GT bounding box grown by ``dilation_iterations + 1`` voxels: the merge dilation and
    every lesion's ROI stay inside it (as in the evaluation, which crops the same way), and lesion numbering (C
    raster order of the dilated components) is unchanged by the crop, so per-lesion values come in the same order.
    """
    from nnunet_tcup.evaluation import lesionwise as lw

    voxels, slices = component_sizes(pred_components, n_pred)
    box = lw.bounding_box(gt_mask, pad=dilation_iterations + 1)
    if box is None:
        lesion_voxels = np.zeros(0, dtype=np.int64)
        overlap = np.zeros((0, 3), dtype=np.int64)
        touch = np.zeros((0, 2), dtype=np.int64)
    else:
        lesions, n_lesions = lw.merge_gt_lesions(gt_mask[box], dilation_iterations)
        pred_crop = pred_components[box]
        lesion_voxels = lw.voxel_counts(lesions, n_lesions)[1:]
        counts = lw.overlap_counts(lesions, pred_crop)  # rows (lesion id, component id, voxels)
        overlap = np.stack([counts[:, 1] - 1, counts[:, 0] - 1, counts[:, 2]], axis=1).astype(np.int64)
        matching = lw.match_lesions(
            lesions, pred_crop, dilation_iterations, num_lesions=n_lesions, num_components=n_pred
        )
        touch = np.array(
            [(c - 1, les) for les, comps in enumerate(matching.matches) for c in comps], dtype=np.int64
        ).reshape(-1, 2)
    scored = np.array([lw.voxel_volume_mm3(int(v), spacing) > volume_threshold_mm3 for v in lesion_voxels], dtype=bool)
    return RegionCache(
        voxels=voxels[1:],
        slices=slices[1:],
        parent=parent,
        lesion_voxels=lesion_voxels,
        lesion_scored=scored,
        overlap_pairs=overlap,
        touch_pairs=touch,
    )


def build_case_cache(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing: Sequence[float],
    challenge: str | None = None,
    dilation_iterations: int | None = None,
    volume_threshold_mm3: float | None = None,
    name: str = "case",
) -> CaseCache:
    """Cache one case: ``gt`` and unfiltered ``pred`` label maps ``(z, y, x)`` (labels 0-3), ``spacing`` ``(z, y, x)``
    in mm (the prediction's, as in the evaluation), evaluation parameters from ``challenge`` or given explicitly."""
    d, vol_thr = _evaluation_parameters(challenge, dilation_iterations, volume_threshold_mm3)
    gt = check_label_map(gt, f"{name}: ground truth")
    pred = check_label_map(pred, f"{name}: prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"{name}: ground truth shape {gt.shape} differs from prediction shape {pred.shape}")
    cache = CaseCache(name=name)
    previous_components = None
    for region, region_labels, _ in FILTER_REGIONS:
        components, n = label_components(region_mask(pred, region_labels))
        if previous_components is None:
            parent = np.full(n, -1, dtype=np.int64)
        else:
            parent = _parent_index(components, previous_components, n)
        cache.regions[region] = _region_cache(
            components, n, parent, region_mask(gt, region_labels), spacing, d, vol_thr
        )
        previous_components = components
    return cache


# ----------------------------------------------------------------------------------------------- scoring
def keep_masks(case: CaseCache, params: FilterParameters) -> dict[str, np.ndarray]:
    """Per region, which unfiltered predicted components survive the filter ``params`` (bool per component)."""
    keep: dict[str, np.ndarray] = {}
    for region in REGION_NAMES:
        rc = case.regions[region]
        own = keep_components(rc.voxels, rc.slices, params.threshold(region), params.min_slices)
        parent_region = PARENT_REGION[region]
        if parent_region is not None and rc.n_components:
            own &= keep[parent_region][rc.parent]
        keep[region] = own
    return keep


def region_lesionwise_dice(rc: RegionCache, keep: np.ndarray) -> dict[str, float]:
    """Lesion-wise Dice of one region given the kept components, with the counts it is made of.

    Uses the evaluation's own arithmetic (``dice_from_counts``, ``lesionwise_scores``): per lesion
    ``2 |U & L| / (|L| + |U|)`` with U the union of kept components touching the lesion's ROI; score = sum over
    scored lesions / (#scored + #false positives), 0/0 -> 1.
    """
    from nnunet_tcup.evaluation import lesionwise as lw

    inter = np.zeros(rc.n_lesions, dtype=np.int64)
    pred_vol = np.zeros(rc.n_lesions, dtype=np.int64)
    op, tp = rc.overlap_pairs, rc.touch_pairs
    sel = keep[op[:, 0]]
    np.add.at(inter, op[sel, 1], op[sel, 2])
    sel = keep[tp[:, 0]]
    np.add.at(pred_vol, tp[sel, 1], rc.voxels[tp[sel, 0]])
    n_fp = int(np.count_nonzero(keep & ~rc.touches_any))
    dices = [lw.dice_from_counts(int(i), int(g), int(p)) for i, g, p in zip(inter, rc.lesion_voxels, pred_vol)]
    score, _ = lw.lesionwise_scores(dices, [0.0] * len(dices), rc.lesion_scored.tolist(), n_fp)
    return {"LesionWise_Score_Dice": score, "n_scored": int(rc.lesion_scored.sum()), "n_fp": n_fp}


def score_case(case: CaseCache, params: FilterParameters | None) -> dict[str, float]:
    """Lesion-wise Dice per region (WT, TC, ET) of ``case`` after the filter ``params`` (None: unfiltered)."""
    if params is None:
        keep = {r: np.ones(case.regions[r].n_components, dtype=bool) for r in REGION_NAMES}
    else:
        keep = keep_masks(case, params)
    return {r: region_lesionwise_dice(case.regions[r], keep[r])["LesionWise_Score_Dice"] for r in REGION_NAMES}


class CandidateScorer:
    """Vectorised scoring of many candidates ``(A_WT, A_TC, A_ET, min_slices)`` over many cached cases.

    Components and lesions of all cases are concatenated; per region a keep matrix (candidates x components) is
    built from the cached areas, slice counts and parent links, and the per-lesion intersections and matched
    volumes are sparse matrix products. Per-lesion Dice values are computed with the same float operations as
    :func:`region_lesionwise_dice`; only the order of the final per-case summation may differ (by float rounding,
    ~1e-16), which is why reported values come from :func:`score_case`.
    """

    def __init__(self, cases: Sequence[CaseCache]):
        if not cases:
            raise ValueError("no cases to score")
        self.n_cases = len(cases)
        self._regions = {region: self._stack(cases, region) for region in REGION_NAMES}

    @staticmethod
    def _stack(cases: Sequence[CaseCache], region: str) -> dict:
        import scipy.sparse as sp

        parent_region = PARENT_REGION[region]
        voxels, slices, parents, touches_any, comp_case = [], [], [], [], []
        lesion_vox, lesion_case, scored = [], [], []
        op_rows, op_cols, op_vals, tp_rows, tp_cols, tp_vals = [], [], [], [], [], []
        c_off = l_off = p_off = 0
        for k, case in enumerate(cases):
            rc = case.regions[region]
            voxels.append(rc.voxels)
            slices.append(rc.slices)
            parents.append(rc.parent + p_off if parent_region else rc.parent)
            touches_any.append(rc.touches_any)
            comp_case.append(np.full(rc.n_components, k, dtype=np.int64))
            lesion_vox.append(rc.lesion_voxels)
            lesion_case.append(np.full(rc.n_lesions, k, dtype=np.int64))
            scored.append(rc.lesion_scored)
            op_rows.append(rc.overlap_pairs[:, 0] + c_off)
            op_cols.append(rc.overlap_pairs[:, 1] + l_off)
            op_vals.append(rc.overlap_pairs[:, 2])
            tp_rows.append(rc.touch_pairs[:, 0] + c_off)
            tp_cols.append(rc.touch_pairs[:, 1] + l_off)
            tp_vals.append(rc.voxels[rc.touch_pairs[:, 0]])
            c_off += rc.n_components
            l_off += rc.n_lesions
            if parent_region:
                p_off += case.regions[parent_region].n_components
        cat = np.concatenate
        all_voxels, all_slices = cat(voxels).astype(np.int64), cat(slices).astype(np.int64)
        all_scored = cat(scored).astype(bool)
        n_cases = len(cases)
        all_lesion_case = cat(lesion_case)
        shape = (c_off, l_off)
        overlap = sp.csr_matrix((cat(op_vals).astype(np.float64), (cat(op_rows), cat(op_cols))), shape=shape)
        touch = sp.csr_matrix((cat(tp_vals).astype(np.float64), (cat(tp_rows), cat(tp_cols))), shape=shape)
        fp = ~cat(touches_any)
        fp_case = sp.csr_matrix(
            (np.ones(int(fp.sum())), (np.flatnonzero(fp), cat(comp_case)[fp])), shape=(c_off, n_cases)
        )
        scored_idx = np.flatnonzero(all_scored)
        comp_voxels = sp.csr_matrix(
            (all_voxels.astype(np.float64), (np.arange(c_off), cat(comp_case))), shape=(c_off, n_cases)
        )
        lesion_case_m = sp.csr_matrix(
            (np.ones(scored_idx.size), (np.arange(scored_idx.size), all_lesion_case[scored_idx])),
            shape=(scored_idx.size, n_cases),
        )
        # transposed (rows: lesions or cases) so that products with (components, candidates) keep matrices are cheap
        return {
            "comp_voxels_T": comp_voxels.T.tocsr(),
            "area": np.where(all_slices > 0, all_voxels / np.maximum(all_slices, 1), 0.0),  # as keep_components
            "slices": all_slices.astype(np.float64),
            "parent": cat(parents).astype(np.int64),
            "overlap_T": overlap[:, scored_idx].T.tocsr(),
            "touch_T": touch[:, scored_idx].T.tocsr(),
            "lesion_voxels": cat(lesion_vox).astype(np.float64)[scored_idx],
            "lesion_case_T": lesion_case_m.T.tocsr(),
            "n_scored": np.bincount(all_lesion_case[scored_idx], minlength=n_cases).astype(np.float64),
            "fp_case_T": fp_case.T.tocsr(),
        }

    def keep_columns(self, candidates: np.ndarray, upto: str = "ET") -> dict[str, np.ndarray]:
        """Per region (WT, TC, ET, stopping after ``upto``), ``(n_components, C)`` bool: component kept under each
        candidate row ``(A_WT, A_TC, A_ET, min_slices)`` (its own rule and its parent's). Components are rows so
        that the sparse products below read the matrix in memory order (no copies)."""
        candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
        keep: dict[str, np.ndarray] = {}
        for col, region in enumerate(REGION_NAMES):
            data = self._regions[region]
            own = (data["area"][:, None] > candidates[None, :, col]) & (
                data["slices"][:, None] >= candidates[None, :, 3]
            )
            parent_region = PARENT_REGION[region]
            if parent_region is not None and own.shape[0]:
                own &= keep[parent_region][data["parent"], :]
            keep[region] = own
            if region == upto:
                break
        return keep

    def keep_matrix(self, region: str, candidates: np.ndarray) -> np.ndarray:
        """(C, n) bool: component kept under each candidate row ``(A_WT, A_TC, A_ET, min_slices)``."""
        return self.keep_columns(candidates, region)[region].T

    def _chunks(self, candidates: np.ndarray, max_cells: int) -> list[slice]:
        """Slices of candidate rows such that a keep matrix of every region holds at most ``max_cells`` entries."""
        n_comp = max(max(len(self._regions[r]["area"]) for r in REGION_NAMES), 1)
        step = int(max(1, min(candidates.shape[0], max_cells // n_comp)))
        return [slice(s, s + step) for s in range(0, candidates.shape[0], step)]

    def changed_voxels(self, candidates: np.ndarray, max_cells: int = 20_000_000) -> np.ndarray:
        """(C, n_cases) number of voxels whose label each candidate changes in each case (its aggressiveness).

        A component is changed when its own rule removes it while its parent component is kept (a removed parent
        already changed it): WT voxels become 0, TC voxels 2, ET voxels 1.
        """
        candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
        out = np.zeros((self.n_cases, candidates.shape[0]))
        for chunk in self._chunks(candidates, max_cells):
            keep = self.keep_columns(candidates[chunk])
            for region in REGION_NAMES:
                data = self._regions[region]
                parent_region = PARENT_REGION[region]
                if not keep[region].shape[0]:
                    continue
                changed = ~keep[region]
                if parent_region is not None:
                    changed &= keep[parent_region][data["parent"], :]
                out[:, chunk] += data["comp_voxels_T"].dot(changed.astype(np.float64))
        return out.T

    def region_case_scores(self, region: str, candidates: np.ndarray, max_cells: int = 20_000_000) -> np.ndarray:
        """(C, n_cases) lesion-wise Dice of ``region`` per case under each candidate row.

        Candidates are processed in chunks so that a keep matrix holds at most ``max_cells`` entries.
        """
        candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
        parts = [self._region_case_scores(region, candidates[chunk]) for chunk in self._chunks(candidates, max_cells)]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.n_cases))

    def _region_case_scores(self, region: str, candidates: np.ndarray) -> np.ndarray:
        data = self._regions[region]
        keep = self.keep_columns(candidates, region)[region].astype(np.float64)  # (n_comp, C)
        inter = data["overlap_T"].dot(keep)  # (L, C) exact integer sums in float64
        pred_vol = data["touch_T"].dot(keep)
        dice = 2.0 * inter / (data["lesion_voxels"][:, None] + pred_vol)
        dice_sum = data["lesion_case_T"].dot(dice)  # (n_cases, C)
        n_fp = data["fp_case_T"].dot(keep)
        denom = data["n_scored"][:, None] + n_fp
        return np.where(denom == 0, 1.0, dice_sum / np.where(denom == 0, 1.0, denom)).T

    def mean_scores(self, candidates: np.ndarray) -> np.ndarray:
        """(C, 3) mean lesion-wise Dice over cases per region (WT, TC, ET) for each candidate row."""
        candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
        return np.stack([self.region_case_scores(r, candidates).mean(axis=1) for r in REGION_NAMES], axis=1)


def cases_total(cases: list[CaseCache]) -> dict[str, int]:
    """Component and lesion counts over ``cases``, per region (for logs)."""
    return {r: sum(c.regions[r].n_components for c in cases) for r in REGION_NAMES}
