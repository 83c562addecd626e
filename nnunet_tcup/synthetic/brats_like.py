"""Synthetic BraTS 2023-like cases: four skull-stripped MR contrasts plus a 2023 label map.

Pipeline for one case (all random draws from ``numpy.random.default_rng(seed)``, so a seed gives byte-identical
arrays):

1. Head placement: the brain of the anatomy (MNI152 template or analytic fallback, see
   :mod:`nnunet_tcup.synthetic.anatomy`) is put in the 240x240x155 mm field of view (FOV) with a random scale,
   a few degrees of rotation and a few mm of shift.
2. Tumour plan (:mod:`nnunet_tcup.synthetic.tumour`): location by challenge (white matter, posterior fossa or
   brain surface), size, necrosis, edema reach, satellites, mass effect.
3. Tissue maps (GM, WM, CSF, brain mask, depth, periventricular zone) are resampled onto the requested grid
   (:mod:`nnunet_tcup.synthetic.geometry`), anti-aliased when the grid is coarser than the template, with the
   mass-effect displacement around the tumour; the tumour is rasterised on a box around it.
4. Contrasts (:mod:`nnunet_tcup.synthetic.contrast`): tissue-mixture intensities per modality, unlabelled
   look-alikes (periventricular and punctate white-matter FLAIR hyperintensities; vessels, residual meninges and
   choroid plexus bright on T1c; FLAIR CSF-pulsation artefacts), edema and tumour compartments mixed in with
   partial-volume weights and texture, then a smooth multiplicative bias field, acquisition blur, Rician noise,
   zeros outside the (tumour-including) brain mask, and a random gain per modality into int16.

Output conventions: arrays in (x, y, z) order, 1 mm voxels, affine :func:`brats_affine` (LPS voxel axes as in
the BraTS releases: x to patient left, y to posterior, z to superior). Case seeds for datasets come from
:func:`case_seed`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_tcup.challenges import MODALITIES, check_challenge
from nnunet_tcup.synthetic.anatomy import Anatomy, load_anatomy, resolve_anatomy_source
from nnunet_tcup.synthetic.contrast import acquire, render_lookalikes, render_modality, sample_intensities, to_int16
from nnunet_tcup.synthetic.fields import crop_slices, smooth_noise
from nnunet_tcup.synthetic.geometry import REFERENCE_SHAPE, FovGrid, HeadPlacement, sample_placement, warp_tissue
from nnunet_tcup.synthetic.profiles import PROFILES, ChallengeProfile
from nnunet_tcup.synthetic.tumour import Lesion, TumourPlan, random_rotation, render_tumour

MIN_SIZE, MAX_SIZE = 16, 1024


@dataclass
class SyntheticCase:
    """One synthetic case. ``images``: t1n/t1c/t2w/t2f int16 arrays (x, y, z); ``seg``: uint8 labels
    (0, 1 = NETC, 2 = SNFH, 3 = ET) or None; ``affine``: 4x4 voxel-to-world (mm) matrix shared by all files."""

    images: dict[str, np.ndarray]
    seg: np.ndarray | None
    affine: np.ndarray
    challenge: str = "GLI"
    seed: int = 0
    anatomy: str = "mni152"


def brats_affine(shape: Sequence[int]) -> np.ndarray:
    """Voxel-to-world affine of the BraTS releases (SRI24 grid): 1 mm, diag(-1, -1, 1), y origin ``Y - 1``.

    Voxel axes point to patient Left, Posterior, Superior (nibabel orientation codes L, P, S); world coordinates
    are RAS+ as nibabel reports them, so world x = -i, y = (Y - 1) - j, z = k (SimpleITK: identity direction,
    origin (0, -(Y - 1), 0) in LPS). The spacing is 1 mm for every ``shape``: a smaller grid holds a
    proportionally smaller head, as the whole 240x240x155 mm field of view is mapped onto it.
    """
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = float(shape[1] - 1)
    return affine


def check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate a grid shape (three integers in [16, 1024]); return it as a tuple."""
    try:
        values = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as e:
        raise ValueError(f"shape must be three integers X Y Z, got {shape!r}") from e
    if len(values) != 3 or any(v != s for v, s in zip(values, shape)):
        raise ValueError(f"shape must be three integers X Y Z, got {tuple(shape)!r}")
    if any(v < MIN_SIZE or v > MAX_SIZE for v in values):
        raise ValueError(f"shape {values}: every size must be between {MIN_SIZE} and {MAX_SIZE} voxels")
    return values


def case_seed(seed: int, index: int) -> int:
    """Seed of case number ``index`` in a dataset generated with ``seed`` (independent streams per case)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


# ---------------------------------------------------------------------------------------------- tumour plan


@functools.lru_cache(maxsize=8)
def _candidate_voxels(source: str, kind: str) -> np.ndarray:
    """Flat indices of anatomy voxels where a lesion of ``kind`` may be centred."""
    a = load_anatomy(source)
    grids = np.ogrid[tuple(slice(0, n) for n in a.mask.shape)]
    y_mm = grids[1] * a.affine[1, 1] + a.affine[1, 3]
    z_mm = grids[2] * a.affine[2, 2] + a.affine[2, 3]
    if kind == "supratentorial":
        sel = (a.wm > 0.6) & (a.deep > 0.9) & (z_mm > -5)
    elif kind == "infratentorial":
        sel = ((a.gm + a.wm) > 0.6) & (a.deep > 0.85) & (z_mm < -15) & (y_mm < -20)
    elif kind == "deep":
        sel = ((a.gm + a.wm) > 0.6) & (a.deep > 0.9) & (z_mm > -5)
    elif kind == "surface":
        sel = (a.mask > 0.5) & (a.deep > 0.42) & (a.deep < 0.6) & (z_mm > -30)
    else:
        raise ValueError(f"unknown lesion location kind {kind!r}")
    return np.flatnonzero(sel)


def _sample_location(
    rng: np.random.Generator, anatomy: Anatomy, profile: ChallengeProfile
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion centre in MNI mm and the outward surface normal there (zero vector for non-surface sites)."""
    if profile.location == "dural":
        kind = "surface"
    elif profile.location == "paediatric":
        kind = "infratentorial" if rng.random() < 0.55 else "deep"
    else:
        kind = "supratentorial"
    candidates = _candidate_voxels(anatomy.source, kind)
    flat = candidates[rng.integers(candidates.size)]
    ijk = np.array(np.unravel_index(flat, anatomy.mask.shape))
    normal = np.zeros(3)
    if kind == "surface":
        lo = np.maximum(ijk - 2, 0)
        patch = anatomy.deep[lo[0] : ijk[0] + 3, lo[1] : ijk[1] + 3, lo[2] : ijk[2] + 3]
        grad = np.array([np.mean(g) for g in np.gradient(patch)])
        grad_mm = np.linalg.solve(anatomy.affine[:3, :3].T, grad)
        if np.linalg.norm(grad_mm) > 0:
            normal = -grad_mm / np.linalg.norm(grad_mm)
    centre = anatomy.affine[:3, :3] @ (ijk + rng.uniform(-0.5, 0.5, 3)) + anatomy.affine[:3, 3]
    return centre, normal


def _inside_brain(anatomy: Anatomy, mni_mm: np.ndarray) -> bool:
    ijk = np.rint(np.linalg.solve(anatomy.affine[:3, :3], mni_mm - anatomy.affine[:3, 3])).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(anatomy.mask.shape)):
        return False
    i, j, k = ijk
    return bool(anatomy.gm[i, j, k] + anatomy.wm[i, j, k] > 0.5 and anatomy.deep[i, j, k] > 0.8)


def sample_tumour_plan(
    rng: np.random.Generator, anatomy: Anatomy, placement: HeadPlacement, profile: ChallengeProfile, step_mm: np.ndarray
) -> TumourPlan:
    """Draw the lesions of a case (FOV mm). Sizes are floored at a few grid voxels so small grids keep all labels."""
    voxel = float(np.max(step_mm))
    centre_mni, normal = _sample_location(rng, anatomy, profile)
    radius = max(rng.uniform(*profile.core_radius_mm), 3.0 * voxel)
    radii = radius * np.exp(rng.normal(0.0, 0.12, 3))
    radii *= radius / np.exp(np.log(radii).mean())
    if profile.location == "dural":
        centre_mni = centre_mni - normal * rng.uniform(0.3, 0.7) * radius  # embedded: indents the brain
    centre = placement.mni_to_fov(centre_mni)
    necrosis = 0.0
    if rng.random() < profile.necrosis_probability:
        rim = max(rng.uniform(*profile.rim_mm), 1.5 * voxel)
        necrosis = float(np.clip(1.0 - rim / radius, 0.0, 0.8))
        necrosis = necrosis if necrosis >= 0.3 else 0.0
    edema = max(rng.uniform(*profile.edema_mm), 1.5 * voxel) if rng.random() < profile.edema_probability else 0.0
    main = Lesion(
        centre_mm=centre,
        radii_mm=radii,
        rotation=random_rotation(rng),
        necrosis_fraction=necrosis,
        edema_mm=edema,
        lobulation=rng.uniform(*profile.lobulation),
        intra_axial=profile.intra_axial,
    )
    satellites = []
    if profile.max_satellites > 0 and rng.random() < profile.satellite_probability:
        for _ in range(int(rng.integers(1, profile.max_satellites + 1))):
            for _attempt in range(12):
                direction = rng.standard_normal(3)
                direction /= np.linalg.norm(direction)
                dist = radius * rng.uniform(1.3, 2.0) + rng.uniform(4.0, 12.0)
                sat_centre = centre + direction * dist
                if _inside_brain(anatomy, placement.fov_to_mni(sat_centre)):
                    r_sat = max(rng.uniform(3.0, 6.5), 1.4 * voxel)
                    sat_nec = 0.45 if (r_sat > 5.0 and rng.random() < 0.4) else 0.0
                    satellites.append(
                        Lesion(
                            centre_mm=sat_centre,
                            radii_mm=r_sat * np.exp(rng.normal(0.0, 0.1, 3)),
                            rotation=random_rotation(rng),
                            necrosis_fraction=sat_nec,
                            edema_mm=max(rng.uniform(3.0, 10.0), voxel),
                            lobulation=0.1,
                        )
                    )
                    break
    return TumourPlan(
        main=main,
        satellites=tuple(satellites),
        mass_effect=rng.uniform(*profile.mass_effect),
        mass_effect_length_mm=1.2 * radius,
        dural_tail=profile.dural_tail,
    )


# ---------------------------------------------------------------------------------------------------- driver


def _region_slices(
    anatomy: Anatomy, placement: HeadPlacement, grid: FovGrid, plan: TumourPlan
) -> tuple[slice, slice, slice]:
    """Voxel box of the grid holding the brain and every lesion (everything outside stays 0)."""
    lo, hi = anatomy.brain_bbox_mm()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pts = grid.fov_to_voxel(placement.mni_to_fov(corners))
    t_lo, t_hi = plan.bounds_mm()
    pts = np.vstack([pts, grid.fov_to_voxel(t_lo), grid.fov_to_voxel(t_hi)])
    lower = np.clip(np.floor(pts.min(0)) - 2, 0, grid.shape).astype(int)
    upper = np.clip(np.ceil(pts.max(0)) + 3, 0, grid.shape).astype(int)
    return tuple(slice(int(a), int(b)) for a, b in zip(lower, upper))  # type: ignore[return-value]


def synthesize_case(
    challenge: str, shape: Sequence[int] = REFERENCE_SHAPE, seed: int = 0, with_seg: bool = True, anatomy: str = "auto"
) -> SyntheticCase:
    """Generate one BraTS 2023-like case.

    Args:
        challenge: 'GLI', 'MEN', 'PED' or 'SSA' (see :mod:`nnunet_tcup.synthetic.profiles`).
        shape: grid (x, y, z) in voxels covering the 240x240x155 mm BraTS field of view; each in [16, 1024].
        seed: non-negative integer; equal seeds give byte-identical arrays.
        with_seg: keep the label map (the images do not depend on this flag).
        anatomy: 'auto', 'mni152' or 'analytic' (see :mod:`nnunet_tcup.synthetic.anatomy`).
    """
    challenge = check_challenge(challenge)
    shape = check_shape(shape)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    profile = PROFILES[challenge]
    anat = load_anatomy(resolve_anatomy_source(anatomy))
    rng = np.random.default_rng(int(seed))
    grid = FovGrid(shape)
    placement = sample_placement(rng, anat, profile)
    plan = sample_tumour_plan(rng, anat, placement, profile, grid.step_mm)
    region = _region_slices(anat, placement, grid, plan)
    tissue = warp_tissue(anat, placement, grid, region, plan)

    t_lo, t_hi = plan.bounds_mm()
    tumour_box_full = crop_slices(
        grid.fov_to_voxel(0.5 * (t_lo + t_hi)), 0.5 * (t_hi - t_lo) / grid.step_mm, grid.shape
    )
    tumour_box_full = tuple(
        slice(max(b.start, r.start), max(min(b.stop, r.stop), max(b.start, r.start)))
        for b, r in zip(tumour_box_full, region)
    )
    tumour_box = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(tumour_box_full, region))
    tumour = render_tumour(
        plan, grid.axes_mm(tumour_box_full), grid.step_mm, {k: v[tumour_box] for k, v in tissue.items()}, rng
    )

    looks = render_lookalikes(rng, tissue, grid.step_mm, grid.axes_mm(region)[2].ravel(), profile)
    texture = 1.0 + 0.03 * smooth_noise(rng, tissue["wm"].shape, 3.0 / grid.step_mm)
    brain = tissue["mask"] > 0.5
    brain[tumour_box] |= tumour.labels > 0
    table = sample_intensities(rng, profile)
    # coarser grids average more signal per voxel: noise falls with voxel volume (cube root, milder than sqrt)
    noise_level = rng.uniform(*profile.noise) * float(np.prod(grid.step_mm)) ** (-1.0 / 3.0)

    images = {}
    for modality in MODALITIES:
        x = render_modality(table[modality], tissue, texture, looks, tumour_box, tumour)
        x = acquire(rng, x, brain, profile, noise_level, grid.step_mm)
        full = np.zeros(shape, np.int16)
        full[region] = to_int16(rng, x)
        images[modality] = full
    seg = None
    if with_seg:
        seg = np.zeros(shape, np.uint8)
        seg[tumour_box_full] = tumour.labels
    return SyntheticCase(
        images=images, seg=seg, affine=brats_affine(shape), challenge=challenge, seed=int(seed), anatomy=anat.source
    )
