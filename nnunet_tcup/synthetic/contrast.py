"""MR contrast of the synthetic cases: intensity tables, unlabelled look-alikes, bias, blur, noise.

Intensities are relative (white matter on T1 = 1) and mixed by tissue / tumour partial-volume weights; each case
jitters the table, and each modality gets its own bias field and a random gain into int16. Arrays (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.synthetic.fields import blob_field, crop_slices, separable_bias, smooth_noise_at
from nnunet_tcup.synthetic.profiles import ChallengeProfile

#: Relative intensities (white matter on T1 = 1) per modality and compartment, before per-case jitter.
BASE_INTENSITIES: dict[str, dict[str, float]] = {
    "t1n": dict(csf=0.32, gm=0.68, wm=1.00, edema=0.62, et=0.72, netc=0.42, wmh=0.80),
    "t1c": dict(csf=0.30, gm=0.70, wm=1.00, edema=0.66, et=1.55, netc=0.36, wmh=0.82, vessel=1.9),
    "t2w": dict(csf=1.90, gm=1.10, wm=0.80, edema=1.55, et=1.25, netc=1.75, wmh=1.35, vessel=0.45),
    "t2f": dict(csf=0.22, gm=1.05, wm=0.82, edema=1.55, et=1.20, netc=0.75, wmh=1.50, csf_artefact=1.35),
}
TUMOUR_KEYS = ("edema", "et", "netc")


def sample_intensities(rng: np.random.Generator, profile: ChallengeProfile) -> dict[str, dict[str, float]]:
    """Per-case intensity table: base values with +-4 % (tissue) / +-8 % (tumour) uniform jitter, GM/WM contrast scaling
    and the profile's overrides."""
    contrast = rng.uniform(*profile.gm_wm_contrast)
    table = {}
    for modality in MODALITIES:
        values = {}
        for key, base in BASE_INTENSITIES[modality].items():
            jitter = 0.08 if key in TUMOUR_KEYS else 0.04
            values[key] = base * float(rng.uniform(1.0 - jitter, 1.0 + jitter))
            values[key] *= profile.intensity_overrides.get(modality, {}).get(key, 1.0)
        values["wm"] = values["gm"] + (values["wm"] - values["gm"]) * contrast
        table[modality] = values
    return table


@dataclass
class Lookalikes:
    """Unlabelled mimics on the region, weights in [0, 1]: white-matter hyperintensities (T2/FLAIR bright),
    vessels (T1c bright, T2 dark) and incompletely suppressed CSF on FLAIR (pulsation artefact)."""

    wmh: np.ndarray
    vessels: np.ndarray
    flair_csf: np.ndarray


def render_lookalikes(
    rng: np.random.Generator,
    tissue: dict[str, np.ndarray],
    step_mm: np.ndarray,
    z_mm: np.ndarray,
    profile: ChallengeProfile,
) -> Lookalikes:
    """Periventricular caps plus punctate deep white-matter hyperintensities; tubular vessels in sulcal CSF,
    patchy enhancement of the brain's outer rim (residual meninges) and choroid plexus; in some cases FLAIR
    CSF-pulsation artefacts in the basal cisterns and posterior fossa (CSF below the FOV centre). Noise fields are
    evaluated only where the mimics can occur.

    ``step_mm``: voxel size (FOV mm) of the maps; ``z_mm``: FOV z coordinate of each map slice (1D).
    """
    shape = tissue["wm"].shape
    step = np.asarray(step_mm, float)
    burden = rng.uniform(*profile.wmh_burden)
    wmh = np.zeros(shape, np.float32)
    peri_idx = np.nonzero(tissue["peri"] > 0.02)
    patchy = smooth_noise_at(rng, shape, 5.0 / step, peri_idx)
    wmh[peri_idx] = np.clip(tissue["peri"][peri_idx] * burden * (1.2 + 0.8 * patchy), 0.0, 1.0)
    deep_wm = np.flatnonzero((tissue["wm"] > 0.8).ravel())
    n_spots = int(rng.integers(1, 5 + int(12 * burden))) if deep_wm.size else 0
    for _ in range(n_spots):
        centre = np.array(np.unravel_index(deep_wm[rng.integers(deep_wm.size)], shape), float)
        radius_vox = np.maximum(rng.uniform(2.0, 6.0) * np.exp(rng.normal(0, 0.2, 3)) / step, 0.8)
        box = crop_slices(centre, radius_vox + 2, shape)
        local = centre - np.array([b.start for b in box])
        blob = blob_field(tuple(b.stop - b.start for b in box), local, radius_vox) * rng.uniform(0.6, 1.0)
        wmh[box] = np.maximum(wmh[box], blob * tissue["wm"][box])
    # vessels: tubes where two smooth fields both cross zero, in sulcal CSF and along the brain surface;
    # choroid plexus: patches inside the ventricles
    surface = np.clip((0.62 - tissue["deep"]) / 0.15, 0.0, 1.0) * (tissue["mask"] > 0.5)
    ventricle = (tissue["deep"] > 0.97) & (tissue["csf"] > 0.5)
    zone = np.maximum(np.clip(3.0 * tissue["csf"], 0.0, 1.0), surface)
    zone[ventricle] = 0.0
    zone_idx = np.nonzero(zone > 0.05)
    n1 = smooth_noise_at(rng, shape, 9.0 / step, zone_idx)
    n2 = smooth_noise_at(rng, shape, 9.0 / step, zone_idx)
    width = 0.35
    tube = np.clip(1.0 - np.maximum(np.abs(n1), np.abs(n2)) / width, 0.0, 1.0)
    vessels = np.zeros(shape, np.float32)
    thin = float(np.clip(2.0 / np.mean(step), 0.3, 1.0))  # partial volume of ~2 mm structures in larger voxels
    vessels[zone_idx] = np.clip(1.5 * tube, 0.0, 1.0) * zone[zone_idx] * rng.uniform(0.6, 1.0) * thin
    # residual meninges / cortical veins left by skull stripping: patchy enhancement of the outermost ~2 mm
    rim_idx = np.nonzero((tissue["deep"] < 0.5) & (tissue["mask"] > 0.5))
    if rim_idx[0].size:
        patches = smooth_noise_at(rng, shape, 12.0 / step, rim_idx)
        dura = np.clip(patches + rng.uniform(-0.2, 0.6), 0.0, 1.0) * rng.uniform(0.4, 0.9) * thin
        vessels[rim_idx] = np.maximum(vessels[rim_idx], dura)
    vent_idx = np.nonzero(ventricle)
    choroid = smooth_noise_at(rng, shape, 4.0 / step, vent_idx)
    vessels[vent_idx] = np.clip(2.0 * (choroid - 1.4), 0.0, 1.0)
    flair_csf = np.zeros(shape, np.float32)
    amplitude = rng.uniform(0.3, 0.9) if rng.random() < profile.flair_artefact_probability else 0.0
    if amplitude > 0:
        inferior = np.clip((-10.0 - np.asarray(z_mm, np.float32)) / 30.0, 0.0, 1.0).reshape(1, 1, -1)
        csf_idx = np.nonzero((tissue["csf"] > 0.3) & (inferior > 0))
        patchy = smooth_noise_at(rng, shape, 8.0 / step, csf_idx)
        weight = tissue["csf"][csf_idx] * inferior[0, 0, csf_idx[2]] * np.clip(0.5 + 0.7 * patchy, 0.0, 1.0)
        flair_csf[csf_idx] = amplitude * weight
    return Lookalikes(wmh=wmh, vessels=vessels, flair_csf=flair_csf)


def render_modality(
    values: dict[str, float],
    tissue: dict[str, np.ndarray],
    texture: np.ndarray,
    looks: Lookalikes,
    tumour_box: tuple[slice, ...],
    tumour,
) -> np.ndarray:
    """Noise-free, bias-free intensity of one modality on the region (float32, white-matter T1 ~ 1)."""
    x = (tissue["gm"] * values["gm"] + tissue["wm"] * values["wm"] + tissue["csf"] * values["csf"]) * texture
    x += looks.wmh * (values["wmh"] - x)
    if "vessel" in values:
        x += looks.vessels * (values["vessel"] - x)
    if "csf_artefact" in values:
        x += looks.flair_csf * (values["csf_artefact"] - x)
    xb = x[tumour_box]
    xb += tumour.edema * (values["edema"] - xb)
    core = np.clip(tumour.et + tumour.netc, 0.0, 1.0)
    xb *= 1.0 - core
    xb += tumour.et * values["et"] * tumour.texture_et + tumour.netc * values["netc"] * tumour.texture_netc
    return x


def acquire(
    rng: np.random.Generator,
    x: np.ndarray,
    brain: np.ndarray,
    profile: ChallengeProfile,
    noise_level: float,
    step_mm: np.ndarray,
) -> np.ndarray:
    """Bias field, acquisition blur (``profile.blur_mm``) and Rician noise (sigma ``noise_level`` in WM-T1 units);
    zeros outside the brain."""
    x = x * separable_bias(rng, x.shape, rng.uniform(*profile.bias))
    x = ndimage.gaussian_filter(x, np.asarray(profile.blur_mm) / step_mm, truncate=3.0)
    inside = x[brain]
    real = inside + noise_level * rng.standard_normal(inside.shape, dtype=np.float32)
    imag = noise_level * rng.standard_normal(inside.shape, dtype=np.float32)
    out = np.zeros_like(x)
    out[brain] = np.sqrt(real * real + imag * imag)
    return out


def to_int16(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Scale relative intensities by a random scanner gain (400-1000 per WM-T1 unit) and round into int16."""
    gain = rng.uniform(400.0, 1000.0)
    return np.clip(np.rint(x * gain), 0, np.iinfo(np.int16).max).astype(np.int16)
