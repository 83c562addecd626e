"""Random smooth fields used by the generator (texture, lobulation, bias, vessels). Axis order (x, y, z)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Per-axis lengths (voxels): a sequence, a numpy array or one number for all axes.
Lengths = Sequence[float] | np.ndarray | float
#: A point or per-axis sizes in voxels: a sequence or a numpy array.
Vector = Sequence[float] | np.ndarray


def _coarse_noise(rng: np.random.Generator, shape: Sequence[int], length_vox: Lengths) -> tuple[np.ndarray, np.ndarray]:
    """Unit-std white noise on a coarse grid (one node per ``length_vox`` voxels, lightly smoothed) and the
    per-axis node spacing in voxels."""
    length = np.maximum(np.broadcast_to(np.asarray(length_vox, dtype=float), (3,)), 1.0)
    coarse_shape = tuple(int(np.ceil(s / n)) + 3 for s, n in zip(shape, length))
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 0.7, mode="wrap")
    coarse /= max(float(coarse.std()), 1e-6)
    return coarse, length


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], length_vox: Lengths) -> np.ndarray:
    """Smooth random field of ``shape`` (about zero mean, unit std), correlation length ``length_vox`` voxels.

    Coarse white noise (one node per ``length_vox`` voxels), lightly smoothed, linearly upsampled. float32.
    """
    shape = tuple(int(s) for s in shape)
    coarse, length = _coarse_noise(rng, shape, length_vox)
    return ndimage.affine_transform(
        coarse, 1.0 / length, offset=(1.0, 1.0, 1.0), output_shape=shape, order=1, mode="nearest"
    )


def smooth_noise_at(
    rng: np.random.Generator,
    shape: Sequence[int],
    length_vox: Lengths,
    indices: tuple[np.ndarray, ...],
) -> np.ndarray:
    """The field :func:`smooth_noise` would give for the same ``rng`` state, evaluated only at voxel
    ``indices`` (as from ``np.nonzero``). float32, one value per index."""
    coarse, length = _coarse_noise(rng, tuple(int(s) for s in shape), length_vox)
    coords = np.stack([idx / n + 1.0 for idx, n in zip(indices, length)]).astype(np.float32)
    return ndimage.map_coordinates(coarse, coords, order=1, mode="nearest")


def separable_bias(rng: np.random.Generator, shape: Sequence[int], strength: float, terms: int = 3) -> np.ndarray:
    """Smooth multiplicative bias field ``exp(sum_k a_k fx_k(x) fy_k(y) fz_k(z))`` of ``shape``, float32.

    Each 1D factor is a random low-frequency cosine mix over the axis; ``strength`` is the std of the log-field
    (0.1 = about +-20 % intensity variation over the brain).
    """
    shape = tuple(int(s) for s in shape)
    log_field = np.zeros(shape, dtype=np.float32)
    for _ in range(terms):
        factors = []
        for n in shape:
            t = np.linspace(0.0, 1.0, n, dtype=np.float32)
            f = np.ones(n, dtype=np.float32) * rng.uniform(0.5, 1.0)
            for k in (1, 2):
                f += rng.normal(0.0, 0.6 / k) * np.cos(np.pi * k * t + rng.uniform(0, 2 * np.pi))
            factors.append(f)
        log_field += (
            factors[0][:, None, None]
            * factors[1][None, :, None]
            * factors[2][None, None, :]
            * np.float32(rng.normal(0.0, 1.0))
        )
    log_field -= log_field.mean()
    std = float(log_field.std())
    if std > 0:
        log_field *= np.float32(strength / std)
    return np.exp(log_field)


def blob_field(shape: Sequence[int], centre_vox: Vector, radius_vox: Vector) -> np.ndarray:
    """Soft ellipsoidal blob (1 inside, smooth 1-voxel-wide edge, 0 outside) evaluated on a grid, float32."""
    grids = np.ogrid[tuple(slice(0, int(n)) for n in shape)]
    r2 = sum(((g - c) / max(r, 1e-3)) ** 2 for g, c, r in zip(grids, centre_vox, radius_vox))
    r = np.sqrt(r2).astype(np.float32)
    edge = 1.0 / max(min(radius_vox), 1e-3)
    return np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)


def crop_slices(centre: Vector, half_width: Vector, shape: Sequence[int]) -> tuple[slice, ...]:
    """Slices of the box ``centre +- half_width`` (voxels) clipped to ``shape``; may be empty."""
    out = []
    for c, h, n in zip(centre, half_width, shape):
        lo = int(np.clip(np.floor(c - h), 0, n))
        hi = int(np.clip(np.ceil(c + h) + 1, 0, n))
        out.append(slice(lo, max(lo, hi)))
    return tuple(out)


def upsample2_linear(array: np.ndarray) -> np.ndarray:
    """Double every axis by linear interpolation (coarse sample i sits at fine position 2 i + 0.5; edges
    replicated). float32."""
    out = np.asarray(array, dtype=np.float32)
    for axis in range(out.ndim):
        a = np.moveaxis(out, axis, 0)
        prev = np.concatenate([a[:1], a[:-1]])
        nxt = np.concatenate([a[1:], a[-1:]])
        up = np.empty((2 * a.shape[0],) + a.shape[1:], np.float32)
        up[0::2] = 0.75 * a + 0.25 * prev
        up[1::2] = 0.75 * a + 0.25 * nxt
        out = np.moveaxis(up, 0, axis)
    return np.ascontiguousarray(out)
