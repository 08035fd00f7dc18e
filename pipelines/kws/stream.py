"""Streaming detection: features frame by frame, the LSTM state carried, posteriors smoothed,
thresholded and suppressed as TensorFlow's ``RecognizeCommands`` does.  Nothing is ever re-run:
every 10 ms frame passes through the front end and the LSTM exactly once."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from encoders.audio import StreamingFrames

from .data import SILENCE, UNKNOWN
from encoders.config import DictConfig


@dataclass(frozen=True)
class DetectConfig(DictConfig):
    """Detection parameters.

    block_ms: audio handed to the model at once (latency vs. per-call overhead; any size gives the
        same posteriors and frame-accurate times; nn.LSTM costs ~0.4 ms a call on one CPU thread
        whatever the length, so 500 ms blocks keep the real-time factor under 0.005).  average_ms: window of the posterior moving average.  threshold: smoothed
        posterior a keyword must reach.  suppression_ms: no new detection this soon after one, and none
        before the smoothed score has fallen below the threshold again (one word, one detection).
    """

    block_ms: float = 500.0
    average_ms: float = 500.0
    threshold: float = 0.7
    suppression_ms: float = 1500.0



class StreamingDetector:
    """Push audio blocks of any size; get ``(time_s, word, score)`` detections as they happen."""

    def __init__(self, model, labels: list[str], cfg: DetectConfig = DetectConfig()):
        if getattr(model, "bidirectional", False):
            raise ValueError("a bidirectional model needs the whole clip: it cannot stream")
        self.model, self.labels, self.cfg = model.eval(), list(labels), cfg
        self.fc = model.feature_config
        self.keyword = torch.tensor([lab not in (SILENCE, UNKNOWN) for lab in self.labels])
        self.stack = getattr(model, "stack", 1)
        self.step_ms = self.fc.hop_ms * self.stack
        self.window = max(1, int(round(cfg.average_ms / self.step_ms)))
        # the front end runs on the CPU (cheap, frame by frame); the LSTM where the model lives
        self.device = next(model.parameters()).device
        self.reset()

    def reset(self) -> None:
        self.frames = StreamingFrames(self.fc)
        self.pending = torch.zeros(0, self.fc.n_features, device=self.device)  # frames waiting to fill a stacked step
        self.state = None
        self.history = torch.zeros(0, len(self.labels))  # the last `window` posteriors
        self.t = 0  # frames seen
        self.last_time = -1e9
        self.armed = True  # the score went below the threshold since the last detection

    @torch.inference_mode()
    def step_logits(self, samples: torch.Tensor) -> torch.Tensor:
        """samples (n,) -> (S_new, C) logits of the steps this block completes (state carried)."""
        new = self.frames.push(samples.cpu()).to(self.device)
        feats = torch.cat([self.pending, self.model.normalise(new)])
        n = len(feats) // self.stack * self.stack
        self.pending = feats[n:]
        if n == 0:
            return torch.zeros(0, len(self.labels))
        steps = self.model.stack_frames(feats[:n].unsqueeze(0))
        logits, self.state = self.model.frame_logits(steps, self.state)
        return logits[0].float().cpu()

    def push(self, samples: torch.Tensor) -> list[tuple[float, str, float]]:
        logits = self.step_logits(samples)
        n = len(logits)
        if n == 0:
            return []
        post = torch.cat([self.history, logits.softmax(-1)])
        # moving average over the last `window` frames, for every new frame at once
        c = torch.cat([torch.zeros(1, post.shape[1]), post.cumsum(0)])
        ends = torch.arange(len(post) - n + 1, len(post) + 1)
        starts = (ends - self.window).clamp_min(0)
        smooth = (c[ends] - c[starts]) / (ends - starts).unsqueeze(1)
        self.history = post[-(self.window - 1):] if self.window > 1 else post[:0]
        smooth = smooth.masked_fill(~self.keyword, 0.0)
        score, idx = smooth.max(1)
        out = []
        thr = self.cfg.threshold
        for k, (sc, ix) in enumerate(zip(score.tolist(), idx.tolist())):
            if sc < thr:
                self.armed = True
                continue
            frame = (self.t + k + 1) * self.stack - 1  # the step's last 10 ms frame
            t = (frame * self.fc.hop_length + self.fc.n_fft) / self.fc.sample_rate  # its end
            if self.armed and (t - self.last_time) * 1000 >= self.cfg.suppression_ms:
                self.last_time, self.armed = t, False
                out.append((round(t, 3), self.labels[ix], round(sc, 4)))
        self.t += n
        return out


def detect(model, labels: list[str], wave: np.ndarray, cfg: DetectConfig = DetectConfig()) -> dict:
    """Run the detector over a whole recording in ``cfg.block_ms`` blocks.

    Returns ``{"detections": [(time_s, word, score)], "seconds_audio", "seconds_compute", "rtf"}``.
    """
    det = StreamingDetector(model, labels, cfg)
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    block = max(1, int(cfg.block_ms * model.feature_config.sample_rate / 1000))
    found = []
    t0 = time.perf_counter()
    for s in range(0, len(x), block):
        found += det.push(x[s: s + block])
    dt = time.perf_counter() - t0
    audio = len(x) / model.feature_config.sample_rate
    return {"detections": found, "seconds_audio": audio, "seconds_compute": dt, "rtf": dt / max(audio, 1e-9)}


def stream_logits(model, wave: torch.Tensor, block: int) -> torch.Tensor:
    """(N,) audio in blocks of ``block`` samples -> (S, C) per-step logits, the state carried."""
    det = StreamingDetector(model, [SILENCE] * model.head.out_features)
    return torch.cat([det.step_logits(wave[s: s + block]) for s in range(0, len(wave), block)])


def score_detections(detections, truth: list[dict], before_s: float = 0.3, after_s: float = 1.5) -> dict:
    """Match detections to the truth (``{"word", "time_s", "keyword"}``; time = speech centre).

    A keyword is hit by a detection of the same word between ``time_s - before_s`` and
    ``time_s + after_s``; each detection matches one keyword at most.  Unmatched detections
    (wrong word, unknown word, noise) are false alarms.
    """
    used = set()
    hits = []
    for tr in truth:
        if not tr.get("keyword", True):
            continue
        for k, (t, w, s) in enumerate(detections):
            if k not in used and w == tr["word"] and tr["time_s"] - before_s <= t <= tr["time_s"] + after_s:
                used.add(k)
                hits.append({"word": w, "truth_s": tr["time_s"], "detected_s": t, "score": s})
                break
    n_kw = sum(1 for tr in truth if tr.get("keyword", True))
    fa = [{"time_s": t, "word": w, "score": s} for k, (t, w, s) in enumerate(detections) if k not in used]
    return {"keywords": n_kw, "hits": len(hits), "misses": n_kw - len(hits), "false_alarms": len(fa),
            "hit_list": hits, "false_alarm_list": fa}


__all__ = ["DetectConfig", "StreamingDetector", "detect", "stream_logits", "score_detections"]
