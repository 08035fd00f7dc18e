"""End-to-end demo on default (rendered) data: render -> train classify (CNN-LSTM and the single-frame
baseline) -> train caption -> evaluate on freshly rendered clips (new seed) -> label clips and a long
video (.srt) -> caption clips.  Prints where every output is."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipelines.cli_common import write_text_atomic

from .infer import caption_clips, evaluate, label_clips, label_segments, write_labels, write_srt
from .synth import render_long_video, synthesize
from .train import VideoTrainConfig, caption_config, train

FRONTEND = {"num_frames": 8, "size": [32, 32], "sampling": "uniform"}


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def run_demo(out: str | Path, data: str | Path | None = None, train_per_class: int = 100, epochs: int = 25,
             caption_epochs: int = 30, baseline_epochs: int = 5, quiet: bool = False, device: str = "cpu") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times: dict[str, float] = {}
    data = Path(data) if data else out / "clips"
    fresh = out / "clips_fresh"
    progress = not quiet

    t = time.time()
    if not (data / "train.txt").is_file():
        _log(f"rendering {train_per_class} training + 20 validation clips per action into {data}")
        synthesize(data, (train_per_class, 20, 0), seed=0, progress=progress)
    if not (fresh / "test.txt").is_file():
        _log(f"rendering 30 fresh test clips per action (new seed) into {fresh}")
        synthesize(fresh, (0, 0, 30), seed=12345, progress=progress)
    long_video = out / "long" / "long.mp4"
    if not long_video.is_file():
        truth = render_long_video(long_video, segments=6, seconds=2.0, fps=10.0, seed=7)
        write_text_atomic(out / "long" / "truth.json", json.dumps(truth, indent=2))
    truth = json.loads((out / "long" / "truth.json").read_text())
    times["render"] = time.time() - t

    runs = {}
    for name, model, task, ep in [("classify", "video-cnn-lstm", "classify", epochs),
                                  ("frame", "video-frame", "classify", baseline_epochs),
                                  ("caption", "video-caption", "caption", caption_epochs)]:
        t = time.time()
        _log(f"training {model} ({task}, {ep} epochs)")
        cfg = (caption_config(FRONTEND, ep, progress=progress, device=device) if task == "caption" else
               VideoTrainConfig(task=task, model=model, frontend=FRONTEND, epochs=ep, progress=progress, device=device))
        runs[name] = train(data, out / name, cfg)
        times[f"train_{name}"] = time.time() - t

    t = time.time()
    _log("evaluating on the fresh clips")
    ev = {name: evaluate(out / name / "best.pt", fresh, "test", out / name, progress=progress, device=device)
          for name in runs}
    ev["caption_beam5"] = evaluate(out / "caption" / "best.pt", fresh, "test", out / "caption", beam_size=5,
                                   progress=progress, device=device)
    times["eval"] = time.time() - t

    t = time.time()
    some = sorted(fresh.rglob("*_0000.*"))[:6]
    labels = label_clips(out / "classify" / "best.pt", some, top_k=3, progress=False, device=device)
    write_labels(labels, out / "labels.csv")
    segs = label_segments(out / "classify" / "best.pt", long_video, 2.0, progress=False, device=device)
    srt = write_srt(segs["segments"], out / "long" / "long.srt")
    seg_acc = sum(s["label"] == g["action"] for s, g in zip(segs["segments"], truth)) / max(len(truth), 1)
    caps = caption_clips(out / "caption" / "best.pt", some, beam_size=5, progress=False, device=device)
    write_text_atomic(out / "captions.json", json.dumps(caps, indent=2))
    times["label_caption"] = time.time() - t
    times["total"] = time.time() - t0

    summary = {
        "cnn_lstm_accuracy": ev["classify"]["accuracy"], "frame_baseline_accuracy": ev["frame"]["accuracy"],
        "caption_greedy": {k: ev["caption"][k] for k in ("bleu4", "cider", "exact_match", "n")},
        "caption_beam5": {k: ev["caption_beam5"][k] for k in ("bleu4", "cider", "exact_match", "n")},
        "long_video_segment_accuracy": seg_acc, "n_test": ev["classify"]["n"], "seconds": times,
        "outputs": {
            "data": str(data), "fresh_test_clips": str(fresh),
            "classifier": str(out / "classify" / "best.pt"), "confusion": ev["classify"]["confusion_png"],
            "baseline_confusion": ev["frame"]["confusion_png"], "captioner": str(out / "caption" / "best.pt"),
            "loss_curves": [str(out / n / "loss.png") for n in runs], "labels": str(out / "labels.csv"),
            "captions": str(out / "captions.json"), "long_video": str(long_video), "srt": str(srt),
        },
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    if not quiet:
        print("\n== video demo ==")
        print(f"CNN-LSTM accuracy on {summary['n_test']} fresh clips: {summary['cnn_lstm_accuracy']:.3f}   "
              f"single-frame baseline: {summary['frame_baseline_accuracy']:.3f}")
        for k in ("caption_greedy", "caption_beam5"):
            c = summary[k]
            print(f"captioning ({k[8:]}): exact match {c['exact_match']:.3f}  BLEU-4 {c['bleu4']:.3f}  "
                  f"CIDEr {c['cider']:.3f}")
        print(f"long video, 2 s windows: {seg_acc:.2f} of {len(truth)} windows right")
        for r, c in zip(labels["labels"], caps["captions"]):
            print(f"  {Path(r['path']).name:<32} {r['label']:<11} {r['score']:.2f}   \"{c['caption']}\"")
        print(f"time: {', '.join(f'{k} {v:.0f} s' for k, v in times.items())}")
        print("outputs:")
        for k, v in summary["outputs"].items():
            print(f"  {k:<20} {v}")
        print(f"  {'summary':<20} {out / 'summary.json'}")
    return summary


def run_predict_demo(out: str | Path, train_clips: int = 300, epochs: int = 2, quiet: bool = False,
                     device: str = "cpu") -> dict:
    """Future-frame prediction, short: render Moving-MNIST-style digits (``train_clips`` + 30 val, and
    30 fresh clips of unseen handwriting with another seed) -> train the ConvLSTM encoder–forecaster
    (K=10 -> N=10) -> MSE/SSIM vs copy-last and mean-frame on the fresh clips -> side-by-side GIF and
    PNG strip of three fresh clips."""
    from .predict import evaluate_predict, predict_clips
    from .synth import synthesize_digits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data, fresh = out / "digits", out / "digits_fresh"
    if not (data / "train.txt").is_file():
        _log(f"rendering {train_clips} + 30 Moving-MNIST-style clips into {data}")
        synthesize_digits(data, (train_clips, 30, 0), seed=0, progress=not quiet)
    if not (fresh / "test.txt").is_file():
        synthesize_digits(fresh, (0, 0, 30), seed=4242, progress=not quiet)
    _log(f"training the ConvLSTM encoder-forecaster ({epochs} epochs)")
    cfg = VideoTrainConfig(task="predict", model="video-predict-convlstm", frontend={"size": [64, 64]},
                           epochs=epochs, batch_size=16, lr=2e-3, progress=not quiet, device=device)
    train(data, out / "run", cfg)
    rep = evaluate_predict(out / "run" / "best.pt", fresh, "test", device=device)
    clips = sorted((fresh / "digits").glob("*"))[:3]
    outs = [(out / "predictions" / f"{c.stem}.gif", out / "predictions" / f"{c.stem}.png") for c in clips]
    for a, b in outs:
        for f in (a, b):
            f.unlink(missing_ok=True)
    pred = predict_clips(out / "run" / "best.pt", clips, outs, device=device)
    summary = {k: rep[k] for k in ("mse", "ssim", "mse_copy_last", "ssim_copy_last", "mse_mean_frame",
                                   "ssim_mean_frame", "n")}
    summary["outputs"] = {"checkpoint": str(out / "run" / "best.pt"),
                          "predictions": [r["video"] for r in pred["predictions"]],
                          "strips": [r["strip"] for r in pred["predictions"]]}
    summary["seconds"] = time.time() - t0
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    if not quiet:
        print("\n== video prediction demo ==")
        print(f"{rep['n']} fresh clips, 10 -> 10 frames: MSE {rep['mse']:.4f} vs copy-last {rep['mse_copy_last']:.4f} "
              f"({100 * (1 - rep['mse_vs_copy_last']):.0f}% lower), mean-frame {rep['mse_mean_frame']:.4f}; "
              f"SSIM {rep['ssim']:.3f} vs copy-last {rep['ssim_copy_last']:.3f}")
        print(f"side by side (input | truth | prediction): {', '.join(summary['outputs']['predictions'])}")
        print(f"time: {summary['seconds']:.0f} s; summary: {out / 'summary.json'}")
    return summary


__all__ = ["run_demo", "run_predict_demo", "FRONTEND"]
