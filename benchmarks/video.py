"""Video pipeline throughput, side by side in one run.

1. Front end: decode + sample + resize + normalise (``encoders.video.load_clip``) in decoded frames per
   second, next to opencv decoding alone and ffmpeg's own decode rate of the same files
   (``ffmpeg -i f -f null -``, one process per file, like the pipeline's one open per clip).
2. Models: training and inference clips per second of every registered video model on CPU.
3. ``--only frozen``: frozen-feature training (``train --freeze-encoder``) with ResNet-18 at 112 px
   (randomly initialised; speed does not depend on the weights): building the feature cache (clips/s),
   training the LSTM on cached features vs end to end through the CNN (training clips/s), and the
   ratios, written to ``results/video-frozen-cpu.json``.
4. Does the model wait for data (issue #13 §4)?  ``--loop-steps N`` (``--only loop``: this part alone): steps/s
   of ``lstm-media video train``'s default runs (classify: video-cnn-lstm, T=8 frames of 32x32; caption: the
   caption recipe, 64x64, speed and scale augmentation; batch 16, on the default rendered data) vs the same
   model, loss and optimizer on the batches that loop made, replayed (``benchmarks/_loop.py``): interleaved
   rounds, medians, CPU and wall time; merged into ``results/video-cpu.json`` under ``input_pipeline`` (one
   thread) or ``input_pipeline_N_threads`` (``--threads N``).

    python benchmarks/video.py [--clips 48] [--threads 1] [--out benchmarks/results/video-cpu.json]
    python benchmarks/video.py --only frozen [--threads 1]
    python benchmarks/video.py --only loop [--data data/ship-video/clips] [--loop-steps 60]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# as lstm-media runs (pipelines/__init__.py sets it before torch loads): passive OpenMP waits; importing torch
# first would leave OpenMP's spinning default, under which two-thread timings differ a lot
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _loop import (RESULTS, compare, data_side, hand_recorded, merge_json, model_step_seconds, section,
                   write_summary)
from _machine import machine_info  # benchmarks/ is the script's folder

DEFAULT_DATA = "data/ship-video/clips"  # the shipped models' rendered data (make models; = video synth defaults)


def bench_front_end(paths: list[Path], fe) -> dict:
    from encoders.io.video import ffmpeg_decode_seconds, probe_video, read_video
    from encoders.video import load_clip

    frames = sum(probe_video(p).frames for p in paths)
    t = time.perf_counter()
    for p in paths:
        read_video(p)  # full-size decode, RGB conversion
    t_cv = time.perf_counter() - t
    t = time.perf_counter()
    for p in paths:
        load_clip(p, fe)  # decode + resize while decoding + sample + normalise
    t_ours = time.perf_counter() - t
    t_ff = ffmpeg_decode_seconds(paths, threads=1)
    return {
        "clips": len(paths), "decoded_frames": frames,
        "ours_decode_sample_encode_fps": frames / t_ours, "ours_clips_per_s": len(paths) / t_ours,
        "opencv_decode_only_fps": frames / t_cv,
        "ffmpeg_decode_fps": frames / t_ff,
        "ratio_ours_vs_ffmpeg": (frames / t_ours) / (frames / t_ff),
        "ratio_opencv_vs_ffmpeg": (frames / t_cv) / (frames / t_ff),
    }


def bench_models(fe, batch: int = 16, steps: int = 10) -> dict:
    from pipelines.registry import get_model
    from pipelines.video import models  # noqa: F401

    T, (H, W) = fe.num_frames, fe.size
    out = {}
    torch.manual_seed(0)
    x = torch.randn(batch, T, 3, H, W)
    for name in ("video-cnn-lstm", "video-convlstm", "video-frame", "video-caption"):
        cap = name == "video-caption"
        m = get_model(name, vocab_size=20) if cap else get_model(name, num_classes=6)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        tgt = torch.randint(4, 20, (batch, 6))
        y = torch.randint(0, 6, (batch,))
        m.train()
        for i in range(steps + 2):
            if i == 2:
                t = time.perf_counter()
            if cap:
                logp, bow, fbow = m(x, tgt, with_bow=True)
                loss = F.nll_loss(logp.flatten(0, 1), tgt.flatten()) + bow.mean() + fbow.mean()
            else:
                loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_cps = batch * steps / (time.perf_counter() - t)
        m.eval()
        xb = torch.randn(64, T, 3, H, W)
        with torch.no_grad():
            for i in range(3):
                if i == 1:
                    t = time.perf_counter()
                m.generate(xb, 1, 2, 8, 1) if cap else m(xb)
        infer_cps = 64 * 2 / (time.perf_counter() - t)
        out[name] = {"train_clips_per_s": train_cps, "infer_clips_per_s": infer_cps,
                     "params": sum(p.numel() for p in m.parameters())}
        if cap:
            with torch.no_grad():
                t = time.perf_counter()
                m.generate(xb[:16], 1, 2, 8, 5)
            out[name]["beam5_clips_per_s"] = 16 / (time.perf_counter() - t)
    return out


def bench_frozen(encoder: str = "resnet18", size: int = 112, T: int = 8, batch: int = 8, clips: int = 24,
                 e2e_steps: int = 2, cached_steps: int = 50) -> dict:
    """Feature-cache build rate, and training clips/s on cached features vs end to end, side by side."""
    from encoders.video import IMAGENET_MEAN, IMAGENET_STD, VideoFrontEndConfig, encode_frames, uint8_to_input
    from pipelines.registry import get_model
    from pipelines.video import models  # noqa: F401

    fe = VideoFrontEndConfig(num_frames=T, size=(size, size), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    torch.manual_seed(0)
    u8 = torch.randint(0, 256, (clips, T, size, size, 3), dtype=torch.uint8)
    y = torch.randint(0, 6, (clips,))

    frozen = get_model("video-cnn-lstm", num_classes=6, frame_encoder=encoder, freeze_encoder=True)
    encode_frames(frozen._encoder(), u8[:2], prepare=lambda x: uint8_to_input(x, fe))  # warm-up
    t = time.perf_counter()
    feats = encode_frames(frozen._encoder(), u8, batch_size=batch, prepare=lambda x: uint8_to_input(x, fe))
    build_s = time.perf_counter() - t

    def train_rate(model, inputs, steps: int) -> float:
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3)
        model.train()
        t = 0.0
        for i in range(steps + 1):  # the first step warms up
            j = (i * batch) % len(inputs)
            x = inputs[j:j + batch]
            x = uint8_to_input(x, fe) if x.dtype == torch.uint8 else x
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y[j:j + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                t += time.perf_counter() - t0
        return batch * steps / t

    cached = train_rate(frozen, feats, cached_steps)
    on_the_fly = train_rate(frozen, u8, e2e_steps)  # frozen encoder run every step (no cache)
    e2e = train_rate(get_model("video-cnn-lstm", num_classes=6, frame_encoder=encoder), u8, e2e_steps)
    out = {"encoder": encoder, "input_size": size, "frames_per_clip": T, "batch_size": batch,
           "feature_size": int(feats.shape[-1]),
           "cache_build_clips_per_s": clips / build_s, "cache_build_frames_per_s": clips * T / build_s,
           "train_cached_clips_per_s": cached, "train_frozen_no_cache_clips_per_s": on_the_fly,
           "train_end_to_end_clips_per_s": e2e,
           "ratio_cached_vs_end_to_end": cached / e2e, "ratio_cached_vs_frozen_no_cache": cached / on_the_fly,
           "ratio_cache_build_vs_end_to_end_training": (clips / build_s) / e2e}
    print(f"{encoder} {size}px: cache build {out['cache_build_clips_per_s']:.2f} clips/s; training on cached "
          f"features {cached:.0f} clips/s vs end to end {e2e:.2f} clips/s ({out['ratio_cached_vs_end_to_end']:.0f}x), "
          f"frozen without cache {on_the_fly:.2f} clips/s", file=sys.stderr)
    return out


def bench_training_loop(data: str, steps: int, work: Path, rounds: int = 2, skip: int = 10, threads: int = 1,
                        tasks=("classify", "caption"), extra: tuple[str, ...] = ()) -> dict:
    """``lstm-media video train --task T --data DATA`` with its defaults, for each task: full loop vs model
    alone (CPU and wall time) and the data side's seconds per batch next to the model step's.  ``extra``:
    more ``train`` flags (tests use tiny frames)."""
    import importlib

    from pipelines.video.cli import main as video_main

    video_train = importlib.import_module("pipelines.video.train")  # the module (the package exports train())
    if not (Path(data) / "classes.txt").is_file():
        raise SystemExit(f"{data}: not a rendered video data set (make one: lstm-media video synth --out {data})")
    out = {}
    for task in tasks:
        def run(run_dir: Path, task=task):
            rc = video_main(["train", "--task", task, "--data", str(data), "--out", str(run_dir), "--fresh",
                             "--threads", str(threads), *extra])
            raise RuntimeError(f"lstm-media video train exited with {rc} before the timed steps")

        print(f"video {task}: training loop vs model alone ({steps} steps of video train's defaults)",
              file=sys.stderr, flush=True)
        res = compare(video_train, run, work / task, steps, rounds, skip, label=f"video {task}")
        probe = res.pop("_probe")
        step_s = model_step_seconds(probe)
        side = data_side(probe, 20)
        side.update(model_step_cpu_s=step_s, expected_ratio_if_serial=step_s / (step_s + side["cpu_s_per_batch"]))
        res["data_side"] = side
        cfg = probe.config
        res["config"] = (f"video train --task {task} defaults: {probe.model0.__class__.__name__} "
                         f"({sum(p.numel() for p in probe.model0.parameters())} parameters), batch {cfg.batch_size}, "
                         f"AdamW lr {cfg.lr}, clip {cfg.grad_clip}, flip/reverse augmentation, input "
                         f"{tuple(probe.batches[0][0].shape[1:])}, CPU, {threads} thread(s), data {data}")
        out[task] = res
    return out


def loop_key(threads: int) -> str:
    """The results section of the loop part: one thread (the model and the data side in one process) and
    more threads (``video train``'s default data loading there: :func:`pipelines.video.train.video_workers`)."""
    return "input_pipeline" if threads == 1 else f"input_pipeline_{threads}_threads"


def loop_main(args) -> dict:
    """The input-pipeline part alone, merged into ``args.out`` under :func:`loop_key` (and the summary); a
    hand-recorded ``before`` (figures of older code) in the section is kept."""
    machine = machine_info(args.threads, note=args.note)
    with tempfile.TemporaryDirectory() as d:
        res = bench_training_loop(args.data, args.loop_steps, Path(d), args.loop_rounds, args.loop_skip,
                                  args.threads)
    secs = {task: section(r, r.pop("config"), machine) for task, r in res.items()}
    out = Path(args.out) if args.out else RESULTS / "video-cpu.json"
    key = loop_key(args.threads)
    doc = dict(secs)
    if args.threads > 1:
        doc["what"] = (f"the same loops with --threads {args.threads} (video train's default on a machine with "
                       f"{args.threads} cores) and passive OpenMP waits as lstm-media runs, with video train's "
                       "default data loading (video_workers: no worker process; num_workers). With a worker judge "
                       "by wall time (the training process waits for it without CPU time).")
    doc.update(hand_recorded(out, key, ("before",)))
    merge_json(out, {key: doc})
    if out.parent.resolve() == RESULTS.resolve():
        write_summary()
    print(json.dumps({"loop_vs_model_alone": {t: {"cpu": s["ratio_loop_vs_model_alone_cpu"],
                                                  "wall": s["ratio_loop_vs_model_alone_wall"]}
                                              for t, s in secs.items()}, "out": str(out)}))
    return secs


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    if args.only == "loop":
        return loop_main(args)
    if args.only == "frozen":
        res = {"machine": machine_info(args.threads, note=args.note), "frozen": bench_frozen()}
        out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / "video-frozen-cpu.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(json.dumps(res))
        return res
    from encoders.io.video import write_video
    from encoders.video import VideoFrontEndConfig
    from pipelines.video.synth import ACTIONS, random_spec, render

    fe = VideoFrontEndConfig()
    res = {"machine": machine_info(args.threads, note=args.note), "front_end_config": fe.to_dict()}
    with tempfile.TemporaryDirectory() as d:
        by_codec = {}
        for codec in ("mp4v", "mjpg", "xvid", "h264"):
            paths = []
            for k in range(args.clips // 4):
                rng = np.random.default_rng([1, k])
                spec = random_spec(rng, ACTIONS[k % 6], seed=k, width=320, height=240, frames=30)
                paths.append(write_video(Path(d) / f"{codec}_{k}{'.avi' if codec in ('mjpg', 'xvid') else '.mp4'}",
                                         render(spec), 25, codec))
            by_codec[codec] = bench_front_end(paths, fe)
            # one long file: ffmpeg's decode rate without a process start per clip
            from encoders.io.video import ffmpeg_decode_seconds, iter_frames, read_video
            long = write_video(Path(d) / f"long_{codec}{paths[0].suffix}",
                               np.concatenate([read_video(p)[0] for p in paths]), 25, codec)
            n = sum(1 for _ in iter_frames(long, size=(8, 8)))
            t = time.perf_counter()
            for _ in iter_frames(long, size=tuple(fe.size)):
                pass
            t_ours = time.perf_counter() - t
            t_ff = ffmpeg_decode_seconds([long], threads=1)
            by_codec[codec]["long_file"] = {"frames": n, "ours_decode_resize_fps": n / t_ours,
                                            "ffmpeg_decode_fps": n / t_ff, "ratio_ours_vs_ffmpeg": t_ff / t_ours}
            print(f"{codec:>5}: ours {by_codec[codec]['ours_decode_sample_encode_fps']:7.0f} frames/s, "
                  f"opencv decode {by_codec[codec]['opencv_decode_only_fps']:7.0f}, "
                  f"ffmpeg {by_codec[codec]['ffmpeg_decode_fps']:7.0f}  "
                  f"(ours/ffmpeg {by_codec[codec]['ratio_ours_vs_ffmpeg']:.2f} per clip; one long file: ours "
                  f"{by_codec[codec]['long_file']['ours_decode_resize_fps']:.0f} vs ffmpeg "
                  f"{by_codec[codec]['long_file']['ffmpeg_decode_fps']:.0f} frames/s, "
                  f"{by_codec[codec]['long_file']['ratio_ours_vs_ffmpeg']:.2f})", file=sys.stderr)
        res["front_end"] = {"clip_size": "320x240, 30 frames", "by_codec": by_codec}
    res["models"] = bench_models(fe)
    for k, v in res["models"].items():
        print(f"{k:>15}: train {v['train_clips_per_s']:6.1f} clips/s, inference {v['infer_clips_per_s']:6.1f} clips/s",
              file=sys.stderr)
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / "video-cpu.json"
    merge_json(out, res)  # keeps the input_pipeline section
    print(json.dumps(res))
    if args.loop_steps:
        if (Path(args.data) / "classes.txt").is_file():
            loop_main(args)
        else:
            print(f"no data set in {args.data}: the input-pipeline part is skipped (--data DIR, or make models)",
                  file=sys.stderr)
    return res


def get_args_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=48, help="clips rendered (split over 4 codecs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default=None, help="machine note (default: judged from the load average)")
    ap.add_argument("--only", choices=["all", "frozen", "loop"], default="all",
                    help="frozen: only the frozen-feature section (its own results file); loop: only the "
                         "input-pipeline part (training loop vs model alone)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="rendered data the loop part trains on (default %(default)s)")
    ap.add_argument("--loop-steps", type=int, default=60, help="training steps timed per run (0: skip that part)")
    ap.add_argument("--loop-rounds", type=int, default=2, help="interleaved loop / model-alone pairs (medians)")
    ap.add_argument("--loop-skip", type=int, default=10, help="warm-up steps not timed")
    ap.add_argument("--out", default=None,
                    help="default results/video-cpu.json (frozen: results/video-frozen-cpu.json)")
    return ap


if __name__ == "__main__":
    main(get_args_parser().parse_args())
