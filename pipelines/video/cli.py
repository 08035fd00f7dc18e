"""``lstm-media video``: render clips, train (classify | caption), evaluate, label clips or a long video, caption.

    lstm-media video synth --out data/clips
    lstm-media video synth --set digits --out data/digits          # Moving-MNIST-style, 64x64, 20 frames
    lstm-media video train --task classify --data data/clips --out runs/video-cls [--model cnn-lstm|convlstm|frame]
    lstm-media video train --task caption --data data/clips --out runs/video-cap
    lstm-media video train --data data/clips --out runs/r18 --frame-encoder resnet18 --input-size 112 \
        --freeze-encoder [--weights resnet18.pth]
    lstm-media video train --task predict --data data/digits --out runs/pred [--context 10 --horizon 10]
    lstm-media video eval --task predict --checkpoint runs/pred/best.pt --data data/digits --json
    lstm-media video predict clip.mp4 --checkpoint runs/pred/best.pt --out preds/
    lstm-media video eval --data data/fresh [--checkpoint runs/video-cls/best.pt] [--json]
    lstm-media video label data/clips/grow [--checkpoint runs/video-cls/best.pt] [--out labels.csv] [--top-k 3]
    lstm-media video label long.mp4 --segment 2 [--out long.srt]
    lstm-media video caption clip.mp4 [--checkpoint runs/video-cap/best.pt] [--beam 5]
    lstm-media video demo --out runs/demo-video

``predict`` needs a "video-predict" checkpoint (trained with ``train --task predict``).
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
                          main_for, nonneg_float, nonneg_int, positive_float, positive_int, probability)

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


def _channels(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if not vals or len(vals) > 6 or not all(1 <= v <= 512 for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: use 1 to 6 comma-separated widths in [1, 512], e.g. 8,16,32,64")
    return vals


def _zoom(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = float("nan")
    if not (0.25 <= lo <= hi <= 4.0):
        raise argparse.ArgumentTypeError(f"{text!r}: use LO,HI with 0.25 <= LO <= HI <= 4, e.g. 0.8,1.25")
    return lo, hi


def _scale(text: str) -> tuple[float, float, float]:
    """``LO,HI`` or ``LO,HI,P``: scale range and the share of training clips rescaled (default 1)."""
    try:
        vals = [float(v) for v in text.split(",")]
        lo, hi, p = (vals + [1.0])[:3] if len(vals) in (2, 3) else (float("nan"),) * 3
    except ValueError:
        lo = hi = p = float("nan")
    if not (0.25 <= lo <= hi <= 4.0 and 0.0 <= p <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: use LO,HI or LO,HI,P with 0.25 <= LO <= HI <= 4 and "
                                         "0 <= P <= 1, e.g. 0.8,1.25,0.5")
    return lo, hi, p


def caption_scale(arg: tuple[float, float, float] | None) -> dict:
    """``--scale-augment`` (or, without it, the recipe's) as VideoTrainConfig fields."""
    from .train import caption_augmentation

    if arg is None:
        return {k: v for k, v in caption_augmentation().items() if k.startswith("scale")}
    return {"scale_augment": None, "scale_p": 1.0} if arg[2] == 0 or arg[0] == arg[1] == 1 else \
        {"scale_augment": arg[:2], "scale_p": arg[2]}


def _style(text: str) -> str:
    from .synth import unseen_factors

    try:
        unseen_factors(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _frame_encoder(text: str) -> str:
    from encoders.video import frame_encoder_names

    names = frame_encoder_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"{text!r}: use small-cnn or a torchvision classifier name "
                                         f"(e.g. resnet18, mobilenet_v3_small; {len(names) - 1} known)")
    return text


def build_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True)

    s = add_command(sub, "synth", cmd_synth, "render labelled clips (shapes) or Moving-MNIST-style digits")
    s.add_argument("--out", default="data/clips")
    s.add_argument("--set", choices=["shapes", "digits"], default="shapes",
                   help="shapes: one coloured shape doing one of 6 actions; digits: two handwritten digits "
                        "(scikit-learn's) bouncing in 64x64 (for --task predict)")
    s.add_argument("--style", type=_style, default="default",
                   help="shapes: unseen renders with settings the default data never uses (other shades, "
                        "sizes, speeds, frame counts and rates, a new background kind), to test transfer; "
                        "unseen:FACTORS changes only some of them (comma list of shade, size, speed, timing, "
                        "background)")
    s.add_argument("--frames", type=bounded_int(2, 1000), default=None,
                   help="frames per clip (shapes default: 12-40 drawn per clip; digits default: 20)")
    s.add_argument("--train", type=bounded_int(0, 100_000), default=100, help="training clips per action")
    s.add_argument("--val", type=bounded_int(0, 100_000), default=20, help="validation clips per action")
    s.add_argument("--test", type=bounded_int(0, 100_000), default=30, help="test clips per action")
    s.add_argument("--seed", type=int, default=0, help="another seed renders entirely fresh clips")
    s.add_argument("--codecs", type=_codecs, default=None,
                   help="comma list of: mp4v, mjpg, xvid, h264, vp8 (default mp4v,mjpg,xvid,h264; digits: mjpg)")
    s.add_argument("--long", type=bounded_int(0, 10_000), default=0,
                   help="also render a long video of this many segments")
    s.add_argument("--overwrite", action="store_true", help="render into a folder that already holds a data set")
    s.add_argument("--json", action="store_true")

    t = add_command(sub, "train", cmd_train, "train a classifier, a captioner or a future-frame predictor")
    t.add_argument("--task", choices=["classify", "caption", "predict"], default="classify")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--model", default="cnn-lstm",
                   help=f"classify: one of {', '.join(MODELS)} (or its registry name video-...)")
    t.add_argument("--epochs", type=positive_int, default=None, help="default: 25 (classify), 60 (caption), "
                   "10 (predict)")
    t.add_argument("--batch-size", type=positive_int, default=16)
    t.add_argument("--lr", type=positive_float, default=3e-3)
    t.add_argument("--frames", type=bounded_int(1, 256), default=8, help="T frames sampled per clip")
    t.add_argument("--size", "--input-size", dest="size", type=bounded_int(8, 512), default=None,
                   help="frames are resized to size x size (default 32 for small-cnn, 64 for the captioner's "
                        "small-cnn, 112 for a torchvision encoder, 64 for predict)")
    t.add_argument("--cnn-channels", type=_channels, default=None, metavar="C1,C2,...",
                   help="small-cnn: widths of its conv blocks (each halves the frame; default 16,32,64, and "
                        "8,16,32,64 for the captioner at 64 px or more)")
    t.add_argument("--frame-encoder", type=_frame_encoder, default="small-cnn",
                   help="small-cnn (ours, trained from scratch) or any torchvision classifier name (resnet18, "
                        "mobilenet_v3_small, ...), fed with its own (ImageNet) normalisation")
    t.add_argument("--weights", default=None, metavar="FILE",
                   help="local state dict of that torchvision classifier (nothing is ever downloaded; "
                        "without it the encoder is randomly initialised)")
    t.add_argument("--freeze-encoder", action="store_true",
                   help="encode every clip once, cache the features under DATA/.cache, train only the LSTM")
    t.add_argument("--context", type=bounded_int(1, 256), default=10, help="predict: K frames seen")
    t.add_argument("--horizon", type=bounded_int(1, 256), default=10, help="predict: N frames predicted")
    t.add_argument("--channels", choices=["auto", "1", "3"], default="auto",
                   help="predict: 1 (gray) or 3 (RGB) channels; auto: 1 when the clips are gray")
    t.add_argument("--sampling", choices=["uniform", "stride"], default="uniform")
    t.add_argument("--stride", type=positive_int, default=2)
    t.add_argument("--no-augment", action="store_true", help="no augmentation at all")
    t.add_argument("--appearance-augment", choices=["on", "off"], default="off",
                   help="random colour, size, speed and noise changes of training clips (frames only, not "
                        "cached features; default off)")
    t.add_argument("--speed-augment", type=probability, default=None, metavar="P",
                   help="caption: probability of showing a training clip slower (a stretched part of it: shorter "
                        "paths, slighter growth; default 0.5)")
    t.add_argument("--zoom-augment", type=_zoom, default=None, metavar="LO,HI",
                   help="caption: zoom every training clip by a factor in [LO, HI] (default off)")
    t.add_argument("--scale-augment", type=_scale, default=None, metavar="LO,HI[,P]",
                   help="caption: show a share P (default 1) of the training clips nearer or farther, by a factor "
                        "in [LO, HI], never cutting the moving object (default 0.8,1.25,1: the recipe's; 1,1 turns "
                        "it off)")
    t.add_argument("--bow-weight", type=nonneg_float, default=None,
                   help="caption: weight of the bag-of-words auxiliary loss (default 0.2)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=nonneg_int, default=None,
                   help="data-loading processes, at the lowest priority (default: none; the per-batch work left "
                        "after decoding once costs less than a worker's hand-over)")
    t.add_argument("--max-steps", type=positive_int, default=None)
    t.add_argument("--init-from", default=None,
                   help="checkpoint (file or shipped name) whose frame CNN initialises this model")
    t.add_argument("--target", type=float, default=None,
                   help="stop once the validation metric (accuracy / exact match) reaches this")
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming from OUT/last.pt")
    t.add_argument("--json", action="store_true")
    add_runtime(t)

    e = add_command(sub, "eval", cmd_eval, "score a checkpoint on a data folder")
    e.add_argument("--task", choices=["classify", "caption", "predict"], default=None,
                   help="predict: MSE/SSIM vs copy-last and mean-frame (default: classify or caption, "
                        "from the checkpoint)")
    e.add_argument("--checkpoint", default=None,
                   help="file or shipped model name (default: the shipped video-classify)")
    e.add_argument("--context", type=bounded_int(1, 256), default=None,
                   help="predict: K frames seen (default: the checkpoint's)")
    e.add_argument("--horizon", type=bounded_int(1, 256), default=None,
                   help="predict: N frames predicted (default: the checkpoint's)")
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
    lb.set_defaults(lean_exit=True)  # end without the CUDA libraries' teardown (cli_common.lean_exit): peak memory
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
    c.set_defaults(lean_exit=True)  # end without the CUDA libraries' teardown (cli_common.lean_exit): peak memory
    c.add_argument("--checkpoint", default=None, help="file or shipped model name (default: video-caption)")
    c.add_argument("--beam", type=bounded_int(1, 64), default=5)
    c.add_argument("--out", default=None, help="write captions to .csv or .json (a folder: captions.csv inside)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.add_argument("--json", action="store_true")
    add_runtime(c)

    pr = add_command(sub, "predict", cmd_predict, "predict the next frames of clips: side-by-side GIF/MP4 + "
                                                    "PNG strip per clip")
    pr.add_argument("paths", nargs="+")
    pr.add_argument("--checkpoint", default=None, help="a video-predict checkpoint (file or shipped name)")
    pr.add_argument("--context", type=bounded_int(1, 256), default=None, help="K frames seen (default: the "
                    "checkpoint's)")
    pr.add_argument("--horizon", type=bounded_int(1, 256), default=None, help="N frames predicted (default: the "
                    "checkpoint's)")
    pr.add_argument("--out", default="predictions",
                    help="folder for CLIP.gif + CLIP.png (default ./predictions), or for one clip a file "
                         "ending in .gif or .mp4 (the PNG goes beside it)")
    pr.add_argument("--overwrite", action="store_true", help="replace existing output files")
    pr.add_argument("--json", action="store_true")
    add_runtime(pr)

    d = add_command(sub, "demo", cmd_demo, "render -> train classify -> train caption -> eval -> label -> caption")
    d.add_argument("--task", choices=["classify-caption", "predict"], default="classify-caption",
                   help="predict: a short future-frame prediction run on Moving-MNIST-style digits")
    d.add_argument("--out", default=None, help="default runs/demo-video (predict: runs/demo-video-predict)")
    d.add_argument("--data", default=None, help="default: OUT/clips")
    d.add_argument("--train", type=positive_int, default=100, help="training clips per action")
    d.add_argument("--predict-clips", type=positive_int, default=300, help="predict: training clips of digits")
    d.add_argument("--epochs", type=positive_int, default=None, help="classifier epochs (default 25; predict: 2)")
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
    args.codecs_given = args.codecs is not None
    args.codecs = args.codecs or ("mp4v", "mjpg", "xvid", "h264")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder")
    if (out / "classes.txt").exists() and not args.overwrite:
        raise UserError(f"{out} already holds a data set; refusing to overwrite it (pass --overwrite, "
                        "or choose another --out)")
    if args.set == "digits":
        from .synth import synthesize_digits

        res = synthesize_digits(out, (args.train, args.val, args.test), seed=args.seed, frames=args.frames or 20,
                                codec=args.codecs[0] if args.codecs_given else "mjpg", progress=_progress(args))
        _emit(res, args.json, f"rendered {res['train']} train, {res['val']} val, {res['test']} test digit clips "
                              f"into {res['out']}")
        return 0
    res = synthesize(out, (args.train, args.val, args.test), seed=args.seed, codecs=args.codecs,
                     progress=_progress(args), frames=args.frames, style=args.style)
    if args.long:
        from ..cli_common import write_text_atomic

        truth = render_long_video(out / "long" / "long.mp4", segments=args.long, seed=args.seed)
        write_text_atomic(out / "long" / "truth.json", json.dumps(truth, indent=2))
        res["long"] = str(out / "long" / "long.mp4")
    _emit(res, args.json,
          f"rendered {res['train']} train, {res['val']} val, {res['test']} test clips into {res['out']}")
    return 0


def cmd_train(args) -> int:
    from .train import CAPTION_RECIPE, VideoTrainConfig, train

    from encoders.video import SMALL_CNN, encoder_normalisation

    device = apply_runtime(args)
    tv = args.frame_encoder != SMALL_CNN
    if args.task == "predict":
        if tv or args.weights or args.freeze_encoder:
            raise UserError("--task predict has its own ConvLSTM encoder; --frame-encoder/--weights/"
                            "--freeze-encoder are for classify and caption")
        model = "video-predict-convlstm"
        size = args.size or 64
        if size % 4:
            raise UserError(f"--size {size}: the predictor cuts frames into 4x4 patches; use a multiple of 4")
        fe = {"num_frames": args.context + args.horizon, "size": [size, size]}
    else:
        model = "video-caption" if args.task == "caption" else MODELS.get(args.model, args.model)
        if args.task == "classify" and model not in MODELS.values():
            raise UserError(f"--model {args.model}: not a video classifier; use one of {', '.join(MODELS)}")
        if (tv or args.freeze_encoder) and model == "video-convlstm":
            raise UserError("--model convlstm has its own conv stem; --frame-encoder/--freeze-encoder need "
                            "cnn-lstm, frame or the captioner")
        if args.weights and not tv:
            raise UserError("--weights needs a torchvision --frame-encoder (small-cnn trains from scratch)")
        caption = args.task == "caption"
        size = args.size or (112 if tv else (CAPTION_RECIPE["size"] if caption else 32))
        mean, std = encoder_normalisation(args.frame_encoder)
        fe = {"num_frames": args.frames, "size": [size, size], "sampling": args.sampling, "stride": args.stride}
        if tv:
            fe.update(mean=list(mean), std=list(std))
        if args.weights:  # check the file fits before any decoding or caching (one line when it does not)
            from encoders.video import TorchvisionFrameEncoder

            try:
                TorchvisionFrameEncoder(args.frame_encoder, args.weights)
            except ValueError as e:
                raise UserError(str(e)) from None
    epochs = args.epochs or {"classify": 25, "caption": CAPTION_RECIPE["epochs"], "predict": 10}[args.task]
    model_kwargs = {"channels": int(args.channels)} if args.task == "predict" and args.channels != "auto" else {}
    caption_only = {"--speed-augment": args.speed_augment, "--zoom-augment": args.zoom_augment,
                    "--scale-augment": args.scale_augment, "--bow-weight": args.bow_weight}
    given = [k for k, v in caption_only.items() if v is not None]
    if given and args.task != "caption":
        raise UserError(f"{', '.join(given)}: for --task caption only")
    if args.cnn_channels is not None and (tv or args.task == "predict" or model == "video-convlstm"):
        raise UserError("--cnn-channels sets the small-cnn frame encoder (classify cnn-lstm/frame or caption)")
    channels = args.cnn_channels or (CAPTION_RECIPE["cnn_channels"] if args.task == "caption" and not tv
                                     and size >= CAPTION_RECIPE["size"] else None)
    if args.task == "caption" and not tv:  # the recipe's pooling (global max only), at any frame size
        from .train import caption_frame_cnn

        model_kwargs["frame_cnn"] = caption_frame_cnn(channels)
    elif channels is not None:
        model_kwargs["frame_cnn"] = {"channels": list(channels)}
    extra = {}
    if args.task == "caption":
        extra = {"speed_augment": CAPTION_RECIPE["speed_augment"] if args.speed_augment is None else args.speed_augment,
                 "zoom_augment": args.zoom_augment,
                 **caption_scale(args.scale_augment),
                 "bow_weight": CAPTION_RECIPE["bow_weight"] if args.bow_weight is None else args.bow_weight}
        if args.freeze_encoder:  # the LSTM trains on features cached once per clip: nothing can change the frames
            given = [f for f, v in (("--speed-augment", args.speed_augment), ("--zoom-augment", args.zoom_augment),
                                    ("--scale-augment", args.scale_augment)) if v is not None]
            if given:
                raise UserError(f"{given[0]} changes the frames of each training clip; with --freeze-encoder the "
                                "caption decoder trains on features encoded once per clip (leave it out)")
            extra.update(speed_augment=0.0, scale_augment=None, scale_p=1.0)
    cfg = VideoTrainConfig(task=args.task, model=model, model_kwargs=model_kwargs, frontend=fe, epochs=epochs,
                           batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, augment=not args.no_augment, max_steps=args.max_steps,
                           progress=_progress(args), init_from=args.init_from, target=args.target, device=device,
                           frame_encoder=args.frame_encoder, weights=args.weights,
                           freeze_encoder=args.freeze_encoder, context=args.context, horizon=args.horizon,
                           appearance_augment=args.appearance_augment == "on", **extra)
    t0 = time.time()
    res = train(args.data, args.out, cfg, resume=not args.fresh, workers=args.workers)
    res["checkpoint"] = str(Path(args.out) / "best.pt")
    _emit(res, args.json, f"trained {model} for {res['step']} steps in {res['seconds']:.0f} s; "
                          f"validation {res['metrics']}; checkpoint {res['checkpoint']}")
    log(f"[train done in {time.time() - t0:.1f} s]")
    return 0


def cmd_eval(args) -> int:
    from .infer import evaluate

    device = apply_runtime(args)
    split = None if args.split == "all" else args.split
    if args.task == "predict":
        from .predict import evaluate_predict

        rep = evaluate_predict(args.checkpoint, args.data, split, args.context, args.horizon,
                               progress=_progress(args), device=device)
        _emit(rep, args.json,
              f"MSE {rep['mse']:.5f} (copy-last {rep['mse_copy_last']:.5f}, mean-frame {rep['mse_mean_frame']:.5f}; "
              f"{100 * (1 - rep['mse_vs_copy_last']):.1f}% below copy-last)  SSIM {rep['ssim']:.4f} "
              f"(copy-last {rep['ssim_copy_last']:.4f}) over {rep['horizon']} predicted frames of {rep['n']} clips")
        return 0
    if args.context is not None or args.horizon is not None:
        raise UserError("--context/--horizon belong to --task predict")
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


def cmd_predict(args) -> int:
    from .infer import expand_paths
    from .predict import predict_clips

    device = apply_runtime(args)
    clips = expand_paths(args.paths)
    if not clips:
        raise UserError("no video clips among the inputs")
    out = Path(args.out)
    single = out.suffix.lower() in (".gif", ".mp4")
    if single and len(clips) > 1:
        raise UserError(f"--out {out} names one file; with {len(clips)} clips name a folder")
    if single:
        outputs = [(out, out.with_suffix(".png"))]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; name a folder, or a file ending in .gif or .mp4")
        names = [c.stem if [d.stem for d in clips].count(c.stem) == 1 else f"{c.parent.name}_{c.stem}"
                 for c in clips]
        outputs = [(out / f"{n}.gif", out / f"{n}.png") for n in names]
    inputs = _inputs(args.paths, args.checkpoint)
    for vid, png in outputs:
        check_output(vid, inputs, args.overwrite)
        check_output(png, inputs, args.overwrite)
    res = predict_clips(args.checkpoint, clips, outputs, args.context, args.horizon, device=device)
    if res["n"] == 0:
        raise UserError(f"no decodable video clip among the inputs ({res['skipped']} skipped)")
    if args.json:
        print(json.dumps(res))
    else:
        for r in res["predictions"]:
            print(f"{r['path']}\t{r['video']}\t{r['strip']}\tMSE {r['mse']:.5f} (copy-last {r['mse_copy_last']:.5f})")
        log(f"predicted {res['horizon']} frames from {res['context']} for {res['n']} clips, skipped {res['skipped']}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo, run_predict_demo

    device = apply_runtime(args)
    args.epochs_given = args.epochs is not None
    args.epochs = args.epochs or 25
    if args.task == "predict":
        res = run_predict_demo(args.out or "runs/demo-video-predict", train_clips=args.predict_clips,
                               epochs=args.epochs if args.epochs_given else 2, quiet=args.json, device=device)
        if args.json:
            print(json.dumps(res))
        return 0
    res = run_demo(args.out or "runs/demo-video", data=args.data, train_per_class=args.train, epochs=args.epochs,
                   caption_epochs=args.caption_epochs, quiet=args.json, device=device)
    if args.json:
        print(json.dumps(res))
    return 0


main = main_for(build_parser, "lstm-media video", __doc__)

if __name__ == "__main__":
    sys.exit(main())
