"""Segment BraTS cases with a trained model in one call: ``predict_cases`` (a folder of cases) and ``predict_case``
(one patient's four modality files), what ``nnunet_tcup predict`` runs.

Steps (each the project's or nnU-Net's own code, nothing re-implemented):

1. cases found and validated (:mod:`.cases`: the converter's layout detection and checks);
2. nnU-Net's input names ``CASE_0000.nii.gz`` ... staged in a temporary folder, in the model's channel order;
3. ``nnUNetPredictor.initialize_from_trained_model_folder`` + ``predict_from_files`` (fold ensemble, mirroring
   unless disabled, ``num_parts`` / ``part_id`` passed through: the same split as ``nnUNetv2_predict``);
4. the model's tuned lesion filter (:mod:`.model`) applied as ``nnunet_tcup postprocess apply`` does;
5. exported as ``nnunet_tcup export --source`` does: ``CASE.nii.gz``, uint8 BraTS labels (2023 labels; ET = 4 for
   BraTS 2021/2020 case ids) with the exact shape, affine and header of the case's t1n image.

All or nothing: the outputs are written into a hidden staging folder inside the output folder and moved into place
only when every case of this part has succeeded. An existing output identical to the new one is left untouched; a
different one is an error (nothing is written).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from nnunet_tcup.dataset_conversion.layout import FILE_ENDING, CaseSource
from nnunet_tcup.prediction.model import DEFAULT_CHECKPOINT, TrainedModel, load_model

__all__ = ["PredictionSummary", "predict_case", "predict_cases"]

_STAGING_PREFIX = ".nnunet_tcup_predict.partial-"


@dataclass
class PredictionSummary:
    """What a prediction run did: the cases of this part, the files written and those already identical."""

    cases: list[str]
    written: list[Path]
    unchanged: list[Path]
    model: TrainedModel
    device: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Options:
    device: str
    use_mirroring: bool
    num_workers: int
    progress: bool
    num_parts: int
    part_id: int

    @classmethod
    def make(
        cls, device: str, use_mirroring: bool, num_workers: int | None, progress: bool, num_parts: int, part_id: int
    ) -> _Options:
        from nnunet_tcup.parallel import default_num_workers

        workers = default_num_workers() if num_workers is None else num_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"--num-workers must be an integer >= 1, got {workers!r}")
        return cls(str(device), bool(use_mirroring), workers, bool(progress), int(num_parts), int(part_id))


def predict_cases(
    input_dir: str | Path,
    output_dir: str | Path,
    model_folder: str | Path,
    folds: Sequence[int | str] | None = None,
    *,
    checkpoint: str = DEFAULT_CHECKPOINT,
    device: str = "auto",
    use_mirroring: bool = True,
    postprocessing: bool = True,
    num_workers: int | None = None,
    progress: bool = True,
    num_parts: int = 1,
    part_id: int = 0,
) -> PredictionSummary:
    """Segment every case of ``input_dir`` (a folder of BraTS case folders, 2023 or 2021/2020 layout, or one case
    folder) into ``output_dir/CASE.nii.gz``; see the module docstring. ``folds`` None: every fold of the model that
    holds ``checkpoint``. ``num_parts`` / ``part_id``: only every num_parts-th case, from part_id (cluster jobs
    writing into one output folder). ValueError / OSError naming the problem; nothing is written then."""
    from nnunet_tcup.prediction.cases import find_cases

    cases, notes = find_cases(input_dir)
    output_dir = Path(output_dir)
    _check_output_folder(output_dir, Path(input_dir))
    targets = [output_dir / f"{c.case_id}{FILE_ENDING}" for c in cases]
    options = _Options.make(device, use_mirroring, num_workers, progress, num_parts, part_id)
    summary = _predict(cases, targets, model_folder, folds, checkpoint, postprocessing, options)
    summary.notes[:0] = notes
    return summary


def predict_case(
    *,
    t1n: str | Path,
    t1c: str | Path,
    t2w: str | Path,
    t2f: str | Path,
    output_file: str | Path,
    model_folder: str | Path,
    folds: Sequence[int | str] | None = None,
    case_id: str | None = None,
    checkpoint: str = DEFAULT_CHECKPOINT,
    device: str = "auto",
    use_mirroring: bool = True,
    postprocessing: bool = True,
    num_workers: int | None = None,
    progress: bool = True,
) -> PredictionSummary:
    """Segment one case given as four modality files into ``output_file`` (``.nii.gz``); the summary lists it as
    written, or as unchanged when an identical file was there already.

    ``case_id`` (default: the output file's name without ``.nii.gz``) only decides the labelling: a BraTS 2021/2020
    id (``BraTS2021_00001``) gets ET = 4, every other id the 2023 labels.
    """
    from nnunet_tcup.prediction.cases import case_from_files

    output_file = Path(output_file)
    if not output_file.name.endswith(FILE_ENDING):
        raise ValueError(f"{output_file}: the output file name must end in {FILE_ENDING}")
    if output_file.is_dir():
        raise ValueError(f"{output_file}: is a directory, a file is needed here")
    _check_output_folder(output_file.parent, None)
    case_id = case_id or output_file.name[: -len(FILE_ENDING)]
    case = case_from_files({"t1n": t1n, "t1c": t1c, "t2w": t2w, "t2f": t2f}, case_id)
    options = _Options.make(device, use_mirroring, num_workers, progress, 1, 0)
    return _predict([case], [output_file], model_folder, folds, checkpoint, postprocessing, options)


def _check_output_folder(folder: Path, input_dir: Path | None) -> None:
    """ValueError before any work if ``folder`` cannot be the output folder."""
    from nnunet_tcup.postprocessing.cli import check_output_folder

    check_output_folder(folder)
    if input_dir is not None:
        out, inp = folder.resolve(), Path(input_dir).resolve()
        if out == inp or inp in out.parents:
            raise ValueError(f"{folder}: the output folder must not be inside the input folder {input_dir}")


def _predict(
    cases: list[CaseSource],
    targets: list[Path],
    model_folder: str | Path,
    folds: Sequence[int | str] | None,
    checkpoint: str,
    postprocessing: bool,
    options: _Options,
) -> PredictionSummary:
    from nnunet_tcup.prediction.cases import input_files, part_of, stage_inputs, validate_cases
    from nnunet_tcup.prediction.model import resolve_device

    model = load_model(model_folder, folds, checkpoint, postprocessing)
    device = resolve_device(options.device)
    part = part_of(range(len(cases)), options.num_parts, options.part_id)
    summary = PredictionSummary([cases[i].case_id for i in part], [], [], model, device.type, list(model.notes))
    if not part:
        summary.notes.append(f"part {options.part_id} of {options.num_parts} has no cases (there are {len(cases)})")
        return summary
    validate_cases([cases[i] for i in part], options.num_workers, options.progress)
    with tempfile.TemporaryDirectory(prefix="nnunet_tcup_predict-") as tmp:
        images, raw = Path(tmp) / "images", Path(tmp) / "raw"
        images.mkdir()
        channels = len(model.channel_modalities)
        inputs = [input_files(images, c.case_id, channels) for c in cases]  # every case: nnU-Net splits the list
        for i in part:
            stage_inputs(cases[i], images, model.channel_modalities)
        _run_nnunet(model, device, inputs, [str(raw / c.case_id) for c in cases], len(part), options)
        predictions = [raw / f"{cases[i].case_id}{FILE_ENDING}" for i in part]
        missing = [p.name for p in predictions if not p.is_file()]
        if missing:
            raise ValueError(f"{model.folder}: nnU-Net wrote no prediction for {', '.join(missing)}")
        if model.postprocessing is not None and not model.postprocessing.is_identity:
            predictions = _filter(predictions, Path(tmp) / "postprocessed", model, options)
        written, unchanged = _export([cases[i] for i in part], predictions, [targets[i] for i in part], raw, options)
    summary.written, summary.unchanged = written, unchanged
    return summary


#: torch's deprecation notice printed by every process that imports nnU-Net's architectures (as a PYTHONWARNINGS
#: entry, so that nnU-Net's spawned workers ignore it too)
_TORCH_JIT_NOTICE = "ignore:`torch.jit.interface` is deprecated:FutureWarning"


@contextlib.contextmanager
def _quiet_torch_threads(device) -> Iterator[None]:
    """nnUNetv2_predict's thread settings (all cores on the CPU, one thread with CUDA), restored afterwards; nnU-Net's
    prints to stdout and torch's deprecation notice (here and in nnU-Net's workers) silenced."""
    import multiprocessing

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(multiprocessing.cpu_count() if device.type == "cpu" else 1)
    saved = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{saved},{_TORCH_JIT_NOTICE}" if saved else _TORCH_JIT_NOTICE
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.interface` is deprecated", FutureWarning)
            yield
    finally:
        torch.set_num_threads(threads)
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved


@contextlib.contextmanager
def _case_progress(folder: Path, total: int, enabled: bool) -> Iterator[None]:
    """A bar counting the predictions nnU-Net has written into ``folder`` (polled twice a second)."""
    from tqdm import tqdm

    stop = threading.Event()
    with tqdm(total=total, desc="predicting", unit="case", disable=not enabled) as bar:

        def poll() -> None:
            while not stop.wait(0.5):
                done = min(total, len(list(folder.glob(f"*{FILE_ENDING}")))) if folder.is_dir() else 0
                if done > bar.n:
                    bar.update(done - bar.n)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        bar.update(total - bar.n)


def _run_nnunet(
    model: TrainedModel, device, inputs: list[list[str]], outputs: list[str], n_part: int, options: _Options
) -> None:
    """nnU-Net's predictor on this part of ``inputs``; its failures become one ValueError naming the model."""
    workers = max(1, min(options.num_workers, n_part))
    with _quiet_torch_threads(device):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=options.use_mirroring,
            perform_everything_on_device=device.type == "cuda",
            device=device,
            verbose=False,
            allow_tqdm=False,
        )
        try:
            predictor.initialize_from_trained_model_folder(str(model.folder), model.folds, model.checkpoint)
        except Exception as e:  # torch.load / state-dict errors of a broken or foreign checkpoint
            raise ValueError(f"{model.folder}: cannot load the model ({type(e).__name__}: {_first_line(e)})") from e
        with _case_progress(Path(outputs[0]).parent, n_part, options.progress):
            try:
                predictor.predict_from_files(
                    inputs,
                    outputs,
                    save_probabilities=False,
                    overwrite=True,
                    num_processes_preprocessing=workers,
                    num_processes_segmentation_export=workers,
                    num_parts=options.num_parts,
                    part_id=options.part_id,
                )
            except Exception as e:  # nnU-Net raises RuntimeError/AssertionError from its workers
                raise ValueError(f"{model.folder}: prediction failed ({type(e).__name__}: {_first_line(e)})") from e


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


def _filter_job(job: tuple[Path, Path, object]) -> None:
    from nnunet_tcup.postprocessing.apply import filter_file

    filter_file(job[0], job[1], job[2])  # type: ignore[arg-type]


def _filter(predictions: list[Path], folder: Path, model: TrainedModel, options: _Options) -> list[Path]:
    """The tuned lesion filter on each prediction (``postprocess apply``'s per-file code); the filtered files."""
    from nnunet_tcup.parallel import parallel_map

    folder.mkdir()
    filtered = [folder / p.name for p in predictions]
    jobs = [(p, f, model.postprocessing) for p, f in zip(predictions, filtered)]
    parallel_map(_filter_job, jobs, num_workers=options.num_workers, desc="post-processing", progress=options.progress)
    return filtered


def _export(
    cases: list[CaseSource], predictions: list[Path], targets: list[Path], raw: Path, options: _Options
) -> tuple[list[Path], list[Path]]:
    """``export``'s checks and writes for each case, all or nothing; returns (written, already identical)."""
    from nnunet_tcup.dataset_conversion.export import (
        ExportTask,
        check_export,
        check_prediction_dataset_json,
        write_export,
    )
    from nnunet_tcup.parallel import parallel_map
    from nnunet_tcup.prediction.cases import raise_errors

    check_prediction_dataset_json(raw)
    # overwrite=True only lets check_export tell "differs" (status write) from "identical" (unchanged) without an
    # error that suggests --overwrite; a different existing file is refused below
    tasks = [ExportTask(c.case_id, p, c.images[0], t, True) for c, p, t in zip(cases, predictions, targets)]
    checks = parallel_map(check_export, tasks, num_workers=options.num_workers, desc="checking", progress=False)
    errors = [c.error for c in checks if c.status == "error"]
    errors += [
        f"case {c.task.case_id}: {c.task.target}: already exists and differs from the new segmentation; not "
        "overwriting it (remove it, or choose another output folder)"
        for c in checks
        if c.status == "write" and c.task.target.exists()
    ]
    raise_errors(errors, len(checks), "nothing was written")
    to_write = [c.task for c in checks if c.status == "write"]
    if not to_write:
        return [], [c.task.target for c in checks]
    folders = sorted({t.target.parent for t in to_write})
    staged: dict[Path, Path] = {}
    created = [f for f in folders if not f.exists()]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    stages = {f: Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=f)) for f in folders}
    moved: list[Path] = []
    try:
        for task in to_write:
            staged[task.target] = stages[task.target.parent] / task.target.name
        parallel_map(
            write_export,
            [replace(t, target=staged[t.target]) for t in to_write],
            num_workers=options.num_workers,
            desc="writing",
            progress=False,
        )
        for task in to_write:
            if task.target.exists():
                raise FileExistsError(f"{task.target}: appeared while predicting; not overwriting it")
            os.replace(staged[task.target], task.target)
            moved.append(task.target)
    except BaseException:
        for path in moved:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in created:
            with contextlib.suppress(OSError):
                shutil.rmtree(stages[folder])
                folder.rmdir()
        raise
    finally:
        for stage in stages.values():
            shutil.rmtree(stage, ignore_errors=True)
    return [t.target for t in to_write], [c.task.target for c in checks if c.status == "unchanged"]
