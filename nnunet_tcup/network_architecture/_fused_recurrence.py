"""The fused ConvLSTM time loop (``implementation="fused"``): few ATen calls per slice, forward and backward.

Tensor layout: time-major ``(T, B, 4*hidden, H, W)`` gate pre-activations in the **internal gate order
(o, i, f, g)** (the caller permutes the weight rows once per forward; see :func:`to_internal_order`), so that

* forward: the three sigmoid gates are one contiguous slice (one in-place ``sigmoid_``) and ``g`` one ``tanh_``;
* backward: the gradients of ``i, f, g`` are one contiguous ``(B, 3, hidden, H, W)`` block, which is
  ``dc * M`` with a per-step coefficient ``M = [g*i', c_prev*f', i*g']`` computed for all steps at once.

Per time step the forward issues the hidden conv and 7 pointwise calls (add_, sigmoid_, tanh_, mul + addcmul_ for c,
tanh, mul for h; the first step has no conv and no add), all writing into buffers allocated once per chunk; the
backward issues the hidden conv's input gradient and at most 5 pointwise calls. Per-step views are made once per
chunk with one ``as_strided`` call each (:func:`steps_of`). There is no host synchronisation.
Everything that does not depend on the recurrence (activation derivatives, ``tanh(c)``, the coefficients ``M``,
``N = tanh(c) * o'`` and ``K = o * (1 - tanh(c)^2)``, the hidden-weight gradient) is computed once per chunk.

Under autocast the gates (and ``h``) stay in the autocast dtype, the cell state ``c`` and its gradient in float32.
The saved tensors are never modified, so ``backward(retain_graph=True)`` twice gives the same gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

INTERNAL_ORDER = (2, 0, 1, 3)  # internal block k holds PyTorch-order gate INTERNAL_ORDER[k]: (o, i, f, g)


def to_internal_order(weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Rows of the gate conv ``(4*hidden, ...)`` from the stored order (i, f, o, g) to the internal (o, i, f, g)."""
    hidden = weight.shape[0] // 4

    def reorder(t: Tensor) -> Tensor:
        return torch.cat([t[k * hidden : (k + 1) * hidden] for k in INTERNAL_ORDER])

    return reorder(weight), None if bias is None else reorder(bias)


def _hidden_conv(h: Tensor, weight: Tensor, padding: int) -> Tensor:
    """``conv2d(h, weight, padding=padding)`` (stride 1, no bias) with one dispatcher layer less."""
    return torch.convolution(h, weight, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1)


def _hidden_conv_input_grad(grad: Tensor, h: Tensor, weight: Tensor, padding: int) -> Tensor:
    """Gradient w.r.t. ``h`` of :func:`_hidden_conv`: ``(B, 4h, H, W) -> (B, h, H, W)``."""
    return torch.ops.aten.convolution_backward(
        grad, h, weight, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1, [True, False, False]
    )[0]


def steps_of(t: Tensor) -> list[Tensor]:
    """The views ``t[0], t[1], ...`` made with one ``as_strided`` call each (``select`` costs two ATen calls)."""
    size, stride, offset = t.shape[1:], t.stride()[1:], t.storage_offset()
    return [t.as_strided(size, stride, offset + k * t.stride(0)) for k in range(t.shape[0])]


class FusedRecurrence(torch.autograd.Function):
    """forward(gates_x (T, B, 4h, H, W) internal order, w_h (4h, h, k, k), h0 (B, h, H, W) | None,
    c0 (B, h, H, W) | None, padding) -> (h_seq (T, B, h, H, W) in the gates' dtype, c_T).

    The cell state (``c0``, ``c_T``) is float32, or float64 when the gates are float64.

    ``gates_x`` is the input-to-hidden conv of every step (bias included): a temporary that the forward overwrites
    with the gate activations (saved for the backward), so no second buffer of gates is allocated. Not twice
    differentiable.
    """

    @staticmethod
    def forward(
        ctx, gates_x: Tensor, w_h: Tensor, h0: Tensor | None, c0: Tensor | None, padding: int
    ) -> tuple[Tensor, Tensor]:
        steps, batch, four_hidden, height, width = gates_x.shape
        hidden = four_hidden // 4
        device, dtype = gates_x.device, gates_x.dtype
        state_dtype = torch.promote_types(dtype, torch.float32)  # float32 under autocast, float64 for float64
        acts = gates_x  # a temporary of the caller, overwritten with the activations
        cells = torch.empty(steps, batch, hidden, height, width, dtype=state_dtype, device=device)
        h_seq = torch.empty(steps, batch, hidden, height, width, dtype=dtype, device=device)
        tanh_c = torch.empty(batch, hidden, height, width, dtype=state_dtype, device=device)
        blocks = acts.view(steps, batch, 4, hidden, height, width)
        pre_t = steps_of(acts)
        sig_t, tanh_t = steps_of(acts[:, :, : 3 * hidden]), steps_of(acts[:, :, 3 * hidden :])
        o_t, i_t, f_t = (steps_of(blocks[:, :, k]) for k in range(3))
        g_t = tanh_t  # the g block is the tanh slice
        c_t, h_t = steps_of(cells), steps_of(h_seq)
        with torch.autocast(device.type, enabled=False):
            h_prev, c_prev = h0, c0
            for t in range(steps):
                if h_prev is not None:
                    pre_t[t].add_(_hidden_conv(h_prev, w_h, padding))
                sig_t[t].sigmoid_()
                tanh_t[t].tanh_()
                if c_prev is None:
                    torch.mul(i_t[t], g_t[t], out=c_t[t])
                else:
                    torch.mul(f_t[t], c_prev, out=c_t[t])
                    c_t[t].addcmul_(i_t[t], g_t[t])
                torch.tanh(c_t[t], out=tanh_c)
                torch.mul(o_t[t], tanh_c, out=h_t[t])
                h_prev, c_prev = h_t[t], c_t[t]
        ctx.save_for_backward(acts, cells, h_seq, w_h, h0, c0)
        ctx.padding = padding
        return h_seq, cells[-1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        acts, cells, h_seq, w_h, h0, c0 = ctx.saved_tensors
        steps, batch, four_hidden, height, width = acts.shape
        hidden = four_hidden // 4
        with torch.autocast(acts.device.type, enabled=False):
            grads, k_coef = _coefficients(acts, cells, c0)
            g_blocks = grads.view(steps, batch, 4, hidden, height, width)
            d_o, d_ifg = steps_of(g_blocks[:, :, 0]), steps_of(g_blocks[:, :, 1:])
            grad_t, k_t = steps_of(grads), steps_of(k_coef)
            f_t = steps_of(acts.view(steps, batch, 4, hidden, height, width)[:, :, 2])
            gh_t = None if grad_h is None else steps_of(grad_h)
            h_prev_t = [h0] + steps_of(h_seq[:-1]) if steps > 1 else [h0]
            dc = torch.empty(batch, 1, hidden, height, width, dtype=cells.dtype, device=acts.device)
            dc4 = dc.view(batch, hidden, height, width)
            dcf_buf = torch.empty_like(dc4)
            dcf = None if grad_c is None else grad_c.to(cells.dtype)  # dc_{t+1} * f_{t+1}, carried to step t
            dh_sum = torch.empty_like(dc4) if gh_t is not None else None
            dh_rec: Tensor | None = None
            for t in range(steps - 1, -1, -1):
                dh = _hidden_gradient(gh_t, t, dh_rec, dh_sum)
                if dh is None:  # only c_T is used, last step: no gradient through h
                    d_o[t].zero_()
                    dc4.copy_(dcf)  # type: ignore[arg-type]
                else:
                    d_o[t].mul_(dh)
                    if dcf is None:
                        torch.mul(dh, k_t[t], out=dc4)
                    else:
                        torch.addcmul(dcf, dh, k_t[t], out=dc4)
                d_ifg[t].mul_(dc)
                dcf = torch.mul(dc4, f_t[t], out=dcf_buf)
                if h_prev_t[t] is not None:
                    dh_rec = _hidden_conv_input_grad(grad_t[t], h_prev_t[t], w_h, ctx.padding)
            grad_w = _hidden_weight_gradient(grads, h_seq, h0, w_h, ctx.padding) if ctx.needs_input_grad[1] else None
        grad_h0 = dh_rec if (h0 is not None and ctx.needs_input_grad[2]) else None
        grad_c0 = dcf if (c0 is not None and ctx.needs_input_grad[3]) else None
        return grads, grad_w, grad_h0, grad_c0, None


def _hidden_gradient(gh_t: list[Tensor] | None, t: int, dh_rec: Tensor | None, out: Tensor | None) -> Tensor | None:
    """dL/dh_t = the output gradient at step t + the gradient through the next step's hidden conv."""
    if gh_t is None:
        return dh_rec
    if dh_rec is None:
        return gh_t[t]
    return torch.add(gh_t[t], dh_rec, out=out)


def _coefficients(acts: Tensor, cells: Tensor, c0: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-step backward coefficients, for all steps at once (no recurrence in them).

    Returns ``grads`` (T, B, 4h, H, W) in the gates' dtype holding ``[N, M_i, M_f, M_g]`` (the step loop multiplies
    them in place by dh and dc) and ``K`` (T, B, h, H, W) float32, with ``N = tanh(c) o (1 - o)``,
    ``M_i = g i (1 - i)``, ``M_f = c_{t-1} f (1 - f)``, ``M_g = i (1 - g^2)``, ``K = o (1 - tanh(c)^2)``.
    """
    steps, batch, four_hidden, height, width = acts.shape
    hidden = four_hidden // 4
    grads = torch.empty_like(acts)
    sig = acts[:, :, : 3 * hidden]
    torch.addcmul(sig, sig, sig, value=-1.0, out=grads[:, :, : 3 * hidden])  # s (1 - s) for o, i, f
    blocks = acts.view(steps, batch, 4, hidden, height, width)
    g_blocks = grads.view(steps, batch, 4, hidden, height, width)
    o, i, g = blocks[:, :, 0], blocks[:, :, 1], blocks[:, :, 3]
    torch.addcmul(torch.ones((), dtype=acts.dtype, device=acts.device), g, g, value=-1.0, out=g_blocks[:, :, 3])
    tanh_c = torch.tanh(cells)
    g_blocks[:, :, 0].mul_(tanh_c)
    g_blocks[:, :, 1].mul_(g)
    g_blocks[:, :, 3].mul_(i)
    if steps > 1:
        g_blocks[1:, :, 2].mul_(cells[:-1])
    if c0 is None:
        g_blocks[0, :, 2].zero_()
    else:
        g_blocks[0, :, 2].mul_(c0)
    k_coef = torch.addcmul(
        torch.ones((), dtype=cells.dtype, device=acts.device), tanh_c, tanh_c, value=-1.0, out=tanh_c
    ).mul_(o)
    return grads, k_coef


def _hidden_weight_gradient(grads: Tensor, h_seq: Tensor, h0: Tensor | None, w_h: Tensor, padding: int) -> Tensor:
    """dL/dW_h for the whole chunk in one weight-gradient convolution (steps folded into the batch)."""
    if h0 is None and grads.shape[0] == 1:
        return torch.zeros_like(w_h)
    prev = h_seq[:-1] if h0 is None else torch.cat([h0.unsqueeze(0), h_seq[:-1]])
    outs = grads[1:] if h0 is None else grads
    return torch.ops.aten.convolution_backward(
        outs.flatten(0, 1),
        prev.flatten(0, 1),
        w_h,
        None,
        [1, 1],
        [padding, padding],
        [1, 1],
        False,
        [0, 0],
        1,
        [False, True, False],
    )[1]
