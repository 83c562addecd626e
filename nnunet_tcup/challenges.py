"""BraTS 2023 challenge constants: names, labels, regions, official evaluation parameters, paper filter presets.

Labels are the 2023 ones in all four challenges: 1 = NETC (necrosis), 2 = SNFH (edema), 3 = ET (enhancing).
"""

from __future__ import annotations

from dataclasses import dataclass

CHALLENGES: tuple[str, ...] = ("GLI", "MEN", "PED", "SSA")

#: Modalities in nnU-Net channel order: channel 0000 = t1n, 0001 = t1c, 0002 = t2w, 0003 = t2f.
MODALITIES: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")

#: 2023 label values.
LABEL_NAMES: dict[int, str] = {0: "background", 1: "NETC", 2: "SNFH", 3: "ET"}

#: Evaluated regions, in the order WT, TC, ET, as sets of 2023 labels.
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


@dataclass(frozen=True)
class EvaluationParameters:
    """Official BraTS 2023 lesion-wise parameters: GT dilation (iterations) and lesion volume threshold (mm^3)."""

    dilation_iterations: int
    volume_threshold_mm3: float


EVALUATION_PARAMETERS: dict[str, EvaluationParameters] = {
    "GLI": EvaluationParameters(3, 50.0),
    "SSA": EvaluationParameters(3, 50.0),
    "PED": EvaluationParameters(3, 50.0),
    "MEN": EvaluationParameters(1, 50.0),
}

#: The paper's post-processing thresholds (mean voxels per slice) per region (WT, TC, ET), section 5.2.
PAPER_FILTER_PRESETS: dict[str, dict[str, float]] = {
    "GLI": {"WT": 125, "TC": 75, "ET": 20},
    "MEN": {"WT": 125, "TC": 125, "ET": 25},
    "PED": {"WT": 75, "TC": 75, "ET": 25},
    "SSA": {"WT": 75, "TC": 100, "ET": 5},
}
PAPER_MIN_SLICES: int = 5


def check_challenge(challenge: str) -> str:
    """Return the normalised challenge name ('GLI', 'MEN', 'PED', 'SSA'); raise ValueError otherwise.

    Accepts the bare name in any case and the 'BraTS-XXX' form.
    """
    if not isinstance(challenge, str):
        raise ValueError(f"challenge must be a string, one of {', '.join(CHALLENGES)}; got {challenge!r}")
    name = challenge.strip().upper()
    if name.startswith("BRATS-"):
        name = name[len("BRATS-") :]
    if name not in CHALLENGES:
        raise ValueError(f"unknown challenge {challenge!r}: expected one of {', '.join(CHALLENGES)}")
    return name
