"""Video models, built by name through the registry.

Classifiers take frames (B, T, 3, H, W) and return logits (B, num_classes):

* ``video-cnn-lstm`` (default, LRCN): per-frame CNN -> LSTM -> last state -> linear.
* ``video-convlstm``: a strided conv stem -> ConvLSTM over the small feature maps -> pooled last state.
* ``video-frame``: the single-frame baseline of LRCN: per-frame CNN -> linear, logits averaged over T.
  It sees no order, so it cannot tell an action from its reverse.

``video-caption`` (S2VT-style) maps frames to word log-probabilities with a frame CNN and
:class:`lstm.Seq2Seq` (LSTM encoder, attention LSTM decoder); greedy and beam decoding.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from encoders.video import FrameCNN, FrameCNNConfig
from lstm import CNNLSTM, ConvLSTM, Seq2Seq
from pipelines.registry import register_model


def _cnn(frame_cnn: dict | None) -> FrameCNN:
    return FrameCNN(FrameCNNConfig.from_dict(frame_cnn or {}))


@register_model("video-cnn-lstm")
class VideoCNNLSTM(nn.Module):
    """LRCN: FrameCNN features (B, T, F) -> LSTM -> final hidden state -> logits (B, num_classes)."""

    def __init__(self, num_classes: int, frame_cnn: dict | None = None, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.2):
        super().__init__()
        cnn = _cnn(frame_cnn)
        self.backbone = CNNLSTM(cnn, cnn.feature_size, hidden_size, num_layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.output_size, num_classes)

    def forward(self, frames: Tensor) -> Tensor:
        out, (h, c) = self.backbone(frames)
        return self.head(self.drop(h[-1]))


@register_model("video-convlstm")
class VideoConvLSTM(nn.Module):
    """Conv stem (two stride-2 blocks: H/4 x W/4) -> ConvLSTM -> last hidden map -> pooled grid -> logits."""

    def __init__(self, num_classes: int, stem_channels: int = 16, hidden_channels: int = 32, kernel_size: int = 3,
                 grid: int = 4, coords: bool = True, dropout: float = 0.2):
        super().__init__()
        self.coords = coords
        c_in = 3 + (2 if coords else 0)
        self.stem = nn.Sequential(
            nn.Conv2d(c_in, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels), nn.ReLU(True),
            nn.MaxPool2d(2),
            nn.Conv2d(stem_channels, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels),
            nn.ReLU(True), nn.MaxPool2d(2))
        self.convlstm = ConvLSTM(stem_channels, hidden_channels, kernel_size)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_channels * grid * grid, num_classes)

    def forward(self, frames: Tensor) -> Tensor:
        B, T, C, H, W = frames.shape
        x = frames.flatten(0, 1)
        if self.coords:
            ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1).expand(B * T, 1, H, W)
            xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W).expand(B * T, 1, H, W)
            x = torch.cat([x, xs, ys], 1)
        x = self.stem(x)
        x = x.view(B, T, *x.shape[1:])
        _, state = self.convlstm(x)
        h = state[-1][0]  # (B, hidden, H/4, W/4)
        return self.head(self.drop(self.pool(h).flatten(1)))


@register_model("video-frame")
class VideoFrameBaseline(nn.Module):
    """Single-frame baseline: each frame classified on its own, logits averaged over T (order-blind)."""

    def __init__(self, num_classes: int, frame_cnn: dict | None = None, dropout: float = 0.2):
        super().__init__()
        self.cnn = _cnn(frame_cnn)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.cnn.feature_size, num_classes)

    def forward(self, frames: Tensor) -> Tensor:
        B, T = frames.shape[:2]
        logits = self.head(self.drop(self.cnn(frames.flatten(0, 1))))
        return logits.view(B, T, -1).mean(1)


@register_model("video-caption")
class VideoCaptioner(nn.Module):
    """Frames (B, T, 3, H, W) -> FrameCNN features (B, T, F) -> Seq2Seq (LSTM encoder, attention decoder).

    ``bow_head`` adds two bag-of-words heads used only in training: one on the mean encoder output
    and one on every frame's CNN features; both predict which words the caption holds (multi-label).
    This auxiliary loss comes from the captions alone, and gives the frame CNN a direct signal for
    the words a single frame shows (colour, shape) — through teacher-forced attention alone, a
    from-scratch CNN learns shapes very slowly.  The frame head cannot know the action words (no
    single frame shows them): that part of its loss just stays at its floor.
    """

    def __init__(self, vocab_size: int, frame_cnn: dict | None = None, hidden_size: int = 128,
                 embed_size: int | None = 64, enc_layers: int = 1, dec_layers: int = 1, dropout: float = 0.1,
                 bow_head: bool = True, bidirectional_encoder: bool = True, motion_features: bool = True):
        super().__init__()
        self.cnn = _cnn(frame_cnn)
        self.motion_features = motion_features
        n_in = self.cnn.feature_size * (2 if motion_features else 1)
        self.seq2seq = Seq2Seq(n_in, vocab_size, hidden_size, embed_size, enc_layers, dec_layers,
                               bidirectional_encoder=bidirectional_encoder, dropout=dropout)
        self.bow = nn.Linear(self.seq2seq.encoder.output_size, vocab_size) if bow_head else None
        self.frame_bow = nn.Linear(self.cnn.feature_size, vocab_size) if bow_head else None

    def features(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> encoder input (B, T, F), or (B, T, 2F) with the frame-to-frame feature
        differences appended (``motion_features``: motion made explicit for the encoder)."""
        B, T = frames.shape[:2]
        f = self.cnn(frames.flatten(0, 1)).view(B, T, -1)
        if self.motion_features:
            f = torch.cat([f, torch.diff(f, dim=1, prepend=f[:, :1])], dim=-1)
        return f

    def forward(self, frames: Tensor, tgt_in: Tensor, with_bow: bool = False):
        """Teacher forcing: tgt_in (B, L) from BOS -> log-probs (B, L, V); with ``with_bow`` returns
        ``(log_probs, clip_bow (B, V), frame_bow (B, T, V))``, the bag-of-words logits (None without
        the heads)."""
        feats = self.features(frames)
        memory = self.seq2seq.encode(feats)
        logp = self.seq2seq.decoder(memory, None, tgt_in)
        if not with_bow:
            return logp
        if self.bow is None:
            return logp, None, None
        return logp, self.bow(memory.mean(1)), self.frame_bow(feats[..., :self.cnn.feature_size])

    @torch.no_grad()
    def generate(self, frames: Tensor, bos: int, eos: int, max_len: int = 12, beam_size: int = 1) -> list[list[int]]:
        """Token ids per clip (no BOS/EOS): greedy when ``beam_size == 1``, else beam search."""
        feats = self.features(frames)
        if beam_size <= 1:
            return self.seq2seq.greedy(feats, None, bos, eos, max_len)
        return self.seq2seq.beam_search(feats, None, bos, eos, max_len, beam_size)


__all__ = ["VideoCNNLSTM", "VideoConvLSTM", "VideoFrameBaseline", "VideoCaptioner"]
