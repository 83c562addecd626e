"""The fused ConvLSTM's time loop when nothing will be differentiated (``torch.no_grad`` / ``inference_mode``).

The training loop (:class:`~._fused_recurrence.FusedRecurrence`) keeps, for the backward, every step's gate
activations and cell state in chunk-long buffers (gate-planar ``acts`` and ``cells``, ``T`` steps each) and hands out
a copy of its hidden-state buffer. Inference needs none of that: only the current step's gates, one cell state and
the output ``h`` sequence. This loop therefore

* writes step t's pre-activations ``gates_x[t] + W_h * h_{t-1}`` straight into one step-sized gate-planar buffer
  (one pass that both adds and changes layout; the training loop first copies the whole chunk of ``gates_x`` into
  ``acts`` and then adds each step's hidden conv in place);
* updates one cell-state buffer in place (``c = f c + i g``) instead of storing ``c_t`` for every step;
* writes ``h_t`` directly into the returned sequence (channels-last per slice, like the training loop's output),
  with no clone at the end;
* on CPU runs the hidden convolution through oneDNN (``mkldnn_convolution``) for every level: ATen's heuristic sends
  batch-1 convolutions of at most 20,480 input values (the deep levels at nnU-Net's batch-1 sliding window) to its
  im2col fallback, several times slower there;
* on CPU (float32/float64) takes ``tanh`` from NumPy, whose vectorised ``tanh`` is 13x faster than PyTorch's here
  (52 vs 672 us for 262,144 float32 values, one thread) and as accurate (within 1.1e-7 relative of float64).
  (``2 sigmoid(2x) - 1`` is fast too but loses relative precision near 0: through the generator that gave 25x the
  float32 error of the training path against float64.)

Same operations in the same order as the training loop, so the outputs agree with it to float rounding.
Gates in the internal order (o, i, f, g) (see :func:`~._fused_recurrence.to_internal_order`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._fused_recurrence import _as_gate_blocks, _hidden_conv
from ._recurrence_buffers import _empty_gate_planar, empty_channels_last

__all__ = ["inference_recurrence", "needs_autograd"]


def needs_autograd(*tensors: Tensor | None) -> bool:
    """True when a backward may follow: grad mode is on and one of ``tensors`` requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _hidden_conv_inference(h: Tensor, weight: Tensor, padding: int) -> Tensor:
    """The hidden convolution (stride 1, no bias); oneDNN on CPU float32 whatever the size (see module docstring)."""
    if h.device.type == "cpu" and h.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(h, weight, None, [padding, padding], [1, 1], [1, 1], 1)
    return _hidden_conv(h, weight, padding)


def _tanh(src: Tensor, out: Tensor) -> None:
    """``out = tanh(src)`` (same shape; ``out`` may be ``src``): NumPy's on CPU float32/float64, else PyTorch's."""
    if src.device.type == "cpu" and src.dtype in (torch.float32, torch.float64) and out.dtype == src.dtype:
        np.tanh(src.numpy(), out=out.numpy())
    else:
        torch.tanh(src, out=out)


def inference_recurrence(
    gates_x: Tensor, w_h: Tensor, h0: Tensor | None, c0: Tensor | None, padding: int
) -> tuple[Tensor, Tensor]:
    """gates_x ``(T, B, 4h, H, W)`` internal order, w_h ``(4h, h, k, k)``, h0 / c0 ``(B, h, H, W)`` or None ->
    ``(h_seq (T, B, h, H, W)`` in the gates' dtype, channels-last per slice, ``c_T (B, h, H, W)`` float32, or float64
    for float64 gates). Call only without autograd (:func:`needs_autograd` False)."""
    steps, batch, four_hidden, height, width = gates_x.shape
    hidden, dtype, device = four_hidden // 4, gates_x.dtype, gates_x.device
    state_dtype = torch.promote_types(dtype, torch.float32)
    with torch.autocast(device.type, enabled=False):
        pre = _empty_gate_planar(1, batch, hidden, height, width, dtype, device)[0]  # (B, 4, h, H, W)
        sig, o, i, f, g = pre[:, :3], pre[:, 0], pre[:, 1], pre[:, 2], pre[:, 3]
        cell = empty_channels_last((batch,), hidden, height, width, state_dtype, device)
        tanh_c = torch.empty_like(cell)
        h_seq = empty_channels_last((steps, batch), hidden, height, width, dtype, device)
        if c0 is not None:
            cell.copy_(c0)
        h_prev = h0
        for t in range(steps):
            gates_t = _as_gate_blocks(gates_x[t], hidden)
            if h_prev is None:
                pre.copy_(gates_t)
            else:
                torch.add(gates_t, _as_gate_blocks(_hidden_conv_inference(h_prev, w_h, padding), hidden), out=pre)
            sig.sigmoid_()  # o, i, f
            _tanh(g, g)
            if t == 0 and c0 is None:
                torch.mul(i, g, out=cell)
            else:
                cell.mul_(f).addcmul_(i, g)
            _tanh(cell, tanh_c)
            torch.mul(o, tanh_c, out=h_seq[t])
            h_prev = h_seq[t]
    return h_seq, cell.clone(memory_format=torch.contiguous_format)
