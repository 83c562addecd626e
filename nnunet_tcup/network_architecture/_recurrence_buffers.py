"""Buffers of the fused ConvLSTM loop, with their per-step views made once and reused across calls.

Every per-step operand of the fused loop (:mod:`._fused_recurrence`) is a view of a chunk buffer, e.g. the sigmoid
gates of step ``t``. Making such a view is an ATen call (``as_strided``); made afresh for every call they were a third
of all ATen calls of a generator forward + backward. :class:`RecurrenceBuffers` makes the buffers and all their views
once per chunk shape; :class:`BufferPool` (one per :class:`~.convlstm.ConvLSTM2d`) hands a set out to one forward
and takes it back when that forward's autograd node is freed, so a set is never shared by two live graphs.

Lifetime rules (what makes reuse safe):

- a set is *leased* from the forward until the autograd context that saved it is garbage-collected (at the end of
  the forward under ``no_grad``; after the backward, when the graph is freed, in training). A second forward while
  a graph is alive gets another set. Should a set's saved tensors ever be overwritten anyway, autograd's version
  counter check raises in the backward: an error, never a wrong gradient;
- the outputs handed to the caller (``h_seq``, ``c_T``) are fresh tensors, never views of a buffer;
- sets made in inference mode are never used outside it (inference tensors cannot be saved for backward), and CUDA
  graph capture bypasses the pool (a captured graph must own its memory);
- at most ``max_idle`` idle sets are kept per pool (least recently used dropped first); ``clear()`` drops them all
  (the layer calls it when it is moved or cast, and when it switches between training and evaluation).

Layout: time-major. The tensors the convolutions read (``hidden``, ``grads``) and the states are logically
``(T, B, C, H, W)``, stored channels-last per slice (``(T, B, H, W, C)`` in memory: :func:`empty_channels_last`),
which makes the per-step hidden convolution and its gradients 1.2-2.8x faster on CPU (oneDNN) than the same
convolutions on ``(B, C, H, W)``-contiguous slices. The gates (``acts``) and the backward coefficients are
gate-planar (:func:`_empty_gate_planar`), in the internal order (o, i, f, g) of :mod:`._fused_recurrence`.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor


def empty_channels_last(
    leading: tuple[int, ...], channels: int, height: int, width: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """An uninitialised ``(*leading, C, H, W)`` tensor stored as ``(*leading, H, W, C)``: every 2D slice
    ``t[k, ...]`` is channels-last contiguous, the memory format oneDNN (CPU) and cuDNN convolutions run fastest on."""
    raw = torch.empty(*leading, height, width, channels, dtype=dtype, device=device)
    n = len(leading)
    return raw.permute(*range(n), n + 2, n, n + 1)


def steps_of(t: Tensor) -> list[Tensor]:
    """The views ``t[0], t[1], ...`` made with one ``as_strided`` call each (``select`` costs two ATen calls)."""
    size, stride, offset = t.shape[1:], t.stride()[1:], t.storage_offset()
    return [t.as_strided(size, stride, offset + k * t.stride(0)) for k in range(t.shape[0])]


@dataclass(frozen=True)
class BufferKey:
    """What a buffer set depends on: chunk length, batch, hidden channels, in-plane size, dtype, device, mode."""

    steps: int
    batch: int
    hidden: int
    height: int
    width: int
    dtype: torch.dtype
    device: torch.device
    inference_mode: bool

    @classmethod
    def for_gates(cls, gates_x: Tensor) -> BufferKey:
        steps, batch, four_hidden, height, width = gates_x.shape
        return cls(
            steps,
            batch,
            four_hidden // 4,
            height,
            width,
            gates_x.dtype,
            gates_x.device,
            torch.is_inference_mode_enabled(),
        )


class RecurrenceBuffers:
    """Forward buffers (made now) and backward buffers (made on the first backward) of one chunk shape.

    Forward, with ``T`` steps, ``h`` hidden channels and the state dtype float32 (float64 for float64 gates):

    - ``acts`` (T, B, 4, h, H, W), gate dtype, stored **gate-planar** ``(T, B, 4, H, W, h)``: every gate block of a
      step is a channels-last ``(B, h, H, W)`` slab, so the cell's pointwise math on a block runs over long
      contiguous runs (on a channels-last ``(B, 4h, H, W)`` slice a block is runs of ``h`` values, 3-7x slower on
      CPU). Holds the pre-activations, then the activations: sigmoid for o, i, f and tanh for g;
    - ``cells`` (T, B, h, H, W), state dtype: ``c_t``;
    - ``hidden`` (T + 1, B, h, H, W), gate dtype: ``hidden[0] = h_0`` (unused when h_0 is zero), ``hidden[t + 1] = h_t``;
    - ``tanh_c`` (B, h, H, W), state dtype: scratch for ``tanh(c_t)``.

    Backward: ``slots`` (T + 1 slots of ``B * 4h * H * W`` values, gate dtype) holds two things at once. Slot ``t``
    first holds step t's backward coefficients, gate-planar like ``acts`` (``coef``, multiplied in place by dh and
    dc in the step loop); the loop then copies them as step t's gradient w.r.t. the gate pre-activations into slot
    ``t + 1``, channels-last (``grads``, what the convolutions read). The loop runs from the last step down, so slot
    ``t + 1`` is overwritten only after step t + 1 has used its coefficients. Also ``coef_k`` (like ``cells``),
    ``grad_hidden`` (T, B, h, H, W) gate dtype (dL/dh_t, accumulated in place), ``grad_c`` (B, 1, h, H, W) and
    ``grad_c_next`` (B, h, H, W), state dtype.
    """

    def __init__(self, key: BufferKey) -> None:
        self.key = key
        steps, batch, hidden, height, width = key.steps, key.batch, key.hidden, key.height, key.width
        dtype, device = key.dtype, key.device
        self.state_dtype = torch.promote_types(dtype, torch.float32)
        self.acts = _empty_gate_planar(steps, batch, hidden, height, width, dtype, device)
        self.cells = empty_channels_last((steps, batch), hidden, height, width, self.state_dtype, device)
        self.hidden = empty_channels_last((steps + 1, batch), hidden, height, width, dtype, device)
        self.tanh_c = empty_channels_last((batch,), hidden, height, width, self.state_dtype, device)
        self.pre_t = steps_of(self.acts)  # (B, 4, h, H, W)
        self.sig_t = steps_of(self.acts[:, :, :3])  # o, i, f
        self.o_t, self.i_t, self.f_t, self.g_t = (steps_of(self.acts[:, :, k]) for k in range(4))
        self.c_t = steps_of(self.cells)
        self.hidden_t = steps_of(self.hidden)  # hidden_t[t] = h_{t-1}: the input of step t's hidden conv
        self.h_seq = self.hidden[1:]
        self._backward_made = False

    def make_backward_buffers(self) -> None:
        """Allocate the backward buffers and their views (once; inference never needs them)."""
        if self._backward_made:
            return
        key = self.key
        steps, batch, hidden, height, width = key.steps, key.batch, key.hidden, key.height, key.width
        device, state_dtype = key.device, self.state_dtype
        slots = _empty_gate_planar(steps + 1, batch, hidden, height, width, key.dtype, device)
        self.coef = slots[:steps]
        raw = slots.permute(0, 1, 2, 4, 5, 3).view(steps + 1, batch, height, width, 4 * hidden)  # same memory
        self.grads = raw.permute(0, 1, 4, 2, 3)[1:]  # (T, B, 4h, H, W), channels-last per step
        self.coef_k = empty_channels_last((steps, batch), hidden, height, width, state_dtype, device)
        self.grad_hidden = empty_channels_last((steps, batch), hidden, height, width, key.dtype, device)
        self.grad_c_flat = empty_channels_last((batch,), hidden, height, width, state_dtype, device)
        self.grad_c = self.grad_c_flat.unsqueeze(1)  # (B, 1, h, H, W): broadcasts over the i, f, g blocks
        self.grad_c_next = empty_channels_last((batch,), hidden, height, width, state_dtype, device)
        self.coef_t = steps_of(self.coef)  # (B, 4, h, H, W), gate-planar
        self.coef_o_t = steps_of(self.coef[:, :, 0])
        self.coef_ifg_t = steps_of(self.coef[:, :, 1:])
        self.grads_t = steps_of(self.grads)  # (B, 4h, H, W), channels-last
        self.grad_blocks_t = steps_of(self.grads.unflatten(2, (4, hidden)))  # the same, as (B, 4, h, H, W)
        self.coef_k_t = steps_of(self.coef_k)
        self.grad_hidden_t = steps_of(self.grad_hidden)
        self._backward_made = True


def _empty_gate_planar(
    steps: int, batch: int, hidden: int, height: int, width: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """An uninitialised ``(T, B, 4, h, H, W)`` tensor stored as ``(T, B, 4, H, W, h)``."""
    raw = torch.empty(steps, batch, 4, height, width, hidden, dtype=dtype, device=device)
    return raw.permute(0, 1, 2, 5, 3, 4)


class BufferPool:
    """Idle :class:`RecurrenceBuffers` by shape; :meth:`lease` hands one out until a given owner is freed."""

    def __init__(self, max_idle: int = 4) -> None:
        self.max_idle = max_idle
        self._idle: list[RecurrenceBuffers] = []  # least recently released first
        self._generation = 0  # bumped by clear(): sets leased before it are not taken back
        self._lock = threading.Lock()

    def lease(self, key: BufferKey, owner: object) -> RecurrenceBuffers:
        """A buffer set for ``key``, reserved until ``owner`` is garbage-collected."""
        with self._lock:
            for k in range(len(self._idle) - 1, -1, -1):
                if self._idle[k].key == key:
                    buffers = self._idle.pop(k)
                    break
            else:
                buffers = None
            generation = self._generation
        if buffers is None:
            buffers = RecurrenceBuffers(key)
        weakref.finalize(owner, self._release, buffers, generation)
        return buffers

    def _release(self, buffers: RecurrenceBuffers, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._idle.append(buffers)
            del self._idle[: max(0, len(self._idle) - self.max_idle)]

    def clear(self) -> None:
        """Drop every idle set; sets leased now are dropped when their owner is freed."""
        with self._lock:
            self._idle.clear()
            self._generation += 1

    def __len__(self) -> int:
        return len(self._idle)

    def __deepcopy__(self, memo: dict) -> BufferPool:
        return BufferPool(self.max_idle)  # buffers are scratch: a copy of a layer starts with an empty pool

    def __getstate__(self) -> dict:
        return {"max_idle": self.max_idle}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_idle"])  # type: ignore[misc]


class Lease:
    """An object whose lifetime is a buffer lease (stored on the autograd context: freed with the graph)."""

    __slots__ = ("__weakref__",)
