"""2D convolutional LSTM that scans the first axis of a sequence as time.

Tensor layout used throughout: **time-major** sequences ``(T, B, C, H, W)`` (T = slices along the depth axis,
B = batch, C = channels, H/W = in-plane rows/columns). Time-major keeps every time step ``x[t]`` contiguous and
lets in-plane 2D operations run on the free view ``x.flatten(0, 1)`` of shape ``(T*B, C, H, W)``.

Cell (no peepholes), with gates ordered ``(i, f, o, g)`` along the output channels of one 3x3 convolution over the
concatenation ``[x_t, h_{t-1}]``::

    i, f, o = sigmoid(.), g = tanh(.)     c_t = f * c_{t-1} + i * g     h_t = o * tanh(c_t)

Both implementations below store exactly that single convolution (``conv.weight`` of shape
``(4*hidden, input + hidden, k, k)`` and ``conv.bias``), so their state dicts are interchangeable key for key:

- :class:`ConvLSTM2d` (``implementation="fast"``) splits the weight into its input part ``W_x`` and hidden part
  ``W_h`` (``W * [x; h] = W_x * x + W_h * h``), runs ``W_x`` once over all slices (time folded into the batch)
  and keeps only the ``W_h`` convolution inside the time loop; the step with ``h_0 = 0`` skips it. The time loop
  is a custom autograd function: it saves only the gate activations, the cell states and ``h``, computes the
  gate gradients with a few fused element-wise ops per step, and runs the ``W_h`` weight gradient once per chunk
  of slices instead of once per slice. Long sequences are processed in chunks of a few MB of gates (the batched
  input conv then works on cache-sized blocks); ``(h, c)`` flow across chunk boundaries.
- ``implementation="per_slice"`` (and :class:`ConvLSTMCell`) is the plain reference: one convolution over
  ``cat([x_t, h_{t-1}])`` per slice.

Under ``torch.autocast`` the gate convolutions may run in half precision; the cell state ``c`` is always
accumulated in float32 (``h`` is returned in the gate dtype).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMPLEMENTATIONS = ("fast", "per_slice")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def lstm_pointwise(gates: Tensor, c_prev: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Gate non-linearities and state update of one time step.

    gates: ``(B, 4*hidden, H, W)`` pre-activations ordered (i, f, o, g); c_prev: ``(B, hidden, H, W)`` or None
    (zero state). Returns ``(h, c)``: ``c`` in float32, ``h`` in the dtype of ``gates``.
    """
    hidden = gates.shape[1] // 4
    sig = torch.sigmoid(gates[:, : 3 * hidden]).float()  # one kernel for i, f, o
    i, f, o = sig.split(hidden, dim=1)
    g = torch.tanh(gates[:, 3 * hidden:]).float()
    if c_prev is None:
        c = i * g
    else:
        c = torch.addcmul(f * c_prev.float(), i, g)
    h = o * torch.tanh(c)
    if h.dtype != gates.dtype:
        h = h.to(gates.dtype)
    return h, c


def _check_sequence(x: Tensor, input_channels: int, c0: Optional[Tensor], hidden_channels: int) -> None:
    if x.dim() != 5:
        raise ValueError(f"ConvLSTM input must be a time-major 5D tensor (T, B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] != input_channels:
        raise ValueError(f"ConvLSTM expects {input_channels} input channels (dim 2 of (T, B, C, H, W)), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("ConvLSTM input has zero time steps (T = 0)")
    if c0 is not None:
        expected = (x.shape[1], hidden_channels, x.shape[3], x.shape[4])
        if tuple(c0.shape) != expected:
            raise ValueError(f"initial cell state must have shape (B, hidden, H, W) = {expected}, "
                             f"got {tuple(c0.shape)}")


class ConvLSTMCell(nn.Module):
    """Reference single-step cell: one conv over ``cat([x_t, h_{t-1}])`` -> (i, f, o, g)."""

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        _check_positive_int("input_channels", input_channels)
        _check_positive_int("hidden_channels", hidden_channels)
        _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the in-plane size, got {kernel_size}")
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                              padding=kernel_size // 2, bias=bias)

    def forward(self, x_t: Tensor, state: Tuple[Optional[Tensor], Optional[Tensor]]) -> Tuple[Tensor, Tensor]:
        """x_t: ``(B, C, H, W)``; state ``(h, c)`` (None = zeros). Returns the new ``(h, c)``."""
        h, c = state
        if h is None:
            h = x_t.new_zeros(x_t.shape[0], self.hidden_channels, *x_t.shape[2:])
        return lstm_pointwise(self.conv(torch.cat([x_t, h.to(x_t.dtype)], dim=1)), c)


def convlstm_per_slice(x: Tensor, weight: Tensor, bias: Optional[Tensor], padding: int,
                       c0: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Reference scan: the single conv over ``cat([x_t, h_{t-1}])`` at every slice.

    x: ``(T, B, C, H, W)``; weight ``(4h, C + h, k, k)``. Returns ``(h_seq (T, B, h, H, W), c_T (B, h, H, W))``.
    """
    hidden = weight.shape[0] // 4
    h = x.new_zeros(x.shape[1], hidden, x.shape[3], x.shape[4])
    c = c0
    outputs: List[Tensor] = []
    for x_t in x.unbind(0):  # unbind: one gradient stack in backward instead of a full-size zero tensor per step
        gates = F.conv2d(torch.cat([x_t, h.to(x.dtype)], dim=1), weight, bias, padding=padding)
        h, c = lstm_pointwise(gates, c)
        outputs.append(h)
    return torch.stack(outputs), c


class _Recurrence(torch.autograd.Function):
    """The time loop of the fast ConvLSTM over one chunk of time steps, with a hand-written backward.

    forward(gates_x (T, B, 4h, H, W), w_h (4h, h, k, k), h0 (B, h, H, W) or None, c0 (B, h, H, W) float32 or
    None, padding) -> (h_seq (T, B, h, H, W) in the dtype of gates_x, c_T float32).
    Saves per step only the gate activations, the float32 cell state and h. The backward runs one transposed conv
    per step (gradient to h_{t-1}) and one weight-gradient conv over the whole chunk instead of one small
    weight-gradient per step. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, gates_x: Tensor, w_h: Tensor, h0: Optional[Tensor], c0: Optional[Tensor],  # type: ignore
                padding: int):
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
                torch.tanh(pre[:, 3 * hidden:], out=act[:, 3 * hidden:])
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
    def backward(ctx, grad_h: Optional[Tensor], grad_c: Optional[Tensor]):  # type: ignore[override]
        acts, cells, h_seq, w_h, h0, c0 = ctx.saved_tensors
        steps, batch, four_hidden, height, width = acts.shape
        hidden = four_hidden // 4
        padding = ctx.padding
        grad_gates = torch.empty(acts.shape, dtype=acts.dtype, device=acts.device)
        one = torch.ones((), dtype=acts.dtype, device=acts.device)
        dc: Optional[Tensor] = None if grad_c is None else grad_c.float()
        dh_rec: Optional[Tensor] = None
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
                torch.addcmul(one, g, g, value=-1.0, out=deriv[:, 3 * hidden:])  # 1 - tanh^2 for g
                dg.mul_(deriv)
                dc = dc * f
                h_prev = h_seq[t - 1] if t > 0 else h0
                if h_prev is not None:  # gradient to h_{t-1}: the data-gradient of the hidden conv
                    dh_rec = torch.ops.aten.convolution_backward(
                        dg, h_prev, w_h, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1,
                        [True, False, False])[0].float()
        grad_w = grad_h0 = None
        if ctx.needs_input_grad[1]:
            if h0 is None and steps == 1:
                grad_w = torch.zeros_like(w_h)
            else:
                prev = h_seq[:-1] if h0 is None else torch.cat([h0.unsqueeze(0), h_seq[:-1]])
                outs = grad_gates[1:] if h0 is None else grad_gates
                grad_w = torch.ops.aten.convolution_backward(
                    outs.flatten(0, 1), prev.flatten(0, 1), w_h, None, [1, 1], [padding, padding],
                    [1, 1], False, [0, 0], 1, [False, True, False])[1]
        if h0 is not None and ctx.needs_input_grad[2]:
            grad_h0 = dh_rec.to(h0.dtype)
        grad_c0 = dc if (c0 is not None and ctx.needs_input_grad[3]) else None
        return grad_gates, grad_w, grad_h0, grad_c0, None


CHUNK_BYTES = 4 * 2 ** 20


def chunk_steps(batch: int, gate_channels: int, height: int, width: int, budget_bytes: int = CHUNK_BYTES) -> int:
    """Time steps per chunk so that one chunk of fp32 gate pre-activations stays within ``budget_bytes``."""
    return max(1, budget_bytes // (4 * batch * gate_channels * height * width))


def convlstm_fast(x: Tensor, weight: Tensor, bias: Optional[Tensor], padding: int,
                  c0: Optional[Tensor] = None, steps_per_chunk: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Same result as :func:`convlstm_per_slice` with the input-to-hidden conv batched over slices.

    x: ``(T, B, C, H, W)``; weight ``(4h, C + h, k, k)`` (single-conv form, split here into W_x and W_h).
    The sequence is processed in chunks of ``steps_per_chunk`` slices (default on CPU: :func:`chunk_steps`, a few
    MB of gates, so that the batched input conv and its gradient work on cache-sized blocks; elsewhere: all slices).
    """
    steps, batch, channels, height, width = x.shape
    four_hidden = weight.shape[0]
    if steps_per_chunk is None:  # cache-sized chunks help CPUs; accelerators want one big batched conv
        steps_per_chunk = chunk_steps(batch, four_hidden, height, width) if x.device.type == "cpu" else steps
    w_x = weight[:, :channels]
    w_h: Optional[Tensor] = None
    h: Optional[Tensor] = None
    c = None if c0 is None else c0.float().contiguous()
    outputs: List[Tensor] = []
    for x_chunk in x.split(steps_per_chunk, dim=0):  # split, not slicing: one gradient concat in backward
        n = x_chunk.shape[0]
        gates_x = F.conv2d(x_chunk.reshape(n * batch, channels, height, width), w_x, bias, padding=padding)
        gates_x = gates_x.contiguous().view(n, batch, four_hidden, height, width)
        if w_h is None:
            w_h = weight[:, channels:].to(gates_x.dtype).contiguous()
        h_seq, c = _Recurrence.apply(gates_x, w_h, h, c, padding)
        h = h_seq[-1]
        outputs.append(h_seq)
    return (torch.cat(outputs) if len(outputs) > 1 else outputs[0]), c


class ConvLSTM2d(nn.Module):
    """A ConvLSTM layer over a time-major sequence ``(T, B, C, H, W)``.

    Parameters live in ``self.conv`` (an ``nn.Conv2d(input + hidden, 4 * hidden, k)``): the single-conv form, so
    ``ConvLSTMCell(...).state_dict()`` loads into it unchanged and vice versa.
    ``implementation``: ``"fast"`` (batched input conv, default) or ``"per_slice"`` (reference scan).
    ``steps_per_chunk``: slices per batched input conv in the fast form (None: about 4 MB of gates per chunk on
    CPU, all slices on other devices).
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3, bias: bool = True,
                 implementation: str = "fast", steps_per_chunk: Optional[int] = None) -> None:
        super().__init__()
        _check_positive_int("input_channels", input_channels)
        _check_positive_int("hidden_channels", hidden_channels)
        _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the in-plane size, got {kernel_size}")
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                              padding=kernel_size // 2, bias=bias)
        self.implementation = implementation
        if steps_per_chunk is not None:
            _check_positive_int("steps_per_chunk", steps_per_chunk)
        self.steps_per_chunk = steps_per_chunk

    @property
    def implementation(self) -> str:
        return self._implementation

    @implementation.setter
    def implementation(self, value: str) -> None:
        if value not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {value!r}")
        self._implementation = value

    def forward(self, x: Tensor, c0: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """x: ``(T, B, C, H, W)``; c0: initial cell state ``(B, hidden, H, W)`` or None (zeros; h_0 is always 0).

        Returns ``(h_seq, c_T)``: ``(T, B, hidden, H, W)`` in the compute dtype and ``(B, hidden, H, W)`` float32.
        """
        _check_sequence(x, self.input_channels, c0, self.hidden_channels)
        if self._implementation == "per_slice":
            return convlstm_per_slice(x, self.conv.weight, self.conv.bias, self.kernel_size // 2, c0)
        return convlstm_fast(x, self.conv.weight, self.conv.bias, self.kernel_size // 2, c0, self.steps_per_chunk)

    @classmethod
    def from_cell(cls, cell: ConvLSTMCell, implementation: str = "fast") -> "ConvLSTM2d":
        """A layer with a copy of the reference cell's weights."""
        layer = cls(cell.input_channels, cell.hidden_channels, cell.conv.kernel_size[0],
                    bias=cell.conv.bias is not None, implementation=implementation)
        layer.load_state_dict(cell.state_dict())
        return layer.to(cell.conv.weight.device)

    def extra_repr(self) -> str:
        return (f"{self.input_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
                f"implementation={self._implementation!r}")
