#!/usr/bin/env python
"""Forward+backward time of the backbone, side by side in one run: raw nn.LSTM, lstm.LSTM (auto),
lstm.LSTM (reference, gate-level Python) and ConvLSTM, on the three pipelines' shapes.

    python benchmarks/backbone.py                 # CPU (batch scaled by --cpu-batch-scale), CUDA too if present
    python benchmarks/backbone.py --device cuda

Writes benchmarks/results/backbone-<device>.json and prints ratios against raw nn.LSTM.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import lstm
from _machine import machine_info

# name: (batch, steps, input, hidden, layers) as given in the foundation issue
SHAPES = {"kws": (256, 101, 40, 256, 2), "video": (64, 16, 512, 512, 1), "music": (64, 256, 256, 512, 3)}
# ConvLSTM on a video-like clip: (batch, steps, channels, height, width, hidden channels)
CONV_SHAPE = (8, 16, 3, 32, 32, 32)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, device, repeats: int, warmup: int = 1) -> float:
    """Median milliseconds of one forward + backward."""
    times = []
    for i in range(warmup + repeats):
        module.zero_grad(set_to_none=True)
        sync(device)
        t0 = time.perf_counter()
        out = module(x)[0]
        out = out[-1] if isinstance(out, list) else out
        out.float().square().mean().backward()
        sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times) if times else float("nan")


def interleaved(models: dict[str, nn.Module], x, device, repeats: int) -> dict[str, float]:
    """Alternate the models round by round so that a noisy machine hits them alike."""
    for m in models.values():
        time_fwd_bwd(m, x, device, 0, warmup=1)
    samples = {k: [] for k in models}
    names = list(models)
    for r in range(repeats):
        # alternate the order too: the second of a pair runs on a warmer (or more fragmented) allocator
        for k in (names if r % 2 == 0 else names[::-1]):
            samples[k].append(time_fwd_bwd(models[k], x, device, 1, warmup=0))
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_device(device: torch.device, batch_scale: float, repeats: int, ref_repeats: int) -> dict:
    results = {}
    for name, (B, T, D, H, L) in SHAPES.items():
        B = max(1, int(round(B * batch_scale)))
        torch.manual_seed(0)
        raw = nn.LSTM(D, H, L, batch_first=True).to(device)
        auto = lstm.LSTM(D, H, L).to(device)
        ref = lstm.LSTM(D, H, L, backend="reference").to(device)
        auto.load_state_dict(raw.state_dict())
        ref.load_state_dict(raw.state_dict())
        x = torch.randn(B, T, D, device=device)
        fast = interleaved({"nn.LSTM": raw, "lstm.LSTM(auto)": auto}, x, device, repeats)
        ms_ref = time_fwd_bwd(ref, x, device, ref_repeats)
        row = {"shape": {"batch": B, "steps": T, "input": D, "hidden": H, "layers": L},
               "ms": {**fast, "lstm.LSTM(reference)": ms_ref}}
        base = fast["nn.LSTM"]
        row["ratio_vs_nn_lstm"] = {k: v / base for k, v in row["ms"].items()}
        results[name] = row
        print(f"[{device.type}] {name:6s} B={B:<4d} T={T:<4d} D={D:<4d} H={H:<4d} L={L}:  "
              + "  ".join(f"{k} {v:8.2f} ms ({row['ratio_vs_nn_lstm'][k]:.3f}x)" for k, v in row["ms"].items()),
              flush=True)
    # variable lengths (kws shape, lengths uniform in [T/2, T]): nn.LSTM needs a PackedSequence;
    # lstm.LSTM(auto) packs on CUDA and runs equal-length segments on CPU
    B, T, D, H, L = SHAPES["kws"]
    B = max(1, int(round(B * batch_scale)))
    torch.manual_seed(0)
    raw = nn.LSTM(D, H, L, batch_first=True).to(device)
    auto = lstm.LSTM(D, H, L).to(device)
    auto.load_state_dict(raw.state_dict())
    x = torch.randn(B, T, D, device=device)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=torch.Generator().manual_seed(0))

    class Packed(nn.Module):
        def forward(self, x):
            p = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, st = raw(p)
            return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)[0], st

    class WithLengths(nn.Module):
        def forward(self, x):
            return auto(x, lengths)

    ms = interleaved({"nn.LSTM(packed)": Packed(), "lstm.LSTM(auto, lengths)": WithLengths()}, x, device, repeats)
    results["kws_lengths"] = {"shape": {"batch": B, "steps": T, "input": D, "hidden": H, "layers": L,
                                        "lengths": "uniform in [T/2, T]"},
                              "ms": ms, "ratio_vs_nn_lstm_packed": {k: v / ms["nn.LSTM(packed)"] for k, v in ms.items()}}
    print(f"[{device.type}] kws with lengths: " + "  ".join(
        f"{k} {v:8.2f} ms ({v / ms['nn.LSTM(packed)']:.3f}x)" for k, v in ms.items()), flush=True)
    B, T, C, Hh, W, Ch = CONV_SHAPE
    B = max(1, int(round(B * batch_scale * 4))) if device.type == "cpu" else B * 8
    conv = lstm.ConvLSTM(C, Ch, 3).to(device)
    x = torch.randn(B, T, C, Hh, W, device=device)
    ms = time_fwd_bwd(conv, x, device, repeats)
    results["convlstm"] = {"shape": {"batch": B, "steps": T, "channels": C, "height": Hh, "width": W,
                                     "hidden_channels": Ch, "kernel": 3}, "ms": {"ConvLSTM": ms}}
    print(f"[{device.type}] convlstm B={B} T={T} {C}x{Hh}x{W} -> {Ch} ch: ConvLSTM {ms:.2f} ms", flush=True)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    p.add_argument("--cpu-batch-scale", type=float, default=1 / 8, help="batch multiplier on CPU (default 1/8)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--ref-repeats", type=int, default=2, help="repeats of the slow reference backend")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("cpu", "all"):
        devices.append(torch.device("cpu"))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        raise SystemExit("no CUDA device available")
    for dev in devices:
        scale = args.cpu_batch_scale if dev.type == "cpu" else 1.0
        info = machine_info(device=dev)  # before running: our own threads raise the load average
        res = {"device": dev.type, "machine": info, "batch_scale": scale,
               "what": "median ms of forward+backward (loss = mean of squared outputs)",
               "results": bench_device(dev, scale, args.repeats, args.ref_repeats)}
        out = Path(args.out) / f"backbone-{dev.type}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
