"""BraTS (2023, 2021/2020 layouts) <-> nnU-Net v2 conversion (``nnunet_tcup convert`` / ``nnunet_tcup export``).

Public API::

    convert_brats2023(challenge, dataset_id, train_dir, test_dir=None, mode="regions", num_workers=None,
                      raw_dir=None, progress=True) -> ConversionSummary
    export_predictions(pred_dir, out_dir, challenge, source=None, num_workers=None, overwrite=False,
                       progress=True, allow_missing=False) -> ExportSummary

Modes: ``regions`` (WT/TC/ET), ``classes`` (the paper's NETC/SNFH/ET; alias ``labels``). Channels 0000-0003 = t1n,
t1c, t2w, t2f. Source layouts: :mod:`.layout`; dataset.json and the orchestration: :mod:`.brats2023`; per-case
checks and writes: :mod:`.case_io`; resume records: :mod:`.manifest`; file checks: :mod:`.validation`;
predictions back to BraTS files: :mod:`.export`.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

# Imported lazily (PEP 562) so that ``nnunet_tcup.dataset_conversion.cli`` stays light for ``nnunet_tcup -h``.
_EXPORTS = {
    "ConversionSummary": "nnunet_tcup.dataset_conversion.brats2023",
    "convert_brats2023": "nnunet_tcup.dataset_conversion.brats2023",
    "dataset_name": "nnunet_tcup.dataset_conversion.brats2023",
    "ExportSummary": "nnunet_tcup.dataset_conversion.export",
    "export_predictions": "nnunet_tcup.dataset_conversion.export",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
