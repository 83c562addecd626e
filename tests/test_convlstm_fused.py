"""The fused ConvLSTM (default) against the references: values, gradients, autocast, ATen calls, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from nnunet_tcup.network_architecture import (
    IMPLEMENTATIONS,
    ConvLSTM2d,
    ConvLSTMCell,
    PatchDiscriminator3D,
    TCuPGenerator,
)
from nnunet_tcup.network_architecture._fused_recurrence import INTERNAL_ORDER

TINY = (3, 4, 5, 6, 7)


def _layers(cin: int, hidden: int, dtype: torch.dtype, steps_per_chunk: int | None = None) -> dict[str, ConvLSTM2d]:
    """One layer per implementation with the same random (not init_weights) parameters."""
    cell = ConvLSTMCell(cin, hidden)
    nn.init.normal_(cell.conv.weight, 0, 0.3)
    nn.init.normal_(cell.conv.bias, 0, 0.3)
    layers = {impl: ConvLSTM2d.from_cell(cell, implementation=impl).to(dtype) for impl in IMPLEMENTATIONS}
    for layer in layers.values():
        layer.steps_per_chunk = steps_per_chunk
    return layers


def _run(
    layer: ConvLSTM2d, x: torch.Tensor, c0: torch.Tensor | None, loss_kind: str, w_h: torch.Tensor, w_c: torch.Tensor
) -> list[torch.Tensor | None]:
    """Outputs and every gradient of one forward + backward."""
    layer.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    cc = None if c0 is None else c0.clone().requires_grad_(True)
    h, c = layer(xx, cc)
    losses = {
        "h": (h * w_h).sum(),
        "c": (c * w_c).sum(),
        "both": (h * w_h).sum() + (c * w_c).sum(),
        "h_sum": h.sum(),
    }  # h_sum: an expanded (stride 0) output gradient
    losses[loss_kind].backward()
    return [
        h.detach(),
        c.detach(),
        xx.grad,
        None if cc is None else cc.grad,
        layer.conv.weight.grad,
        layer.conv.bias.grad,
    ]


@pytest.mark.parametrize("steps_per_chunk", [None, 1, 2, 3])
@pytest.mark.parametrize("with_c0", [False, True])
@pytest.mark.parametrize("loss_kind", ["h", "c", "both", "h_sum"])
def test_fused_equals_per_slice_in_float64(steps_per_chunk, with_c0, loss_kind):
    """Exact formulas: in float64 every output and gradient agrees to 1e-10, across chunk boundaries."""
    torch.manual_seed(0)
    layers = _layers(3, 5, torch.float64, steps_per_chunk)
    x = torch.randn(7, 2, 3, 5, 9, dtype=torch.float64)
    c0 = torch.randn(2, 5, 5, 9, dtype=torch.float64) if with_c0 else None
    w_h, w_c = torch.randn(7, 2, 5, 5, 9, dtype=torch.float64), torch.randn(2, 5, 5, 9, dtype=torch.float64)
    reference = _run(layers["per_slice"], x, c0, loss_kind, w_h, w_c)
    fused = _run(layers["fused"], x, c0, loss_kind, w_h, w_c)
    assert fused[1].dtype == torch.float64
    for got, want in zip(fused, reference):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("shape", [(1, 1, 2, 1, 1), (5, 3, 4, 7, 3), (9, 2, 6, 11, 13)])
def test_fused_matches_both_references_in_float32(shape):
    """Odd sizes, batch > 1, one step: outputs and gradients within 1e-5 of "fast" and "per_slice"."""
    torch.manual_seed(1)
    steps, batch, cin, height, width = shape
    layers = _layers(cin, 4, torch.float32)
    x = torch.randn(*shape)
    c0 = torch.randn(batch, 4, height, width)
    w_h, w_c = torch.randn(steps, batch, 4, height, width), torch.randn(batch, 4, height, width)
    fused = _run(layers["fused"], x, c0, "both", w_h, w_c)
    for impl in ("fast", "per_slice"):
        for got, want in zip(fused, _run(layers[impl], x, c0, "both", w_h, w_c)):
            scale = max(1.0, want.abs().max().item())  # weight gradients sum over every voxel and step
            torch.testing.assert_close(got, want, atol=1e-5 * scale, rtol=0)


def test_generator_end_to_end_fused_equals_per_slice():
    """Whole generator, odd patch, batch 2: logits and every parameter gradient agree (float64: 1e-10)."""
    torch.manual_seed(2)
    fused = TCuPGenerator(4, 3, TINY).double()
    reference = TCuPGenerator(4, 3, TINY, convlstm_implementation="per_slice").double()
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, 5, 19, 13, dtype=torch.float64)
    target = torch.rand(2, 3, 5, 19, 13, dtype=torch.float64)
    outputs = []
    for net in (fused, reference):
        logits = net(x)
        nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
        outputs.append((logits.detach(), {n: p.grad for n, p in net.named_parameters()}))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], atol=1e-10, rtol=0)
    assert outputs[0][1].keys() == outputs[1][1].keys()
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(grad, outputs[1][1][name], atol=1e-10, rtol=0, msg=name)


def test_generator_default_is_fused_and_state_dict_keys_unchanged():
    net = TCuPGenerator(4, 3, TINY)
    assert {m.implementation for m in net.modules() if isinstance(m, ConvLSTM2d)} == {"fused"}
    keys = set(TCuPGenerator(4, 3, TINY, convlstm_implementation="per_slice").state_dict())
    assert set(net.state_dict()) == keys  # checkpoints load across implementations
    assert sorted(INTERNAL_ORDER) == [0, 1, 2, 3] and INTERNAL_ORDER != (0, 1, 2, 3)  # permuted, not stored


def test_cell_state_stays_float32_under_cpu_bf16_autocast():
    torch.manual_seed(3)
    layers = _layers(3, 4, torch.float32)
    x = torch.randn(6, 2, 3, 5, 7)
    c0 = torch.randn(2, 4, 5, 7)
    results = {}
    for impl in ("fused", "fast"):
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h, c = layers[impl](xx, c0)
        (h.float().sum() + c.sum()).backward()
        results[impl] = (h, c, xx.grad)
    h, c, grad = results["fused"]
    assert h.dtype == torch.bfloat16 and c.dtype == torch.float32
    assert not torch.equal(c, c.bfloat16().float())  # accumulated in float32, not rounded through bf16
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(c, results["fast"][1], atol=1e-5, rtol=0)  # same bf16 gates, same fp32 state
    torch.testing.assert_close(h.float(), results["fast"][0].float(), atol=1e-2, rtol=0)
    torch.testing.assert_close(grad, results["fast"][2], atol=2e-2, rtol=0)


def test_backward_twice_with_retain_graph_gives_the_same_gradients():
    """The backward reads the saved activations without modifying them."""
    torch.manual_seed(4)
    layer = ConvLSTM2d(2, 3)
    x = torch.randn(4, 1, 2, 5, 5, requires_grad=True)
    h, c = layer(x, torch.randn(1, 3, 5, 5))
    loss = h.square().sum() + c.sum()
    loss.backward(retain_graph=True)
    first = (x.grad.clone(), layer.conv.weight.grad.clone())
    x.grad = None
    layer.zero_grad(set_to_none=True)
    loss.backward()
    torch.testing.assert_close(x.grad, first[0], atol=0, rtol=0)
    torch.testing.assert_close(layer.conv.weight.grad, first[1], atol=0, rtol=0)


def _grads_of(layer: ConvLSTM2d, x: torch.Tensor, c0: torch.Tensor, w_h: torch.Tensor) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    xx, cc = x.clone().requires_grad_(True), c0.clone().requires_grad_(True)
    h, c = layer(xx, cc)
    ((h * w_h).sum() + c.square().sum()).backward()
    return [h.detach(), c.detach(), xx.grad, cc.grad, layer.conv.weight.grad, layer.conv.bias.grad]


def test_reused_buffers_give_the_same_results_as_fresh_ones():
    """One layer called again and again (buffers and views reused) agrees with the reference on every call,
    across chunk boundaries (two buffer shapes: full and last chunk)."""
    torch.manual_seed(8)
    layers = _layers(3, 4, torch.float64, steps_per_chunk=3)
    fused, reference = layers["fused"], layers["per_slice"]
    sets = []
    for call in range(3):
        x = torch.randn(7, 2, 3, 6, 5, dtype=torch.float64)
        c0 = torch.randn(2, 4, 6, 5, dtype=torch.float64)
        w_h = torch.randn(7, 2, 4, 6, 5, dtype=torch.float64)
        for got, want in zip(_grads_of(fused, x, c0, w_h), _grads_of(reference, x, c0, w_h)):
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=f"call {call}")
        sets.append({id(b) for b in fused.buffer_pool._idle})
    # chunks of 3 + 3 + 1 steps, all live in one graph: three sets, made by the first call and reused after it
    assert sorted(b.key.steps for b in fused.buffer_pool._idle) == [1, 3, 3]
    assert sets[0] == sets[1] == sets[2]


def test_two_live_graphs_never_share_buffers():
    """Two forwards before either backward (as when a loss sums two passes) get separate buffer sets."""
    torch.manual_seed(9)
    layers = _layers(2, 3, torch.float64)
    fused, reference = layers["fused"], layers["per_slice"]
    x1, x2 = torch.randn(2, 5, 1, 2, 4, 4, dtype=torch.float64)
    expected = []
    for net in (fused, reference):
        net.zero_grad(set_to_none=True)
        a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
        h1, _ = net(a)
        h2, _ = net(b)
        (h1.square().sum() + (h2 * 3).sin().sum()).backward()
        expected.append([h1.detach(), h2.detach(), a.grad, b.grad, net.conv.weight.grad])
        del h1, h2
    for got, want in zip(*expected):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    assert len(fused.buffer_pool) == 2


def test_outputs_are_not_overwritten_by_the_next_call():
    """Under no_grad (the inference loop, no pooled buffers) and in training (buffers back to the pool after the
    backward) the returned tensors are never views of reused memory."""
    torch.manual_seed(10)
    layer = ConvLSTM2d(2, 3)
    x1, x2 = torch.randn(2, 4, 1, 2, 5, 5)
    with torch.no_grad():
        h1, c1 = layer(x1)
        kept = (h1.clone(), c1.clone())
        layer(x2)
        assert len(layer.buffer_pool) == 0  # inference leases nothing
    torch.testing.assert_close(h1, kept[0], atol=0, rtol=0)
    torch.testing.assert_close(c1, kept[1], atol=0, rtol=0)
    h1, c1 = layer(x1.clone().requires_grad_(True))
    (h1.sum() + c1.sum()).backward()
    h1, c1 = h1.detach(), c1.detach()  # the graph goes: its buffer set returns to the pool
    kept = (h1.clone(), c1.clone())
    h2, c2 = layer(x2.clone().requires_grad_(True))
    (h2.sum() + c2.sum()).backward()
    del h2, c2
    assert len(layer.buffer_pool) == 1  # the same set served both training calls
    torch.testing.assert_close(h1, kept[0], atol=0, rtol=0)
    torch.testing.assert_close(c1, kept[1], atol=0, rtol=0)


def test_inference_mode_buffers_are_not_used_for_training_and_casts_clear_the_pool():
    torch.manual_seed(11)
    layer = ConvLSTM2d(2, 3)
    x = torch.randn(3, 1, 2, 4, 4)
    with torch.inference_mode():
        layer(x)
    assert len(layer.buffer_pool) == 0  # the inference loop makes its own step-sized buffers
    h, c = layer(x.clone().requires_grad_(True))  # would raise "Inference tensors cannot be saved for backward"
    (h.sum() + c.sum()).backward()
    del h, c
    assert {b.key.inference_mode for b in layer.buffer_pool._idle} == {False}
    layer.double()
    assert len(layer.buffer_pool) == 0
    h, _ = layer(x.double())
    assert h.dtype == torch.float64
    copy = __import__("copy").deepcopy(layer)
    assert len(copy.buffer_pool) == 0
    layer.eval()  # nnU-Net's validation: the training-shape buffers are let go
    assert len(layer.buffer_pool) == 0
    h, c = layer(x.double().requires_grad_(True))
    h.sum().backward()
    del h, c
    layer.eval()  # no switch, nothing dropped
    assert len(layer.buffer_pool) == 1
    layer.train()
    assert len(layer.buffer_pool) == 0


def test_a_training_loop_reuses_one_buffer_set_per_layer():
    """Iterations of forward + backward + step (the graph freed at the end of each) make no new buffers."""
    torch.manual_seed(12)
    net = TCuPGenerator(4, 3, TINY)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, target = torch.randn(2, 4, 5, 12, 10), torch.rand(2, 3, 5, 12, 10)
    pools = [m.buffer_pool for m in net.modules() if isinstance(m, ConvLSTM2d)]
    seen = []
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.binary_cross_entropy_with_logits(net(x), target).backward()
        optimizer.step()
        seen.append([{id(b) for b in pool._idle} for pool in pools])
    assert all(len(ids) == 1 for ids in seen[0])
    assert seen[0] == seen[1] == seen[2]


def _aten_calls(layer: ConvLSTM2d, x: torch.Tensor) -> int:
    def step() -> None:
        h, _ = layer(x)
        h.sum().backward()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def test_fused_issues_at_most_a_third_of_the_aten_calls_of_fast():
    """A count, not a timing: re-introducing per-step views, selects, casts or temporaries fails this, and so does
    making the buffers (and their views) afresh on every call instead of reusing them."""
    torch.manual_seed(5)
    x = torch.randn(24, 2, 4, 6, 6, requires_grad=True)
    counts = {
        impl: _aten_calls(ConvLSTM2d(4, 8, implementation=impl, steps_per_chunk=24), x) for impl in ("fused", "fast")
    }
    assert counts["fused"] * 3 <= counts["fast"], counts
    assert counts["fused"] / 24 <= 36, counts  # per step, forward + backward, hidden conv included (33 today)


def test_cuda_graphs_flag_is_inert_on_cpu_and_in_training():
    torch.manual_seed(6)
    net = TCuPGenerator(4, 3, TINY, cuda_graphs=True).eval()
    x = torch.randn(1, 4, 3, 9, 7)
    with torch.no_grad():
        out = net(x)
    assert len(net._graphs) == 0
    net.cuda_graphs = False
    with torch.no_grad():
        torch.testing.assert_close(net(x), out, atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_matches_eager_and_sees_new_weights():
    torch.manual_seed(7)
    net = TCuPGenerator(4, 3, TINY, cuda_graphs=True).cuda().eval()
    x = torch.randn(1, 4, 6, 20, 18, device="cuda")
    with torch.no_grad():
        net.cuda_graphs = False
        eager = net(x)
        net.cuda_graphs = True
        graphed = [net(x), net(x.flip(-1)).flip(-1)]
        torch.testing.assert_close(graphed[0], eager, atol=1e-5, rtol=1e-5)
        assert len(net._graphs) == 1
        for p in net.parameters():
            p.mul_(0.5)  # in place, as load_state_dict does
        net.cuda_graphs = False
        eager_new = net(x)
        net.cuda_graphs = True
        torch.testing.assert_close(net(x), eager_new, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_training_step_has_no_host_sync_on_cuda():
    net = TCuPGenerator(4, 3, TINY).cuda()
    x = torch.randn(2, 4, 5, 16, 16, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.float16):
            out = net(x)
        out.float().sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ConvLSTM2d(3, True), "ConvLSTM2d: hidden_channels must be a positive int, got True"),
        (lambda: ConvLSTM2d(3, 4, kernel_size=4), "ConvLSTM2d: kernel_size must be odd"),
        (lambda: ConvLSTM2d(3, 4, steps_per_chunk=0), "ConvLSTM2d: steps_per_chunk must be a positive int, got 0"),
        (lambda: ConvLSTMCell(0, 4), "ConvLSTMCell: input_channels must be a positive int, got 0"),
        (lambda: TCuPGenerator(4, 3, "16"), "TCuPGenerator: hidden_channels must be a sequence of positive ints"),
        (
            lambda: TCuPGenerator(4, 3, convlstm_implementation="cudnn"),
            "TCuPGenerator: convlstm_implementation must be one of ('fused', 'fast', 'per_slice'), got 'cudnn'",
        ),
        (lambda: PatchDiscriminator3D(7, features=(16, 0)), "PatchDiscriminator3D: features must be positive ints"),
        (lambda: PatchDiscriminator3D(7, dropout=True), "PatchDiscriminator3D: dropout must be a probability"),
    ],
)
def test_one_validator_names_the_class_argument_and_value(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
