"""Streaming detection: features frame by frame, the LSTM state carried, posteriors smoothed,
thresholded and suppressed as TensorFlow's ``RecognizeCommands`` does.  Nothing is ever re-run:
every 10 ms frame passes through the front end and the LSTM exactly once.

The model side is an *engine*: audio samples in, per-step posteriors out, state carried.
:class:`TorchEngine` runs the PyTorch model with a step path made for small blocks (audio is
gathered into whole 30 ms LSTM steps, one ``torch.lstm_cell`` per layer and step, the feature
normalisation folded into one matrix); ``pipelines.kws.export`` adds the ONNX and TorchScript
engines that run an exported folder.  Every engine gives the same per-step posteriors whatever the
block size, so detections do not depend on it."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch

from .data import SILENCE, UNKNOWN
from encoders.config import DictConfig


@dataclass(frozen=True)
class DetectConfig(DictConfig):
    """Detection parameters.

    block_ms: audio handed to the detector at once (latency vs. per-call overhead; any size gives
        the same posteriors, frame-accurate times and the same detections; on one CPU thread the
        real-time factor is ~0.005 at 10 ms blocks and ~0.002 at 500 ms).  average_ms: window of the
        posterior moving average.  threshold: smoothed posterior a keyword must reach.
        suppression_ms: no new detection this soon after one, and none before the smoothed score has
        fallen below the threshold again (one word, one detection).
    """

    block_ms: float = 500.0
    average_ms: float = 500.0
    threshold: float = 0.7
    suppression_ms: float = 1500.0


class StepBuffer:
    """Gathers pushed audio into whole LSTM steps.

    A step is ``stack`` 10 ms frames (``step`` = stack * hop samples); frame ``t`` covers samples
    ``[t*hop, t*hop + n_fft)``, so a run of S steps needs ``S*step + overlap`` samples with
    ``overlap = n_fft - hop``.  :meth:`take` returns that audio (the first ``overlap`` samples being
    the previous call's last ones) or None while no whole step is buffered.
    """

    def __init__(self, n_fft: int, hop: int, stack: int):
        self.overlap, self.step = n_fft - hop, hop * stack
        self.reset()

    def reset(self) -> None:
        self.parts: list[np.ndarray] = []
        self.n = 0  # samples buffered, the overlap included

    def push(self, samples) -> None:
        x = np.asarray(samples.numpy() if isinstance(samples, torch.Tensor) else samples, dtype=np.float32).reshape(-1)
        if len(x):
            self.parts.append(x)
            self.n += len(x)

    def take(self) -> np.ndarray | None:
        s = (self.n - self.overlap) // self.step
        if s <= 0:
            return None
        buf = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        used = s * self.step
        out, rest = buf[: used + self.overlap], buf[used:]
        self.parts, self.n = [rest], len(rest)
        return out


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b: NumPy for a few rows (least overhead per call), torch beyond, so that the thread count set by
    torch.set_num_threads (--threads) holds; NumPy's BLAS would use every core on larger products."""
    if len(a) <= 4:
        return a @ b
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


class TorchEngine:
    """The PyTorch model as a streaming engine: ``push(samples)`` -> (S, C) float32 logits of the steps
    completed (S may be 0).  Same numbers as the model on the whole signal (to float rounding)."""

    def __init__(self, model):
        if getattr(model, "bidirectional", False):
            raise ValueError("a bidirectional model needs the whole clip: it cannot stream")
        from encoders.audio import _tables

        self.model = model.eval()
        fc = self.fc = model.feature_config
        self.device = next(model.parameters()).device
        self.stack = int(getattr(model, "stack", 1))
        self.buffer = StepBuffer(fc.n_fft, fc.hop_length, self.stack)
        dev = self.device
        win, fb, dct = _tables(fc)
        self.win, self.fb = win.to(dev), fb.to(dev)
        std, mean = model.feat_std.float(), model.feat_mean.float()
        # normalised features = 10 log10(mel) @ dct -> (x - mean) / std, folded: log10(mel) @ proj + shift
        base = dct.to(dev) if fc.kind == "mfcc" else torch.eye(fc.n_mels, device=dev)
        self.proj = (10.0 * base / std).contiguous()
        self.shift = (-mean / std).contiguous()
        lstm = model.lstm
        self.layers = [tuple(getattr(lstm, f"{k}_l{i}", None) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                       for i in range(lstm.num_layers)]
        self.H, self.L = lstm.hidden_size, lstm.num_layers
        self.head_w, self.head_b = model.head.weight.t().contiguous(), model.head.bias
        self.cmn = int(getattr(model, "cmn_frames", 0))  # causal mean normalisation: its running mean is state too
        self.cmn_a = float(np.exp(-1.0 / self.cmn)) if self.cmn else 0.0
        self.empty = np.zeros((0, self.n_classes), np.float32)
        self.fast = self._prepare_numpy() if self.device.type == "cpu" else None
        self.frame_index: dict[int, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        self.buffer.reset()
        z = torch.zeros(1, self.H, device=self.device)
        self.state = [(z, z) for _ in range(self.L)]
        zn = np.zeros(self.H, np.float32)
        self.np_state = [(zn, zn) for _ in range(self.L)]
        d = self.proj.shape[1]
        self.cmn_m = torch.zeros(1, d, device=self.device)
        self.np_cmn_m = np.zeros((1, d), np.float32)

    @property
    def n_classes(self) -> int:
        return self.head_b.shape[0]

    @torch.inference_mode()
    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """(n,) audio -> (T, D) normalised features (T = num_frames(n))."""
        fc = self.fc
        spec = torch.fft.rfft(audio.unfold(0, fc.n_fft, fc.hop_length) * self.win, n=fc.n_fft)
        mel = (spec.real.square() + spec.imag.square()) @ self.fb  # as encoders.audio.power_spectrum
        feats = torch.addmm(self.shift, mel.clamp_min_(fc.amin).log10_(), self.proj)
        if self.cmn and len(feats):
            from .model import ema

            m = ema(feats.unsqueeze(0), self.cmn, self.cmn_m)[0]
            self.cmn_m = m[-1:].clone()
            feats = feats - m
        return feats

    @torch.inference_mode()
    def run(self, audio: np.ndarray) -> torch.Tensor:
        """Audio of whole steps (S*step + overlap samples) -> (S, C) logits; the state carried."""
        if self.fast is not None:
            return torch.from_numpy(self._run_numpy(audio))
        feats = self.features(torch.from_numpy(audio).to(self.device))
        x = feats.reshape(-1, feats.shape[1] * self.stack)  # (S, D*stack): the steps
        new = []
        for (w_ih, w_hh, b_ih, b_hh), (h, c) in zip(self.layers, self.state):
            outs = []
            for t in range(x.shape[0]):
                h, c = torch.lstm_cell(x[t: t + 1], (h, c), w_ih, w_hh, b_ih, b_hh)
                outs.append(h)
            x = outs[0] if len(outs) == 1 else torch.cat(outs)
            new.append((h, c))
        self.state = new
        return torch.addmm(self.head_b, x, self.head_w).float().cpu()

    def _prepare_numpy(self) -> dict:
        """The CPU step's float32 arrays: on one thread, torch's per-call overhead on a 1 x 248 @ 248 x 512
        product is about twice NumPy's, and a 10 ms block is nothing but such small products."""
        f = lambda t: np.ascontiguousarray(t.detach().float().cpu().numpy())  # noqa: E731
        layers = []
        for w_ih, w_hh, b_ih, b_hh in self.layers:
            b = (b_ih if b_ih is not None else 0) + (b_hh if b_hh is not None else 0)
            b = b if isinstance(b, torch.Tensor) else torch.zeros(w_ih.shape[0])
            layers.append((f(w_ih.t()), f(w_hh), f(b)))
        return {"win": f(self.win), "fb": f(self.fb), "proj": f(self.proj), "shift": f(self.shift),
                "layers": layers, "head_w": f(self.head_w), "head_b": f(self.head_b)}

    def _run_numpy(self, audio: np.ndarray) -> np.ndarray:
        p, fc, H = self.fast, self.fc, self.H
        idx = self.frame_index.get(len(audio))
        if idx is None:  # frame t = samples [t*hop, t*hop + n_fft): a gather, cached per block length
            idx = self.frame_index[len(audio)] = (np.arange(fc.num_frames(len(audio)))[:, None] * fc.hop_length
                                                  + np.arange(fc.n_fft)[None, :])
        frames = audio[idx]
        frames *= p["win"]
        spec = scipy.fft.rfft(frames, n=fc.n_fft)
        power = spec.real * spec.real
        power += spec.imag * spec.imag
        mel = _mm(power, p["fb"])
        feats = _mm(np.log10(np.maximum(mel, fc.amin, out=mel), out=mel), p["proj"])
        feats += p["shift"]
        if self.cmn and len(feats):  # m_t = a m_{t-1} + (1 - a) x_t, the state carried between blocks
            a = np.float32(self.cmn_a)
            if len(feats) <= 16:  # a step or a few (10-100 ms blocks): the recursion costs least
                m = self.np_cmn_m[0]
                for t in range(len(feats)):
                    m = a * m + (1 - a) * feats[t]
                    feats[t] -= m
                self.np_cmn_m = m[None]
            else:
                from scipy.signal import lfilter

                m, _ = lfilter([1.0 - self.cmn_a], [1.0, -self.cmn_a], feats, axis=0, zi=self.cmn_a * self.np_cmn_m)
                self.np_cmn_m = m[-1:].astype(np.float32)
                feats = feats - m.astype(np.float32)
        x = feats.reshape(-1, feats.shape[1] * self.stack)
        state = []
        for (w_ih_t, w_hh, b), (h, c) in zip(p["layers"], self.np_state):
            xp = _mm(x, w_ih_t)
            xp += b
            out = np.empty((len(x), H), np.float32)
            for t in range(len(x)):
                g = w_hh @ h
                g += xp[t]
                s = np.tanh(g * 0.5)
                s *= 0.5
                s += 0.5  # sigmoid(g) = (1 + tanh(g / 2)) / 2
                c = s[H: 2 * H] * c + s[:H] * np.tanh(g[2 * H: 3 * H])
                h = out[t] = s[3 * H:] * np.tanh(c)
            state.append((h, c))
            x = out
        self.np_state = state
        logits = _mm(x, p["head_w"])
        logits += p["head_b"]
        return logits

    def push(self, samples) -> torch.Tensor:
        self.buffer.push(samples)
        audio = self.buffer.take()
        if audio is None:
            return torch.zeros(0, self.n_classes)
        return self.run(audio)

    def posteriors(self, samples) -> np.ndarray:
        self.buffer.push(samples)
        audio = self.buffer.take()
        if audio is None:
            return self.empty
        if self.fast is not None:
            z = self._run_numpy(audio)
            z = np.exp(z - z.max(1, keepdims=True))
            return z / z.sum(1, keepdims=True)
        return self.run(audio).softmax(-1).numpy()


class StreamingDetector:
    """Push audio blocks of any size; get ``(time_s, word, score)`` detections as they happen.

    ``engine``: where the posteriors come from (default :class:`TorchEngine` over ``model``; an ONNX
    or TorchScript engine from :func:`pipelines.kws.export.load_engine`)."""

    def __init__(self, model, labels: list[str], cfg: DetectConfig = DetectConfig(), engine=None):
        if engine is None:
            engine = TorchEngine(model)
        self.engine, self.labels, self.cfg = engine, list(labels), cfg
        self.fc = engine.fc
        self.keyword = np.array([float(lab not in (SILENCE, UNKNOWN)) for lab in self.labels])
        self.stack = engine.stack
        self.step_ms = self.fc.hop_ms * self.stack
        self.window = max(1, int(round(cfg.average_ms / self.step_ms)))
        self.reset()

    def reset(self) -> None:
        self.engine.reset()
        # the last `window` posteriors (float64), step t in row t % window: every block size sums the same
        # rows in the same order, so the smoothed scores do not depend on it
        self.history = np.zeros((self.window, len(self.labels)))
        self.t = 0  # steps seen
        self.last_time = -1e9
        self.armed = True  # the score went below the threshold since the last detection

    def step_logits(self, samples: torch.Tensor) -> torch.Tensor:
        """samples (n,) -> (S_new, C) logits of the steps this block completes (torch engine only)."""
        return self.engine.push(samples)

    def step_posteriors(self, samples) -> np.ndarray:
        """samples (n,) -> (S_new, C) posteriors of the steps this block completes."""
        return self.engine.posteriors(samples)

    def push(self, samples) -> list[tuple[float, str, float]]:
        post = self.step_posteriors(samples)
        if not len(post):
            return []
        out = []
        thr, keyword = self.cfg.threshold, self.keyword
        for row in post:
            self.history[self.t % self.window] = row
            self.t += 1
            smooth = self.history.sum(0) / min(self.t, self.window)
            smooth *= keyword
            ix = int(smooth.argmax())
            sc = float(smooth[ix])
            if sc < thr:
                self.armed = True
                continue
            frame = self.t * self.stack - 1  # the step's last 10 ms frame
            t = (frame * self.fc.hop_length + self.fc.n_fft) / self.fc.sample_rate  # its end
            if self.armed and (t - self.last_time) * 1000 >= self.cfg.suppression_ms:
                self.last_time, self.armed = t, False
                out.append((round(t, 3), self.labels[ix], round(sc, 4)))
        return out


def detect(model, labels: list[str], wave: np.ndarray, cfg: DetectConfig = DetectConfig(), engine=None) -> dict:
    """Run the detector over a whole recording in ``cfg.block_ms`` blocks.

    Returns ``{"detections": [(time_s, word, score)], "seconds_audio", "seconds_compute", "rtf"}``.
    """
    det = StreamingDetector(model, labels, cfg, engine=engine)
    x = np.ascontiguousarray(wave, dtype=np.float32)
    sr = det.fc.sample_rate
    block = max(1, int(cfg.block_ms * sr / 1000))
    found = []
    t0 = time.perf_counter()
    for s in range(0, len(x), block):
        found += det.push(x[s: s + block])
    dt = time.perf_counter() - t0
    audio = len(x) / sr
    return {"detections": found, "seconds_audio": audio, "seconds_compute": dt, "rtf": dt / max(audio, 1e-9)}


def stream_logits(model, wave: torch.Tensor, block: int) -> torch.Tensor:
    """(N,) audio in blocks of ``block`` samples -> (S, C) per-step logits, the state carried."""
    eng = TorchEngine(model)
    return torch.cat([eng.push(wave[s: s + block]) for s in range(0, len(wave), block)])


def stream_posteriors(engine, wave: np.ndarray, block: int) -> np.ndarray:
    """(N,) audio through any engine in blocks of ``block`` samples -> (S, C) posteriors."""
    engine.reset()
    x = np.ascontiguousarray(wave, dtype=np.float32)
    return np.concatenate([engine.posteriors(x[s: s + block]) for s in range(0, len(x), block)])
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


__all__ = ["DetectConfig", "StepBuffer", "TorchEngine", "StreamingDetector", "detect", "stream_logits",
           "stream_posteriors", "score_detections"]
