"""Synthetic BraTS 2023-like data: MNI152-based anatomy, tumours with the 2023 labels, four MR contrasts.

Public API::

    synthesize_case(challenge, shape=(240, 240, 155), seed=0, with_seg=True, anatomy="auto") -> SyntheticCase
    write_case(case, out_dir, case_id) -> Path
    write_dataset(out_dir, challenge, num_cases, seed=0, shape=(240, 240, 155), with_seg=True, start_index=1,
                  num_workers=1) -> list[Path]

Command line: ``nnunet_tcup synth OUT --challenge GLI --cases N``. Challenge variants are described in
:mod:`nnunet_tcup.synthetic.profiles`, the generation pipeline in :mod:`nnunet_tcup.synthetic.brats_like`.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

# Attributes are imported lazily (PEP 562) so that ``nnunet_tcup.synthetic.cli`` stays light for ``nnunet_tcup -h``.
_EXPORTS = {
    "REFERENCE_SHAPE": "nnunet_tcup.synthetic.brats_like",
    "SyntheticCase": "nnunet_tcup.synthetic.brats_like",
    "brats_affine": "nnunet_tcup.synthetic.brats_like",
    "case_seed": "nnunet_tcup.synthetic.brats_like",
    "synthesize_case": "nnunet_tcup.synthetic.brats_like",
    "case_id_for": "nnunet_tcup.synthetic.writer",
    "write_case": "nnunet_tcup.synthetic.writer",
    "write_dataset": "nnunet_tcup.synthetic.writer",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
