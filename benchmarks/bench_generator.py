"""Generator training-step speed vs nnU-Net's default 3D U-Net, and achieved FLOP/s vs this machine's matmul FLOP/s.

One training step = forward + backward + Adam step with a BCE-with-logits loss on a random (B, C, D, H, W) patch.
Networks, all measured in the same run, interleaved (one step of each per repetition, so machine load hits all alike):
  - tcup        TCuPGenerator(4, 3) at the paper widths (fused ConvLSTM, the default)
  - tcup_fast   the same generator with the previous default ConvLSTM ("fast"; same weights, same outputs): the
                before/after ratio of the fused recurrence is "step time tcup_fast / tcup"
  - tcup_naive  the same generator with the per-slice single-conv ConvLSTM (same weights, same outputs)
  - nnunet      PlainConvUNet planned exactly like nnU-Net 2.8.1's default ExperimentPlanner for this patch
                (get_pool_and_conv_props, 32 base features capped at 320, 2 convs per stage, InstanceNorm, LeakyReLU),
                built by nnunetv2.utilities.get_network_from_plans, deep supervision off (one loss on the output).
FLOPs per step are counted once per network with torch.utils.flop_counter.FlopCounterMode (forward + backward
convolutions / matmuls of the implementation actually run). Matmul FLOP/s: torch.mm of two fp32 N x N matrices,
timed right before every network step. Figures are medians over repetitions of per-repetition ratios.

Usage: python benchmarks/bench_generator.py [--reps 7] [--patch 32 64 64] [--batch 2] [--threads 0] [--clock wall]
On a machine shared with other jobs, two-thread wall-clock figures are dominated by OpenMP threads waiting for each
other (thousands of small per-slice kernels); use --threads 1 --clock cpu there and say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def nnunet_default_network(patch: Sequence[int], in_channels: int, num_classes: int) -> nn.Module:
    """PlainConvUNet configured as nnU-Net's default planner configures it for ``patch`` at 1 mm isotropic."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    _, pool_kernels, conv_kernels, planned_patch, _ = get_pool_and_conv_props([1.0, 1.0, 1.0], list(patch), 4, 999999)
    if list(planned_patch) != list(patch):
        raise ValueError(f"nnU-Net would plan patch {planned_patch} instead of {list(patch)}; pick a divisible patch")
    stages = len(pool_kernels)
    arch_kwargs = {
        "n_stages": stages,
        "features_per_stage": [min(320, 32 * 2**i) for i in range(stages)],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": conv_kernels,
        "strides": pool_kernels,
        "n_conv_per_stage": [2] * stages,
        "n_conv_per_stage_decoder": [2] * (stages - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    return get_network_from_plans(
        "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        arch_kwargs,
        ("conv_op", "norm_op", "dropout_op", "nonlin"),
        in_channels,
        num_classes,
        allow_init=True,
        deep_supervision=False,
    )


def make_step(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), target).backward()
        optimizer.step()

    return step


def count_flops(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        nn.functional.binary_cross_entropy_with_logits(net(x), target).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = {"now": time.perf_counter}


def timed(fn: Callable[[], None]) -> float:
    start = CLOCK["now"]()
    fn()
    return CLOCK["now"]() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per network (after 1 warm-up)")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], help="patch size D H W (voxels)")
    parser.add_argument("--batch", type=int, default=2, help="batch size")
    parser.add_argument("--mm-size", type=int, default=2048, help="edge N of the fp32 N x N matmul reference")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: process CPU time (robust on a loaded machine with --threads 1)",
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["tcup", "tcup_fast", "tcup_naive", "nnunet"],
        choices=["tcup", "tcup_fast", "tcup_naive", "nnunet"],
        help="networks to time",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    CLOCK["now"] = CLOCKS[args.clock]

    from nnunet_tcup.network_architecture import TCuPGenerator

    torch.manual_seed(0)
    x = torch.randn(args.batch, 4, *args.patch)
    target = (torch.rand(args.batch, 3, *args.patch) > 0.8).float()
    builders = {
        "tcup": lambda: TCuPGenerator(4, 3),
        "tcup_fast": lambda: TCuPGenerator(4, 3, convlstm_implementation="fast"),
        "tcup_naive": lambda: TCuPGenerator(4, 3, convlstm_implementation="per_slice"),
        "nnunet": lambda: nnunet_default_network(args.patch, 4, 3),
    }
    nets = {name: builders[name]() for name in args.networks}
    flops = {name: count_flops(net, x, target) for name, net in nets.items()}
    steps = {name: make_step(net, x, target) for name, net in nets.items()}
    a, b = torch.randn(args.mm_size, args.mm_size), torch.randn(args.mm_size, args.mm_size)
    mm = lambda: torch.mm(a, b)  # noqa: E731
    mm_flops = 2 * args.mm_size**3

    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, clock {args.clock}, patch {args.patch}, "
        f"batch {args.batch}, load average before: {os.getloadavg()}"
    )
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters())
        print(f"  {name:11s} params {params / 1e6:6.3f} M, GFLOP per step (fwd+bwd) {flops[name] / 1e9:7.2f}")
    mm()
    for step in steps.values():  # warm-up
        step()
    seconds: dict[str, list[float]] = {name: [] for name in nets}
    fraction: dict[str, list[float]] = {name: [] for name in nets}
    mm_rates: list[float] = []
    for _ in range(args.reps):
        for name, step in steps.items():
            rate = mm_flops / min(timed(mm), timed(mm))
            mm_rates.append(rate)
            sec = timed(step)
            seconds[name].append(sec)
            fraction[name].append(flops[name] / sec / rate)
    print(f"load average after: {os.getloadavg()}")
    print(f"matmul fp32 {args.mm_size}^2: median {statistics.median(mm_rates) / 1e9:.1f} GFLOP/s")
    for name in nets:
        print(
            f"  {name:11s} step median {statistics.median(seconds[name]):6.3f} s "
            f"(min {min(seconds[name]):.3f}), achieved FLOP/s = "
            f"{100 * statistics.median(fraction[name]):5.1f} % of matmul (per-rep median)"
        )
    if "tcup" in nets:
        for other in [n for n in nets if n != "tcup"]:
            ratios = [o / t for o, t in zip(seconds[other], seconds["tcup"])]
            print(
                f"step time {other} / tcup: median {statistics.median(ratios):.2f}x "
                f"(per-rep ratios {', '.join(f'{r:.2f}' for r in ratios)})"
            )


if __name__ == "__main__":
    main()
