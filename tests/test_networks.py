"""Tests of the TCuP-GAN networks (generator, ConvLSTM, discriminator) on tiny CPU tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_tcup.network_architecture import (
    PAPER_HIDDEN_CHANNELS,
    ConvLSTM2d,
    ConvLSTMCell,
    PatchDiscriminator3D,
    TCuPGenerator,
    init_weights,
)

TINY = (3, 4, 5, 6, 7)  # five levels, narrow: cheap but the full topology


def _reference_scan(cell: ConvLSTMCell, x: torch.Tensor, c0: torch.Tensor) -> tuple:
    """Plain per-slice loop with the single conv over cat([x_t, h_{t-1}]); x: (T, B, C, H, W)."""
    h, c = None, c0
    outputs = []
    for t in range(x.shape[0]):
        h, c = cell(x[t], (h, c))
        outputs.append(h)
    return torch.stack(outputs), c


# ---------------------------------------------------------------- generator: shapes and parameter count
@pytest.mark.parametrize("shape", [(1, 4, 1, 5, 5), (2, 4, 5, 37, 45), (1, 4, 3, 1, 7), (1, 4, 1, 1, 1)])
def test_generator_shapes_odd_sizes_paper_widths(shape):
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3)
    out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 3, *shape[2:])
    assert out.is_contiguous()
    assert torch.isfinite(out).all()


def test_generator_shape_large_odd_patch_narrow_widths():
    net = TCuPGenerator(4, 3, TINY)
    out = net(torch.randn(1, 4, 20, 96, 80))
    assert out.shape == (1, 3, 20, 96, 80)


def test_generator_other_level_counts():
    for widths in [(8,), (4, 6), (2, 3, 4, 5, 6, 7)]:
        net = TCuPGenerator(2, 5, widths)
        assert net(torch.randn(1, 2, 2, 13, 9)).shape == (1, 5, 2, 13, 9)


def test_generator_parameter_count_matches_paper():
    net = TCuPGenerator(4, 3, PAPER_HIDDEN_CHANNELS)
    count = sum(p.numel() for p in net.parameters())
    assert count == 2_363_651, count  # layout documented in generator.py
    assert abs(count - 2.37e6) / 2.37e6 < 0.05
    assert not hasattr(net.decoder, "deep_supervision")  # the trainer handles deep supervision (off)


def test_generator_has_no_sigmoid_logits_unbounded():
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3, TINY)
    with torch.no_grad():
        net.head.bias.fill_(5.0)
    out = net(torch.randn(1, 4, 2, 8, 8))
    assert out.max() > 1.0  # logits, not probabilities


# ---------------------------------------------------------------- ConvLSTM: fast form == single-conv reference
@pytest.mark.parametrize("implementation, steps_per_chunk", [("fast", None), ("fast", 4), ("per_slice", None)])
def test_convlstm_matches_reference_cell(implementation, steps_per_chunk):
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 5)
    nn.init.normal_(cell.conv.weight, 0, 0.3)
    nn.init.normal_(cell.conv.bias, 0, 0.3)
    layer = ConvLSTM2d.from_cell(cell, implementation=implementation)
    layer.steps_per_chunk = steps_per_chunk
    x = torch.randn(6, 2, 3, 7, 9)
    c0 = torch.randn(2, 5, 7, 9)
    ref_h, ref_c = _reference_scan(cell, x, c0)
    h, c = layer(x, c0)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=0)
    torch.testing.assert_close(c, ref_c, atol=1e-5, rtol=0)
    # zero initial state as well
    ref_h0, _ = _reference_scan(cell, x, None)
    torch.testing.assert_close(layer(x)[0], ref_h0, atol=1e-5, rtol=0)


def test_convlstm_gradients_match_reference():
    torch.manual_seed(1)
    cell = ConvLSTMCell(2, 4)
    layer = ConvLSTM2d.from_cell(cell)
    x = torch.randn(5, 2, 2, 6, 5, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    weights = torch.randn(5, 2, 4, 6, 5)
    (_reference_scan(cell, x, None)[0] * weights).sum().backward()
    (layer(x2)[0] * weights).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layer.conv.weight.grad, cell.conv.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layer.conv.bias.grad, cell.conv.bias.grad, atol=1e-5, rtol=1e-4)


def test_convlstm_weights_interchangeable_with_single_conv_form():
    layer = ConvLSTM2d(3, 5)
    cell = ConvLSTMCell(3, 5)
    assert set(layer.state_dict()) == set(cell.state_dict()) == {"conv.weight", "conv.bias"}
    assert layer.conv.weight.shape == (20, 8, 3, 3)  # single conv over cat([x, h]) -> (i, f, o, g)
    cell.load_state_dict(layer.state_dict())  # and back
    x = torch.randn(3, 1, 3, 4, 4)
    torch.testing.assert_close(layer(x)[0], _reference_scan(cell, x, None)[0], atol=1e-5, rtol=0)


def test_generator_fast_and_per_slice_share_weights_and_outputs():
    torch.manual_seed(0)
    fast = TCuPGenerator(4, 3, TINY)
    slow = TCuPGenerator(4, 3, TINY, convlstm_implementation="per_slice")
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(1, 4, 4, 11, 13)
    torch.testing.assert_close(fast(x), slow(x), atol=1e-5, rtol=1e-5)
    fast.set_convlstm_implementation("per_slice")
    assert all(m.implementation == "per_slice" for m in fast.modules() if isinstance(m, ConvLSTM2d))


def test_convlstm_is_causal_along_time():
    torch.manual_seed(0)
    layer = ConvLSTM2d(2, 3)
    x = torch.randn(5, 1, 2, 4, 4)
    x2 = x.clone()
    x2[3:] += 1.0
    h1, h2 = layer(x)[0], layer(x2)[0]
    torch.testing.assert_close(h1[:3], h2[:3])
    assert not torch.allclose(h1[3:], h2[3:])


# ---------------------------------------------------------------- c skip, gradients, init
@pytest.mark.parametrize("level", [0, 2, 4])
def test_c_skip_changes_output(level):
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3, TINY).eval()
    x = torch.randn(1, 4, 3, 16, 16)
    base = net(x)

    def perturb(module, inputs, output):
        pooled, c_skip = output
        return pooled, c_skip + 1.0

    handle = net.encoder[level].register_forward_hook(perturb)
    try:
        changed = net(x)
    finally:
        handle.remove()
    assert (changed - base).abs().max() > 1e-4
    torch.testing.assert_close(net(x), base)


@pytest.mark.parametrize("j", [1, 2, 4])
def test_decoder_reads_the_encoder_h_sequence(j):
    """The h skip: decoder level j's input ends with the pooled h sequence of encoder level L-1-j, unchanged."""
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3, TINY).eval()
    levels = len(net.encoder)
    captured = {}
    hooks = [
        net.encoder[levels - 1 - j].register_forward_hook(lambda m, i, o: captured.__setitem__("h", o[0])),
        net.decoder[j].register_forward_pre_hook(lambda m, args: captured.__setitem__("u", args[0])),
    ]
    try:
        net(torch.randn(1, 4, 3, 16, 16))
    finally:
        for hook in hooks:
            hook.remove()
    skip, decoder_input = captured["h"], captured["u"]
    assert skip.abs().max() > 0
    torch.testing.assert_close(decoder_input[:, :, -skip.shape[2] :], skip)


def test_generator_scans_slices_first_to_last():
    """The recurrence runs along increasing slice index: changing slices >= 3 leaves the first ConvLSTM's h of
    slices 0..2 unchanged (a reversed scan would change them)."""
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3, TINY).eval()
    captured = []
    hook = net.encoder[0].lstm.register_forward_hook(lambda m, i, o: captured.append(o[0]))
    x = torch.randn(1, 4, 6, 8, 8)
    x2 = x.clone()
    x2[:, :, 3:] += 1.0
    try:
        net(x)
        net(x2)
    finally:
        hook.remove()
    h1, h2 = captured  # (T, B, C, H, W), T = slices
    torch.testing.assert_close(h1[:3], h2[:3])
    assert not torch.allclose(h1[3:], h2[3:])


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3, TINY)
    out = net(torch.randn(2, 4, 3, 16, 16))
    nn.functional.binary_cross_entropy_with_logits(out, torch.rand_like(out)).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_init_weights_sets_forget_bias_and_is_reusable():
    net = TCuPGenerator(4, 3, TINY)
    net.apply(init_weights)
    lstm = net.encoder[1].lstm
    hidden = lstm.hidden_channels
    assert torch.all(lstm.conv.bias[hidden : 2 * hidden] == 1.0)
    assert torch.all(lstm.conv.bias[:hidden] == 0.0)
    assert torch.all(net.head.bias == 0.0)


# ---------------------------------------------------------------- autocast
def test_convlstm_cell_state_stays_fp32_under_autocast():
    torch.manual_seed(0)
    layer = ConvLSTM2d(3, 4)
    x = torch.randn(4, 2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, c = layer(x, torch.zeros(2, 4, 6, 6))
    assert c.dtype == torch.float32
    assert h.dtype == torch.bfloat16
    assert torch.isfinite(h.float()).all() and torch.isfinite(c).all()
    torch.testing.assert_close(h.float(), layer(x)[0], atol=0.05, rtol=0)


def test_generator_under_autocast_is_finite_and_trains():
    torch.manual_seed(0)
    net = TCuPGenerator(4, 3, TINY)
    x = torch.randn(1, 4, 3, 12, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        loss = nn.functional.binary_cross_entropy_with_logits(out, torch.rand(out.shape))
    assert torch.isfinite(out.float()).all()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


# ---------------------------------------------------------------- discriminator
@pytest.mark.parametrize(
    "shape, expected",
    [
        ((2, 7, 3, 16, 16), (2, 1, 3, 1, 1)),
        ((1, 7, 1, 16, 16), (1, 1, 1, 1, 1)),
        ((1, 7, 2, 64, 64), (1, 1, 2, 4, 4)),
        ((1, 7, 2, 37, 45), (1, 1, 2, 3, 3)),
    ],
)
def test_discriminator_patch_map_per_slice(shape, expected):
    disc = PatchDiscriminator3D(7).train()
    out = disc(torch.randn(*shape))
    assert out.shape == expected
    out.mean().backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_layout():
    disc = PatchDiscriminator3D(7)
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 1]
    assert all(c.kernel_size == (1, 3, 3) for c in convs)
    assert [c.stride for c in convs] == [(1, 2, 2)] * 4 + [(1, 1, 1)]
    assert sum(isinstance(m, nn.InstanceNorm3d) and m.affine for m in disc.modules()) == 4
    assert sum(isinstance(m, nn.Tanh) for m in disc.modules()) == 4
    assert [m.p for m in disc.modules() if isinstance(m, nn.Dropout)] == [0.2] * 4


# ---------------------------------------------------------------- informative errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_channels=0, num_classes=3), "input_channels"),
        (dict(input_channels=4, num_classes=-1), "num_classes"),
        (dict(input_channels=4, num_classes=3, hidden_channels=()), "empty"),
        (dict(input_channels=4, num_classes=3, hidden_channels=(16, 0)), "positive"),
        (dict(input_channels=4, num_classes=3, hidden_channels=(16, 2.5)), "positive"),
        (dict(input_channels=4, num_classes=3, hidden_channels=16), "sequence"),
        (dict(input_channels=4, num_classes=3, convlstm_implementation="cuda"), "implementation"),
    ],
)
def test_generator_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TCuPGenerator(**kwargs)


def test_generator_input_errors():
    net = TCuPGenerator(4, 3, TINY)
    with pytest.raises(ValueError, match="5D"):
        net(torch.randn(4, 8, 8, 8))
    with pytest.raises(ValueError, match="4 input channels"):
        net(torch.randn(1, 2, 2, 8, 8))
    with pytest.raises(ValueError, match="empty axis"):
        net(torch.randn(1, 4, 0, 8, 8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_channels=0), "input_channels"),
        (dict(input_channels=7, features=()), "empty"),
        (dict(input_channels=7, features=(16, -2)), "positive"),
        (dict(input_channels=7, dropout=1.5), "dropout"),
    ],
)
def test_discriminator_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchDiscriminator3D(**kwargs)


def test_discriminator_and_convlstm_input_errors():
    with pytest.raises(ValueError, match="5D"):
        PatchDiscriminator3D(7)(torch.randn(7, 3, 16, 16))
    with pytest.raises(ValueError, match="7 channels"):
        PatchDiscriminator3D(7)(torch.randn(1, 4, 3, 16, 16))
    with pytest.raises(ValueError, match="hidden_channels"):
        ConvLSTM2d(3, 0)
    with pytest.raises(ValueError, match="odd"):
        ConvLSTM2d(3, 4, kernel_size=2)
    layer = ConvLSTM2d(3, 4)
    with pytest.raises(ValueError, match="time-major 5D"):
        layer(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="initial cell state"):
        layer(torch.randn(2, 1, 3, 4, 4), torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError, match="implementation"):
        layer.implementation = "magic"


@pytest.mark.parametrize("steps_per_chunk", [None, 1, 2])
def test_convlstm_gradients_through_cell_states_match_reference(steps_per_chunk):
    torch.manual_seed(2)
    cell = ConvLSTMCell(3, 4)
    layer = ConvLSTM2d.from_cell(cell)
    layer.steps_per_chunk = steps_per_chunk  # chunk boundaries pass (h, c) on and gradients back
    x = torch.randn(4, 2, 3, 5, 6)
    c0 = torch.randn(2, 4, 5, 6)
    w_h, w_c = torch.randn(4, 2, 4, 5, 6), torch.randn(2, 4, 5, 6)
    grads = []
    for run in (lambda xx, cc: _reference_scan(cell, xx, cc), lambda xx, cc: layer(xx, cc)):
        xx, cc = x.clone().requires_grad_(True), c0.clone().requires_grad_(True)
        h, c = run(xx, cc)
        ((h * w_h).sum() + (c * w_c).sum()).backward()
        grads.append((xx.grad, cc.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layer.conv.weight.grad, cell.conv.weight.grad, atol=1e-5, rtol=1e-4)


def test_convlstm_single_step_and_only_cell_output_used():
    torch.manual_seed(3)
    cell = ConvLSTMCell(2, 3)
    layer = ConvLSTM2d.from_cell(cell)
    x = torch.randn(1, 1, 2, 4, 4)
    h_ref, c_ref = _reference_scan(cell, x, None)
    h, c = layer(x)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=0)
    c.sum().backward()  # gradient through c_T only
    c_ref.sum().backward()
    torch.testing.assert_close(layer.conv.weight.grad, cell.conv.weight.grad, atol=1e-5, rtol=1e-4)
