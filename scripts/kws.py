#!/usr/bin/env python
"""Keyword spotting: synthesise data, train, evaluate, predict, detect in a stream, demo.

    python scripts/kws.py synth --out data/kws
    python scripts/kws.py train --data data/kws --out runs/kws [--preset digits | --words a b c] [--epochs N]
    python scripts/kws.py eval --checkpoint runs/kws/best.pt --data data/kws [--json]
    python scripts/kws.py predict --checkpoint runs/kws/best.pt clip.wav ...
    python scripts/kws.py stream-wav --data data/kws --out long.wav        # a long test recording
    python scripts/kws.py detect --checkpoint runs/kws/best.pt long.wav [--json]
    python scripts/kws.py demo --out runs/demo-kws
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

# OpenMP threads that spin while waiting collapse (10x) when the 2 cores are shared; passive waiting
# costs nothing on an idle machine.  Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.audio import AugmentConfig  # noqa: E402
from encoders.io import DecodeError  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synth", help="write the offline Speech Commands-layout dataset")
    s.add_argument("--out", default="data/kws")
    s.add_argument("--variants-per-accent", type=int, default=None, help="espeak-ng voices per accent (48)")
    s.add_argument("--espeak-takes", type=int, default=None, help="renditions per word per espeak-ng voice (2)")
    s.add_argument("--flite-takes", type=int, default=None, help="renditions per word per flite voice (4)")
    s.add_argument("--words", nargs="+", default=None, help="words to speak (all 35 Speech Commands words)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train on any Speech Commands-layout folder")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    g = t.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=["default", "digits"], default=None)
    g.add_argument("--words", nargs="+", default=None)
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--hidden", type=int, default=None)
    t.add_argument("--layers", type=int, default=None)
    t.add_argument("--bidirectional", action="store_true")
    t.add_argument("--features", choices=["mfcc", "logmel"], default=None)
    t.add_argument("--no-augment", action="store_true", help="switch off noise, shift and SpecAugment")
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--fresh", action="store_true", help="ignore RUN/last.pt instead of resuming")
    t.add_argument("--json", action="store_true")

    e = sub.add_parser("eval", help="accuracy, per-class accuracy and a confusion PNG on a folder")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="auto", choices=["auto", "training", "validation", "testing", "all"])
    e.add_argument("--png", default=None, help="confusion-matrix PNG (default: next to the checkpoint)")
    e.add_argument("--json", action="store_true")

    r = sub.add_parser("predict", help="label and score for each clip")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("files", nargs="+")
    r.add_argument("--json", action="store_true")

    w = sub.add_parser("stream-wav", help="write a long recording of held-out voices over noise (+ truth .json)")
    w.add_argument("--data", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--preset", choices=["default", "digits"], default="default")
    w.add_argument("--words", nargs="+", default=None)
    w.add_argument("--keywords", type=int, default=16)
    w.add_argument("--unknown", type=int, default=4)
    w.add_argument("--snr", type=float, default=15.0)
    w.add_argument("--seed", type=int, default=0)

    d = sub.add_parser("detect", help="streaming detection over a recording of any length")
    d.add_argument("--checkpoint", required=True)
    d.add_argument("file")
    d.add_argument("--block-ms", type=float, default=None)
    d.add_argument("--average-ms", type=float, default=None)
    d.add_argument("--threshold", type=float, default=None)
    d.add_argument("--suppression-ms", type=float, default=None)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--truth", default=None, help="truth .json (default: FILE's .json when it exists)")
    d.add_argument("--json", action="store_true")

    m = sub.add_parser("demo", help="synth -> train -> eval -> detect, end to end")
    m.add_argument("--out", default="runs/demo-kws")
    m.add_argument("--data", default=None, help="dataset folder (default: OUT/data; reused when present)")
    m.add_argument("--epochs", type=int, default=8,
                   help="training epochs (8: the demo's short run; `train` defaults to the full 15)")
    return p


def _train_config(args):
    from pipelines.kws.data import PRESETS
    from pipelines.kws.train import KWSConfig

    cfg = KWSConfig(seed=args.seed, threads=args.threads)
    if args.words:
        cfg = replace(cfg, words=tuple(args.words))
    elif args.preset:
        cfg = replace(cfg, words=tuple(PRESETS[args.preset]))
    for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                 ("hidden_size", args.hidden), ("num_layers", args.layers), ("feature_kind", args.features),
                 ("max_steps", args.max_steps)):
        if v is not None:
            cfg = replace(cfg, **{k: v})
    if args.bidirectional:
        cfg = replace(cfg, bidirectional=True)
    if args.no_augment:
        cfg = replace(cfg, augment=AugmentConfig.off())
    return cfg


def cmd_synth(args):
    from pipelines.kws.synth import SynthConfig, synthesize

    cfg = SynthConfig(seed=args.seed, workers=args.workers)
    if args.variants_per_accent is not None:
        cfg = replace(cfg, variants_per_accent=args.variants_per_accent)
    if args.flite_takes is not None:
        cfg = replace(cfg, flite_takes=args.flite_takes)
    if args.espeak_takes is not None:
        cfg = replace(cfg, espeak_takes=args.espeak_takes)
    if args.words:
        cfg = replace(cfg, words=tuple(args.words))
    summary = synthesize(args.out, cfg)
    if args.json:
        print(json.dumps({"out": args.out, **summary}))
    else:
        log(f"wrote {summary['clips']} clips from {summary['voices']} voices to {args.out} "
            f"({summary['splits']}; {summary['failed']} failed) in {summary['seconds']} s")
    return summary


def cmd_train(args):
    from pipelines.kws.train import train

    summary = train(args.data, args.out, _train_config(args), resume=not args.fresh)
    if args.json:
        print(json.dumps(summary))
    else:
        log(f"test accuracy {summary['test_accuracy']:.4f} on {summary['test_n']} clips of held-out voices; "
            f"training {summary['train_seconds']} s; checkpoint {summary['checkpoint']}")
    return summary


def cmd_eval(args):
    from pipelines.kws.train import evaluate_checkpoint

    png = args.png or str(Path(args.checkpoint).with_name("confusion_eval.png"))
    rep = evaluate_checkpoint(args.checkpoint, args.data, png, split=None if args.split == "all" else args.split)
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"accuracy {rep['accuracy']:.4f} on {rep['n']} clips ({rep['split']}), skipped {rep['skipped']}")
        for k, v in rep["per_class"].items():
            print(f"  {k:>10s} {'-' if v is None else f'{v:.3f}'}")
        print(f"confusion matrix: {png}")
    return rep


def cmd_predict(args):
    from pipelines.kws.train import predict_files

    res = predict_files(args.checkpoint, args.files)
    if args.json:
        print(json.dumps({"predictions": res}))
    else:
        for r in res:
            print(f"{r['file']}\t{r['label']}\t{r['score']:.4f}" if "label" in r else f"{r['file']}\tERROR\t{r['error']}")
    return res


def cmd_stream_wav(args):
    from pipelines.kws.data import PRESETS
    from pipelines.kws.synth import make_long_recording

    words = args.words or PRESETS[args.preset]
    truth = make_long_recording(args.data, args.out, words, args.keywords, args.unknown, snr_db=args.snr,
                                seed=args.seed)
    log(f"wrote {args.out} with {len(truth)} words ({sum(t['keyword'] for t in truth)} keywords); "
        f"truth in {Path(args.out).with_suffix('.json')}")
    return truth


def cmd_detect(args):
    import torch

    from encoders.io.audio import load_audio
    from pipelines.kws.stream import DetectConfig, detect, score_detections
    from pipelines.kws.train import load_model

    torch.set_num_threads(args.threads)
    model, extra = load_model(args.checkpoint)
    cfg = DetectConfig.from_dict({**DetectConfig().to_dict(), **extra.get("detect_config", {})})
    for k in ("block_ms", "average_ms", "threshold", "suppression_ms"):
        if getattr(args, k) is not None:
            cfg = replace(cfg, **{k: getattr(args, k)})
    try:
        wave = load_audio(args.file, sr=model.feature_config.sample_rate)
    except DecodeError as e:
        print(str(e), file=sys.stderr)
        return 2
    res = detect(model, extra["labels"], wave, cfg)
    truth_path = Path(args.truth) if args.truth else Path(args.file).with_suffix(".json")
    if truth_path.is_file():
        res["score"] = score_detections(res["detections"], json.loads(truth_path.read_text()))
    res["config"] = cfg.to_dict()
    if args.json:
        print(json.dumps(res))
    else:
        for t, w, s in res["detections"]:
            print(f"{t:.2f} {w} {s:.3f}")
        print(f"real-time factor {res['rtf']:.5f} ({res['seconds_compute']:.3f} s for {res['seconds_audio']:.1f} s "
              f"of audio, {args.threads} thread)")
        if "score" in res:
            sc = res["score"]
            print(f"hits {sc['hits']}/{sc['keywords']}, misses {sc['misses']}, false alarms {sc['false_alarms']}")
    return res


def cmd_demo(args):
    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    t0 = time.time()
    ns = argparse.Namespace
    if not (data / "testing_list.txt").is_file():
        log(f"[1/4] synthesising the dataset into {data}")
        cmd_synth(ns(out=str(data), variants_per_accent=None, flite_takes=None, espeak_takes=None, words=None, workers=2, seed=0,
                     json=False))
    t1 = time.time()
    log(f"[2/4] training (default configuration, {args.epochs} epochs)")
    summary = cmd_train(ns(data=str(data), out=str(out / "run"), preset=None, words=None, epochs=args.epochs,
                           batch_size=None, lr=None, hidden=None, layers=None, bidirectional=False, features=None,
                           no_augment=False, max_steps=None, seed=0, threads=2, fresh=False, json=False))
    t2 = time.time()
    log("[3/4] evaluating on the held-out voices")
    ck = str(out / "run" / "best.pt")
    rep = cmd_eval(ns(checkpoint=ck, data=str(data), split="auto", png=str(out / "confusion_test.png"), json=False))
    log("[4/4] streaming detection over a long recording of held-out voices in noise")
    wav = out / "long.wav"
    cmd_stream_wav(ns(data=str(data), out=str(wav), preset="default", words=None, keywords=16, unknown=4,
                      snr=15.0, seed=0))
    res = cmd_detect(ns(checkpoint=ck, file=str(wav), block_ms=None, average_ms=None, threshold=None,
                        suppression_ms=None, threads=1, truth=None, json=False))
    t3 = time.time()
    result = {"synth_seconds": round(t1 - t0, 1), "train_seconds": summary["train_seconds"],
              "total_seconds": round(t3 - t0, 1), "test_accuracy": rep["accuracy"], "test_n": rep["n"],
              "detect": res.get("score", {}), "rtf": res["rtf"]}
    for k in ("hit_list", "false_alarm_list"):
        result["detect"].pop(k, None)
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    print(f"\ndemo done in {result['total_seconds']:.0f} s. Outputs:\n"
          f"  dataset            {data}\n"
          f"  checkpoint         {ck}  (loss curve {out / 'run' / 'loss.png'}, log {out / 'run' / 'metrics.jsonl'})\n"
          f"  test accuracy      {rep['accuracy']:.4f} on {rep['n']} clips of held-out voices -> {out / 'confusion_test.png'}\n"
          f"  long recording     {wav} (truth {wav.with_suffix('.json')})\n"
          f"  detection          hits {result['detect'].get('hits')}/{result['detect'].get('keywords')}, "
          f"false alarms {result['detect'].get('false_alarms')}, real-time factor {res['rtf']:.4f}\n"
          f"  summary            {out / 'demo.json'}")
    return result


def main(args) -> int:
    fn = {"synth": cmd_synth, "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict,
          "stream-wav": cmd_stream_wav, "detect": cmd_detect, "demo": cmd_demo}[args.cmd]
    res = fn(args)
    return res if isinstance(res, int) else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
