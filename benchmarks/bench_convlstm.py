"""ConvLSTM implementations compared in one run: ATen calls per slice, then CPU/GPU time, layer by layer and whole.

Implementations (same weights, same outputs): ``fused`` (the default: fused pointwise forward and backward),
``fast`` (the previous default, kept as the reference that ``fused`` is measured against) and ``per_slice`` (the
plain single-conv loop differentiated by autograd).

1. ATen calls: one generator forward + backward (TCuPGenerator(4, 3), paper widths, batch 2, patch
   ``--count-patch``, default 32 x 32 x 32) under ``torch.profiler``, per slice of the patch, three ways:
   ``all`` (every ATen event, nested ones included: the count of issue 12), ``top`` (events not nested in another
   ATen call) and ``kernels`` (leaf events that compute: views, metadata and allocations such as ``as_strided``,
   ``select``, ``view``, ``empty``, ``resize_`` excluded; on a GPU roughly the kernel launches). Counted on the
   second call (what every training iteration and sliding-window patch costs: ``fused`` reuses the buffers and
   per-step views made by the first call) and, for the ``all`` count, on the first call of a new network.
2. Time: forward + backward (loss = sum of h * random weights) of every ConvLSTM of the generator at the in-plane
   size it runs at for a D x H x W patch (default 32 x 64 x 64, batch 2), then the whole generator. Implementations
   are timed alternately in the same run; figures are medians of per-repetition ratios.

Usage: python benchmarks/bench_convlstm.py [--reps 5] [--patch 32 64 64] [--batch 2] [--threads 0] [--clock wall]
       [--device cpu] [--skip-layers]
On a machine shared with other jobs use --threads 1 --clock cpu (process CPU time) and say so.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch.profiler import ProfilerActivity, profile

from nnunet_tcup.network_architecture import ConvLSTM2d, TCuPGenerator

IMPLEMENTATIONS = ("fused", "fast", "per_slice")
NON_KERNEL_OPS = frozenset(
    {
        "aten::as_strided",
        "aten::as_strided_",
        "aten::select",
        "aten::slice",
        "aten::narrow",
        "aten::view",
        "aten::_unsafe_view",
        "aten::unbind",
        "aten::split",
        "aten::split_with_sizes",
        "aten::chunk",
        "aten::reshape",
        "aten::flatten",
        "aten::unflatten",
        "aten::detach",
        "aten::alias",
        "aten::unsqueeze",
        "aten::squeeze",
        "aten::expand",
        "aten::permute",
        "aten::transpose",
        "aten::t",
        "aten::empty",
        "aten::empty_like",
        "aten::empty_strided",
        "aten::resize_",
        "aten::to",
        "aten::_to_copy",
        "aten::contiguous",
        "aten::lift_fresh",
        "aten::result_type",
        "aten::_has_compatible_shallow_copy_type",
        "aten::is_nonzero",
        "aten::item",
    }
)


def layer_shapes(net: TCuPGenerator, height: int, width: int) -> list[tuple[str, int, int, int, int]]:
    """(name, input channels, hidden channels, h, w) of every ConvLSTM of ``net`` for an H x W patch."""
    sizes = [(height, width)]
    for _ in net.encoder:
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    levels = len(net.encoder)
    shapes = []
    for k, level in enumerate(net.encoder):
        shapes.append((f"enc{k}", level.lstm.input_channels, level.lstm.hidden_channels, *sizes[k]))
    for j, level in enumerate(net.decoder):
        shapes.append((f"dec{j}", level.lstm.input_channels, level.lstm.hidden_channels, *sizes[levels - j]))
    return shapes


def count_aten_calls(step: Callable[[], None], warm_up: bool = True) -> dict[str, int]:
    """ATen events of one call of ``step`` (after one warm-up call unless ``warm_up`` is False): all, top-level,
    and computing leaves."""
    if warm_up:
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    has_child = {id(e.cpu_parent) for e in aten if e.cpu_parent is not None}
    top = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    kernels = [e for e in aten if id(e) not in has_child and e.name not in NON_KERNEL_OPS]
    return {"all": len(aten), "top": len(top), "kernels": len(kernels)}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = {"now": time.perf_counter, "device": "cpu"}


def timed(fn: Callable[[], None]) -> float:
    if CLOCK["device"] == "cuda":
        torch.cuda.synchronize()
    start = CLOCK["now"]()
    fn()
    if CLOCK["device"] == "cuda":
        torch.cuda.synchronize()
    return CLOCK["now"]() - start


def compare(steps: Sequence[Callable[[], None]], reps: int) -> list[list[float]]:
    """Alternate the steps (one of each per repetition, after one warm-up each); per-step lists of seconds."""
    for step in steps:
        step()
    seconds: list[list[float]] = [[] for _ in steps]
    for _ in range(reps):
        for k, step in enumerate(steps):
            seconds[k].append(timed(step))
    return seconds


def ratio(slow: list[float], fast: list[float]) -> float:
    return statistics.median(s / f for s, f in zip(slow, fast))


def layer_step(layer: ConvLSTM2d, x: torch.Tensor, weights: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        h, _ = layer(x)
        (h * weights).sum().backward()

    return step


def generators(device: str) -> dict[str, TCuPGenerator]:
    """The generator once per implementation, all with the weights of the first."""
    torch.manual_seed(0)
    nets: dict[str, TCuPGenerator] = {}
    for impl in IMPLEMENTATIONS:
        net = TCuPGenerator(4, 3, convlstm_implementation=impl).to(device)
        if nets:
            net.load_state_dict(nets[IMPLEMENTATIONS[0]].state_dict())
        nets[impl] = net
    return nets


def net_step(model: TCuPGenerator, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        (model(x) * target).sum().backward()

    return step


def report_aten_calls(nets: dict[str, TCuPGenerator], patch: Sequence[int], batch: int, device: str) -> None:
    x = torch.randn(batch, 4, *patch, device=device)
    target = torch.randn(batch, 3, *patch, device=device)
    first = {impl: count_aten_calls(net_step(copy.deepcopy(net), x, target), False) for impl, net in nets.items()}
    counts = {impl: count_aten_calls(net_step(net, x, target)) for impl, net in nets.items()}
    depth = patch[0]
    print(f"ATen calls per slice, generator forward + backward, batch {batch}, patch {list(patch)}:")
    print(f"  {'impl':10s} {'all':>8s} {'top':>8s} {'kernels':>8s}")
    for impl, c in counts.items():
        print(f"  {impl:10s} {c['all'] / depth:8.1f} {c['top'] / depth:8.1f} {c['kernels'] / depth:8.1f}")
    for kind in ("all", "top", "kernels"):
        print(
            f"  {kind:8s} fast/fused {counts['fast'][kind] / counts['fused'][kind]:.2f}x, "
            f"per_slice/fused {counts['per_slice'][kind] / counts['fused'][kind]:.2f}x"
        )
    print(
        "  first call of a new network (fused makes its buffers and per-step views then; later calls reuse them): "
        + ", ".join(f"{impl} {c['all'] / depth:.1f}" for impl, c in first.items())
        + f" all per slice; fast/fused {first['fast']['all'] / first['fused']['all']:.2f}x"
    )


def report_layers(net: TCuPGenerator, args: argparse.Namespace) -> None:
    depth, height, width = args.patch
    print(
        f"{'layer':6s} {'in':>4s} {'hid':>4s} {'size':>7s} "
        + " ".join(f"{i + ' s':>11s}" for i in IMPLEMENTATIONS)
        + "  fast/fused  slice/fused"
    )
    totals = [0.0] * len(IMPLEMENTATIONS)
    for name, cin, hidden, h, w in layer_shapes(net, height, width):
        layers = [ConvLSTM2d(cin, hidden, implementation=impl).to(args.device) for impl in IMPLEMENTATIONS]
        for layer in layers[1:]:
            layer.load_state_dict(layers[0].state_dict())
        x = torch.randn(depth, args.batch, cin, h, w, device=args.device, requires_grad=True)
        weights = torch.randn(depth, args.batch, hidden, h, w, device=args.device)
        secs = compare([layer_step(layer, x, weights) for layer in layers], args.reps)
        medians = [statistics.median(s) for s in secs]
        totals = [t + m for t, m in zip(totals, medians)]
        print(
            f"{name:6s} {cin:4d} {hidden:4d} {h:3d}x{w:<3d} "
            + " ".join(f"{m:11.4f}" for m in medians)
            + f"  {ratio(secs[1], secs[0]):9.2f}x  {ratio(secs[2], secs[0]):10.2f}x"
        )
    print(
        "all ConvLSTM layers (sum of medians): "
        + ", ".join(f"{i} {t:.3f} s" for i, t in zip(IMPLEMENTATIONS, totals))
        + f"; fast/fused {totals[1] / totals[0]:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of each implementation")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], help="timed patch size D H W (voxels)")
    parser.add_argument(
        "--count-patch", type=int, nargs=3, default=[32, 32, 32], help="patch D H W for the ATen call count (voxels)"
    )
    parser.add_argument("--batch", type=int, default=2, help="batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time; cpu: process CPU time (robust on a loaded machine with --threads 1)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (cuda: timings synchronise the device)")
    parser.add_argument("--skip-layers", action="store_true", help="time only the whole generator")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    CLOCK["now"] = CLOCKS[args.clock]
    CLOCK["device"] = torch.device(args.device).type
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, clock {args.clock}, "
        f"patch {args.patch}, batch {args.batch}, load average before: {os.getloadavg()}"
    )
    nets = generators(args.device)
    report_aten_calls(nets, args.count_patch, args.batch, args.device)
    if not args.skip_layers:
        report_layers(nets["fused"], args)
    x = torch.randn(args.batch, 4, *args.patch, device=args.device)
    target = torch.randn(args.batch, 3, *args.patch, device=args.device)
    secs = compare([net_step(net, x, target) for net in nets.values()], args.reps)
    print(
        "whole generator forward+backward: "
        + ", ".join(f"{impl} {statistics.median(s):.3f} s" for impl, s in zip(nets, secs))
        + f"; fast/fused {ratio(secs[1], secs[0]):.2f}x, per_slice/fused {ratio(secs[2], secs[0]):.2f}x"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
