"""The time loop of ``implementation="fast"`` (the previous default, kept as the reference for ``"fused"``).

Same contract as :class:`~nnunet_tcup.network_architecture._fused_recurrence.FusedRecurrence` but in the stored
gate order (i, f, o, g), with per-step views, casts and temporaries (about 3x the ATen calls per slice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nnunet_tcup.network_architecture._fused_recurrence import _hidden_conv_input_grad, _weight_gradient


class FastRecurrence(torch.autograd.Function):
    """The time loop of the fast ConvLSTM over one chunk of time steps, with a hand-written backward.

    forward(gates_x (T, B, 4h, H, W), w_h (4h, h, k, k), h0 (B, h, H, W) or None, c0 (B, h, H, W) float32 or
    None, padding) -> (h_seq (T, B, h, H, W) in the dtype of gates_x, c_T float32).
    Saves per step only the gate activations, the float32 cell state and h. The backward runs one transposed conv
    per step (gradient to h_{t-1}) and one weight-gradient conv over the whole chunk instead of one small
    weight-gradient per step. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, gates_x: Tensor, w_h: Tensor, h0: Tensor | None, c0: Tensor | None, padding: int):
        steps, batch, four_hidden, height, width = gates_x.shape
        hidden = four_hidden // 4
        dtype = gates_x.dtype
        acts = torch.empty(gates_x.shape, dtype=dtype, device=gates_x.device)
        cells = torch.empty(steps, batch, hidden, height, width, dtype=torch.float32, device=gates_x.device)
        h_seq = torch.empty(steps, batch, hidden, height, width, dtype=dtype, device=gates_x.device)
        with torch.autocast(gates_x.device.type, enabled=False):
            c = c0
            h_prev = h0
            for t in range(steps):
                if h_prev is None:
                    pre = gates_x[t]
                else:
                    pre = F.conv2d(h_prev, w_h, None, padding=padding)
                    pre += gates_x[t]
                act = acts[t]
                torch.sigmoid(pre[:, : 3 * hidden], out=act[:, : 3 * hidden])
                torch.tanh(pre[:, 3 * hidden :], out=act[:, 3 * hidden :])
                i, f, o, g = act.split(hidden, dim=1)
                if c is None:
                    torch.mul(i.float(), g.float(), out=cells[t])
                else:
                    torch.addcmul(f.float() * c, i.float(), g.float(), out=cells[t])
                c = cells[t]
                torch.mul(o, torch.tanh(c), out=h_seq[t])
                h_prev = h_seq[t]
        ctx.save_for_backward(acts, cells, h_seq, w_h, h0, c0)
        ctx.padding = padding
        return h_seq, cells[-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        acts, cells, h_seq, w_h, h0, c0 = ctx.saved_tensors
        steps, batch, four_hidden, height, width = acts.shape
        hidden = four_hidden // 4
        padding = ctx.padding
        grad_gates = torch.empty(acts.shape, dtype=acts.dtype, device=acts.device)
        one = torch.ones((), dtype=acts.dtype, device=acts.device)
        dc: Tensor | None = None if grad_c is None else grad_c.float()
        dh_rec: Tensor | None = None
        with torch.autocast(acts.device.type, enabled=False):
            for t in range(steps - 1, -1, -1):
                act = acts[t]
                i, f, o, g = act.split(hidden, dim=1)
                tanh_c = torch.tanh(cells[t])
                if grad_h is None:
                    dh = dh_rec
                elif dh_rec is None:
                    dh = grad_h[t].float()
                else:
                    dh = dh_rec + grad_h[t]
                dg = grad_gates[t]
                d_i, d_f, d_o, d_g = dg.split(hidden, dim=1)
                if dh is not None:
                    torch.mul(dh, tanh_c, out=d_o)
                    via_h = dh * o
                    via_h = torch.addcmul(via_h, via_h * tanh_c, tanh_c, value=-1.0)  # dh * o * (1 - tanh(c)^2)
                    dc = via_h if dc is None else dc + via_h
                else:
                    d_o.zero_()
                    if dc is None:
                        dc = torch.zeros_like(tanh_c)
                torch.mul(dc, g, out=d_i)
                c_prev = cells[t - 1] if t > 0 else c0
                if c_prev is None:
                    d_f.zero_()
                else:
                    torch.mul(dc, c_prev, out=d_f)
                torch.mul(dc, i, out=d_g)
                deriv = torch.addcmul(act, act, act, value=-1.0)  # s * (1 - s) for i, f, o
                torch.addcmul(one, g, g, value=-1.0, out=deriv[:, 3 * hidden :])  # 1 - tanh^2 for g
                dg.mul_(deriv)
                dc = dc * f
                h_prev = h_seq[t - 1] if t > 0 else h0
                if h_prev is not None:  # gradient to h_{t-1}: the data-gradient of the hidden conv
                    dh_rec = _hidden_conv_input_grad(dg, h_prev, w_h, padding).float()
        grad_w = grad_h0 = None
        if ctx.needs_input_grad[1]:
            grad_w = _hidden_weight_gradient(grad_gates, h_seq, h0, w_h, padding)
        if h0 is not None and dh_rec is not None and ctx.needs_input_grad[2]:
            grad_h0 = dh_rec.to(h0.dtype)
        grad_c0 = dc if (c0 is not None and ctx.needs_input_grad[3]) else None
        return grad_gates, grad_w, grad_h0, grad_c0, None


def _hidden_weight_gradient(grads: Tensor, h_seq: Tensor, h0: Tensor | None, w_h: Tensor, padding: int) -> Tensor:
    """dL/dW_h for a chunk given as (gradients of all steps, hidden outputs, h_0 or None)."""
    if h0 is None and grads.shape[0] == 1:
        return torch.zeros_like(w_h)
    prev = h_seq[:-1] if h0 is None else torch.cat([h0.unsqueeze(0), h_seq[:-1]])
    return _weight_gradient(grads[1:] if h0 is None else grads, prev, w_h, padding)
