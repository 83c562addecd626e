"""PNG figures of a review: a montage per case and one image per Zooniverse subject (case, slice).

Slices are axial: index z of the ``(z, y, x)`` arrays (the image's third NIfTI axis, 0-based), drawn with y as rows
and x as columns. Matplotlib's object API with the Agg canvas is used (no pyplot state: safe in worker processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunet_tcup.challenges import LABEL_NAMES, MODALITIES
from nnunet_tcup.demo.report import LABEL_COLOURS, label_rgba
from nnunet_tcup.demo.report import _normalise as grey_levels
from nnunet_tcup.io_utils import atomic_output

MI_MAX_BITS = 1.0  # colour scale of the disagreement map: mutual information summed over WT, TC, ET, clipped


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, dpi: int) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


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


def _legend(fig) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=LABEL_NAMES[v]) for v, c in LABEL_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)


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
    if len(images) != len(MODALITIES):
        raise ValueError(f"{case}: expected {len(MODALITIES)} modalities, got {len(images)}")
    if not slices:
        raise ValueError(f"{case}: no slice to draw")
    box = brain_box(images)
    greys = [grey_levels(im) for im in images]
    t1c = greys[MODALITIES.index("t1c")]
    rows = max(1, len(slices))
    fig = _figure(1.9 * 6, 1.9 * rows + 0.7)
    titles = [m.upper() for m in MODALITIES] + ["mean prediction", "fold disagreement"]
    axes = fig.subplots(rows, 6, squeeze=False)
    for r, z in enumerate(slices):
        for c, ax in enumerate(axes[r]):
            grey = greys[c] if c < 4 else t1c
            ax.imshow(grey[z][box], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if c == 4:
                ax.imshow(label_rgba(consensus[z][box]), interpolation="nearest")
            elif c == 5:
                heat = np.clip(disagreement[z][box] / MI_MAX_BITS, 0.0, 1.0)
                ax.imshow(
                    np.ma.masked_less_equal(heat, 0.01),
                    cmap="inferno",
                    vmin=0,
                    vmax=1,
                    alpha=0.85,
                    interpolation="nearest",
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(f"z = {z}", fontsize=9)
    _legend(fig)
    fig.suptitle(f"{case}" + (f"  {caption}" if caption else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    _save(fig, out_png, dpi=80)
    return out_png


def draw_subject(images: Sequence[np.ndarray], consensus: np.ndarray, z: int, out_png: Path) -> Path:
    """A citizen-science subject: slice ``z`` of T1c, T2-FLAIR, and the proposed segmentation over T2-FLAIR (no
    scores shown: volunteers judge the image, not the model's doubt)."""
    box = brain_box(images)
    t1c = grey_levels(images[MODALITIES.index("t1c")])[z][box]
    flair = grey_levels(images[MODALITIES.index("t2f")])[z][box]
    fig = _figure(7.5, 2.9)
    axes = fig.subplots(1, 3)
    for ax, (title, grey, label) in zip(
        axes, (("T1c", t1c, None), ("T2-FLAIR", flair, None), ("proposed outline", flair, consensus[z][box]))
    ):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if label is not None:
            ax.imshow(label_rgba(label, alpha=0.45), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    _legend(fig)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, out_png, dpi=90)
    return out_png
