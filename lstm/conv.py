"""Convolutional LSTM (Shi et al. 2015) and the CNN-LSTM wrapper (LRCN, Donahue et al. 2015)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .recurrent import LSTM


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: the matrix products of an LSTM become convolutions over (C, H, W).

    i = σ(W_xi * x + W_hi * h + W_ci ∘ c + b_i), f likewise, c' = f ∘ c + i ∘ tanh(W_xc * x + W_hc * h + b_c),
    o = σ(W_xo * x + W_ho * h + W_co ∘ c' + b_o), h' = o ∘ tanh(c').  The peephole terms (∘, Hadamard
    products with full-size weight maps) are used when ``peephole=True``; they need ``frame_size``.

    Args:
        input_channels: channels of x.
        hidden_channels: channels of h and c.
        kernel_size: odd int or (kh, kw); "same" padding keeps the frame size.
        peephole: add the Hadamard peephole terms of Shi et al.
        frame_size: (H, W) of the frames, required with ``peephole``.
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size=3, bias: bool = True,
                 peephole: bool = False, frame_size: tuple[int, int] | None = None):
        super().__init__()
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if any(k % 2 == 0 for k in ks):
            raise ValueError(f"kernel_size must be odd to keep the frame size, got {ks}")
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels, ks,
                              padding=(ks[0] // 2, ks[1] // 2), bias=bias)
        self.peephole = peephole
        if peephole:
            if frame_size is None:
                raise ValueError("peephole=True needs frame_size=(H, W) for the Hadamard weight maps")
            H, W = frame_size
            self.w_ci = nn.Parameter(torch.zeros(hidden_channels, H, W))
            self.w_cf = nn.Parameter(torch.zeros(hidden_channels, H, W))
            self.w_co = nn.Parameter(torch.zeros(hidden_channels, H, W))

    def zero_state(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, _, H, W = x.shape
        h = x.new_zeros(B, self.hidden_channels, H, W)
        return h, h.clone()

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        """x: (B, C, H, W); state: (h, c) each (B, hidden, H, W). Returns (h, c)."""
        h, c = self.zero_state(x) if state is None else state
        i, f, g, o = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        if self.peephole:
            i = i + self.w_ci * c
            f = f + self.w_cf * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c = f * c + i * g
        if self.peephole:
            o = o + self.w_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def _per_layer(value, n: int, name: str) -> list:
    """A list gives one value per layer; anything else (an int, a (kh, kw) tuple) serves every layer."""
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} layers")
        return value
    return [value] * n


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM over (B, T, C, H, W).

    Args:
        input_channels: C of the input frames.
        hidden_channels: one int per layer (a single int with ``num_layers``).
        kernel_sizes: one kernel size per layer (or one for all).
        num_layers: layers when ``hidden_channels`` is an int.
        peephole, frame_size: see :class:`ConvLSTMCell`.
        return_all_layers: return the output sequence of every layer, not just the last.
    """

    def __init__(self, input_channels: int, hidden_channels: int | Sequence[int], kernel_sizes=3,
                 num_layers: int | None = None, peephole: bool = False,
                 frame_size: tuple[int, int] | None = None, return_all_layers: bool = False, bias: bool = True):
        super().__init__()
        if isinstance(hidden_channels, int):
            hidden_channels = [hidden_channels] * (num_layers or 1)
        hidden_channels = list(hidden_channels)
        n = len(hidden_channels)
        kernel_sizes = _per_layer(kernel_sizes, n, "kernel_sizes")
        self.hidden_channels = hidden_channels
        self.return_all_layers = return_all_layers
        self.cells = nn.ModuleList(
            ConvLSTMCell(input_channels if k == 0 else hidden_channels[k - 1], hidden_channels[k],
                         kernel_sizes[k], bias=bias, peephole=peephole, frame_size=frame_size)
            for k in range(n))

    @property
    def output_channels(self) -> int:
        return self.hidden_channels[-1]

    def forward(self, x: Tensor, state: list[tuple[Tensor, Tensor]] | None = None):
        """x: (B, T, C, H, W); state: one (h, c) per layer or None.

        Returns ``(out, state)``: out is the last layer's (B, T, hidden, H, W) — a list over layers
        with ``return_all_layers`` — and state one (h, c) per layer after the last step.
        """
        if x.dim() != 5:
            raise ValueError(f"expected (B, T, C, H, W), got {tuple(x.shape)}")
        T = x.shape[1]
        state = [None] * len(self.cells) if state is None else list(state)
        layer_in = x
        outs, new_state = [], []
        for cell, st in zip(self.cells, state):
            steps = []
            for t in range(T):
                st = cell(layer_in[:, t], st)
                steps.append(st[0])
            layer_in = torch.stack(steps, dim=1)
            outs.append(layer_in)
            new_state.append(st)
        return (outs if self.return_all_layers else outs[-1]), new_state


class CNNLSTM(nn.Module):
    """Apply a frame CNN to every frame of (B, T, C, H, W), then an :class:`LSTM` over the features.

    Args:
        frame_encoder: any module mapping (N, C, H, W) to (N, feature_size).
        feature_size: its output size.
        hidden_size, num_layers, bidirectional, merge, dropout, backend: passed to :class:`LSTM`.
    """

    def __init__(self, frame_encoder: nn.Module, feature_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, merge: str = "concat", dropout: float = 0.0, backend: str = "auto"):
        super().__init__()
        self.frame_encoder = frame_encoder
        self.lstm = LSTM(feature_size, hidden_size, num_layers, bidirectional, merge, dropout, backend)

    @property
    def output_size(self) -> int:
        return self.lstm.output_size

    def encode_frames(self, frames: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, T, feature_size)."""
        B, T = frames.shape[:2]
        feats = self.frame_encoder(frames.flatten(0, 1))
        return feats.view(B, T, -1)

    def forward(self, frames: Tensor, lengths: Tensor | None = None, state=None):
        return self.lstm(self.encode_frames(frames), lengths, state)
