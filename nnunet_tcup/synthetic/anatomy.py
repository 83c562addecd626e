"""Healthy brain anatomy for the synthetic cases: tissue probability maps in MNI152 (RAS+, mm) space.

Source, in order of preference:

* ``mni152``: the ICBM 2009a nonlinear symmetric template shipped inside the nilearn wheel
  (``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``, 1 mm, 197x233x189,
  skull-stripped T1 plus grey/white-matter probabilities). The files are located with
  ``importlib.util.find_spec('nilearn').submodule_search_locations``; nilearn itself is never imported.
* ``analytic``: a fallback built from ellipsoids on a 1.5 mm grid covering the same MNI extent: cerebrum with a
  folded grey-matter cortex over white matter, lateral and fourth ventricles, cerebellum and brainstem.

Both give an :class:`Anatomy` holding ``gm``, ``wm``, ``mask`` (brain, 0/1 as float) plus derived maps used by the
generator: ``csf`` (mask minus GM and WM), ``deep`` (Gaussian-smoothed mask, ~1 deep inside the brain, ~0.5 at its
surface) and ``peri`` (periventricular white-matter proximity, 0..1). Arrays are float32 with axis order (x, y, z)
of the source grid; ``affine`` maps source voxel indices to MNI RAS+ millimetres.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ANATOMY_SOURCES: tuple[str, ...] = ("auto", "mni152", "analytic")

MNI_FILES: dict[str, str] = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass(frozen=True)
class Anatomy:
    """Tissue maps on a source grid (x, y, z); ``affine`` maps voxel indices to MNI RAS+ mm."""

    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    csf: np.ndarray
    deep: np.ndarray
    peri: np.ndarray
    affine: np.ndarray
    source: str

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along (x, y, z)."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def brain_bbox_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper MNI RAS+ mm corners of the brain mask (computed once)."""
        return self._bbox_mm

    @functools.cached_property
    def _bbox_mm(self) -> tuple[np.ndarray, np.ndarray]:
        corners = []
        for axis in range(3):
            other = tuple(k for k in range(3) if k != axis)
            present = np.flatnonzero((self.mask > 0.5).any(axis=other))
            corners.append((present[0], present[-1]))
        corners = np.array(corners, float).T
        mm = corners @ self.affine[:3, :3].T + self.affine[:3, 3]
        return mm.min(0), mm.max(0)


def find_mni_template_files() -> dict[str, Path] | None:
    """Paths of the nilearn-shipped MNI152 2009a T1/GM/WM files, or None when nilearn or a file is missing.

    Uses ``importlib.util.find_spec`` only (nilearn is not imported).
    """
    try:
        spec = importlib.util.find_spec("nilearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "datasets" / "data"
        paths = {key: folder / name for key, name in MNI_FILES.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def _smooth(array: np.ndarray, sigma_mm: float, spacing_mm: float) -> np.ndarray:
    """Gaussian smoothing (sigma in mm) done on a 2x block-averaged grid and linearly upsampled (the maps
    smoothed here are far smoother than the grid), float32 of the input shape."""
    from nnunet_tcup.synthetic.fields import upsample2_linear

    shape = array.shape
    padded = np.pad(array, [(0, s % 2) for s in shape], mode="edge")
    n = [s // 2 for s in padded.shape]
    coarse = padded.reshape(n[0], 2, n[1], 2, n[2], 2).mean(axis=(1, 3, 5), dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, sigma=sigma_mm / (2.0 * spacing_mm), truncate=3.0)
    return upsample2_linear(coarse)[: shape[0], : shape[1], : shape[2]].copy()


def _derived_maps(
    gm: np.ndarray, wm: np.ndarray, mask: np.ndarray, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSF, depth (mask smoothed with sigma 5 mm) and periventricular proximity maps on the source grid."""
    csf = np.clip(mask - gm - wm, 0.0, 1.0).astype(np.float32)
    deep = _smooth(mask, 5.0, spacing_mm)
    ventricles = csf * (deep > 0.97)
    peri = np.clip(_smooth(ventricles, 3.0, spacing_mm) * 4.0, 0.0, 1.0) * wm
    return csf, deep, peri.astype(np.float32)


def _load_mni152(paths: dict[str, Path]) -> Anatomy:
    import nibabel as nib

    arrays = {}
    affine = None
    for key, path in paths.items():
        try:
            img: Any = nib.load(str(path))
            arrays[key] = np.ascontiguousarray(img.dataobj, dtype=np.float32)
        except Exception as e:  # corrupt/unreadable template file: report which
            raise ValueError(f"{path}: cannot read MNI152 template file ({type(e).__name__}: {e})") from e
        affine = img.affine if affine is None else affine
    mask = (arrays["t1"] > 0).astype(np.float32)
    gm = np.clip(arrays["gm"] / 255.0, 0.0, 1.0) * mask
    wm = np.clip(arrays["wm"] / 255.0, 0.0, 1.0) * mask
    csf, deep, peri = _derived_maps(gm, wm, mask, 1.0)
    return Anatomy(
        gm=gm,
        wm=wm,
        mask=mask,
        csf=csf,
        deep=deep,
        peri=peri,
        affine=np.asarray(affine, dtype=np.float64),
        source="mni152",
    )


def _ellipsoid_radius(axes_mm, centre, radii) -> np.ndarray:
    """Normalised ellipsoidal radius (1 on the surface) on the grid of broadcastable per-axis mm coordinates."""
    total = 0.0
    for a, c, r in zip(axes_mm, centre, radii):
        total = total + ((a - c) / r) ** 2
    return np.sqrt(total).astype(np.float32)


def build_analytic_anatomy(spacing_mm: float = 1.5) -> Anatomy:
    """Ellipsoid brain in the MNI RAS+ frame: cerebrum with gyri and sulci, cerebellum, brainstem, deep grey
    nuclei, lateral and fourth ventricles.

    Sulci are the sheet-like zero sets of a smooth random field near the surface (CSF), lined by a grey-matter
    ribbon; the cortex is a 3.5 mm shell. Deterministic (fixed internal seed). Grid spacing ``spacing_mm``
    (isotropic) over x -98..98, y -134..98, z -72..116 mm, the extent of the MNI152 template.
    """
    from nnunet_tcup.synthetic.fields import smooth_noise

    lo = np.array([-98.0, -134.0, -72.0])
    hi = np.array([98.0, 98.0, 116.0])
    shape = tuple(int(n) for n in np.floor((hi - lo) / spacing_mm) + 1)
    axes = [
        (lo[i] + spacing_mm * np.arange(shape[i])).astype(np.float32).reshape([-1 if k == i else 1 for k in range(3)])
        for i in range(3)
    ]
    rng = np.random.default_rng(20090)
    folds = smooth_noise(rng, shape, 9.0 / spacing_mm)
    bumps = smooth_noise(rng, shape, 20.0 / spacing_mm)

    r_cereb = _ellipsoid_radius(axes, (0, -18, 16), (68, 88, 64)) * (1 + 0.02 * bumps)
    r_cbl = _ellipsoid_radius(axes, (0, -62, -34), (48, 30, 22)) * (1 + 0.02 * bumps)
    r_stem = _ellipsoid_radius(axes[:2], (0, -28), (12, 13))
    stem = (r_stem < 1) & (axes[2] > -72) & (axes[2] < 0)
    cerebrum = r_cereb < 1
    cerebellum = r_cbl < 1
    mask = cerebrum | cerebellum | stem
    depth_cereb = (1 - r_cereb) * 64.0  # approximate depth below the cerebral surface, mm
    depth_cbl = (1 - r_cbl) * 26.0
    fissure = (np.abs(axes[0]) < 1.5) & (depth_cereb < 40) & cerebrum & (axes[2] > -10)
    sulci = ((np.abs(folds) < 0.1) & (depth_cereb < 15) & cerebrum) | fissure | ((depth_cereb < 0.8) & cerebrum)
    ribbon = (np.abs(folds) < 0.5) & (depth_cereb < 17)
    cortex = cerebrum & ((depth_cereb < 3.5) | ribbon)
    cbl_cortex = cerebellum & ~cerebrum & ((depth_cbl < 5) | (np.abs(folds) < 0.6))
    lat_vent = (
        np.minimum(
            _ellipsoid_radius(axes, (-10, -15, 16), (6, 30, 10)), _ellipsoid_radius(axes, (10, -15, 16), (6, 30, 10))
        )
        < 1
    )
    fourth = _ellipsoid_radius(axes, (0, -45, -28), (6, 5, 6)) < 1
    deep_gm = (
        np.minimum(
            _ellipsoid_radius(axes, (-16, -12, 4), (9, 14, 9)), _ellipsoid_radius(axes, (16, -12, 4), (9, 14, 9))
        )
        < 1
    )
    csf_hard = lat_vent | fourth | sulci
    gm = ((cortex | cbl_cortex | deep_gm) & ~csf_hard).astype(np.float32)
    wm = (mask & ~cortex & ~cbl_cortex & ~csf_hard & ~deep_gm).astype(np.float32)
    mask = mask.astype(np.float32)
    gm, wm = (ndimage.gaussian_filter(a, 0.7) * mask for a in (gm, wm))
    total = np.maximum(gm + wm, 1.0)
    gm, wm = (gm / total).astype(np.float32), (wm / total).astype(np.float32)
    csf, deep, peri = _derived_maps(gm, wm, mask, spacing_mm)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = lo
    return Anatomy(gm=gm, wm=wm, mask=mask, csf=csf, deep=deep, peri=peri, affine=affine, source="analytic")


def resolve_anatomy_source(source: str = "auto") -> str:
    """'mni152' or 'analytic' for a requested source; 'auto' picks 'mni152' when nilearn's files are present.

    Raises ValueError for an unknown source and FileNotFoundError for 'mni152' without the files.
    """
    if source not in ANATOMY_SOURCES:
        raise ValueError(f"unknown anatomy source {source!r}: expected one of {', '.join(ANATOMY_SOURCES)}")
    if source == "analytic":
        return source
    if find_mni_template_files() is not None:
        return "mni152"
    if source == "mni152":
        raise FileNotFoundError(
            "MNI152 2009a template not found: install nilearn (its wheel ships "
            f"nilearn/datasets/data/{MNI_FILES['t1']}) or use the analytic anatomy"
        )
    return "analytic"


def load_anatomy(source: str = "auto") -> Anatomy:
    """Return the anatomy for ``source`` ('auto', 'mni152' or 'analytic'), cached per process (read-only arrays).

    'auto' uses the MNI152 template when nilearn's files are present and the analytic fallback otherwise.
    """
    return _load_resolved(resolve_anatomy_source(source))


@functools.lru_cache(maxsize=2)
def _load_resolved(source: str) -> Anatomy:
    if source == "mni152":
        paths = find_mni_template_files()
        if paths is None:
            raise FileNotFoundError("MNI152 2009a template files disappeared while loading")
        anatomy = _load_mni152(paths)
    else:
        anatomy = build_analytic_anatomy()
    for array in (anatomy.gm, anatomy.wm, anatomy.mask, anatomy.csf, anatomy.deep, anatomy.peri, anatomy.affine):
        array.flags.writeable = False
    return anatomy
