#!/usr/bin/env python
"""Keyword-spotting benchmarks, side by side in one run:

1. front end: batched MFCC (encoders.audio, torchaudio filter banks + torch FFT) vs librosa clip by
   clip (goal: >= 20x), and torchaudio.transforms.MFCC batched for reference;
2. exports of the checkpoint (ONNX float and int8, TorchScript float and int8): file sizes and, with
   --data, held-out clip accuracy of each next to PyTorch's;
3. streaming on ONE CPU thread: latency per block (median, p99) and real-time factor for 10, 20, 100 and
   500 ms blocks, the torch, onnx, onnx-int8 and torchscript engines side by side (goal: RTF <= 0.01 at
   10 ms);
4. training throughput (clips/s) of the default model, forward + backward + AdamW;
5. does the model wait for data (issue #13 §4)?  ``--loop-steps N`` (``--only loop``: this part alone): steps/s
   of ``lstm-media kws train``'s default run (``KWSConfig()`` as it is when run: per-item wave augmentation in
   ``KWSTrainSet.__getitem__``, features inside the model's forward; Trainer, AdamW, clipping, logging) vs the
   same model, loss and optimizer on the batches that loop made, replayed (``benchmarks/_loop.py``):
   interleaved rounds, medians, CPU and wall time; a cProfile of the data side (items + collate) and its
   seconds per batch next to the model's; and the same loop with other DataLoader worker counts
   (``--loop-workers``; the model keeps its threads).  (The prototypes once here are in ``KWSTrainSet`` now:
   the one-pass per-item path, and the channel effects made once per batch by ``__getitems__``.)

Writes benchmarks/results/kws-cpu.json (with a machine description), merged into what is there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _loop import (RESULTS, compare, data_side, hand_recorded, merge_json, model_step_seconds,  # noqa: E402
                   section, write_summary)
from _machine import machine_info  # noqa: E402


HAND_RECORDED = ("before", "independent_check", "active_waits")  # input_pipeline keys no rerun makes
DEFAULT_DATA = "data/ship/kws/data"  # the shipped models' synthesised data (make models --work data/ship)


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


def one_blas_thread():
    """NumPy's BLAS limited to one thread too (the torch engine's small products go through it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(1)


def block_latency(model, labels, wave: np.ndarray, block_ms: float, engine=None) -> dict:
    """Push ``wave`` in ``block_ms`` blocks; time every push (front end + LSTM + detection logic)."""
    from pipelines.kws.stream import DetectConfig, StreamingDetector

    cfg = DetectConfig(block_ms=block_ms)
    det = StreamingDetector(model, labels, cfg, engine=engine)
    block = int(block_ms * 16)
    for s in range(0, 16000, block):  # warm-up: one second
        det.push(wave[s: s + block])
    det.reset()
    times = []
    for s in range(0, len(wave) - block + 1, block):
        x = wave[s: s + block]
        t = time.perf_counter()
        det.push(x)
        times.append(time.perf_counter() - t)
    t = np.array(times)
    return {"median_ms": float(np.median(t) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3),
            "max_ms": float(t.max() * 1e3), "mean_ms": float(t.mean() * 1e3),
            "rtf": float(t.sum() / (len(t) * block / 16000)), "blocks": len(t)}


def bench_stream(checkpoint: str | None, seconds: float, export_dir: Path | None) -> dict:
    """Latency per block and real-time factor on ONE thread, torch and onnx engines side by side."""
    torch.set_num_threads(1)
    limit = one_blas_thread()  # noqa: F841 - kept for the duration
    model, extra = default_model(checkpoint)
    rng = np.random.default_rng(1)
    wave = (rng.standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32)
    engines = {"torch": None}
    if export_dir is not None:
        from pipelines.kws.export import load_engine

        for name in ("onnx", "onnx-int8", "torchscript"):
            if (export_dir / name).is_dir():
                engines[name] = load_engine(export_dir / name, threads=1)
    out = {"seconds_audio": seconds, "threads": 1, "goal_rtf_10ms": 0.01,
           "note": "latency = one push() of a block: front end + LSTM + smoothing/threshold; at 10 and 20 ms most "
                   "pushes only buffer audio (the LSTM steps every 30 ms), so p99 is the block that runs a step",
           "blocks_ms": {}}
    for block in (10, 20, 100, 500):
        row = {}
        for name, eng in engines.items():
            row[name] = min((block_latency(model, extra["labels"], wave, block, eng) for _ in range(2)),
                            key=lambda r: r["rtf"])
        out["blocks_ms"][str(block)] = row
    return out


def bench_export(checkpoint: str, work: Path, data: str | None) -> dict:
    """Export float and int8 (ONNX; TorchScript float); sizes; held-out clip accuracy of each when --data."""
    from pipelines.kws.export import deploy_missing, export, load_engine

    res = {}
    specs = [("torchscript", "torchscript", False), ("torchscript-int8", "torchscript", True)]
    if not deploy_missing():
        specs = [("onnx", "onnx", False), ("onnx-int8", "onnx", True)] + specs
    for name, fmt, q in specs:
        r = export(checkpoint, work / name, fmt, q, overwrite=True)
        res[name] = {"bytes": r["bytes"], "format": fmt, "int8": q}
    if data:
        from pipelines.kws.train import KWSConfig, load, predict_waves
        from pipelines.kws.data import build_split, eval_set, noise_bank, scan_dataset
        from encoders.io import SkipCounter

        model, b = load(checkpoint, "cpu", "benchmarks/kws.py")
        labels = b["labels"]
        index = scan_dataset(data)
        skipped = SkipCounter()
        cfg = KWSConfig.from_dict(b["task"])
        sp = build_split(index, "testing", labels, skipped, cfg.silence_percentage, cfg.unknown_percentage, False)
        waves, y = eval_set(sp, noise_bank(index.noise_files, skipped), labels, seed=cfg.seed + 2)
        y = y.numpy()
        torch.set_num_threads(2)
        acc = {"pytorch": float((predict_waves(model, waves).argmax(-1).numpy() == y).mean())}
        for name in res:
            p = load_engine(work / name, threads=2).clip_posteriors(waves.numpy())
            acc[name] = float((p.argmax(-1) == y).mean())
            res[name]["held_out_accuracy"] = acc[name]
        where = str(data) if not Path(data).is_absolute() else Path(data).name
        res["held_out"] = {"data": f"the testing split (held-out voices) of {where} as `kws eval` builds it: keyword "
                           "clips, a 10 % unknown share and noise-only silences",
                           "clips": int(len(y)), "accuracy_pytorch": acc["pytorch"]}
    return res


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


def _memo_decoding(kws_train):
    """Decode each split once per benchmark process (outside the timed steps, so the figures do not
    change; the rounds just start sooner).  Returns the original function, to put back."""
    original, memo = kws_train.build_split, {}

    def build_split(index, split, labels, skipped, *a, **k):
        key = (str(index.root) if hasattr(index, "root") else None, len(index.items), split, tuple(labels),
               a, tuple(sorted(k.items())))
        if key not in memo:
            memo[key] = original(index, split, labels, skipped, *a, **k)
        return memo[key]

    kws_train.build_split = build_split
    return original


def bench_training_loop(data: str, steps: int, work: Path, rounds: int = 2, skip: int = 10, threads: int = 1,
                        workers: tuple[int, ...] = (1,), profile_batches: int = 8, robust: bool = False) -> dict:
    """``lstm-media kws train --data DATA`` with its defaults: full loop vs model alone (CPU and wall time),
    the data side's cost and profile, and the loop with ``workers`` DataLoader processes."""
    import importlib

    from pipelines.kws.cli import main as kws_main

    kws_train = importlib.import_module("pipelines.kws.train")  # the module (the package exports train())

    if not (Path(data) / "training_list.txt").is_file() and not any(Path(data).glob("*/*.wav")):
        raise SystemExit(f"{data}: not a Speech Commands-layout folder (make one: lstm-media kws synth --out {data})")

    def run(run_dir: Path, flags: tuple[str, ...] = ()):
        rc = kws_main(["train", "--data", str(data), "--out", str(run_dir), "--fresh", "--threads", str(threads),
                       *flags])
        raise RuntimeError(f"lstm-media kws train exited with {rc} before the timed steps")

    cfg = kws_train.KWSConfig()
    original = _memo_decoding(kws_train)
    try:
        print(f"kws: training loop vs model alone ({steps} steps of kws train's defaults, {threads} thread(s))",
              file=sys.stderr, flush=True)
        res = compare(kws_train, run, work / "w0", steps, rounds, skip, label="kws")
        probe = res.pop("_probe")
        step_s = model_step_seconds(probe)
        side = data_side(probe, profile_batches, profile_top=15)
        side["model_step_cpu_s"] = step_s
        side["expected_ratio_if_serial"] = step_s / (step_s + side["cpu_s_per_batch"])
        print(f"  kws data side: {side['cpu_s_per_batch'] * 1e3:.0f} ms CPU per batch vs model step "
              f"{step_s * 1e3:.0f} ms -> expected ratio {side['expected_ratio_if_serial']:.3f}", file=sys.stderr)
        res["data_side"] = side
        res["worker_prototypes"] = {}
        for w in workers:
            print(f"kws: the same with num_workers={w}", file=sys.stderr, flush=True)
            r = compare(kws_train, run, work / f"w{w}", steps, rounds, skip, overrides={"num_workers": w},
                        label=f"kws num_workers={w}")
            r.pop("_probe")
            r["judge_by"] = ("wall: a main process that waits for a worker's batch spends no CPU time, so only the "
                             "wall ratio shows waiting; cpu_all counts the workers' CPU too")
            res["worker_prototypes"][f"num_workers_{w}"] = r
        if robust:
            print("kws: the same with --augment robust (issue #9's speaker and channel augmentation)",
                  file=sys.stderr, flush=True)
            r = compare(kws_train, lambda d: run(d, ("--augment", "robust")), work / "robust", steps, rounds, skip,
                        label="kws --augment robust")
            p = r.pop("_probe")
            st = model_step_seconds(p)
            side = data_side(p, profile_batches, profile_top=10)
            side.update(model_step_cpu_s=st, expected_ratio_if_serial=st / (st + side["cpu_s_per_batch"]))
            r["data_side"] = side
            from encoders.audio import AugmentConfig

            default = " (the default)" if cfg.augment == AugmentConfig.robust() else " (not the default when measured)"
            r["what"] = f"kws train --augment robust{default}: the cost of the channel augmentations"
            res["augment_robust"] = r
    finally:
        kws_train.build_split = original
    aug = cfg.augment
    res["config"] = (f"kws train defaults: {cfg.model} {cfg.num_layers} x {cfg.hidden_size}, {cfg.feature_kind} "
                     f"features in the model (stack {cfg.stack}), batch {cfg.batch_size}, AdamW lr {cfg.lr}, clip "
                     f"1.0, augmentation {aug.to_dict()}, CPU, {threads} thread(s), data {data}")
    return res


def main(args) -> dict:
    import tempfile

    load0 = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    if args.only == "loop":
        return loop_main(args)
    res = {}
    if not args.skip_frontend:
        res["frontend"] = bench_frontend(args.batch, args.librosa_clips, args.repeat)
        print(f"front end: batched {res['frontend']['ms_per_clip_batched']:.3f} ms/clip, librosa "
              f"{res['frontend']['ms_per_clip_librosa']:.3f} ms/clip -> {res['frontend']['speedup_vs_librosa']:.1f}x "
              f"(goal >= 20x); torchaudio.transforms.MFCC {res['frontend']['ms_per_clip_torchaudio_transform']:.3f} "
              "ms/clip", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.checkpoint:
            res["export"] = ex = bench_export(args.checkpoint, work, args.data)
            for name, r in ex.items():
                if name != "held_out":
                    acc = f", held-out accuracy {r['held_out_accuracy']:.4f}" if "held_out_accuracy" in r else ""
                    print(f"export {name}: {r['bytes'] / 1e6:.2f} MB{acc}", flush=True)
            if "held_out" in ex:
                print(f"  PyTorch float on the same {ex['held_out']['clips']} clips: "
                      f"{ex['held_out']['accuracy_pytorch']:.4f}", flush=True)
        res["streaming"] = s = bench_stream(args.checkpoint, args.stream_seconds, work if args.checkpoint else None)
    print("streaming, one thread: latency per block, median / p99 ms (real-time factor)")
    for block, row in s["blocks_ms"].items():
        print(f"  {block:>4s} ms  " + "   ".join(f"{k}: {v['median_ms']:.3f} / {v['p99_ms']:.3f} ({v['rtf']:.4f})"
                                            for k, v in row.items()), flush=True)
    if not args.skip_training:
        res["training"] = bench_train(64, args.repeat, args.threads)
        t = res["training"]
        print(f"training ({args.threads} threads, batch 64): {t['clips_per_s_clip_1s']:.0f} clips/s on 1 s clips, "
              f"{t['clips_per_s_clip_with_context_1.5s']:.0f} clips/s with 0.5 s context", flush=True)
    shared = max(load0, os.getloadavg()[0]) > 1.5
    res["machine"] = machine_info(args.threads, note=None if not shared else
                                  "the machine was shared with other jobs while measured: timings are contended")
    res["checkpoint"] = args.checkpoint
    out = Path(args.out)
    merge_json(out, res)
    print(f"wrote {out}")
    if args.loop_steps:
        if Path(args.data or DEFAULT_DATA).is_dir():
            loop_main(args)
        else:
            print(f"no {args.data or DEFAULT_DATA}: the input-pipeline part is skipped (--data DIR, or make models)")
    return res


def loop_main(args) -> dict:
    """The input-pipeline part alone, merged into ``args.out`` under ``input_pipeline`` (and the summary)."""
    import tempfile

    torch.set_num_threads(args.loop_threads)
    machine = machine_info(args.loop_threads)
    with tempfile.TemporaryDirectory() as d:
        res = bench_training_loop(args.data or DEFAULT_DATA, args.loop_steps, Path(d), args.loop_rounds,
                                  args.loop_skip, args.loop_threads, tuple(args.loop_workers),
                                  args.profile_batches, args.also_robust)
    sec = section(res, res.pop("config"), machine)
    out = Path(args.out)
    sec.update(hand_recorded(out, "input_pipeline", HAND_RECORDED))  # before a change; other OpenMP wait policies
    merge_json(out, {"input_pipeline": sec})
    if out.parent.resolve() == RESULTS.resolve():
        write_summary()
    print(json.dumps({"loop_vs_model_alone": {"cpu": sec["ratio_loop_vs_model_alone_cpu"],
                                              "wall": sec["ratio_loop_vs_model_alone_wall"]},
                      "workers": {k: v["ratio_loop_vs_model_alone_wall"]
                                  for k, v in sec["worker_prototypes"].items()}, "out": str(out)}))
    return sec


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="kws",
                   help="a trained kws checkpoint or shipped model name (default: the shipped 'kws'); '' for an "
                        "untrained default model (no export figures)")
    p.add_argument("--data", default=None, help="a Speech Commands-layout folder: held-out accuracy of the PyTorch "
                                                "model and of each export (float, int8) on its testing split; the "
                                                f"training data of the loop part (default there: {DEFAULT_DATA})")
    p.add_argument("--skip-frontend", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--librosa-clips", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--stream-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "kws-cpu.json"))
    p.add_argument("--only", choices=["all", "loop"], default="all",
                   help="loop: only the input-pipeline part (training loop vs model alone)")
    p.add_argument("--loop-steps", type=int, default=40, help="training steps timed per run (0: skip that part)")
    p.add_argument("--loop-rounds", type=int, default=2, help="interleaved loop / model-alone pairs (medians)")
    p.add_argument("--loop-skip", type=int, default=10, help="warm-up steps not timed")
    p.add_argument("--loop-threads", type=int, default=1,
                   help="torch threads of the training (default 1: least disturbed by other jobs)")
    p.add_argument("--loop-workers", type=int, nargs="*", default=[0],
                   help="also time the loop with these DataLoader worker counts, the model keeping its threads "
                        "(default 0: the augmentation in the training process, beside kws train's 1 worker; "
                        "none: skip)")
    p.add_argument("--profile-batches", type=int, default=8, help="batches of the data side under cProfile")
    p.add_argument("--also-robust", action="store_true",
                   help="also time the loop of kws train --augment robust (issue #9's channel augmentation)")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
