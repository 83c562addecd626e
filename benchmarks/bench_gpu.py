"""TCuP-GAN on a GPU at nnU-Net's 3d_fullres plan for full-size BraTS cases: one call, one table (< 5 min).

What it does, in one process:
1. Plan: writes ``--cases`` synthetic full-size GLI cases (240 x 240 x 155, ``nnunet_tcup.synthetic``), converts them
   (``convert_brats2023``) and runs nnU-Net's own fingerprint extractor and default ExperimentPlanner on them; the
   3d_fullres patch size and batch size (about 128 x 160 x 112, batch 2 for BraTS) come from that plan.
2. Training steps at that patch and batch, with AMP on CUDA (autocast + one GradScaler per optimiser), random inputs
   and region targets, median of ``--reps`` steps after warm-up, peak memory from ``torch.cuda.max_memory_allocated``:
   - the full TCuP-GAN step (generator + discriminator: ``nnunet_tcup.trainers.gan_step.gan_train_step`` with the
     paper's losses and optimisers), with the fused ConvLSTM (default) and with the previous ``fast`` one;
   - nnU-Net's default network step: the planned PlainConvUNet with deep supervision, Dice + BCE region loss, SGD
     (as ``nnUNetTrainer.train_step``), same patch and batch;
   - generator forward + backward alone with each ConvLSTM implementation (fused / fast / per_slice).
3. Inference: the generator forward at the patch (batch 1, as nnU-Net's sliding window) eager vs a replayed CUDA
   graph (``TCuPGenerator.cuda_graphs``); then one full-size case through nnU-Net's predictor API
   (``nnUNetPredictor.predict_single_npy_array``: preprocessing, sliding window, resampling) with and without
   mirroring, and with mirroring plus CUDA graphs.

Every ratio in the table is against a baseline measured in the same run (column "vs"). Timings synchronise the
device (``torch.cuda.synchronize``) before reading the clock.

Usage: python benchmarks/bench_gpu.py [--device cuda] [--reps 5] [--cases 2] [--work-dir DIR]
       python benchmarks/bench_gpu.py --smoke     # CPU, tiny cases, 1 repetition, no AMP: checks every path (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

DATASET_ID = 990
FULL_SHAPE = (240, 240, 155)
SMOKE_SHAPE = (40, 36, 28)


@dataclass
class Row:
    """One line of the result table: seconds per call, peak bytes (CUDA) and the row it is compared with."""

    name: str
    seconds: float
    peak_bytes: int | None = None
    baseline: str | None = None


class Bench:
    """Device, AMP switch and timing helpers shared by all sections."""

    def __init__(self, device: torch.device, amp: bool, reps: int) -> None:
        self.device, self.amp, self.reps = device, amp, reps
        self.rows: list[Row] = []

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler("cuda") if self.amp and self.device.type == "cuda" else None

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure(
        self,
        name: str,
        step: Callable[[], object],
        baseline: str | None = None,
        warmup: int = 1,
        reps: int | None = None,
    ) -> Row:
        """Median seconds of ``reps`` calls after ``warmup`` calls; peak memory over the timed calls (CUDA)."""
        for _ in range(warmup):
            step()
        self.sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        times = []
        for _ in range(self.reps if reps is None else reps):
            self.sync()
            start = time.perf_counter()
            step()
            self.sync()
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        row = Row(name, statistics.median(times), peak, baseline)
        self.rows.append(row)
        print(f"  measured {name}: {row.seconds:.3f} s", flush=True)
        return row

    def release(self) -> None:
        """Free cached device memory between sections so that peaks do not include earlier networks."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ plan
#: Foreground intensity samples of the fingerprint (nnU-Net samples 10^8 per channel whatever the dataset's size: a
#: 5 GB peak for a few cases). They only drive CT normalisation; these MRI channels are z-scored per case, so the
#: plan (patch, spacing, topology) is the same.
FINGERPRINT_SAMPLES = 1e6


def make_plan(work: Path, shape: tuple[int, int, int], cases: int, workers: int) -> tuple:
    """Synthetic GLI cases -> nnU-Net raw dataset -> nnU-Net's fingerprint (:data:`FINGERPRINT_SAMPLES` intensity
    samples) + default plan. Returns nnU-Net objects."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiments
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_tcup.dataset_conversion import convert_brats2023
    from nnunet_tcup.synthetic import write_dataset

    brats = work / "brats"
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # nnU-Net's planner prints its whole plan
            write_dataset(brats, "GLI", cases, seed=0, shape=shape, num_workers=workers, progress=False)
            convert_brats2023("GLI", DATASET_ID, brats, num_workers=workers, raw_dir=work / "raw", progress=False)
            extractor = DatasetFingerprintExtractor(DATASET_ID, workers)
            extractor.num_foreground_voxels_for_intensitystats = FINGERPRINT_SAMPLES
            extractor.run(overwrite_existing=True)
            plan_experiments([DATASET_ID])
    except Exception:
        print(log.getvalue())
        raise
    preprocessed = next((work / "preprocessed").glob(f"Dataset{DATASET_ID}_*"))
    plans_manager = PlansManager(str(preprocessed / "nnUNetPlans.json"))
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    raw = next((work / "raw").glob(f"Dataset{DATASET_ID}_*"))
    case_files = sorted(str(p) for p in (raw / "imagesTr").glob("*_000[0-3].nii.gz"))[:4]
    return plans_manager, plans_manager.get_configuration("3d_fullres"), dataset_json, case_files


# ------------------------------------------------------------------------------------------------ training
def region_targets(batch: int, patch: list[int], device: torch.device) -> torch.Tensor:
    """Nested random region masks WT >= TC >= ET, ``(B, 3, *patch)`` float, like nnU-Net's region targets."""
    wt = torch.rand(batch, 1, *patch, device=device) < 0.3
    tc = wt & (torch.rand_like(wt, dtype=torch.float32) < 0.5)
    et = tc & (torch.rand_like(wt, dtype=torch.float32) < 0.5)
    return torch.cat([wt, tc, et], dim=1).float()


def tcup_gan_step(bench: Bench, generator: nn.Module, data: torch.Tensor, target: torch.Tensor) -> Callable:
    """One full TCuP-GAN step (G then D) as the trainer runs it."""
    from nnunet_tcup.network_architecture import PatchDiscriminator3D
    from nnunet_tcup.trainers.gan_step import GANTargets, OptimiserSlot, gan_train_step
    from nnunet_tcup.trainers.losses import RegionWeightedBCELoss

    discriminator = PatchDiscriminator3D(data.shape[1] + target.shape[1]).to(bench.device)
    g_slot = OptimiserSlot(torch.optim.Adam(generator.parameters(), 5e-4, betas=(0.5, 0.999)), bench.scaler())
    d_slot = OptimiserSlot(torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.5, 0.999)), bench.scaler())
    loss = RegionWeightedBCELoss()
    targets = GANTargets(has_regions=True, num_heads=target.shape[1])
    return lambda: gan_train_step(generator, discriminator, data, target, loss, targets, g_slot, d_slot, bench.autocast)


def nnunet_default_step(
    bench: Bench, plans_manager, configuration, data: torch.Tensor, target: torch.Tensor
) -> Callable:
    """nnU-Net's default 3d_fullres network and train step (deep supervision, Dice + BCE, SGD, clip 12)."""
    import torch.nn.functional as F
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    net = get_network_from_plans(
        configuration.network_arch_class_name,
        configuration.network_arch_init_kwargs,
        configuration.network_arch_init_kwargs_req_import,
        data.shape[1],
        target.shape[1],
        allow_init=True,
        deep_supervision=True,
    ).to(bench.device)
    scales = np.cumprod(np.vstack(configuration.pool_op_kernel_sizes), axis=0)[:-1]
    weights = np.array([1 / (2**i) for i in range(len(scales))])
    weights[-1] = 0
    loss = DeepSupervisionWrapper(
        DC_and_BCE_loss(
            {},
            {"batch_dice": configuration.batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": False},
            use_ignore_label=False,
            dice_class=MemoryEfficientSoftDiceLoss,
        ),
        weights / weights.sum(),
    )
    targets = [
        target
        if all(s == 1 for s in scale)
        else F.interpolate(target, size=[p // s for p, s in zip(target.shape[2:], scale)], mode="nearest")
        for scale in scales
    ]
    optimizer = torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = bench.scaler()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with bench.autocast():
            value = loss(net(data), targets)
        if scaler is None:
            value.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 12)
            optimizer.step()
        else:
            scaler.scale(value).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(net.parameters(), 12)
            scaler.step(optimizer)
            scaler.update()

    return step


def generator_fwd_bwd(bench: Bench, generator: nn.Module, data: torch.Tensor, target: torch.Tensor) -> Callable:
    def step() -> None:
        generator.zero_grad(set_to_none=True)
        with bench.autocast():
            logits = generator(data)
        nn.functional.binary_cross_entropy_with_logits(logits.float(), target).backward()

    return step


def training_section(bench: Bench, plans_manager, configuration) -> None:
    from nnunet_tcup.network_architecture import TCuPGenerator

    patch, batch = list(configuration.patch_size), configuration.batch_size
    torch.manual_seed(0)
    data = torch.randn(batch, 4, *patch, device=bench.device)
    target = region_targets(batch, patch, bench.device)
    reference = TCuPGenerator(4, 3).to(bench.device)
    for impl in ("fused", "fast"):
        generator = TCuPGenerator(4, 3, convlstm_implementation=impl).to(bench.device)
        generator.load_state_dict(reference.state_dict())
        bench.measure(
            f"TCuP-GAN G+D train step ({impl} ConvLSTM)",
            tcup_gan_step(bench, generator, data, target),
            baseline=None if impl == "fused" else "TCuP-GAN G+D train step (fused ConvLSTM)",
        )
        del generator
        bench.release()
    bench.measure(
        "nnU-Net default network train step",
        nnunet_default_step(bench, plans_manager, configuration, data, target),
        baseline="TCuP-GAN G+D train step (fused ConvLSTM)",
    )
    bench.release()
    for impl in ("fused", "fast", "per_slice"):
        generator = TCuPGenerator(4, 3, convlstm_implementation=impl).to(bench.device)
        generator.load_state_dict(reference.state_dict())
        bench.measure(
            f"generator fwd+bwd ({impl})",
            generator_fwd_bwd(bench, generator, data, target),
            baseline=None if impl == "fused" else "generator fwd+bwd (fused)",
            reps=max(1, bench.reps // 2) if impl == "per_slice" else None,
        )
        del generator
        bench.release()


# ------------------------------------------------------------------------------------------------ inference
def inference_section(bench: Bench, plans_manager, configuration, dataset_json, case_files: list[str]) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_tcup.network_architecture import TCuPGenerator

    torch.manual_seed(0)
    generator = TCuPGenerator(4, 3).to(bench.device).eval()
    x = torch.randn(1, 4, *configuration.patch_size, device=bench.device)
    graphs_ok = bench.device.type == "cuda"

    def forward() -> None:
        with torch.no_grad(), bench.autocast():
            generator(x)

    bench.measure("generator inference, one patch, eager", forward)
    if graphs_ok:
        generator.cuda_graphs = True
        bench.measure(
            "generator inference, one patch, CUDA graph", forward, baseline="generator inference, one patch, eager"
        )
        generator.cuda_graphs = False

    image, properties = SimpleITKIO().read_images(case_files)
    params = [{k: v.clone() for k, v in generator.state_dict().items()}]
    for mirroring, graphs in ((False, False), (True, False), (True, True)):
        if graphs and not graphs_ok:
            continue
        generator.cuda_graphs = graphs
        predictor = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=mirroring,
            perform_everything_on_device=bench.device.type == "cuda",
            device=bench.device,
            verbose=False,
            allow_tqdm=False,
        )
        predictor.manual_initialization(
            generator, plans_manager, configuration, params, dataset_json, "nnUNetTrainerTCuPGAN", (0, 1, 2)
        )
        name = f"predict one full-size case, mirroring {'on' if mirroring else 'off'}" + (
            ", CUDA graphs" if graphs else ""
        )
        baseline = None if not mirroring else "predict one full-size case, mirroring off"
        if graphs:
            baseline = "predict one full-size case, mirroring on"
        bench.measure(
            name, lambda p=predictor: p.predict_single_npy_array(image, properties), baseline=baseline, warmup=0, reps=1
        )


# ------------------------------------------------------------------------------------------------ output
def print_table(bench: Bench, header: str) -> None:
    by_name = {row.name: row for row in bench.rows}
    print()
    print(header)
    print(f"| {'what':58s} | {'time':>9s} | {'peak mem':>9s} | vs |")
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 11}|----|")
    for row in bench.rows:
        memory = "-" if row.peak_bytes is None else f"{row.peak_bytes / 2**30:.2f} GiB"
        versus = ""
        if row.baseline is not None and row.baseline in by_name:
            versus = f"{row.seconds / by_name[row.baseline].seconds:.2f}x of '{row.baseline}'"
        print(f"| {row.name:58s} | {row.seconds:7.3f} s | {memory:>9s} | {versus} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--reps", type=int, default=5, help="timed training steps per row (after 1 warm-up)")
    parser.add_argument("--cases", type=int, default=2, help="synthetic cases to plan from")
    parser.add_argument("--num-workers", type=int, default=4, help="processes for synthesis, conversion, fingerprint")
    parser.add_argument("--workers", dest="num_workers", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, default=None, help="work folder (default: a temporary folder)")
    parser.add_argument("--work", dest="work_dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CPU, tiny synthetic cases, 1 repetition, no AMP: exercises every path in under a minute",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.reps, args.num_workers = "cpu", 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"bench_gpu: --device {args.device} requested but no CUDA device is available (use --smoke on CPU)",
            file=sys.stderr,
        )
        return 2
    shape = SMOKE_SHAPE if args.smoke else FULL_SHAPE
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        work = args.work_dir if args.work_dir is not None else Path(tmp)
        for var, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
            os.environ[var] = str(work / sub)  # before nnunetv2 is imported: it reads these once
        os.environ["nnUNet_compile"] = "f"
        start = time.perf_counter()
        plans_manager, configuration, dataset_json, case_files = make_plan(work, shape, args.cases, args.num_workers)
        plan_s = time.perf_counter() - start
        bench = Bench(device, amp=device.type == "cuda", reps=args.reps)
        print(
            f"plan from {args.cases} synthetic cases of {shape} in {plan_s:.0f} s: 3d_fullres patch "
            f"{list(configuration.patch_size)}, batch {configuration.batch_size}, spacing {configuration.spacing}",
            flush=True,
        )
        training_section(bench, plans_manager, configuration)
        inference_section(bench, plans_manager, configuration, dataset_json, case_files)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print_table(
        bench,
        f"bench_gpu {datetime.date.today()} on {name}, torch {torch.__version__}, AMP "
        f"{'fp16' if bench.amp else 'off'}, 3d_fullres patch {list(configuration.patch_size)} batch "
        f"{configuration.batch_size}, median of {args.reps} (predictor rows: 1 run); "
        f"total {time.perf_counter() - start:.0f} s",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
