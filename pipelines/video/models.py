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

from encoders.video import SMALL_CNN, build_frame_encoder
from lstm import CNNLSTM, ConvLSTM, Seq2Seq
from pipelines.registry import register_model


class _Frozen:
    """Mixin for models with a frame encoder ``self._encoder()``: ``freeze_encoder`` keeps it fixed
    (no gradients, eval mode even while training) so that its features can be computed once and
    cached; ``forward`` then also takes those features (B, T, F) in place of frames (B, T, 3, H, W)."""

    def _freeze(self, freeze: bool, feature_norm: bool = False, size: int = 0) -> None:
        # feature_norm: batch norm of every feature dimension before the LSTM.  A torchvision encoder's
        # pooled features vary little between clips and frames next to their common offset (measured
        # on random-init ResNet-18: per-dimension spread 0.35 around a mean of 1, frame-to-frame change
        # 0.05); standardised, that variation reaches the LSTM at a usable scale.
        self.fnorm = nn.BatchNorm1d(size) if feature_norm else None
        self.freeze_encoder = freeze
        if freeze:
            for q in self._encoder().parameters():
                q.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoder:
            self._encoder().eval()  # batch-norm statistics stay those the features were cached with
        return self

    def frame_features(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, T, F); already computed (cached) features (B, T, F) skip the encoder."""
        B, T = frames.shape[:2]
        if frames.dim() == 3:
            f = frames
        elif self.freeze_encoder:
            with torch.no_grad():
                f = self._encoder()(frames.flatten(0, 1)).view(B, T, -1)
        else:
            f = self._encoder()(frames.flatten(0, 1)).view(B, T, -1)
        return f if self.fnorm is None else self.fnorm(f.flatten(0, 1)).view(B, T, -1)


@register_model("video-cnn-lstm")
class VideoCNNLSTM(_Frozen, nn.Module):
    """LRCN: frame encoder features (B, T, F) -> LSTM -> final hidden state -> logits (B, num_classes).

    ``frame_encoder``: "small-cnn" (our :class:`encoders.video.FrameCNN`, config ``frame_cnn``) or any
    torchvision classifier name; ``freeze_encoder``, ``feature_norm``: see :class:`_Frozen`."""

    def __init__(self, num_classes: int, frame_cnn: dict | None = None, hidden_size: int = 128, num_layers: int = 1,
                 dropout: float = 0.2, frame_encoder: str = SMALL_CNN, freeze_encoder: bool = False,
                 feature_norm: bool = False):
        super().__init__()
        cnn = build_frame_encoder(frame_encoder, frame_cnn)
        self.backbone = CNNLSTM(cnn, cnn.feature_size, hidden_size, num_layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.output_size, num_classes)
        self._freeze(freeze_encoder, feature_norm, cnn.feature_size)

    def _encoder(self) -> nn.Module:
        return self.backbone.frame_encoder

    def forward(self, frames: Tensor) -> Tensor:
        """frames (B, T, 3, H, W), or frame features (B, T, F) -> logits (B, num_classes)."""
        out, (h, c) = self.backbone.lstm(self.frame_features(frames))
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
class VideoFrameBaseline(_Frozen, nn.Module):
    """Single-frame baseline: each frame classified on its own, logits averaged over T (order-blind)."""

    def __init__(self, num_classes: int, frame_cnn: dict | None = None, dropout: float = 0.2,
                 frame_encoder: str = SMALL_CNN, freeze_encoder: bool = False, feature_norm: bool = False):
        super().__init__()
        self.cnn = build_frame_encoder(frame_encoder, frame_cnn)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.cnn.feature_size, num_classes)
        self._freeze(freeze_encoder, feature_norm, self.cnn.feature_size)

    def _encoder(self) -> nn.Module:
        return self.cnn

    def forward(self, frames: Tensor) -> Tensor:
        """frames (B, T, 3, H, W), or frame features (B, T, F) -> logits (B, num_classes)."""
        return self.head(self.drop(self.frame_features(frames))).mean(1)


@register_model("video-caption")
class VideoCaptioner(_Frozen, nn.Module):
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
                 bow_head: bool = True, bidirectional_encoder: bool = True, motion_features: bool = True,
                 frame_encoder: str = SMALL_CNN, freeze_encoder: bool = False, feature_norm: bool = False):
        super().__init__()
        self.cnn = build_frame_encoder(frame_encoder, frame_cnn)
        self.motion_features = motion_features
        n_in = self.cnn.feature_size * (2 if motion_features else 1)
        self.seq2seq = Seq2Seq(n_in, vocab_size, hidden_size, embed_size, enc_layers, dec_layers,
                               bidirectional_encoder=bidirectional_encoder, dropout=dropout)
        self.bow = nn.Linear(self.seq2seq.encoder.output_size, vocab_size) if bow_head else None
        self.frame_bow = nn.Linear(self.cnn.feature_size, vocab_size) if bow_head else None
        self._freeze(freeze_encoder, feature_norm, self.cnn.feature_size)

    def _encoder(self) -> nn.Module:
        return self.cnn

    def features(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) (or cached frame features (B, T, F)) -> encoder input (B, T, F), or (B, T, 2F)
        with the frame-to-frame feature differences appended (``motion_features``: motion made
        explicit for the encoder)."""
        f = self.frame_features(frames)
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


@register_model("video-predict-convlstm")
class VideoPredictor(nn.Module):
    """ConvLSTM encoder–forecaster for future frames (Shi et al. 2015).

    Frames are cut into ``patch`` x ``patch`` patches (space-to-depth, as Shi et al. did for Moving
    MNIST: 64x64 -> 16x16 maps), a 3x3 conv stem embeds them, an encoder :class:`lstm.ConvLSTM`
    reads the K context frames, and a forecaster ConvLSTM (own weights) starts from the encoder's
    states and unrolls N steps.  Each step reads the previous frame (the last context frame, then its
    own prediction) and a 1x1 conv over the hidden maps of all forecaster layers predicts the change
    to that frame; the change starts at zero, so an untrained model copies the last frame.

    Args:
        channels: 1 (gray) or 3 (RGB) channels of the frames, pixels in [0, 1].
        patch: side of the patches; H and W must be multiples of it.
        hidden: hidden channels of each ConvLSTM layer.
        stem_channels, kernel_size: width of the stem, ConvLSTM kernel.
    """

    def __init__(self, channels: int = 1, patch: int = 4, hidden: tuple[int, ...] | list[int] = (32, 32),
                 stem_channels: int = 32, kernel_size: int = 3):
        super().__init__()
        self.channels, self.patch = channels, patch
        c = channels * patch * patch
        self.stem = nn.Sequential(nn.Conv2d(c, stem_channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.encoder = ConvLSTM(stem_channels, list(hidden), kernel_size)
        self.forecaster = ConvLSTM(stem_channels, list(hidden), kernel_size)
        self.head = nn.Conv2d(sum(hidden), c, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _embed(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> stem features (N, S, H/p, W/p)."""
        if x.shape[-1] % self.patch or x.shape[-2] % self.patch:
            raise ValueError(f"frame size {tuple(x.shape[-2:])} is not a multiple of the patch size {self.patch}")
        return self.stem(nn.functional.pixel_unshuffle(x, self.patch))

    def forward(self, context: Tensor, horizon: int = 10) -> Tensor:
        """context (B, K, C, H, W) in [0, 1] -> predicted frames (B, N=horizon, C, H, W), not clamped
        (callers clamp to [0, 1] for display and scores)."""
        B, K = context.shape[:2]
        z = self._embed(context.flatten(0, 1))
        _, state = self.encoder(z.view(B, K, *z.shape[1:]))
        prev = context[:, -1]
        outs = []
        for _ in range(horizon):
            _, state = self.forecaster(self._embed(prev).unsqueeze(1), state)
            delta = nn.functional.pixel_shuffle(self.head(torch.cat([h for h, _ in state], 1)), self.patch)
            pred = prev + delta
            outs.append(pred)
            prev = pred.clamp(0, 1)
        return torch.stack(outs, 1)


__all__ = ["VideoCNNLSTM", "VideoConvLSTM", "VideoFrameBaseline", "VideoCaptioner", "VideoPredictor"]
