"""TCuP-GAN generator: a U-Net of 2D ConvLSTMs that scans the depth axis as time.

Input ``(B, C, D, H, W)`` (nnU-Net layout; D = first spatial axis = slice axis = ConvLSTM time axis), output
``(B, num_classes, D, H, W)`` logits (no sigmoid/softmax; nnU-Net applies the non-linearity). All convolutions and
pooling act in-plane only (2D ops on the time-major view ``(D*B, C, H, W)``).

Layout (L = len(hidden_channels) levels, encoder widths E = hidden_channels, decoder widths
``Dw = reversed(E[:-1]) + (E[0],)``, i.e. (64, 48, 32, 16, 16) for the paper's (16, 32, 48, 64, 128)):

Encoder level k = 0..L-1 (in-plane size s_k, s_0 = H x W, s_{k+1} = ceil(s_k / 2)):
    ``h_seq_k, c_k = ConvLSTM(in_k -> E_k)(x_k)`` with zero initial state (in_0 = C, in_k = E_{k-1});
    downsampling unit: ``x_{k+1} = MaxPool2x2(h_seq_k)`` (the skip/next-level input, size s_{k+1}) and the cell
    state handed to the decoder, ``cskip_k = MaxPool2x2(Conv1x1(E_k -> Dw_{L-1-k}, no bias)(c_k))``.
    ``c_k`` is the encoder's *final* cell state c_T (after the last slice): the natural reading of "the encoder's
    cell state" for a sequence, and what the authors' published layout passes. The 1x1 projection is the conv of
    the downsampling unit; it makes the encoder state fit the decoder width.
Decoder level j = 0..L-1 (runs at s_{L-j}):
    input ``u_0 = x_L`` (the bottleneck, E_{L-1} channels); ``u_j = cat(up_{j-1}, x_{L-j})`` for j > 0, i.e. the
    upsampled previous decoder output concatenated with the encoder's pooled h sequence of the same size;
    ``h_seq = ConvLSTM(in -> Dw_j)(u_j, c0 = cskip_{L-1-j})`` (the "c skip");
    upsampling: ``up_j = LeakyReLU_0.2(InstanceNorm(ConvTranspose2x2 stride 2 (Dw_j -> Dw_j)(h_seq)))``, cropped to
    s_{L-1-j} (odd sizes: the pools use ceil mode, so nothing is padded or lost).
Head: ``Conv3x3(Dw_{L-1} -> num_classes)`` on ``up_{L-1}`` at full resolution -> logits.

InstanceNorm normalises each (sample, channel) over the whole (D, H, W) patch, like nnU-Net's 3D InstanceNorm.

Why this layout: the parameter count pins it. A literal mirror reading of the paper's text (a 3x3 conv on h in every
downsampling unit, decoder ConvLSTMs of widths 128..16 at the encoder resolutions fed with cat(upsampled, skip))
has at least 2.7M parameters: a width-128 decoder ConvLSTM with >= 128 input channels alone holds 1.18M. Running
each decoder ConvLSTM one level deeper (before its upsampling, widths 64, 48, 32, 16, 16) with the 1x1-projected
cell state as c0, as the authors' published layout does, lands at 2.36M.

Parameter count at (16, 32, 48, 64, 128), 4 inputs, 3 outputs: 2,363,651 = ConvLSTM gate convs 2,317,376 (biases
included) + ConvTranspose 31,920 + 1x1 state projections 13,568 + InstanceNorm affine 352 + head 435; 0.3 % below
the 2.37M of the authors' published layout (which has no LSTM biases, carries a ConvTranspose for the decoder cell
state whose output is never used, and ends with a ConvLSTM of width num_classes; here the last decoder level keeps
E_0 = 16 channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._inference_recurrence import needs_autograd
from ._validation import choice, positive_int, positive_int_sequence
from .convlstm import IMPLEMENTATIONS, ConvLSTM2d
from .cuda_graphs import GraphCache

PAPER_HIDDEN_CHANNELS: tuple[int, ...] = (16, 32, 48, 64, 128)
LEAKY_SLOPE = 0.2


def instance_norm_time_major(x: Tensor, weight: Tensor, bias: Tensor, batch: int, eps: float = 1e-5) -> Tensor:
    """InstanceNorm of a time-major folded tensor ``(T*B, C, H, W)`` over (T, H, W) per (sample, channel).

    Uses batch-norm statistics on the free view ``(T, B*C, H, W)``: one fused kernel, no transposes.
    """
    tb, channels, height, width = x.shape
    if tb // batch * height * width == 1:  # a single value per (sample, channel) normalises to 0
        return (x * 0 + bias.view(1, channels, 1, 1)).contiguous()
    if batch == 1:  # x is the folded view itself, in either memory format (channels-last stays channels-last)
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    view = x.contiguous().view(tb // batch, batch * channels, height, width)  # contiguous(): no-op unless a conv
    # returned channels-last slices (oneDNN may, for inputs that are contiguous in both layouts, e.g. 1 x 1 maps)
    out = F.batch_norm(view, None, None, weight.repeat(batch), bias.repeat(batch), training=True, eps=eps)
    return out.view(tb, channels, height, width)


class _EncoderLevel(nn.Module):
    def __init__(self, in_channels: int, hidden: int, decoder_width: int, implementation: str) -> None:
        super().__init__()
        self.lstm = ConvLSTM2d(in_channels, hidden, 3, implementation=implementation)
        self.cell_proj = nn.Conv2d(hidden, decoder_width, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: ``(T, B, C, H, W)`` -> (pooled h sequence ``(T, B, E, h', w')``, c skip ``(B, Dw, h', w')`` float32)."""
        h_seq, c_last = self.lstm(x)
        steps, batch = h_seq.shape[:2]
        pooled = F.max_pool2d(h_seq.flatten(0, 1), 2, ceil_mode=True)
        pooled = pooled.view(steps, batch, *pooled.shape[1:])
        c_skip = F.max_pool2d(self.cell_proj(c_last.to(self.cell_proj.weight.dtype)), 2, ceil_mode=True)
        return pooled, c_skip.float()


class _DecoderLevel(nn.Module):
    def __init__(self, in_channels: int, width: int, implementation: str) -> None:
        super().__init__()
        self.lstm = ConvLSTM2d(in_channels, width, 3, implementation=implementation)
        self.up = nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)
        self.norm_weight = nn.Parameter(torch.ones(width))
        self.norm_bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor, c0: Tensor, out_size: tuple[int, int]) -> Tensor:
        """x: ``(T, B, C, h, w)``, c0 ``(B, width, h, w)`` -> ``(T, B, width, *out_size)`` (out_size <= 2h, 2w).

        Batch 1 without autograd (nnU-Net's sliding window) stays channels-last per slice from the ConvLSTM to the
        output (the transposed conv, the norm and the next convolution run 3-4x faster on CPU on that layout) and
        applies the LeakyReLU in place.
        """
        h_seq, _ = self.lstm(x, c0)
        steps, batch = h_seq.shape[:2]
        lean = batch == 1 and not needs_autograd(h_seq, self.up.weight, self.norm_weight, self.norm_bias)
        memory_format = torch.channels_last if lean else torch.contiguous_format
        # training: (B, C, H, W)-contiguous slices (the norm's view of a batch > 1)
        up = self.up(h_seq.flatten(0, 1) if lean else h_seq.contiguous().flatten(0, 1))
        if tuple(up.shape[-2:]) != tuple(out_size):
            up = up[..., : out_size[0], : out_size[1]].contiguous(memory_format=memory_format)
        up = instance_norm_time_major(up, self.norm_weight, self.norm_bias, batch)
        if lean:
            up = F.leaky_relu_(up, LEAKY_SLOPE)
        else:
            up = F.leaky_relu(up, LEAKY_SLOPE)  # not in place: on this view of the norm output that costs two copies
        return up.view(steps, batch, *up.shape[1:])


class TCuPGenerator(nn.Module):
    """ConvLSTM U-Net generator of TCuP-GAN (see the module docstring for the exact layout).

    input_channels: image channels C; num_classes: output logit channels (e.g. 3 regions);
    hidden_channels: encoder ConvLSTM widths, one per level (paper: 16, 32, 48, 64, 128);
    convlstm_implementation: ``"fused"`` (default), ``"fast"`` (the previous default) or ``"per_slice"`` (the plain
    reference scan); all share weights and outputs (see :mod:`.convlstm`).
    cuda_graphs: replay a captured CUDA graph per input shape at inference (eval mode, no grad, CUDA input; see
    :mod:`.cuda_graphs`); an attribute, so it can be switched on an existing network. Off by default.
    forward: ``(B, C, D, H, W)`` -> ``(B, num_classes, D, H, W)`` logits; any D, H, W >= 1.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        hidden_channels: Sequence[int] = PAPER_HIDDEN_CHANNELS,
        *,
        convlstm_implementation: str = "fused",
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        owner = "TCuPGenerator"
        self.input_channels = positive_int(owner, "input_channels", input_channels)
        self.num_classes = positive_int(owner, "num_classes", num_classes)
        widths = positive_int_sequence(owner, "hidden_channels", hidden_channels)
        choice(owner, "convlstm_implementation", convlstm_implementation, IMPLEMENTATIONS)
        self.hidden_channels = widths
        self.cuda_graphs = bool(cuda_graphs)
        self._graphs = GraphCache()
        levels = len(widths)
        decoder_widths = tuple(reversed(widths[:-1])) + (widths[0],)
        self.decoder_widths = decoder_widths

        self.encoder = nn.ModuleList()
        in_ch = input_channels
        for k, hidden in enumerate(widths):
            self.encoder.append(_EncoderLevel(in_ch, hidden, decoder_widths[levels - 1 - k], convlstm_implementation))
            in_ch = hidden
        self.decoder = nn.ModuleList()
        for j, width in enumerate(decoder_widths):
            skip = 0 if j == 0 else widths[levels - 1 - j]
            self.decoder.append(_DecoderLevel(in_ch + skip, width, convlstm_implementation))
            in_ch = width
        self.head = nn.Conv2d(decoder_widths[-1], num_classes, kernel_size=3, padding=1)
        self.apply(init_weights)

    def set_convlstm_implementation(self, implementation: str) -> None:
        """Switch every ConvLSTM to one of ``IMPLEMENTATIONS`` (weights unchanged)."""
        for module in self.modules():
            if isinstance(module, ConvLSTM2d):
                module.implementation = implementation
        self._graphs.clear()

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, C, D, H, W)`` -> logits ``(B, num_classes, D, H, W)``."""
        self._check_input(x)
        if self.cuda_graphs and x.is_cuda and not self.training and not torch.is_grad_enabled():
            # parameter addresses in the key: a graph never reads memory that .to()/.half() has replaced
            return self._graphs.run(self._forward, x, tuple(p.data_ptr() for p in self.parameters()))
        return self._forward(x)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"TCuPGenerator expects a 5D input (B, C, D, H, W), got shape {tuple(x.shape)}")
        batch, channels, depth, height, width = x.shape
        if channels != self.input_channels:
            raise ValueError(
                f"TCuPGenerator expects {self.input_channels} input channels (dim 1 of "
                f"(B, C, D, H, W)), got shape {tuple(x.shape)}"
            )
        if min(batch, depth, height, width) < 1:
            raise ValueError(f"TCuPGenerator input has an empty axis: shape {tuple(x.shape)}")

    def _forward(self, x: Tensor) -> Tensor:
        batch, _, depth, height, width = x.shape
        seq = x.permute(2, 0, 1, 3, 4).contiguous()  # (D, B, C, H, W), time-major
        sizes: list[tuple[int, int]] = [(height, width)]
        skips: list[Tensor] = []
        cells: list[Tensor] = []
        for level in self.encoder:
            seq, c_skip = level(seq)
            skips.append(seq)
            cells.append(c_skip)
            sizes.append((seq.shape[-2], seq.shape[-1]))

        levels = len(self.encoder)
        out = skips[-1]
        for j, level in enumerate(self.decoder):
            if j > 0:  # on the (T*B, C, H, W) views: two channels-last inputs give a channels-last result
                out = torch.cat([out.flatten(0, 1), skips[levels - 1 - j].flatten(0, 1)], dim=1).unflatten(
                    0, (-1, batch)
                )
            out = level(out, cells[levels - 1 - j], sizes[levels - 1 - j])

        logits = self.head(out.flatten(0, 1))  # (D*B, K, H, W)
        return logits.view(depth, batch, self.num_classes, height, width).permute(1, 2, 0, 3, 4).contiguous()


def init_weights(module: nn.Module) -> None:
    """Initialise one module (use ``network.apply(init_weights)``; children are visited before parents).

    Conv/ConvTranspose: He normal (negative slope 1e-2, as nnU-Net) and zero bias. ConvLSTM gate convs: Xavier
    uniform, zero bias except the forget gate (bias 1, so early training keeps the state).
    """
    if isinstance(module, ConvLSTM2d):
        hidden = module.hidden_channels
        nn.init.xavier_uniform_(module.conv.weight)
        if module.conv.bias is not None:
            with torch.no_grad():
                module.conv.bias.zero_()
                module.conv.bias[hidden : 2 * hidden] = 1.0
    elif isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
