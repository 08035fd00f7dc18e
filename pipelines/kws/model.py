"""The keyword-spotting model: MFCC front end -> normalisation -> stacked ``lstm.LSTM`` -> linear head."""
from __future__ import annotations

import torch
from torch import Tensor, nn

import lstm
from encoders.audio import FeatureConfig, FeatureExtractor, spec_augment
from pipelines.registry import register_model


def ema(x: Tensor, frames: int, start: Tensor | None = None) -> Tensor:
    """Causal exponential moving average over dim 1 of (B, T, D) with time constant ``frames`` (see
    :meth:`KWSLSTM.running_mean`); traceable with a variable T (ONNX, TorchScript)."""
    log_a = -1.0 / float(frames)
    t = torch.arange(x.shape[1], device=x.device)
    d = (t.unsqueeze(1) - t.unsqueeze(0)).to(x.dtype)  # (T, T): t - k
    w = torch.where(d >= 0, torch.exp(d * log_a), torch.zeros_like(d)) * (1.0 - float(torch.exp(torch.tensor(log_a))))
    m = torch.matmul(w, x)  # (B, T, D)
    if start is not None:
        m = m + torch.exp((t.to(x.dtype) + 1.0) * log_a).unsqueeze(-1) * start.unsqueeze(1)
    return m


@register_model("kws-lstm")
class KWSLSTM(nn.Module):
    """Waveform in, class logits out; the front end lives inside so a checkpoint is self-contained.

    Args:
        n_classes: number of labels (``_silence_``, ``_unknown_``, words...).
        features: :class:`encoders.audio.FeatureConfig` as a dict (default 40 MFCC, 30 ms / 10 ms).
        hidden_size, num_layers, dropout: the LSTM stack (dropout between layers).
        bidirectional: a bidirectional stack pools over time and cannot stream; the default
            unidirectional one classifies from its last frame and can run frame by frame.
        backend: ``lstm.LSTM`` backend ("auto": nn.LSTM/oneDNN; "reference": gate-level).
        stack: consecutive 10 ms frames concatenated into one LSTM step (3: a 30 ms step, as Hello
            Edge's 40 ms stride): a third of the recurrent steps, so training, streaming and learning
            the long-range dependency are all faster; the front end still runs every 10 ms.
    """

    def __init__(self, n_classes: int, features: dict | None = None, hidden_size: int = 128, num_layers: int = 2,
                 bidirectional: bool = False, dropout: float = 0.1, backend: str = "auto", stack: int = 3,
                 cmn_frames: int = 0):
        super().__init__()
        self.feature_config = FeatureConfig.from_dict(features or {})
        self.front = FeatureExtractor(self.feature_config)
        d = self.feature_config.n_features
        # per-coefficient statistics of the training data (not per clip), saved with the weights
        self.register_buffer("feat_mean", torch.zeros(d))
        self.register_buffer("feat_std", torch.ones(d))
        self.stack = int(stack)
        # causal cepstral mean normalisation: subtract an exponential moving average of the (globally
        # normalised) features with this time constant in frames (0: off); it removes what a channel or a
        # voice holds constant (spectral tilt, microphone colour) and can run frame by frame
        self.cmn_frames = int(cmn_frames)
        self.lstm = lstm.LSTM(d * self.stack, hidden_size, num_layers, bidirectional=bidirectional, dropout=dropout,
                              backend=backend)
        self.head = nn.Linear(self.lstm.output_size, n_classes)
        self.bidirectional = bidirectional

    def set_normalisation(self, mean: Tensor, std: Tensor) -> None:
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-3))

    def normalise(self, feats: Tensor) -> Tensor:
        x = (feats - self.feat_mean) / self.feat_std
        return x - self.running_mean(x) if self.cmn_frames else x

    def running_mean(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        """(B, T, D) -> (B, T, D): m_t = a m_{t-1} + (1 - a) x_t with a = exp(-1 / cmn_frames) and m_{-1} =
        ``start`` (B, D) (None: zeros, the training mean), as one product: m_t = (1 - a) sum_k<=t a^(t-k) x_k
        + a^(t+1) m_{-1} (what the exported streaming graph computes too)."""
        return ema(x, self.cmn_frames, start)

    def encode(self, wave: Tensor) -> Tensor:
        """(B, N) audio -> (B, T, D) normalised features."""
        return self.normalise(self.front(wave))

    def stack_frames(self, feats: Tensor) -> Tensor:
        """(B, T, D) -> (B, T // stack, D * stack): frames [k*stack, (k+1)*stack) become step k
        (a trailing incomplete group is dropped; a stream keeps it for the next block)."""
        B, T, D = feats.shape
        n = T // self.stack
        return feats[:, : n * self.stack].reshape(B, n, D * self.stack)

    def frame_logits(self, steps: Tensor, state=None):
        """Per-step logits from stacked normalised features: (B, S, D*stack) -> ((B, S, C), state).
        With the returned state, consecutive chunks give exactly the logits of the whole sequence."""
        out, state = self.lstm(steps, state=state)
        return self.head(out), state

    def forward(self, wave: Tensor, time_masks: Tensor | None = None, freq_masks: Tensor | None = None,
                last: int = 0, warp: Tensor | None = None) -> Tensor:
        """(B, N) audio -> (B, C) logits for the last second (the last frame, or the mean over time when
        bidirectional).  ``last=K > 0`` gives (B, K, C): the logits of each of the last K frames (the
        training target covers them all, which speeds learning and keeps streaming posteriors steady).
        SpecAugment masks (see :func:`encoders.audio.spec_augment`) and VTLP factors ``warp`` (B,) (see
        :func:`encoders.audio.warped_filterbank`) apply in training."""
        feats = self.normalise(self.front(wave, warp if self.training else None))
        if self.training and time_masks is not None:
            feats = spec_augment(feats, time_masks, freq_masks)
        out, _ = self.lstm(self.stack_frames(feats))
        if self.bidirectional:
            return self.head(out.mean(1)) if not last else self.head(out.mean(1)).unsqueeze(1).expand(-1, last, -1)
        return self.head(out[:, -last:]) if last else self.head(out[:, -1])


__all__ = ["KWSLSTM", "ema"]
