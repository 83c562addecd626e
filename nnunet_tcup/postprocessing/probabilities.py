"""The paper's first post-processing step: per-class probabilities to a BraTS 2023 label map (section 5.2).

Where it applies: a *label-mode* model whose output is one independent (sigmoid) probability per tumour class,
NETC, SNFH, ET, as the paper's generator produces. The paper adds a background channel ``1 - sum(classes)``,
normalises the four channels by their sum and takes the argmax, giving labels 0 background, 1 NETC, 2 SNFH, 3 ET.
The lesion filter (:mod:`nnunet_tcup.postprocessing.lesion_filter`) then runs on that label map.

Where it does not: nnU-Net models trained on the BraTS *regions* (WT, TC, ET with ``regions_class_order``, as
``nnUNetTrainerTCuPGAN`` with a region ``dataset.json``) are exported by nnU-Net itself (sigmoid > 0.5 per region,
painted in ``regions_class_order``), so ``nnUNetv2_predict`` already writes the label map; nnU-Net's softmax
label-mode models already include background and are exported by argmax. Use this function only for
per-class probability arrays from outside that path (for example the paper's original models).

Note: the four channels always sum to 1 (``(1 - s) + s``), so the normalisation changes values only by float
rounding; it is kept to follow the paper. A negative background (classes summing above 1) simply loses the argmax.
"""

from __future__ import annotations

import numpy as np


def probabilities_to_labels(class_probabilities: np.ndarray) -> np.ndarray:
    """Turn per-class probabilities ``(3, z, y, x)`` (channels NETC, SNFH, ET, values in [0, 1]) into labels 0-3.

    Returns a ``uint8`` array ``(z, y, x)``: argmax over ``[1 - sum, NETC, SNFH, ET]`` after normalising the four
    channels by their sum. Ties go to the lower label (numpy argmax).
    """
    probs = np.asarray(class_probabilities)
    if probs.ndim != 4 or probs.shape[0] != 3:
        raise ValueError(f"class probabilities must have shape (3, z, y, x) (NETC, SNFH, ET), got {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"class probabilities must be floating point, got dtype {probs.dtype}")
    if probs.size and not (np.nanmin(probs) >= 0 and np.nanmax(probs) <= 1 and not np.isnan(probs).any()):
        raise ValueError("class probabilities must lie in [0, 1] (sigmoid outputs) and contain no NaN")
    probs = probs.astype(np.float32, copy=False)
    background = 1.0 - probs.sum(axis=0, keepdims=True)
    stacked = np.concatenate([background, probs], axis=0)
    total = stacked.sum(axis=0, keepdims=True)
    stacked = stacked / np.where(total == 0, 1.0, total)
    return np.argmax(stacked, axis=0).astype(np.uint8)
