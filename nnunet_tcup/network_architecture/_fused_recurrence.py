"""The fused ConvLSTM time loop (``implementation="fused"``): few ATen calls per slice, forward and backward.

Two layouts, each where it runs fastest on CPU (see :mod:`._recurrence_buffers`):

* the convolutions read and write channels-last ``(B, C, H, W)`` slices (oneDNN runs the hidden conv and its
  gradients 1.2-2.8x faster on them than on ``(B, C, H, W)``-contiguous slices): ``hidden``, the hidden conv's
  output and the gradients w.r.t. the gate pre-activations (``grads``);
* the cell's pointwise math runs on the **gate-planar** ``acts`` ``(T, B, 4, h, H, W)``, stored ``(T, B, 4, H, W,
  h)``: each gate block of a step is one channels-last slab, so ``sigmoid_`` on (o, i, f), ``tanh_`` on g and the
  products of a block with ``c`` run over long contiguous runs. On a channels-last ``(B, 4h, H, W)`` slice a gate
  block is runs of ``h`` values (16 at the top level), which made those calls 3-7x slower.

The layout changes twice per step and once per chunk, each time inside an op that runs anyway: the chunk's
input-conv gates are copied into ``acts`` (one copy per chunk), step t's hidden conv is added into ``acts[t]``,
and the backward copies step t's gate gradients from the planar coefficients to the channels-last ``grads``.
Gates in the internal order (o, i, f, g) (the caller permutes the weight rows once per forward; see
:func:`to_internal_order`).

Per time step the forward issues the hidden conv and 7 pointwise calls (add_, sigmoid_, tanh_, mul + addcmul_ for
c, tanh, mul for h; the first step has no conv and no add), the backward the hidden conv's input gradient, at most
5 pointwise calls and the copy, all on buffers and per-step views made once per shape and reused across calls
(:class:`~._recurrence_buffers.BufferPool`). There is no host synchronisation.
Everything that does not depend on the recurrence (activation derivatives, ``tanh(c)``, the coefficients ``M``,
``N = tanh(c) * o'`` and ``K = o * (1 - tanh(c)^2)``, the hidden-weight gradient) is computed once per chunk.

Under autocast the gates (and ``h``) stay in the autocast dtype, the cell state ``c`` and its gradient in float32.
The saved tensors are never modified, so ``backward(retain_graph=True)`` twice gives the same gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._recurrence_buffers import BufferKey, BufferPool, Lease, RecurrenceBuffers

__all__ = ["INTERNAL_ORDER", "FusedRecurrence", "to_internal_order"]

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


class FusedRecurrence(torch.autograd.Function):
    """forward(gates_x (T, B, 4h, H, W) internal order, w_h (4h, h, k, k), h0 (B, h, H, W) | None,
    c0 (B, h, H, W) | None, padding, pool) -> (h_seq (T, B, h, H, W) in the gates' dtype, c_T).

    The cell state (``c0``, ``c_T``) is float32, or float64 when the gates are float64.

    ``gates_x`` is the input-to-hidden conv of every step (bias included). It is copied into the buffer set leased
    from ``pool`` (a :class:`BufferPool`; None: fresh buffers, as under CUDA graph capture), whose per-step views
    were made when the set was first used; the set is held until this call's autograd context is freed. The outputs
    are fresh tensors. Not twice differentiable.
    """

    @staticmethod
    def forward(
        ctx,
        gates_x: Tensor,
        w_h: Tensor,
        h0: Tensor | None,
        c0: Tensor | None,
        padding: int,
        pool: BufferPool | None,
    ) -> tuple[Tensor, Tensor]:
        key = BufferKey.for_gates(gates_x)
        if pool is None or (gates_x.is_cuda and torch.cuda.is_current_stream_capturing()):
            buf = RecurrenceBuffers(key)
        else:
            ctx.lease = Lease()
            buf = pool.lease(key, ctx.lease)
        with torch.autocast(gates_x.device.type, enabled=False):
            buf.acts.copy_(gates_x.unflatten(2, (4, key.hidden)))  # to the gate-planar layout, once per chunk
            if h0 is not None:
                buf.hidden_t[0].copy_(h0)
            pre_t, sig_t, g_t, o_t, i_t, f_t = buf.pre_t, buf.sig_t, buf.g_t, buf.o_t, buf.i_t, buf.f_t
            c_t, hidden_t, tanh_c = buf.c_t, buf.hidden_t, buf.tanh_c
            c_prev = c0
            for t in range(key.steps):
                if t > 0 or h0 is not None:
                    pre_t[t].add_(_as_gate_blocks(_hidden_conv(hidden_t[t], w_h, padding), key.hidden))
                sig_t[t].sigmoid_()  # o, i, f: one contiguous run per sample
                g_t[t].tanh_()
                if c_prev is None:
                    torch.mul(i_t[t], g_t[t], out=c_t[t])
                else:
                    torch.mul(f_t[t], c_prev, out=c_t[t])
                    c_t[t].addcmul_(i_t[t], g_t[t])
                torch.tanh(c_t[t], out=tanh_c)
                torch.mul(o_t[t], tanh_c, out=hidden_t[t + 1])
                c_prev = c_t[t]
        ctx.save_for_backward(buf.acts, buf.cells, buf.hidden, w_h, c0)
        ctx.buffers = buf
        ctx.has_h0 = h0 is not None
        ctx.padding = padding
        # fresh outputs, never views of the buffers: h_seq channels-last per slice like the buffer (the encoder's
        # max-pool and the next level's input conv run 3-6x faster on that than on (B, C, H, W)-contiguous slices)
        return buf.h_seq.clone(), c_t[-1].clone(memory_format=torch.contiguous_format)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor | None, grad_c: Tensor | None):
        acts, cells, hidden, w_h, c0 = ctx.saved_tensors  # checks that no later forward overwrote them
        buf: RecurrenceBuffers = ctx.buffers
        buf.make_backward_buffers()
        steps = acts.shape[0]
        with torch.autocast(acts.device.type, enabled=False):
            _coefficients(buf, c0)
            coef_o_t, coef_ifg_t, coef_t, k_t = buf.coef_o_t, buf.coef_ifg_t, buf.coef_t, buf.coef_k_t
            grads_t, grad_blocks_t = buf.grads_t, buf.grad_blocks_t
            f_t, hidden_t, dc, dc_flat, dcf_buf = buf.f_t, buf.hidden_t, buf.grad_c, buf.grad_c_flat, buf.grad_c_next
            gh_t = None
            if grad_h is not None:
                buf.grad_hidden.copy_(grad_h)
                gh_t = buf.grad_hidden_t
            dcf = None if grad_c is None else dcf_buf.copy_(grad_c)  # dc_{t+1} * f_{t+1}, carried to step t
            dh_rec: Tensor | None = None
            for t in range(steps - 1, -1, -1):
                if gh_t is None:
                    dh = dh_rec
                else:
                    dh = gh_t[t] if dh_rec is None else gh_t[t].add_(dh_rec)
                if dh is None:  # only c_T is used, last step: no gradient through h
                    coef_o_t[t].zero_()
                    dc_flat.copy_(dcf)  # type: ignore[arg-type]
                else:
                    coef_o_t[t].mul_(dh)
                    if dcf is None:
                        torch.mul(dh, k_t[t], out=dc_flat)
                    else:
                        torch.addcmul(dcf, dh, k_t[t], out=dc_flat)
                coef_ifg_t[t].mul_(dc)
                dcf = torch.mul(dc_flat, f_t[t], out=dcf_buf)
                grad_blocks_t[t].copy_(coef_t[t])  # into slot t + 1, channels-last: what the convolutions read
                if t > 0 or ctx.has_h0:
                    dh_rec = _hidden_conv_input_grad(grads_t[t], hidden_t[t], w_h, ctx.padding)
            grad_w = None
            if ctx.needs_input_grad[1]:
                first = 0 if ctx.has_h0 else 1  # without h_0 the first step has no hidden conv
                grad_w = _weight_gradient(buf.grads[first:], hidden[first:-1], w_h, ctx.padding)
        grad_h0 = grad_c0 = None
        if ctx.has_h0 and ctx.needs_input_grad[2] and dh_rec is not None:
            grad_h0 = dh_rec.contiguous()  # a fresh convolution result, not a buffer
        if c0 is not None and ctx.needs_input_grad[3] and dcf is not None:
            grad_c0 = dcf.clone(memory_format=torch.contiguous_format)  # dcf is a buffer: hand out a copy
        return buf.grads, grad_w, grad_h0, grad_c0, None, None


def _coefficients(buf: RecurrenceBuffers, c0: Tensor | None) -> None:
    """Per-step backward coefficients, for all steps at once (no recurrence in them), written into ``buf``.

    ``buf.coef`` (T, B, 4, h, H, W) gate-planar in the gates' dtype gets ``[N, M_i, M_f, M_g]`` (the step loop
    multiplies them in place by dh and dc) and ``buf.coef_k`` (T, B, h, H, W) float32 gets ``K``, with
    ``N = tanh(c) o (1 - o)``, ``M_i = g i (1 - i)``, ``M_f = c_{t-1} f (1 - f)``, ``M_g = i (1 - g^2)``,
    ``K = o (1 - tanh(c)^2)``. ``buf.acts`` holds o, i, f, g (activations).
    """
    acts, cells, coef, tanh_c = buf.acts, buf.cells, buf.coef, buf.coef_k
    sig = acts[:, :, :3]
    torch.addcmul(sig, sig, sig, value=-1.0, out=coef[:, :, :3])  # s (1 - s) for o, i, f
    o, i, g = acts[:, :, 0], acts[:, :, 1], acts[:, :, 3]
    one = torch.ones((), dtype=acts.dtype, device=acts.device)
    torch.addcmul(one, g, g, value=-1.0, out=coef[:, :, 3])
    torch.tanh(cells, out=tanh_c)
    coef[:, :, 0].mul_(tanh_c)
    coef[:, :, 1].mul_(g)
    coef[:, :, 3].mul_(i)
    if acts.shape[0] > 1:
        coef[1:, :, 2].mul_(cells[:-1])
    if c0 is None:
        coef[0, :, 2].zero_()
    else:
        coef[0, :, 2].mul_(c0)
    torch.addcmul(one.to(cells.dtype), tanh_c, tanh_c, value=-1.0, out=tanh_c).mul_(o)  # K, in place of tanh(c)


def _as_gate_blocks(conv: Tensor, hidden: int) -> Tensor:
    """``(B, 4h, H, W) -> (B, 4, h, H, W)``: one ``as_strided`` call for a channels-last convolution result."""
    if not conv.is_contiguous(memory_format=torch.channels_last):
        return conv.unflatten(1, (4, hidden))
    batch, _, height, width = conv.shape
    s_b, s_c, s_h, s_w = conv.stride()
    return conv.as_strided((batch, 4, hidden, height, width), (s_b, hidden * s_c, s_c, s_h, s_w))


def _weight_gradient(outs: Tensor, prev: Tensor, w_h: Tensor, padding: int) -> Tensor:
    """dL/dW_h in one weight-gradient convolution, steps folded into the batch: ``outs`` (S, B, 4h, H, W) are the
    gradients w.r.t. the gate pre-activations of S steps, ``prev`` (S, B, h, H, W) those steps' hidden-conv inputs."""
    if outs.shape[0] == 0:
        return torch.zeros_like(w_h)
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
