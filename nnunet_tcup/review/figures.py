"""PNG figures of a review: a montage per case and one image per Zooniverse subject (case, slice).

Slices are axial: index z of the ``(z, y, x)`` arrays (the image's third NIfTI axis, 0-based), drawn with y as rows
and x as columns. Panels are composed as RGB arrays with numpy and tiled into one image; the montage then gets its
titles from a single matplotlib axes (object API with the Agg canvas: no pyplot state, safe in worker processes),
the subject images are saved as plain pixels (no text for volunteers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunet_tcup.challenges import LABEL_NAMES, MODALITIES
from nnunet_tcup.demo.report import LABEL_COLOURS, label_rgba
from nnunet_tcup.demo.report import normalise_intensities as grey_levels
from nnunet_tcup.io_utils import atomic_output

MI_MAX_BITS = 1.0  # colour scale of the disagreement map: mutual information summed over WT, TC, ET, clipped
PAD = 2  # pixels between panels
MIN_PANEL_PIXELS = 192  # subject images are upscaled (nearest neighbour) to at least this many pixels per panel


def brain_box(images: Sequence[np.ndarray], margin: int = 2) -> tuple[slice, slice]:
    """In-plane ``(y, x)`` bounding box of the non-zero voxels of any modality on any slice (whole image if none)."""
    mask = np.any([np.any(im != 0, axis=0) for im in images], axis=0)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return slice(None), slice(None)
    return (
        slice(max(int(ys.min()) - margin, 0), int(ys.max()) + margin + 1),
        slice(max(int(xs.min()) - margin, 0), int(xs.max()) + margin + 1),
    )


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    """``(h, w)`` grey levels in [0, 1] to an ``(h, w, 3)`` float32 RGB image."""
    return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)


def blend(rgb: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Draw ``rgba`` ``(h, w, 4)`` over ``rgb`` ``(h, w, 3)`` (alpha compositing)."""
    alpha = rgba[..., 3:4]
    return (rgb * (1.0 - alpha) + rgba[..., :3] * alpha).astype(np.float32)


def heat_rgba(values: np.ndarray, vmax: float, alpha: float = 0.85) -> np.ndarray:
    """``(h, w)`` values to an RGBA heat map (matplotlib 'inferno', 0..vmax), transparent where below 1 % of vmax."""
    from matplotlib import colormaps

    scaled = np.clip(values / vmax, 0.0, 1.0)
    rgba = colormaps["inferno"](scaled).astype(np.float32)
    rgba[..., 3] = np.where(scaled > 0.01, alpha, 0.0)
    return rgba


def tile(rows: Sequence[Sequence[np.ndarray]], pad: int = PAD) -> np.ndarray:
    """Tile equally sized ``(h, w, 3)`` panels into one image with white ``pad``-pixel gaps."""
    h, w = rows[0][0].shape[:2]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    out = np.ones((n_rows * h + (n_rows - 1) * pad, n_cols * w + (n_cols - 1) * pad, 3), np.float32)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = panel
    return out


def montage_panels(
    greys: Sequence[np.ndarray], consensus: np.ndarray, disagreement: np.ndarray, z: int, box: tuple[slice, slice]
) -> list[np.ndarray]:
    """One montage row: the four modalities, the consensus over T1c, the disagreement over T1c (RGB panels)."""
    t1c = grey_rgb(greys[MODALITIES.index("t1c")][z][box])
    panels = [grey_rgb(g[z][box]) for g in greys]
    panels.append(blend(t1c, label_rgba(consensus[z][box])))
    panels.append(blend(t1c, heat_rgba(disagreement[z][box], MI_MAX_BITS)))
    return panels


def _save_png(rgb: np.ndarray, path: Path) -> None:
    from matplotlib.image import imsave

    with atomic_output(path) as tmp:
        imsave(tmp, np.clip(rgb, 0.0, 1.0), format="png")


def draw_montage(
    case: str,
    images: Sequence[np.ndarray],
    consensus: np.ndarray,
    disagreement: np.ndarray,
    slices: Sequence[int],
    out_png: Path,
    caption: str = "",
) -> Path:
    """One row per slice of ``slices``: the four modalities, the consensus (mean prediction) over T1c, and the
    fold disagreement (mutual information summed over WT, TC, ET, bits, 0-1 colour scale) over T1c.

    ``images``: t1n, t1c, t2w, t2f ``(z, y, x)``; ``consensus`` 2023 labels; ``disagreement`` ``(z, y, x)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if len(images) != len(MODALITIES):
        raise ValueError(f"{case}: expected {len(MODALITIES)} modalities, got {len(images)}")
    if not slices:
        raise ValueError(f"{case}: no slice to draw")
    box = brain_box(images)
    greys = [grey_levels(im) for im in images]
    picture = tile([montage_panels(greys, consensus, disagreement, z, box) for z in slices])
    h, w = picture.shape[:2]
    panel_h, panel_w = (h - (len(slices) - 1) * PAD) / len(slices), (w - 5 * PAD) / 6
    fig = Figure(figsize=(11.0, 11.0 * h / w + 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.04, 0.08, 0.95, 0.84))
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    titles = [m.upper() for m in MODALITIES] + ["mean prediction", "fold disagreement"]
    for j, title in enumerate(titles):
        ax.text(j * (panel_w + PAD) + panel_w / 2, -2, title, ha="center", va="bottom", fontsize=9)
    for i, z in enumerate(slices):
        ax.text(-3, i * (panel_h + PAD) + panel_h / 2, f"z = {z}", ha="right", va="center", rotation=90, fontsize=9)
    handles = [Patch(color=c, label=LABEL_NAMES[v]) for v, c in LABEL_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    # the case id is shown as it is: no mathtext ($...$ in a file name is text, not a formula to parse)
    fig.suptitle(f"{case}" + (f"  {caption}" if caption else ""), fontsize=10, parse_math=False)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return out_png


def draw_subject(images: Sequence[np.ndarray], consensus: np.ndarray, z: int, out_png: Path) -> Path:
    """A citizen-science subject: slice ``z`` of T1c, T2-FLAIR, and the proposed segmentation over T2-FLAIR, side
    by side, upscaled to at least ``MIN_PANEL_PIXELS`` per panel; no text and no scores (volunteers judge the
    image, not the model's doubt)."""
    box = brain_box(images)
    t1c = grey_rgb(grey_levels(images[MODALITIES.index("t1c")])[z][box])
    flair = grey_rgb(grey_levels(images[MODALITIES.index("t2f")])[z][box])
    picture = tile([[t1c, flair, blend(flair, label_rgba(consensus[z][box], alpha=0.45))]])
    factor = max(1, int(np.ceil(MIN_PANEL_PIXELS / max(t1c.shape[:2]))))
    _save_png(np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1), out_png)
    return out_png
