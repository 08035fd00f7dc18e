"""``lstm-media video``: render clips, train (classify | caption), evaluate, label clips or a long video, caption.

    lstm-media video synth --out data/clips
    lstm-media video train --task classify --data data/clips --out runs/video-cls [--model cnn-lstm|convlstm|frame]
    lstm-media video train --task caption --data data/clips --out runs/video-cap
    lstm-media video eval --data data/fresh [--checkpoint runs/video-cls/best.pt] [--json]
    lstm-media video label data/clips/grow [--checkpoint runs/video-cls/best.pt] [--out labels.csv] [--top-k 3]
    lstm-media video label long.mp4 --segment 2 [--out long.srt]
    lstm-media video caption clip.mp4 [--checkpoint runs/video-cap/best.pt] [--beam 5]
    lstm-media video demo --out runs/demo-video

``label`` and ``caption`` use the shipped models "video-classify" / "video-caption" unless
``--checkpoint`` names another shipped model or a file.  ``--json`` prints one JSON object on stdout;
progress and logs go to stderr.  Bad files are reported on stderr (one line naming the file), skipped,
counted, and never stop a batch.  Outputs never replace an input, nor an existing file without
``--overwrite``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..cli_common import (UserError, add_command, add_runtime, apply_runtime, bounded_int, check_output, log,
                          main_for, positive_float, positive_int)

MODELS = {"cnn-lstm": "video-cnn-lstm", "convlstm": "video-convlstm", "frame": "video-frame"}
MAX_SEGMENT_SECONDS = 3600.0


def _segment_seconds(text: str) -> float:
    v = positive_float(text)
    if v > MAX_SEGMENT_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is out of range (must be in (0, {MAX_SEGMENT_SECONDS:g}])")
    return v


def _codecs(text: str) -> tuple[str, ...]:
    from encoders.io.video import CODECS

    names = tuple(c.strip().lower() for c in text.split(",") if c.strip())
    bad = [c for c in names if c not in CODECS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: use a comma list of {', '.join(CODECS)}")
    return names


def build_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True)

    s = add_command(sub, "synth", cmd_synth, "render labelled clips with opencv")
    s.add_argument("--out", default="data/clips")
    s.add_argument("--train", type=bounded_int(0, 100_000), default=100, help="training clips per action")
    s.add_argument("--val", type=bounded_int(0, 100_000), default=20, help="validation clips per action")
    s.add_argument("--test", type=bounded_int(0, 100_000), default=30, help="test clips per action")
    s.add_argument("--seed", type=int, default=0, help="another seed renders entirely fresh clips")
    s.add_argument("--codecs", type=_codecs, default=("mp4v", "mjpg", "xvid", "h264"),
                   help="comma list of: mp4v, mjpg, xvid, h264, vp8 (default mp4v,mjpg,xvid,h264)")
    s.add_argument("--long", type=bounded_int(0, 10_000), default=0,
                   help="also render a long video of this many segments")
    s.add_argument("--overwrite", action="store_true", help="render into a folder that already holds a data set")
    s.add_argument("--json", action="store_true")

    t = add_command(sub, "train", cmd_train, "train a classifier or a captioner")
    t.add_argument("--task", choices=["classify", "caption"], default="classify")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--model", default="cnn-lstm",
                   help=f"classify: one of {', '.join(MODELS)} (or its registry name video-...)")
    t.add_argument("--epochs", type=positive_int, default=None, help="default: 25 (classify), 45 (caption)")
    t.add_argument("--batch-size", type=positive_int, default=16)
    t.add_argument("--lr", type=positive_float, default=3e-3)
    t.add_argument("--frames", type=bounded_int(1, 256), default=8, help="T frames sampled per clip")
    t.add_argument("--size", type=bounded_int(8, 512), default=32, help="frames are resized to size x size")
    t.add_argument("--sampling", choices=["uniform", "stride"], default="uniform")
    t.add_argument("--stride", type=positive_int, default=2)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-steps", type=positive_int, default=None)
    t.add_argument("--init-from", default=None,
                   help="checkpoint (file or shipped name) whose frame CNN initialises this model")
    t.add_argument("--target", type=float, default=None,
                   help="stop once the validation metric (accuracy / exact match) reaches this")
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming from OUT/last.pt")
    t.add_argument("--json", action="store_true")
    add_runtime(t)

    e = add_command(sub, "eval", cmd_eval, "score a checkpoint on a data folder")
    e.add_argument("--checkpoint", default=None,
                   help="file or shipped model name (default: the shipped video-classify)")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test", help="split list to use; 'all': every clip")
    e.add_argument("--beam", type=bounded_int(1, 64), default=1, help="captioning: beam width (1: greedy)")
    e.add_argument("--out", default=None,
                   help="folder for confusion.png (default: beside a checkpoint file; none for a shipped model)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing confusion.png")
    e.add_argument("--no-meteor", action="store_true", help="captioning: skip METEOR (it starts a Java VM)")
    e.add_argument("--json", action="store_true")
    add_runtime(e)

    lb = add_command(sub, "label", cmd_label, "label clips (files or folders), or a long video window by window")
    lb.add_argument("paths", nargs="+")
    lb.add_argument("--checkpoint", default=None, help="file or shipped model name (default: video-classify)")
    lb.add_argument("--out", default=None,
                    help="labels.csv | labels.json, or a folder (with --segment: .srt, .csv or .json; "
                         "default VIDEO.srt beside the video)")
    lb.add_argument("--top-k", type=bounded_int(1, 1000), default=3)
    lb.add_argument("--segment", type=_segment_seconds, default=None, metavar="SECONDS",
                    help="label each window of SECONDS of a long video")
    lb.add_argument("--overwrite", action="store_true", help="replace existing output files")
    lb.add_argument("--json", action="store_true")
    add_runtime(lb)

    c = add_command(sub, "caption", cmd_caption, "one sentence per clip")
    c.add_argument("paths", nargs="+")
    c.add_argument("--checkpoint", default=None, help="file or shipped model name (default: video-caption)")
    c.add_argument("--beam", type=bounded_int(1, 64), default=5)
    c.add_argument("--out", default=None, help="write captions to .csv or .json (a folder: captions.csv inside)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.add_argument("--json", action="store_true")
    add_runtime(c)

    d = add_command(sub, "demo", cmd_demo, "render -> train classify -> train caption -> eval -> label -> caption")
    d.add_argument("--out", default="runs/demo-video")
    d.add_argument("--data", default=None, help="default: OUT/clips")
    d.add_argument("--train", type=positive_int, default=100, help="training clips per action")
    d.add_argument("--epochs", type=positive_int, default=25, help="classifier epochs")
    d.add_argument("--caption-epochs", type=positive_int, default=30)
    d.add_argument("--json", action="store_true")
    add_runtime(d)


def _progress(args) -> bool:
    """Progress bars only for a person watching (not with --json, not into a log file)."""
    return not args.json and sys.stderr.isatty()


def _emit(obj: dict, as_json: bool, text: str) -> None:
    print(json.dumps(obj) if as_json else text)


def cmd_synth(args) -> int:
    from .synth import render_long_video, synthesize

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder")
    if (out / "classes.txt").exists() and not args.overwrite:
        raise UserError(f"{out} already holds a data set; refusing to overwrite it (pass --overwrite, "
                        "or choose another --out)")
    res = synthesize(out, (args.train, args.val, args.test), seed=args.seed, codecs=args.codecs,
                     progress=_progress(args))
    if args.long:
        from ..cli_common import write_text_atomic

        truth = render_long_video(out / "long" / "long.mp4", segments=args.long, seed=args.seed)
        write_text_atomic(out / "long" / "truth.json", json.dumps(truth, indent=2))
        res["long"] = str(out / "long" / "long.mp4")
    _emit(res, args.json,
          f"rendered {res['train']} train, {res['val']} val, {res['test']} test clips into {res['out']}")
    return 0


def cmd_train(args) -> int:
    from .train import VideoTrainConfig, train

    device = apply_runtime(args)
    model = "video-caption" if args.task == "caption" else MODELS.get(args.model, args.model)
    if args.task == "classify" and model not in MODELS.values():
        raise UserError(f"--model {args.model}: not a video classifier; use one of {', '.join(MODELS)}")
    fe = {"num_frames": args.frames, "size": [args.size, args.size], "sampling": args.sampling, "stride": args.stride}
    epochs = args.epochs or (25 if args.task == "classify" else 45)
    cfg = VideoTrainConfig(task=args.task, model=model, frontend=fe, epochs=epochs, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, augment=not args.no_augment, max_steps=args.max_steps,
                           progress=_progress(args), init_from=args.init_from, target=args.target, device=device)
    t0 = time.time()
    res = train(args.data, args.out, cfg, resume=not args.fresh)
    res["checkpoint"] = str(Path(args.out) / "best.pt")
    _emit(res, args.json, f"trained {model} for {res['step']} steps in {res['seconds']:.0f} s; "
                          f"validation {res['metrics']}; checkpoint {res['checkpoint']}")
    log(f"[train done in {time.time() - t0:.1f} s]")
    return 0


def cmd_eval(args) -> int:
    from .infer import evaluate

    device = apply_runtime(args)
    split = None if args.split == "all" else args.split
    rep = evaluate(args.checkpoint, args.data, split, args.out, beam_size=args.beam, progress=_progress(args),
                   device=device, overwrite=args.overwrite, meteor=not args.no_meteor)
    if "accuracy" in rep:
        per = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in rep["per_class"].items())
        text = (f"accuracy {rep['accuracy']:.4f} on {rep['n']} clips ({rep['skipped']} skipped)\nper class: {per}"
                + (f"\nconfusion matrix: {rep['confusion_png']}" if rep["confusion_png"] else ""))
    else:
        text = (f"BLEU-4 {rep['bleu4']:.4f}  CIDEr {rep['cider']:.4f}  exact match {rep['exact_match']:.4f}"
                f"{'  METEOR %.4f' % rep['meteor'] if 'meteor' in rep else ''} on {rep['n']} clips "
                f"({rep['skipped']} skipped)")
    _emit(rep, args.json, text)
    return 0


def _out_file(out: str | None, default_name: str) -> Path | None:
    """``--out``: a file, or an existing folder to write ``default_name`` inside."""
    if out is None:
        return None
    p = Path(out)
    return p / default_name if p.is_dir() else p


def _inputs(paths: list[str], checkpoint: str | None) -> list[Path]:
    from .infer import expand_paths

    found = [Path(p) for p in paths] + expand_paths([p for p in paths if Path(p).is_dir()])
    return found + ([Path(checkpoint)] if checkpoint and Path(checkpoint).is_file() else [])


def _label_segments(args, device: str) -> int:
    import os

    from .infer import label_segments, load_model, write_labels, write_srt

    if args.out and len(args.paths) > 1 and not Path(args.out).is_dir():
        raise UserError("--out with --segment and several videos must name a folder")
    inputs = _inputs(args.paths, args.checkpoint)
    plan = []  # (video, srt path, labels path or None): every output is checked before any work
    for v in args.paths:
        v = Path(v)
        if not v.is_file():
            raise UserError(f"{v}: no such video file")
        out = _out_file(args.out, f"{v.stem}.srt")
        srt = out if out is not None and out.suffix.lower() == ".srt" else v.with_suffix(".srt")
        if out is None and not os.access(srt.parent, os.W_OK):  # read-only folder beside the video
            srt = Path.cwd() / srt.name
        labels = out if out is not None and out.suffix.lower() != ".srt" else None
        for o, flag in ((srt, "--out" if out is not None else "subtitle file"), (labels, "--out")):
            if o is not None:
                check_output(o, inputs, args.overwrite, flag)
        plan.append((v, srt, labels))
    loaded = load_model(args.checkpoint, "video-classify", device, "lstm-media video label")
    results = []
    for v, srt, labels in plan:
        r = label_segments(None, v, args.segment, args.top_k, progress=_progress(args), loaded=loaded)
        if labels is not None:
            r["labels_file"] = str(write_labels(r, labels))
        r["srt"] = str(write_srt(r["segments"], srt))
        results.append(r)
        if not args.json:
            for s in r["segments"]:
                print(f"{s['start']:8.2f}-{s['end']:8.2f}s  {s['label']:<12} {s['score']:.3f}")
            log(f"subtitles: {r['srt']}")
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"videos": results, "n": len(results)}))
    return 0


def cmd_label(args) -> int:
    from .infer import label_clips, write_labels

    device = apply_runtime(args)
    if args.segment is not None:
        return _label_segments(args, device)
    out = _out_file(args.out, "labels.csv")
    if out is not None:
        check_output(out, _inputs(args.paths, args.checkpoint), args.overwrite)
    res = label_clips(args.checkpoint, args.paths, args.top_k, progress=_progress(args), device=device)
    if res["n"] == 0:
        raise UserError(f"no decodable video clip among the inputs ({res['skipped']} skipped)")
    if out is not None:
        res["labels_file"] = str(write_labels(res, out))
    if args.json:
        print(json.dumps(res))
    else:
        for r in res["labels"]:
            alts = ", ".join(f"{t['label']} {t['score']:.3f}" for t in r["top_k"])
            print(f"{r['path']}\t{r['label']}\t{r['score']:.3f}\t[{alts}]")
        log(f"labelled {res['n']} clips, skipped {res['skipped']} bad files"
            f"{'; written to ' + res['labels_file'] if out is not None else ''}")
    return 0


def cmd_caption(args) -> int:
    from .infer import caption_clips, write_captions

    device = apply_runtime(args)
    out = _out_file(args.out, "captions.csv")
    if out is not None:
        check_output(out, _inputs(args.paths, args.checkpoint), args.overwrite)
    res = caption_clips(args.checkpoint, args.paths, beam_size=args.beam, progress=_progress(args), device=device)
    if res["n"] == 0:
        raise UserError(f"no decodable video clip among the inputs ({res['skipped']} skipped)")
    if out is not None:
        res["captions_file"] = str(write_captions(res, out))
    if args.json:
        print(json.dumps(res))
    else:
        for c in res["captions"]:
            print(f"{c['path']}\t{c['caption']}")
        log(f"captioned {res['n']} clips, skipped {res['skipped']} bad files")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    device = apply_runtime(args)
    res = run_demo(args.out, data=args.data, train_per_class=args.train, epochs=args.epochs,
                   caption_epochs=args.caption_epochs, quiet=args.json, device=device)
    if args.json:
        print(json.dumps(res))
    return 0


main = main_for(build_parser, "lstm-media video", __doc__)

if __name__ == "__main__":
    sys.exit(main())
