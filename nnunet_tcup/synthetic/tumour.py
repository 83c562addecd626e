"""Tumour geometry: lesion description, mass effect and label / partial-volume maps (lesions are drawn in
:func:`nnunet_tcup.synthetic.brats_like.sample_tumour_plan`).

All geometry is expressed in the *field-of-view frame*: millimetres of the 240x240x155 mm BraTS field of view,
origin at its centre, axes (x, y, z) pointing to patient Left, Posterior, Superior (the voxel axes of the written
files). A requested ``--shape`` samples the same field of view with ``240/X x 240/Y x 155/Z`` mm steps, so tumours
and anatomy keep their proportions at any grid size.

A lesion is a lobulated ellipsoid: tumour core (TC = NETC + ET) where a noise-perturbed normalised radius is
below 1; a necrotic / non-enhancing core (NETC, label 1) inside it; an enhancing rim (ET, label 3) between them;
and peritumoural edema (SNFH, label 2) around it whose reach is longer in white matter than in grey matter and
stops at CSF, so it spreads along white matter; only edema connected to a core is kept. Satellites are small
enhancing lesions with their own edema near the main one. Meningiomas add a thin enhancing dural tail along the
brain surface. Mass effect pushes healthy tissue radially away from the main lesion (see :func:`mass_effect`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from nnunet_tcup.synthetic.fields import smooth_noise

LABEL_NETC, LABEL_SNFH, LABEL_ET = 1, 2, 3
#: Mass effect vanishes beyond this many decay lengths from the main lesion centre.
MASS_EFFECT_SUPPORT = 1.7


@dataclass(frozen=True)
class Lesion:
    """One lesion in the FOV frame (mm).

    ``necrosis_fraction``: normalised radius of the necrotic core (0 = solid enhancing lesion).
    ``edema_mm``: edema reach beyond the core in white matter. ``intra_axial``: clip the core to brain tissue.
    """

    centre_mm: np.ndarray
    radii_mm: np.ndarray
    rotation: np.ndarray
    necrosis_fraction: float
    edema_mm: float
    lobulation: float
    intra_axial: bool = True

    @property
    def extent_mm(self) -> float:
        """Radius of a sphere holding the lesion and its edema."""
        return float(self.radii_mm.max() * (1.0 + self.lobulation) + self.edema_mm + 2.0)


@dataclass(frozen=True)
class TumourPlan:
    """The lesions of a case plus the mass-effect strength (0..0.8) and decay length (mm) of the main lesion."""

    main: Lesion
    satellites: tuple[Lesion, ...]
    mass_effect: float
    mass_effect_length_mm: float
    dural_tail: bool = False

    @property
    def lesions(self) -> tuple[Lesion, ...]:
        return (self.main,) + self.satellites

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """FOV-frame box (lo, hi) holding every lesion, its edema and the dural tail."""
        los, his = [], []
        for lesion in self.lesions:
            ext = lesion.extent_mm * (1.8 if (self.dural_tail and lesion is self.main) else 1.0)
            los.append(lesion.centre_mm - ext)
            his.append(lesion.centre_mm + ext)
        return np.min(los, axis=0), np.max(his, axis=0)


@dataclass
class TumourMaps:
    """Rendered tumour on a box: ``labels`` (uint8 2023 labels) and float32 partial-volume weights in [0, 1].

    ``netc`` / ``et``: blurred compartment fractions; ``edema``: edema strength (blurred); ``texture_*``: smooth
    multiplicative heterogeneity (around 1).
    """

    labels: np.ndarray
    netc: np.ndarray
    et: np.ndarray
    edema: np.ndarray
    texture_et: np.ndarray
    texture_netc: np.ndarray


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def mass_effect(points_mm: np.ndarray, plan: TumourPlan) -> np.ndarray:
    """Source positions (FOV mm) that healthy tissue at ``points_mm`` (..., 3) comes from.

    Radial compression around the main lesion centre c: ``src = c + (p - c) * (1 - a * w(r / L))`` with the
    compactly supported bump ``w(t) = (1 - (t / T)^2)^2`` for t < T = :data:`MASS_EFFECT_SUPPORT` (0 beyond).
    Monotonic in r for a < 1 (w decreases), so tissue is pushed outwards by up to about ``0.3 * a * L`` mm and
    nothing moves beyond ``T * L``.
    """
    c = plan.main.centre_mm
    d = points_mm - c
    t2 = (d**2).sum(-1, keepdims=True) / (MASS_EFFECT_SUPPORT * plan.mass_effect_length_mm) ** 2
    bump = np.square(np.clip(1.0 - t2, 0.0, 1.0))
    return c + d * (1.0 - plan.mass_effect * bump)


def _local_radius(axes_mm: Sequence[np.ndarray], lesion: Lesion) -> np.ndarray:
    """Normalised ellipsoidal radius of the lesion on the grid given by per-axis mm coordinates."""
    d = [a - c for a, c in zip(axes_mm, lesion.centre_mm)]
    rot = lesion.rotation
    total = 0.0
    for k in range(3):  # u_k = sum_i rot[i, k] * d_i
        u = rot[0, k] * d[0] + rot[1, k] * d[1] + rot[2, k] * d[2]
        total = total + (u / lesion.radii_mm[k]) ** 2
    return np.sqrt(total).astype(np.float32)


def _keep_components_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` in 26-connected components that contain any ``seeds`` voxel."""
    if not seeds.any():
        return np.zeros_like(mask)
    comp = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    keep = np.unique(comp[seeds & mask])
    keep = keep[keep > 0]
    return np.isin(comp, keep)


def render_tumour(
    plan: TumourPlan, axes_mm: Sequence[np.ndarray], step_mm: np.ndarray, tissue: dict, rng: np.random.Generator
) -> TumourMaps:
    """Rasterise the plan on a box.

    ``axes_mm``: broadcastable per-axis FOV coordinates (x[:, None, None], y[None, :, None], z[None, None, :]) of
    the box voxel centres. ``tissue``: box arrays ``gm``, ``wm``, ``csf``, ``mask``, ``deep`` (warped, with mass
    effect). ``step_mm``: voxel size of the grid in FOV mm.
    """
    shape = tuple(np.broadcast_shapes(*(a.shape for a in axes_mm)))
    brain_tissue = (tissue["gm"] + tissue["wm"]) > 0.35
    in_brain = tissue["mask"] > 0.5
    noise_len = 6.0 / step_mm
    netc = np.zeros(shape, bool)
    core = np.zeros(shape, bool)
    edema_field = np.full(shape, np.inf, np.float32)  # normalised distance d / reach (edema where < 1)
    wm_smooth = ndimage.gaussian_filter(tissue["wm"], 2.0 / step_mm)
    reach_mod = (0.25 + 0.75 * np.clip(wm_smooth / 0.7, 0, 1)) * (1.0 + 0.2 * smooth_noise(rng, shape, noise_len))
    for i, lesion in enumerate(plan.lesions):
        rho = _local_radius(axes_mm, lesion)
        if lesion.lobulation > 0:
            lobes = 0.7 * smooth_noise(rng, shape, 2.5 * noise_len) + 0.3 * smooth_noise(rng, shape, noise_len)
            rho = rho - lesion.lobulation * 0.6 * lobes * np.minimum(rho, 1.5)
        tc = rho < 1.0
        if lesion.intra_axial:
            tc &= in_brain
        if lesion.necrosis_fraction > 0:
            rho_n = rho + 0.15 * smooth_noise(rng, shape, 0.7 * noise_len)
            netc |= tc & (rho_n < lesion.necrosis_fraction)
        core |= tc
        if lesion.edema_mm > 0 and tc.any():
            if i == 0:
                dist = ndimage.distance_transform_edt(~tc, sampling=step_mm).astype(np.float32)
            else:  # satellites: analytic distance to the ellipsoid surface (mean radius)
                dist = np.maximum(rho - 1.0, 0.0) * float(lesion.radii_mm.mean())
            edema_field = np.minimum(edema_field, dist / (lesion.edema_mm * reach_mod))
    if plan.dural_tail:
        rho = _local_radius(axes_mm, plan.main)
        surface_band = (tissue["deep"] > 0.38) & (tissue["deep"] < 0.52)
        tail = surface_band & (rho < 1.9) & (rho >= 0.9) & (tissue["csf"] + (1 - tissue["mask"]) > 0.3)
        core |= _keep_components_touching(tail | core, core) & tail
    edema = (edema_field < 1.0) & ~core & brain_tissue
    edema = _keep_components_touching(edema | core, core) & edema
    et = core & ~netc
    labels = np.zeros(shape, np.uint8)
    labels[edema] = LABEL_SNFH
    labels[et] = LABEL_ET
    labels[netc] = LABEL_NETC
    # edema signal: strongest next to the core, fading towards its border, patchy (smooth texture)
    fade = 0.45 + 0.55 * np.sqrt(np.clip(1.0 - edema_field, 0, 1))
    patchy = np.clip(1.0 + 0.25 * smooth_noise(rng, shape, noise_len), 0.5, 1.35)
    edema_strength = np.where(edema, np.clip(fade * patchy, 0.0, 1.0), 0.0).astype(np.float32)
    pv = 0.6  # partial-volume blur, voxels
    return TumourMaps(
        labels=labels,
        netc=ndimage.gaussian_filter(netc.astype(np.float32), pv),
        et=ndimage.gaussian_filter(et.astype(np.float32), pv),
        edema=ndimage.gaussian_filter(edema_strength, pv),
        texture_et=1.0 + 0.12 * smooth_noise(rng, shape, 0.7 * noise_len),
        texture_netc=1.0 + 0.08 * smooth_noise(rng, shape, noise_len),
    )
