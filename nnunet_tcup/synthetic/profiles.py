"""Per-challenge variants of the synthetic BraTS 2023 data (sizes in mm of the 240x240x155 mm field of view).

* **GLI** (adult diffuse glioma): one intra-axial, lobulated lesion centred in the cerebral white matter
  (supratentorial); core radius 13-26 mm; in ~92 % of cases a necrotic core (NETC) inside an irregular 2.5-5.5 mm
  enhancing rim (ET); edema (SNFH) reaching 5-16 mm beyond the core in white matter (a quarter of that in grey
  matter, none into CSF); satellites in half of the cases (1-2); clear mass effect; white-matter hyperintensities
  (moderate to heavy); good image quality.
* **MEN** (meningioma): extra-axial, dural-based mass centred 0.3-0.7 radii inside the brain surface (convexity,
  parasagittal, skull base), so it indents the brain and strong mass effect pushes the cortex inwards; core radius
  9-24 mm, mostly solid, homogeneously enhancing ET with a thin enhancing dural tail along the surface; necrosis in
  ~35 % of cases; iso-intense to grey matter on T1/T2/FLAIR; peritumoural edema in ~75 % of cases; no satellites.
* **PED** (paediatric brain tumours): smaller heads (0.80-0.93 of the adult template) with weaker grey/white
  contrast (incomplete myelination); ~55 % of lesions in the posterior fossa (cerebellum / brainstem), the rest
  deep supratentorial; core radius 9-20 mm, weaker enhancement, cystic/necrotic core in ~80 %, little edema
  (3-12 mm, absent in 15 %), hardly any white-matter hyperintensities, frequent FLAIR CSF-pulsation artefacts.
* **SSA** (glioma, sub-Saharan Africa): GLI-like tumours presenting later (core radius 16-28 mm, edema 7-20 mm,
  up to 3 satellites), acquired on lower-field / older scanners: about twice the noise, a stronger bias field and
  thick-slice blur (sigma 0.9 mm in-plane, 2.2 mm along z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Range = tuple[float, float]


@dataclass(frozen=True)
class ChallengeProfile:
    """Sampling ranges for one challenge. Lengths in mm of the 240x240x155 field of view; ``noise`` relative
    to white-matter T1 intensity; ``blur_mm`` acquisition blur sigma per axis (mm of the FOV); ``bias``: std of the
    log bias field."""

    name: str
    location: str  # 'supratentorial', 'dural' or 'paediatric'
    brain_scale: Range = (0.92, 1.0)
    core_radius_mm: Range = (13.0, 26.0)
    necrosis_probability: float = 0.92
    rim_mm: Range = (2.5, 5.5)
    edema_mm: Range = (5.0, 16.0)
    edema_probability: float = 1.0
    lobulation: Range = (0.25, 0.55)
    satellite_probability: float = 0.5
    max_satellites: int = 2
    mass_effect: Range = (0.35, 0.6)
    dural_tail: bool = False
    intra_axial: bool = True
    gm_wm_contrast: Range = (0.9, 1.1)
    noise: Range = (0.025, 0.04)
    blur_mm: tuple[float, float, float] = (0.5, 0.5, 0.5)
    bias: Range = (0.07, 0.15)
    wmh_burden: Range = (0.5, 1.0)
    flair_artefact_probability: float = 0.5
    #: per-modality multiplicative changes of the default tumour intensities, e.g. {"t1c": {"et": 1.1}}
    intensity_overrides: dict[str, dict[str, float]] = field(default_factory=dict)


PROFILES: dict[str, ChallengeProfile] = {
    "GLI": ChallengeProfile(name="GLI", location="supratentorial"),
    "MEN": ChallengeProfile(
        name="MEN",
        location="dural",
        core_radius_mm=(9.0, 24.0),
        necrosis_probability=0.35,
        rim_mm=(4.0, 8.0),
        edema_mm=(4.0, 18.0),
        edema_probability=0.75,
        lobulation=(0.05, 0.2),
        satellite_probability=0.0,
        max_satellites=0,
        mass_effect=(0.45, 0.75),
        dural_tail=True,
        intra_axial=False,
        wmh_burden=(0.2, 0.9),
        intensity_overrides={"t1n": {"et": 1.0}, "t2w": {"et": 0.95}, "t2f": {"et": 0.9}, "t1c": {"et": 1.05}},
    ),
    "PED": ChallengeProfile(
        name="PED",
        location="paediatric",
        brain_scale=(0.80, 0.93),
        core_radius_mm=(9.0, 20.0),
        necrosis_probability=0.8,
        rim_mm=(2.0, 5.0),
        edema_mm=(3.0, 12.0),
        edema_probability=0.85,
        satellite_probability=0.2,
        max_satellites=1,
        mass_effect=(0.3, 0.5),
        gm_wm_contrast=(0.55, 0.8),
        wmh_burden=(0.0, 0.25),
        flair_artefact_probability=0.7,
        intensity_overrides={"t1c": {"et": 0.9}},
    ),
    "SSA": ChallengeProfile(
        name="SSA",
        location="supratentorial",
        core_radius_mm=(16.0, 28.0),
        necrosis_probability=0.95,
        edema_mm=(7.0, 20.0),
        satellite_probability=0.6,
        max_satellites=3,
        mass_effect=(0.4, 0.65),
        noise=(0.045, 0.07),
        blur_mm=(0.9, 0.9, 2.2),
        bias=(0.1, 0.18),
    ),
}
