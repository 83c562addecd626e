"""2D convolutional LSTM that scans the first axis of a sequence as time.

Tensor layout used throughout: **time-major** sequences ``(T, B, C, H, W)`` (T = slices along the depth axis,
B = batch, C = channels, H/W = in-plane rows/columns). Time-major keeps every time step ``x[t]`` contiguous and
lets in-plane 2D operations run on the free view ``x.flatten(0, 1)`` of shape ``(T*B, C, H, W)``.

Cell (no peepholes), with gates ordered ``(i, f, o, g)`` along the output channels of one 3x3 convolution over the
concatenation ``[x_t, h_{t-1}]``::

    i, f, o = sigmoid(.), g = tanh(.)     c_t = f * c_{t-1} + i * g     h_t = o * tanh(c_t)

Every implementation stores exactly that single convolution (``conv.weight`` of shape
``(4*hidden, input + hidden, k, k)`` and ``conv.bias``), so state dicts are interchangeable key for key:

- ``"fused"`` (default): splits the weight into its input part ``W_x`` and hidden part ``W_h``
  (``W * [x; h] = W_x * x + W_h * h``), runs ``W_x`` once over all slices (time folded into the batch) and keeps
  only the ``W_h`` convolution and a handful of fused pointwise calls inside the time loop, forward and backward
  (:mod:`._fused_recurrence`: one autograd node per sequence, a hand-written backward, no host syncs), on
  buffers (channels-last where convolutions read them, gate-planar for the pointwise math) whose per-step views
  are made once per shape and reused by later calls
  (:mod:`._recurrence_buffers`; each layer owns its ``buffer_pool``). 3.5x fewer ATen calls per slice than
  ``"fast"`` over a generator forward + backward (``benchmarks/bench_convlstm.py``).
- ``"fast"``: the same split with the previous hand-written loop (:mod:`._fast_recurrence`), kept as the reference
  that ``"fused"`` is measured and tested against.
- ``"per_slice"`` (and :class:`ConvLSTMCell`): the plain reference, one convolution over ``cat([x_t, h_{t-1}])``
  per slice, differentiated by autograd.

``"fast"`` processes long sequences in chunks (on CPU a few MB of gates, so the batched input conv works on
cache-sized blocks; on other devices all slices at once), ``"fused"`` all slices at once unless ``steps_per_chunk``
is given; ``(h, c)`` flow across chunk boundaries. Under ``torch.autocast`` the
gate convolutions may run in half precision; the cell state ``c`` is always accumulated in float32 (``h`` is
returned in the gate dtype).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._fast_recurrence import FastRecurrence
from ._fused_recurrence import FusedRecurrence, to_internal_order
from ._inference_recurrence import inference_recurrence, needs_autograd
from ._recurrence_buffers import BufferPool
from ._validation import choice, odd_kernel_size, positive_int

IMPLEMENTATIONS = ("fused", "fast", "per_slice")
CHUNK_BYTES = 4 * 2**20


def lstm_pointwise(gates: Tensor, c_prev: Tensor | None) -> tuple[Tensor, Tensor]:
    """Gate non-linearities and state update of one time step (the reference form).

    gates: ``(B, 4*hidden, H, W)`` pre-activations ordered (i, f, o, g); c_prev: ``(B, hidden, H, W)`` or None
    (zero state). Returns ``(h, c)``: ``c`` in float32 (float64 for float64 gates), ``h`` in the dtype of ``gates``.
    """
    hidden = gates.shape[1] // 4
    state_dtype = torch.promote_types(gates.dtype, torch.float32)
    sig = torch.sigmoid(gates[:, : 3 * hidden]).to(state_dtype)  # one kernel for i, f, o
    i, f, o = sig.split(hidden, dim=1)
    g = torch.tanh(gates[:, 3 * hidden :]).to(state_dtype)
    if c_prev is None:
        c = i * g
    else:
        c = torch.addcmul(f * c_prev.to(state_dtype), i, g)
    h = o * torch.tanh(c)
    if h.dtype != gates.dtype:
        h = h.to(gates.dtype)
    return h, c


def _check_sequence(x: Tensor, input_channels: int, c0: Tensor | None, hidden_channels: int) -> None:
    if x.dim() != 5:
        raise ValueError(f"ConvLSTM input must be a time-major 5D tensor (T, B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] != input_channels:
        raise ValueError(
            f"ConvLSTM expects {input_channels} input channels (dim 2 of (T, B, C, H, W)), got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("ConvLSTM input has zero time steps (T = 0)")
    if c0 is not None:
        expected = (x.shape[1], hidden_channels, x.shape[3], x.shape[4])
        if tuple(c0.shape) != expected:
            raise ValueError(
                f"initial cell state must have shape (B, hidden, H, W) = {expected}, got {tuple(c0.shape)}"
            )


class ConvLSTMCell(nn.Module):
    """Reference single-step cell: one conv over ``cat([x_t, h_{t-1}])`` -> (i, f, o, g)."""

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.input_channels = positive_int("ConvLSTMCell", "input_channels", input_channels)
        self.hidden_channels = positive_int("ConvLSTMCell", "hidden_channels", hidden_channels)
        kernel_size = odd_kernel_size("ConvLSTMCell", kernel_size)
        self.conv = nn.Conv2d(
            input_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )

    def forward(self, x_t: Tensor, state: tuple[Tensor | None, Tensor | None]) -> tuple[Tensor, Tensor]:
        """x_t: ``(B, C, H, W)``; state ``(h, c)`` (None = zeros). Returns the new ``(h, c)``."""
        h, c = state
        if h is None:
            h = x_t.new_zeros(x_t.shape[0], self.hidden_channels, *x_t.shape[2:])
        return lstm_pointwise(self.conv(torch.cat([x_t, h.to(x_t.dtype)], dim=1)), c)


def convlstm_per_slice(
    x: Tensor, weight: Tensor, bias: Tensor | None, padding: int, c0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Reference scan: the single conv over ``cat([x_t, h_{t-1}])`` at every slice.

    x: ``(T, B, C, H, W)``; weight ``(4h, C + h, k, k)``. Returns ``(h_seq (T, B, h, H, W), c_T (B, h, H, W))``.
    """
    hidden = weight.shape[0] // 4
    h = x.new_zeros(x.shape[1], hidden, x.shape[3], x.shape[4])
    c: Tensor | None = c0
    outputs: list[Tensor] = []
    for x_t in x.unbind(0):  # unbind: one gradient stack in backward instead of a full-size zero tensor per step
        gates = F.conv2d(torch.cat([x_t, h.to(x.dtype)], dim=1), weight, bias, padding=padding)
        h, c = lstm_pointwise(gates, c)
        outputs.append(h)
    assert c is not None  # T >= 1 (checked by ConvLSTM2d)
    return torch.stack(outputs), c


def chunk_steps(batch: int, gate_channels: int, height: int, width: int, budget_bytes: int | None = None) -> int:
    """Time steps per chunk so that one chunk of fp32 gate pre-activations stays within ``budget_bytes``
    (default: the module's ``CHUNK_BYTES``)."""
    budget = CHUNK_BYTES if budget_bytes is None else budget_bytes
    return max(1, budget // (4 * batch * gate_channels * height * width))


def _scan(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    padding: int,
    c0: Tensor | None,
    steps_per_chunk: int | None,
    recurrence: Callable[..., tuple[Tensor, Tensor]],
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[Tensor, Tensor]:
    """Chunked scan shared by "fused" and "fast": batched input conv per chunk, then ``recurrence`` over it.

    ``memory_format``: of the input and hidden weights (``torch.channels_last`` makes the convolutions run, and
    return their results, channels-last).
    """
    steps, batch, channels, height, width = x.shape
    four_hidden = weight.shape[0]
    if steps_per_chunk is None:  # cache-sized chunks help CPUs; accelerators want one big batched conv
        steps_per_chunk = chunk_steps(batch, four_hidden, height, width) if x.device.type == "cpu" else steps
    w_x = weight[:, :channels].contiguous(memory_format=memory_format)
    w_h: Tensor | None = None
    h: Tensor | None = None
    c = None if c0 is None else c0.to(torch.promote_types(x.dtype, torch.float32)).contiguous()
    outputs: list[Tensor] = []
    for x_chunk in x.split(steps_per_chunk, dim=0):  # split, not slicing: one gradient concat in backward
        n = x_chunk.shape[0]
        gates_x = F.conv2d(x_chunk.reshape(n * batch, channels, height, width), w_x, bias, padding=padding)
        gates_x = gates_x.contiguous(memory_format=memory_format).unflatten(0, (n, batch))
        if w_h is None:
            w_h = weight[:, channels:].to(gates_x.dtype).contiguous(memory_format=memory_format)
        h_seq, c = recurrence(gates_x, w_h, h, c, padding)
        h = h_seq[-1]
        outputs.append(h_seq)
    return (torch.cat(outputs) if len(outputs) > 1 else outputs[0]), c  # type: ignore[return-value]


def convlstm_fast(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    padding: int,
    c0: Tensor | None = None,
    steps_per_chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``implementation="fast"``: same result as :func:`convlstm_per_slice`, input conv batched over slices.

    x: ``(T, B, C, H, W)``; weight ``(4h, C + h, k, k)`` (single-conv form, split here into W_x and W_h).
    ``steps_per_chunk``: slices per chunk (default on CPU: :func:`chunk_steps`; elsewhere: all slices).
    """
    return _scan(x, weight, bias, padding, c0, steps_per_chunk, FastRecurrence.apply)


def convlstm_fused(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    padding: int,
    c0: Tensor | None = None,
    steps_per_chunk: int | None = None,
    pool: BufferPool | None = None,
) -> tuple[Tensor, Tensor]:
    """``implementation="fused"``: same contract and result as :func:`convlstm_fast`, fewer ATen calls per slice.

    The gate rows are permuted once per call to the internal order (o, i, f, g) (gradients flow back through the
    permutation to the stored weight, so state dicts are unchanged). ``pool``: where the loop's buffers (and their
    per-step views) are leased from and returned to, so repeated calls of one shape make no new views (None: fresh
    buffers per call; same results). Without autograd (``no_grad`` / ``inference_mode``, or nothing requiring grad)
    a lean loop runs instead, keeping only what inference needs (:mod:`._inference_recurrence`; same outputs to float
    rounding, no pooled buffers).
    """
    weight, bias = to_internal_order(weight, bias)

    def recurrence(gates_x: Tensor, w_h: Tensor, h: Tensor | None, c: Tensor | None, pad: int):
        if not needs_autograd(gates_x, w_h, h, c):
            return inference_recurrence(gates_x, w_h, h, c, pad)
        return FusedRecurrence.apply(gates_x, w_h, h, c, pad, pool)

    steps = x.shape[0] if steps_per_chunk is None else steps_per_chunk  # one chunk: no per-chunk overheads
    return _scan(x, weight, bias, padding, c0, steps, recurrence, torch.channels_last)


class ConvLSTM2d(nn.Module):
    """A ConvLSTM layer over a time-major sequence ``(T, B, C, H, W)``.

    Parameters live in ``self.conv`` (an ``nn.Conv2d(input + hidden, 4 * hidden, k)``): the single-conv form, so
    ``ConvLSTMCell(...).state_dict()`` loads into it unchanged and vice versa.
    ``implementation``: ``"fused"`` (default), ``"fast"`` or ``"per_slice"`` (see the module docstring).
    ``steps_per_chunk``: slices per batched input conv in the fused/fast forms (None: all slices for "fused"; for
    "fast" about 4 MB of gates per chunk on CPU, all slices on other devices).
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        implementation: str = "fused",
        steps_per_chunk: int | None = None,
    ) -> None:
        super().__init__()
        self.input_channels = positive_int("ConvLSTM2d", "input_channels", input_channels)
        self.hidden_channels = positive_int("ConvLSTM2d", "hidden_channels", hidden_channels)
        self.kernel_size = odd_kernel_size("ConvLSTM2d", kernel_size)
        self.conv = nn.Conv2d(
            input_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
        self.implementation = implementation
        if steps_per_chunk is not None:
            positive_int("ConvLSTM2d", "steps_per_chunk", steps_per_chunk)
        self.steps_per_chunk = steps_per_chunk
        self.buffer_pool = BufferPool()  # scratch buffers of the fused loop, reused across calls of one shape

    @property
    def implementation(self) -> str:
        return self._implementation

    @implementation.setter
    def implementation(self, value: str) -> None:
        self._implementation = choice("ConvLSTM2d", "implementation", value, IMPLEMENTATIONS)

    def forward(self, x: Tensor, c0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: ``(T, B, C, H, W)``; c0: initial cell state ``(B, hidden, H, W)`` or None (zeros; h_0 is always 0).

        Returns ``(h_seq, c_T)``: ``(T, B, hidden, H, W)`` in the compute dtype and ``(B, hidden, H, W)`` float32.
        ``"fused"`` returns ``h_seq`` stored channels-last per slice (``.contiguous()`` gives the other layout).
        """
        _check_sequence(x, self.input_channels, c0, self.hidden_channels)
        weight, bias, padding = self.conv.weight, self.conv.bias, self.kernel_size // 2
        if self._implementation == "per_slice":
            return convlstm_per_slice(x, weight, bias, padding, c0)
        if self._implementation == "fast":
            return convlstm_fast(x, weight, bias, padding, c0, self.steps_per_chunk)
        return convlstm_fused(x, weight, bias, padding, c0, self.steps_per_chunk, self.buffer_pool)

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half(), ...: buffers of the old device/dtype go
        self.buffer_pool.clear()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> ConvLSTM2d:
        """Switching between training and evaluation also empties the buffer pool, so that buffers of the training
        batch shape are not held while nnU-Net validates or predicts (and the other way round)."""
        if mode != self.training:
            self.buffer_pool.clear()
        return super().train(mode)

    @classmethod
    def from_cell(cls, cell: ConvLSTMCell, implementation: str = "fused") -> ConvLSTM2d:
        """A layer with a copy of the reference cell's weights."""
        layer = cls(
            cell.input_channels,
            cell.hidden_channels,
            cell.conv.kernel_size[0],
            bias=cell.conv.bias is not None,
            implementation=implementation,
        )
        layer.load_state_dict(cell.state_dict())
        return layer.to(cell.conv.weight.device)

    def extra_repr(self) -> str:
        return (
            f"{self.input_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, "
            f"implementation={self._implementation!r}"
        )
