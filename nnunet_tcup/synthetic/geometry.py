"""Geometry of a synthetic case: the field-of-view grid, head placement and resampling of the anatomy.

Frames: *FOV frame* = millimetres of the 240x240x155 mm BraTS field of view, origin at its centre, axes (x, y, z)
towards patient Left, Posterior, Superior (the voxel axes of the written files); *MNI frame* = RAS+ mm of the
anatomy. A grid of any shape covers the whole FOV (voxel size 240/X x 240/Y x 155/Z mm of the FOV frame).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_tcup.synthetic.anatomy import Anatomy, load_anatomy
from nnunet_tcup.synthetic.fields import crop_slices, upsample2_linear
from nnunet_tcup.synthetic.profiles import ChallengeProfile
from nnunet_tcup.synthetic.tumour import MASS_EFFECT_SUPPORT, TumourPlan, mass_effect

REFERENCE_SHAPE: tuple[int, int, int] = (240, 240, 155)
TISSUE_KEYS: tuple[str, ...] = ("gm", "wm", "mask", "deep", "peri")
SMOOTH_KEYS: tuple[str, ...] = ("deep", "peri")


@dataclass(frozen=True)
class FovGrid:
    """A grid of ``shape`` voxels covering the 240x240x155 mm FOV; FOV frame origin at the centre, axes L, P, S."""

    shape: tuple[int, int, int]

    @property
    def step_mm(self) -> np.ndarray:
        return np.asarray(REFERENCE_SHAPE, float) / np.asarray(self.shape, float)

    def voxel_to_fov(self) -> np.ndarray:
        """4x4 matrix: voxel index -> FOV mm."""
        m = np.diag(list(self.step_mm) + [1.0])
        m[:3, 3] = 0.5 * self.step_mm - 0.5 * np.asarray(REFERENCE_SHAPE, float)
        return m

    def axes_mm(self, region: tuple[slice, ...]) -> tuple[np.ndarray, ...]:
        """Broadcastable FOV mm coordinates of the voxel centres of ``region``, float32."""
        m = self.voxel_to_fov()
        out = []
        for k, sl in enumerate(region):
            a = (np.arange(sl.start, sl.stop) * m[k, k] + m[k, 3]).astype(np.float32)
            shape = [1, 1, 1]
            shape[k] = a.size
            out.append(a.reshape(shape))
        return tuple(out)

    def fov_to_voxel(self, points_mm: np.ndarray) -> np.ndarray:
        m = self.voxel_to_fov()
        return (np.asarray(points_mm) - m[:3, 3]) / np.diag(m)[:3]


@dataclass(frozen=True)
class HeadPlacement:
    """Rigid-plus-scale map from the FOV frame (mm, axes L, P, S) to MNI RAS+ mm: ``mni = A @ fov + b``."""

    matrix: np.ndarray  # 4x4

    def fov_to_mni(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points) @ self.matrix[:3, :3].T + self.matrix[:3, 3]

    def mni_to_fov(self, points: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.matrix)
        return np.asarray(points) @ inv[:3, :3].T + inv[:3, 3]


def _rotation_xyz(angles_rad: Sequence[float] | np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def sample_placement(rng: np.random.Generator, anatomy: Anatomy, profile: ChallengeProfile) -> HeadPlacement:
    """Random head placement: brain-box centre to the FOV centre, scale, +-~4 degree rotation, +-4 mm shift."""
    scale = rng.uniform(*profile.brain_scale)
    rotation = _rotation_xyz(rng.normal(0.0, np.deg2rad(3.0), 3))
    shift = rng.uniform(-4.0, 4.0, 3)
    lo, hi = anatomy.brain_bbox_mm()
    centre = 0.5 * (lo + hi)
    flip = np.diag([-1.0, -1.0, 1.0])  # FOV axes (L, P, S) -> RAS
    a = rotation @ flip / scale
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = centre - a @ shift
    return HeadPlacement(m)


# ----------------------------------------------------------------------------------------------- anatomy warp


@functools.lru_cache(maxsize=4)
def _antialiased(
    source: str, block: tuple[int, int, int], sigma: tuple[float, float, float]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Anatomy maps block-averaged by ``block`` voxels per axis, then Gaussian-smoothed by ``sigma`` (voxels of
    the reduced grid); returns the arrays and their voxel-to-MNI affine. Cached per process."""
    anatomy = load_anatomy(source)
    affine = anatomy.affine.copy()
    arrays = {}
    for key in TISSUE_KEYS:
        a = getattr(anatomy, key)
        if max(block) > 1:
            n = [s // b for s, b in zip(a.shape, block)]
            a = a[: n[0] * block[0], : n[1] * block[1], : n[2] * block[2]]
            a = a.reshape(n[0], block[0], n[1], block[1], n[2], block[2]).mean(axis=(1, 3, 5), dtype=np.float32)
        if max(sigma) > 0:
            a = ndimage.gaussian_filter(a, sigma, truncate=3.0)
        arrays[key] = np.ascontiguousarray(a, dtype=np.float32)
    if max(block) > 1:
        to_fine = np.diag([float(b) for b in block] + [1.0])
        to_fine[:3, 3] = (np.asarray(block, float) - 1.0) / 2.0
        affine = affine @ to_fine
    return arrays, affine


def _source_arrays(anatomy: Anatomy, grid_to_mni: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Anatomy maps low-pass filtered for sampling on a grid with voxel-to-MNI map ``grid_to_mni``: integer block
    averaging where a grid voxel spans several anatomy voxels, then a Gaussian for the remaining factor.
    Returns (arrays, voxel-to-MNI affine of the arrays)."""
    vox_to_src = np.linalg.inv(anatomy.affine) @ grid_to_mni
    step_src = np.sqrt((vox_to_src[:3, :3] ** 2).sum(axis=1))  # anatomy voxels per grid voxel, per source axis
    block = tuple(int(max(1, np.floor(s / 1.5))) for s in step_src)
    residual = step_src / np.asarray(block, float)
    sigma = 0.45 * np.sqrt(np.maximum(residual**2 - 1.0, 0.0))
    sigma_key = tuple(float(np.round(v * 4) / 4) if v >= 0.3 else 0.0 for v in sigma)
    return _antialiased(anatomy.source, block, sigma_key)


def _affine_warp(
    source: np.ndarray, vox_to_src: np.ndarray, start: np.ndarray, step: float, out_shape: tuple[int, ...]
) -> np.ndarray:
    """Sample ``source`` (linear) at grid voxels ``start + step * i`` for i over ``out_shape``."""
    lin = vox_to_src[:3, :3] * step
    offset = vox_to_src[:3, 3] + vox_to_src[:3, :3] @ start
    return ndimage.affine_transform(
        source, lin, offset=offset, output_shape=out_shape, order=1, mode="constant", cval=0.0
    )


def warp_tissue(
    anatomy: Anatomy, placement: HeadPlacement, grid: FovGrid, region: tuple[slice, ...], plan: TumourPlan
) -> dict[str, np.ndarray]:
    """Tissue maps (gm, wm, csf, mask, deep, peri; float32 in [0, 1]) on ``region`` of the grid, with mass effect.

    Linear interpolation; the smooth maps (deep, peri) are sampled on a half-resolution grid and upsampled
    linearly. The mass effect is applied (at full resolution) on the box where it is non-zero.
    """
    arrays, src_affine = _source_arrays(anatomy, placement.matrix @ grid.voxel_to_fov())
    mni_to_src = np.linalg.inv(src_affine)
    vox_to_src = mni_to_src @ placement.matrix @ grid.voxel_to_fov()
    start = np.array([sl.start for sl in region], float)
    out_shape = tuple(sl.stop - sl.start for sl in region)
    coarse_shape = tuple((n + 1) // 2 for n in out_shape)
    tissue = {}
    for key, source in arrays.items():
        if key in SMOOTH_KEYS:
            coarse = _affine_warp(source, vox_to_src, start + 0.5, 2.0, coarse_shape)
            tissue[key] = upsample2_linear(coarse)[: out_shape[0], : out_shape[1], : out_shape[2]].copy()
        else:
            tissue[key] = _affine_warp(source, vox_to_src, start, 1.0, out_shape)
    if plan.mass_effect > 0:
        centre_vox = grid.fov_to_voxel(plan.main.centre_mm)
        half = MASS_EFFECT_SUPPORT * plan.mass_effect_length_mm / grid.step_mm + 1.0
        box = crop_slices(centre_vox, half, grid.shape)
        box = tuple(slice(max(b.start, r.start), min(b.stop, r.stop)) for b, r in zip(box, region))
        if all(b.stop > b.start for b in box):
            axes = grid.axes_mm(box)
            pts = np.stack(np.broadcast_arrays(*axes), axis=-1)
            src_mm = placement.fov_to_mni(mass_effect(pts, plan))
            src_vox = src_mm @ mni_to_src[:3, :3].T + mni_to_src[:3, 3]
            coords = np.moveaxis(src_vox, -1, 0)
            local = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))
            for k, v in arrays.items():
                tissue[k][local] = ndimage.map_coordinates(v, coords, order=1, mode="constant", cval=0.0)
    tissue["csf"] = np.clip(tissue["mask"] - tissue["gm"] - tissue["wm"], 0.0, 1.0)
    return tissue
