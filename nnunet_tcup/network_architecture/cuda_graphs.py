"""CUDA graphs for fixed-shape inference: capture a network's forward once per input shape, then replay it.

The generator's recurrence launches thousands of small kernels per patch (a few per slice and ConvLSTM); at
inference nnU-Net calls the network with one patch shape for a whole case (sliding window, all mirrorings), so one
captured graph per (shape, dtype, autocast state) replays every call with a single launch. Used only when all of:
CUDA input, ``torch.is_grad_enabled()`` is False, the module is in eval mode, and graphs were switched on
(``TCuPGenerator(..., cuda_graphs=True)`` or ``generator.cuda_graphs = True``). Training never uses graphs.

Correctness rules this follows (PyTorch's CUDA-graph notes): warm-up on a side stream before capture; capture under
an autocast context with ``cache_enabled=False`` that repeats the caller's autocast state; copy each input into the
graph's static input and clone the static output (the next replay overwrites it). Parameters are read from their
memory at replay, so in-place weight updates (``load_state_dict``, as nnU-Net's fold ensembling does) are seen;
the generator puts its parameters' addresses in the key, so a moved or re-created parameter means a new capture
(the oldest of ``MAX_GRAPHS`` graphs is dropped). During capture the fused ConvLSTM allocates fresh buffers instead of
leasing from its layer's pool (:mod:`._recurrence_buffers`), so a graph owns all the memory it replays into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_GRAPHS = 4  # shapes kept at once (nnU-Net uses one patch shape per configuration)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    static_input: Tensor
    static_output: Tensor


def _autocast_key(device_type: str) -> tuple[bool, torch.dtype | None]:
    if not torch.is_autocast_enabled(device_type):
        return False, None
    return True, torch.get_autocast_dtype(device_type)


class GraphCache:
    """Captured graphs of one forward function, keyed by input shape, dtype, device and autocast state."""

    def __init__(self, max_graphs: int = MAX_GRAPHS) -> None:
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, _Graph] = {}

    def clear(self) -> None:
        """Forget every captured graph (after moving or re-creating parameters)."""
        self._graphs.clear()

    def __len__(self) -> int:
        return len(self._graphs)

    def run(self, forward: Callable[[Tensor], Tensor], x: Tensor, state_key: tuple = ()) -> Tensor:
        """``forward(x)`` through a captured graph for ``x``'s shape (captured on first use).

        ``state_key``: anything else the graph depends on, e.g. the parameters' addresses.
        """
        autocast = _autocast_key("cuda")
        key = (tuple(x.shape), x.dtype, x.device, autocast, state_key)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            entry = self._capture(forward, x, autocast)
            self._graphs[key] = entry
        entry.static_input.copy_(x)
        entry.graph.replay()
        return entry.static_output.clone()

    @staticmethod
    def _capture(forward: Callable[[Tensor], Tensor], x: Tensor, autocast: tuple[bool, torch.dtype | None]) -> _Graph:
        enabled, dtype = autocast
        static_input = x.clone()

        def context() -> torch.autocast:
            return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)

        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), context():
            for _ in range(2):  # warm-up: cuDNN algorithm choice and allocator state outside the capture
                forward(static_input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), context():
            static_output = forward(static_input)
        return _Graph(graph, static_input, static_output)
