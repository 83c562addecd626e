"""The fused ConvLSTM's inference loop (no_grad / inference_mode) against its training loop and the references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_tcup.network_architecture import ConvLSTM2d, ConvLSTMCell, TCuPGenerator
from nnunet_tcup.network_architecture import _inference_recurrence as inference
from nnunet_tcup.network_architecture._fused_recurrence import _hidden_conv

TINY = (3, 4, 5, 6, 7)


def _pair(cin: int, hidden: int, dtype: torch.dtype, steps_per_chunk: int | None) -> tuple[ConvLSTM2d, ConvLSTM2d]:
    """A fused layer and a per-slice reference with the same random parameters."""
    cell = ConvLSTMCell(cin, hidden)
    nn.init.normal_(cell.conv.weight, 0, 0.3)
    nn.init.normal_(cell.conv.bias, 0, 0.3)
    fused = ConvLSTM2d.from_cell(cell).to(dtype)
    fused.steps_per_chunk = steps_per_chunk
    return fused, ConvLSTM2d.from_cell(cell, implementation="per_slice").to(dtype)


def _training_loop(layer: ConvLSTM2d, x: torch.Tensor, c0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loop's forward (grad enabled, input requiring grad)."""
    h, c = layer(x.clone().requires_grad_(True), c0)
    return h.detach(), c.detach()


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("steps_per_chunk", [None, 1, 3])
@pytest.mark.parametrize("with_c0", [False, True])
def test_inference_loop_equals_training_loop_and_reference(context, steps_per_chunk, with_c0):
    """float64, across chunk boundaries, with and without an initial cell state: identical to 1e-12."""
    torch.manual_seed(0)
    fused, reference = _pair(3, 5, torch.float64, steps_per_chunk)
    x = torch.randn(7, 2, 3, 5, 9, dtype=torch.float64)
    c0 = torch.randn(2, 5, 5, 9, dtype=torch.float64) if with_c0 else None
    with context():
        h, c = fused(x, c0)
    assert len(fused.buffer_pool) == 0  # the training loop (pooled buffers) was not used
    assert h.dtype == c.dtype == torch.float64 and c.is_contiguous()
    for want_h, want_c in (_training_loop(fused, x, c0), _training_loop(reference, x, c0)):
        torch.testing.assert_close(h, want_h, atol=1e-12, rtol=0)
        torch.testing.assert_close(c, want_c, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(1, 1, 2, 1, 1), (5, 1, 4, 7, 3), (9, 2, 6, 11, 13)])
def test_inference_loop_matches_training_loop_in_float32(shape):
    steps, batch, cin, height, width = shape
    torch.manual_seed(1)
    fused, _ = _pair(cin, 4, torch.float32, None)
    x, c0 = torch.randn(*shape), torch.randn(batch, 4, height, width)
    with torch.inference_mode():
        got = fused(x, c0)
    for g, w in zip(got, _training_loop(fused, x, c0)):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-6)


def test_generator_inference_equals_its_training_forward_and_training_still_works():
    """eval generator, batch 1 (nnU-Net's sliding window): inference logits equal the training loop's forward;
    afterwards a training step runs, with gradients on every parameter."""
    torch.manual_seed(2)
    net = TCuPGenerator(4, 3, TINY).eval()
    x = torch.randn(1, 4, 6, 21, 17)
    with torch.inference_mode():
        logits = net(x)
    with torch.enable_grad():
        training_forward = net(x.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(logits, training_forward, atol=1e-5, rtol=1e-5)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    nn.functional.binary_cross_entropy_with_logits(net(x), torch.rand(1, 3, 6, 21, 17)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    optimizer.step()
    with torch.inference_mode():
        assert not torch.allclose(net(x), logits)  # the step changed the weights the inference loop reads


def test_needs_autograd_dispatch():
    x = torch.randn(2)
    w = torch.randn(2, requires_grad=True)
    assert inference.needs_autograd(x, w, None)
    assert not inference.needs_autograd(x, None)  # nothing requires grad: no graph would be built
    with torch.no_grad():
        assert not inference.needs_autograd(x, w)


def test_frozen_layer_with_grad_enabled_uses_the_inference_loop():
    """Grad mode on but nothing requires grad (a frozen network): no graph, so the lean loop runs."""
    torch.manual_seed(3)
    fused, reference = _pair(2, 3, torch.float64, None)
    fused.requires_grad_(False)
    x = torch.randn(4, 1, 2, 5, 6, dtype=torch.float64)
    h, c = fused(x)
    assert not h.requires_grad and len(fused.buffer_pool) == 0
    torch.testing.assert_close(h, reference(x)[0].detach(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(1, 64, 20, 14), (1, 16, 9, 7), (2, 8, 5, 5)])
def test_cpu_hidden_conv_through_onednn_equals_the_convolution(shape):
    """Batch-1 maps below ATen's 20,480-value threshold (which would take the im2col fallback) included."""
    torch.manual_seed(4)
    h = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4 * shape[1], shape[1], 3, 3).contiguous(memory_format=torch.channels_last)
    got = inference._hidden_conv_inference(h, weight, 1)
    torch.testing.assert_close(got, _hidden_conv(h, weight, 1), atol=1e-4, rtol=1e-5)
    assert got.shape == (shape[0], 4 * shape[1], shape[2], shape[3])


def test_inference_loop_under_cpu_bf16_autocast_keeps_a_float32_state():
    torch.manual_seed(5)
    fused, _ = _pair(3, 4, torch.float32, None)
    x, c0 = torch.randn(6, 1, 3, 5, 7), torch.randn(1, 4, 5, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            h, c = fused(x, c0)
        want_h, want_c = _training_loop(fused, x, c0)
    assert h.dtype == torch.bfloat16 and c.dtype == torch.float32
    torch.testing.assert_close(c, want_c, atol=1e-5, rtol=0)
    torch.testing.assert_close(h.float(), want_h.float(), atol=1e-2, rtol=0)


def test_generator_inference_is_as_accurate_as_the_training_path_against_float64():
    """float32 error of the inference forward against the float64 forward stays within a few times the training
    path's (a cheaper but less accurate tanh, e.g. 2 sigmoid(2x) - 1, gave 25-35x)."""
    torch.manual_seed(6)
    net = TCuPGenerator(4, 3, TINY).eval()
    x = torch.randn(1, 4, 6, 21, 17)
    with torch.inference_mode():
        fast = net(x)
    training = net(x.clone().requires_grad_(True)).detach()
    with torch.inference_mode():
        exact = net.double()(x.double())
    inference_error = (fast.double() - exact).abs().max().item()
    training_error = (training.double() - exact).abs().max().item()
    assert inference_error <= max(5 * training_error, 1e-5), (inference_error, training_error)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_tanh_on_strided_gate_blocks_in_place_and_out_of_place(dtype):
    """The g block of a gate-planar step buffer (a strided view), in place; and into a separate channels-last
    tensor. NumPy's tanh for float32/float64, PyTorch's for the rest."""
    from nnunet_tcup.network_architecture._recurrence_buffers import _empty_gate_planar, empty_channels_last

    torch.manual_seed(7)
    with torch.inference_mode():
        pre = _empty_gate_planar(1, 1, 5, 4, 3, dtype, torch.device("cpu"))[0]
        pre.copy_(torch.randn(pre.shape) * 3)
        before = pre.clone()
        inference._tanh(pre[:, 3], pre[:, 3])
        atol = 2e-7 if dtype != torch.bfloat16 else 1e-2
        torch.testing.assert_close(pre[:, 3], torch.tanh(before[:, 3]), atol=atol, rtol=0)
        torch.testing.assert_close(pre[:, :3], before[:, :3], atol=0, rtol=0)  # the other gates untouched
        out = empty_channels_last((1,), 5, 4, 3, dtype, torch.device("cpu"))
        inference._tanh(before[:, 0], out)
        torch.testing.assert_close(out, torch.tanh(before[:, 0]), atol=atol, rtol=0)
