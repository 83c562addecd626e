"""Fast ConvLSTM (batched input conv + hand-written recurrence) vs the per-slice single-conv form.

Forward + backward (loss = sum of h * random weights, so every output gets a gradient) at the paper widths:
every ConvLSTM of TCuPGenerator(4, 3) at the in-plane size it runs at for a D x H x W patch (default 32 x 64 x 64,
batch 2), then the whole generator built both ways (same weights). Both forms are timed alternately in the same run
(one of each per repetition); figures are medians of per-repetition ratios per_slice / fast.

Usage: python benchmarks/bench_convlstm.py [--reps 7] [--patch 32 64 64] [--batch 2] [--threads 0] [--clock wall]
On a machine shared with other jobs use --threads 1 --clock cpu (process CPU time) and say so.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, List, Tuple

import torch

from nnunet_tcup.network_architecture import ConvLSTM2d, TCuPGenerator


def layer_shapes(net: TCuPGenerator, height: int, width: int) -> List[Tuple[str, int, int, int, int]]:
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


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = {"now": time.perf_counter}


def timed(fn: Callable[[], None]) -> float:
    start = CLOCK["now"]()
    fn()
    return CLOCK["now"]() - start


def compare(fast: Callable[[], None], slow: Callable[[], None], reps: int) -> Tuple[float, float, float]:
    """Alternate the two; return (median fast s, median slow s, median per-rep slow/fast)."""
    fast()
    slow()
    t_fast, t_slow = [], []
    for _ in range(reps):
        t_fast.append(timed(fast))
        t_slow.append(timed(slow))
    ratios = [s / f for s, f in zip(t_slow, t_fast)]
    return statistics.median(t_fast), statistics.median(t_slow), statistics.median(ratios)


def layer_step(layer: ConvLSTM2d, x: torch.Tensor, weights: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        h, _ = layer(x)
        (h * weights).sum().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions of each form")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], help="patch size D H W (voxels)")
    parser.add_argument("--batch", type=int, default=2, help="batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: process CPU time (robust on a loaded machine with --threads 1)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    CLOCK["now"] = CLOCKS[args.clock]
    depth, height, width = args.patch
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, clock {args.clock}, patch {args.patch}, "
          f"batch {args.batch}, load average before: {os.getloadavg()}")

    net = TCuPGenerator(4, 3)
    total_fast = total_slow = 0.0
    print(f"{'layer':6s} {'in':>4s} {'hid':>4s} {'size':>7s} {'fast s':>8s} {'slice s':>8s} {'slice/fast':>10s}")
    for name, cin, hidden, h, w in layer_shapes(net, height, width):
        fast_layer = ConvLSTM2d(cin, hidden)
        slow_layer = ConvLSTM2d(cin, hidden, implementation="per_slice")
        slow_layer.load_state_dict(fast_layer.state_dict())
        x = torch.randn(depth, args.batch, cin, h, w, requires_grad=True)
        weights = torch.randn(depth, args.batch, hidden, h, w)
        t_fast, t_slow, ratio = compare(layer_step(fast_layer, x, weights), layer_step(slow_layer, x, weights),
                                        args.reps)
        total_fast += t_fast
        total_slow += t_slow
        print(f"{name:6s} {cin:4d} {hidden:4d} {h:3d}x{w:<3d} {t_fast:8.4f} {t_slow:8.4f} {ratio:9.2f}x")
    print(f"all ConvLSTM layers (sum of medians): fast {total_fast:.3f} s, per-slice {total_slow:.3f} s, "
          f"ratio {total_slow / total_fast:.2f}x")

    slow_net = TCuPGenerator(4, 3, convlstm_implementation="per_slice")
    slow_net.load_state_dict(net.state_dict())
    x = torch.randn(args.batch, 4, depth, height, width)
    target = torch.randn(args.batch, 3, depth, height, width)

    def net_step(model: TCuPGenerator) -> Callable[[], None]:
        def step() -> None:
            model.zero_grad(set_to_none=True)
            (model(x) * target).sum().backward()
        return step

    t_fast, t_slow, ratio = compare(net_step(net), net_step(slow_net), args.reps)
    print(f"whole generator forward+backward: fast {t_fast:.3f} s, per-slice {t_slow:.3f} s, "
          f"per-slice/fast median ratio {ratio:.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
