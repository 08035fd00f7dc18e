"""Video pipeline CLI: render clips, train (classify | caption), evaluate, label clips or a long video, caption.

    python scripts/video.py synth --out data/clips
    python scripts/video.py train --task classify --data data/clips --out runs/video-cls [--model cnn-lstm|convlstm|frame]
    python scripts/video.py train --task caption --data data/clips --out runs/video-cap
    python scripts/video.py eval --checkpoint runs/video-cls/best.pt --data data/clips [--json]
    python scripts/video.py label --checkpoint runs/video-cls/best.pt data/clips/grow [--out labels.csv] [--top-k 3]
    python scripts/video.py label --checkpoint runs/video-cls/best.pt long.mp4 --segment 2 --out long.srt
    python scripts/video.py caption --checkpoint runs/video-cap/best.pt clip.mp4 [--beam 5]
    python scripts/video.py demo --out runs/demo-video

``--json`` prints one JSON object on stdout; progress and logs go to stderr.  Bad files are reported
on stderr (one line naming the file), skipped, counted, and never stop a batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"cnn-lstm": "video-cnn-lstm", "convlstm": "video-convlstm", "frame": "video-frame"}


def get_args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("VIDEO_THREADS", 0)),
                    help="torch CPU threads, at most 2 (default: 2 on an idle machine, 1 when the CPU is already "
                         "busy: with other jobs running, 2 threads made the small convs up to 10x slower here)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("synth", help="render labelled clips with opencv")
    p.add_argument("--out", default="data/clips")
    p.add_argument("--train", type=int, default=100, help="training clips per action")
    p.add_argument("--val", type=int, default=20, help="validation clips per action")
    p.add_argument("--test", type=int, default=30, help="test clips per action")
    p.add_argument("--seed", type=int, default=0, help="another seed renders entirely fresh clips")
    p.add_argument("--codecs", default="mp4v,mjpg,xvid,h264", help="comma list of: mp4v, mjpg, xvid, h264, vp8")
    p.add_argument("--long", type=int, default=0, help="also render a long video of this many segments")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train a classifier or a captioner")
    p.add_argument("--task", choices=["classify", "caption"], default="classify")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="cnn-lstm", help=f"classify: one of {', '.join(MODELS)} (or a registry name)")
    p.add_argument("--epochs", type=int, default=None, help="default: 25 (classify), 45 (caption)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--frames", type=int, default=8, help="T frames sampled per clip")
    p.add_argument("--size", type=int, default=32, help="frames are resized to size x size")
    p.add_argument("--sampling", choices=["uniform", "stride"], default="uniform")
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--init-from", default=None,
                   help="checkpoint whose frame CNN initialises this model (e.g. the trained classifier)")
    p.add_argument("--target", type=float, default=None,
                   help="stop once the validation metric (accuracy / exact match) reaches this")
    p.add_argument("--fresh", action="store_true", help="do not resume from OUT/last.pt")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="score a checkpoint on a data folder")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", help="split list to use; 'all': every clip")
    p.add_argument("--beam", type=int, default=1, help="captioning: beam width (1: greedy)")
    p.add_argument("--out", default=None, help="folder for confusion.png (default: beside the checkpoint)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("label", help="label clips (files or folders), or a long video window by window")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", default=None, help="labels.csv | labels.json (with --segment: .srt, .csv or .json)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--segment", type=float, default=None, help="label each window of SECONDS of a long video")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("caption", help="one sentence per clip")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("paths", nargs="+")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--out", default=None, help="write captions to .csv or .json")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("demo", help="render -> train classify -> train caption -> eval -> label -> caption")
    p.add_argument("--out", default="runs/demo-video")
    p.add_argument("--data", default=None, help="default: OUT/clips")
    p.add_argument("--train", type=int, default=100, help="training clips per action")
    p.add_argument("--epochs", type=int, default=25, help="classifier epochs")
    p.add_argument("--caption-epochs", type=int, default=30)
    p.add_argument("--json", action="store_true")
    return ap


def _emit(obj: dict, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(obj))
    else:
        print(text)


def cmd_synth(args) -> dict:
    from pipelines.video.synth import render_long_video, synthesize

    res = synthesize(args.out, (args.train, args.val, args.test), seed=args.seed,
                     codecs=tuple(c.strip() for c in args.codecs.split(",") if c.strip()))
    if args.long:
        truth = render_long_video(Path(args.out) / "long" / "long.mp4", segments=args.long, seed=args.seed)
        (Path(args.out) / "long" / "truth.json").write_text(json.dumps(truth, indent=2))
        res["long"] = str(Path(args.out) / "long" / "long.mp4")
    _emit(res, args.json, f"rendered {res['train']} train, {res['val']} val, {res['test']} test clips into {res['out']}")
    return res


def cmd_train(args) -> dict:
    from pipelines.video.train import VideoTrainConfig, train

    if args.task == "caption":
        model = "video-caption"
    else:
        model = MODELS.get(args.model, args.model)
    fe = {"num_frames": args.frames, "size": [args.size, args.size], "sampling": args.sampling, "stride": args.stride}
    epochs = args.epochs or (25 if args.task == "classify" else 45)
    cfg = VideoTrainConfig(task=args.task, model=model, frontend=fe, epochs=epochs, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, augment=not args.no_augment, max_steps=args.max_steps,
                           progress=not args.json, init_from=args.init_from, target=args.target)
    res = train(args.data, args.out, cfg, resume=not args.fresh)
    res["checkpoint"] = str(Path(args.out) / "best.pt")
    _emit(res, args.json, f"trained {model} for {res['step']} steps in {res['seconds']:.0f} s; "
                          f"validation {res['metrics']}; checkpoint {res['checkpoint']}")
    return res


def cmd_eval(args) -> dict:
    from pipelines.video.infer import evaluate

    split = None if args.split == "all" else args.split
    rep = evaluate(args.checkpoint, args.data, split, args.out, beam_size=args.beam, progress=not args.json)
    if "accuracy" in rep:
        per = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in rep["per_class"].items())
        text = (f"accuracy {rep['accuracy']:.4f} on {rep['n']} clips ({rep['skipped']} skipped)\nper class: {per}\n"
                f"confusion matrix: {rep['confusion_png']}")
    else:
        text = (f"BLEU-4 {rep['bleu4']:.4f}  CIDEr {rep['cider']:.4f}  exact match {rep['exact_match']:.4f}"
                f"{'  METEOR %.4f' % rep['meteor'] if 'meteor' in rep else ''} on {rep['n']} clips "
                f"({rep['skipped']} skipped)")
    _emit(rep, args.json, text)
    return rep


def cmd_label(args) -> dict:
    from pipelines.video.infer import label_clips, label_segments, write_labels, write_srt

    if args.segment is not None:
        results = []
        for v in args.paths:
            r = label_segments(args.checkpoint, v, args.segment, args.top_k, progress=not args.json)
            out = Path(args.out) if args.out and len(args.paths) == 1 else None
            srt = out if out is not None and out.suffix.lower() == ".srt" else Path(v).with_suffix(".srt")
            if out is not None and out.suffix.lower() != ".srt":
                write_labels(r, out)
                r["labels_file"] = str(out)
            try:
                r["srt"] = str(write_srt(r["segments"], srt))
            except OSError:  # read-only folder beside the video
                r["srt"] = str(write_srt(r["segments"], Path.cwd() / srt.name))
            results.append(r)
            if not args.json:
                for s in r["segments"]:
                    print(f"{s['start']:8.2f}-{s['end']:8.2f}s  {s['label']:<12} {s['score']:.3f}")
                print(f"subtitles: {r['srt']}")
        res = results[0] if len(results) == 1 else {"videos": results, "n": len(results)}
        if args.json:
            print(json.dumps(res))
        return res
    res = label_clips(args.checkpoint, args.paths, args.top_k, progress=not args.json)
    if args.out:
        res["labels_file"] = str(write_labels(res, args.out))
    if args.json:
        print(json.dumps(res))
    else:
        for r in res["labels"]:
            alts = ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["top_k"])
            print(f"{r['path']}\t{r['label']}\t{r['score']:.3f}\t[{alts}]")
        print(f"labelled {res['n']} clips, skipped {res['skipped']} bad files"
              f"{'; written to ' + res['labels_file'] if args.out else ''}", file=sys.stderr)
    return res


def cmd_caption(args) -> dict:
    from pipelines.video.infer import caption_clips

    res = caption_clips(args.checkpoint, args.paths, beam_size=args.beam, progress=not args.json)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(res, indent=2))
        else:
            import csv

            with open(out, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "caption"])
                w.writerows([(c["path"], c["caption"]) for c in res["captions"]])
        res["captions_file"] = str(out)
    if args.json:
        print(json.dumps(res))
    else:
        for c in res["captions"]:
            print(f"{c['path']}\t{c['caption']}")
        print(f"captioned {res['n']} clips, skipped {res['skipped']} bad files", file=sys.stderr)
    return res


def cmd_demo(args) -> dict:
    from pipelines.video.demo import run_demo

    res = run_demo(args.out, data=args.data, train_per_class=args.train, epochs=args.epochs,
                   caption_epochs=args.caption_epochs, quiet=args.json)
    if args.json:
        print(json.dumps(res))
    return res


def main(args) -> dict:
    import torch

    threads = args.threads
    if threads <= 0:
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = 2 if busy < 1.0 and (os.cpu_count() or 1) >= 2 else 1
    torch.set_num_threads(max(1, min(threads, 2)))
    t0 = time.time()
    try:
        res = {"synth": cmd_synth, "train": cmd_train, "eval": cmd_eval, "label": cmd_label, "caption": cmd_caption,
               "demo": cmd_demo}[args.cmd](args)
    except (FileNotFoundError, ValueError, KeyError) as e:  # one clear line, not a traceback
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(2)
    print(f"[{args.cmd} done in {time.time() - t0:.1f} s]", file=sys.stderr)
    return res


if __name__ == "__main__":
    main(get_args_parser().parse_args())
