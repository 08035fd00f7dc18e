#!/usr/bin/env python
"""Keyword-spotting benchmarks, side by side in one run:

1. front end: batched MFCC (encoders.audio, torchaudio filter banks + torch FFT) vs librosa clip by
   clip (goal: >= 20x), and torchaudio.transforms.MFCC batched for reference;
2. streaming detection real-time factor on ONE CPU thread (goal: <= 0.005), frame by frame and in blocks;
3. training throughput (clips/s) of the default model, forward + backward + AdamW.

Writes benchmarks/results/kws-cpu.json (with a machine description).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import machine_info  # noqa: E402


def best_of(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_frontend(n_batch: int, n_librosa: int, repeat: int) -> dict:
    import librosa
    import torchaudio

    from encoders.audio import FeatureConfig, features

    cfg = FeatureConfig()
    rng = np.random.default_rng(0)
    waves = (rng.standard_normal((n_batch, 16000)) * 0.1).astype(np.float32)
    x = torch.from_numpy(waves)
    t_ours = best_of(lambda: features(x, cfg), repeat) / n_batch
    ta = torchaudio.transforms.MFCC(16000, n_mfcc=40, log_mels=False, melkwargs=dict(
        n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length, n_mels=40, center=False,
        f_min=cfg.f_min, f_max=cfg.f_max, norm="slaney", mel_scale="slaney"))
    t_ta = best_of(lambda: ta(x), repeat) / n_batch

    def lib():
        for y in waves[:n_librosa]:
            librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40, n_fft=cfg.n_fft, win_length=cfg.win_length,
                                 hop_length=cfg.hop_length, center=False, n_mels=40, fmin=cfg.f_min, fmax=cfg.f_max)

    t_lib = best_of(lib, max(1, repeat // 2)) / n_librosa
    return {"clips_batched": n_batch, "ms_per_clip_batched": t_ours * 1e3, "ms_per_clip_torchaudio_transform": t_ta * 1e3,
            "ms_per_clip_librosa": t_lib * 1e3, "speedup_vs_librosa": t_lib / t_ours, "goal_speedup": 20.0}


def default_model(checkpoint: str | None):
    from pipelines.kws.train import KWSConfig, load
    from pipelines.registry import get_model

    if checkpoint:  # a file or a shipped model name ("kws")
        model, b = load(checkpoint, "cpu", "benchmarks/kws.py")
        return model, {"labels": b["labels"]}
    c = KWSConfig()
    m = get_model(c.model, n_classes=len(c.words) + 2, hidden_size=c.hidden_size, num_layers=c.num_layers).eval()
    from pipelines.kws.data import make_labels

    return m, {"labels": make_labels(list(c.words))}


def bench_stream(checkpoint: str | None, seconds: float) -> dict:
    from pipelines.kws.stream import DetectConfig, detect

    torch.set_num_threads(1)
    model, extra = default_model(checkpoint)
    rng = np.random.default_rng(1)
    wave = (rng.standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32)
    out = {"seconds_audio": seconds, "threads": 1, "goal_rtf": 0.005}
    for block in (10.0, 100.0, 250.0, 500.0, 1000.0):
        cfg = DetectConfig(block_ms=block)
        detect(model, extra["labels"], wave[:16000], cfg)  # warm-up
        rtf = min(detect(model, extra["labels"], wave, cfg)["rtf"] for _ in range(2))
        out[f"rtf_block_{int(block)}ms"] = rtf
    return out


def bench_train(batch: int, steps: int, threads: int) -> dict:
    from pipelines.kws.train import KWSConfig
    from pipelines.registry import get_model

    torch.set_num_threads(threads)
    c = KWSConfig()
    m = get_model(c.model, n_classes=12, hidden_size=c.hidden_size, num_layers=c.num_layers, dropout=c.dropout)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    out = {"batch_size": batch, "threads": threads}
    for name, n in (("clip_1s", 16000), ("clip_with_context_1.5s", 24000)):
        x = torch.randn(batch, n) * 0.1
        y = torch.randint(0, 12, (batch,))

        def step():
            logits = m(x, last=c.target_frames)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(logits.shape[1]))
            opt.zero_grad()
            loss.backward()
            opt.step()

        t = best_of(step, steps)
        out[f"clips_per_s_{name}"] = batch / t
    return out


def main(args) -> dict:
    load0 = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    res = {"frontend": bench_frontend(args.batch, args.librosa_clips, args.repeat)}
    print(f"front end: batched {res['frontend']['ms_per_clip_batched']:.3f} ms/clip, librosa "
          f"{res['frontend']['ms_per_clip_librosa']:.3f} ms/clip -> {res['frontend']['speedup_vs_librosa']:.1f}x "
          f"(goal >= 20x); torchaudio.transforms.MFCC {res['frontend']['ms_per_clip_torchaudio_transform']:.3f} ms/clip",
          flush=True)
    res["streaming"] = bench_stream(args.checkpoint, args.stream_seconds)
    s = res["streaming"]
    print(f"streaming (1 thread): RTF {s['rtf_block_10ms']:.5f} frame by frame (10 ms blocks), "
          f"{s['rtf_block_100ms']:.5f} at 100 ms, {s['rtf_block_250ms']:.5f} at 250 ms, "
          f"{s['rtf_block_500ms']:.5f} at 500 ms (the default), {s['rtf_block_1000ms']:.5f} at 1 s blocks (goal <= 0.005)", flush=True)
    res["training"] = bench_train(64, args.repeat, args.threads)
    t = res["training"]
    print(f"training ({args.threads} threads, batch 64): {t['clips_per_s_clip_1s']:.0f} clips/s on 1 s clips, "
          f"{t['clips_per_s_clip_with_context_1.5s']:.0f} clips/s with 0.5 s context", flush=True)
    shared = max(load0, os.getloadavg()[0]) > 1.5
    res["machine"] = machine_info(args.threads, note=None if not shared else
                                  "the machine was shared with other jobs while measured: timings are contended")
    res["checkpoint"] = args.checkpoint
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    return res


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="a trained kws checkpoint or shipped model name (default: an untrained default model)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--librosa-clips", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--stream-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "kws-cpu.json"))
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
