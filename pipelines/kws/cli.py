"""``lstm-media kws``: keyword spotting — synthesise data, train, evaluate, predict, detect in a stream, demo.

    lstm-media kws predict clip.wav ... [--json]           # the shipped 12-class model (--checkpoint kws-digits: digits)
    lstm-media kws detect long.wav [--json]                # streaming detection: "time_s word score" + real-time factor
    lstm-media kws detect --mic [--device-index N] [--seconds S]   # live from an input device (--list-devices)
    lstm-media kws export kws --format onnx|torchscript [--int8] --out DIR   # streaming model (+ --engine onnx DIR)
    lstm-media kws synth --out data/kws                    # the offline Speech Commands-layout dataset
    lstm-media kws train --data data/kws --out runs/kws [--preset digits | --words a b c] [--epochs N] [--fresh]
    lstm-media kws eval --data data/kws [--checkpoint runs/kws/best.pt] [--png cm.png] [--json]
    lstm-media kws enroll --word hello a.wav b.wav ... --data data/kws --out runs/hello   # your own word(s)
    lstm-media kws stream-wav --data data/kws --out long.wav   # a long test recording (+ truth .json)
    lstm-media kws demo --out runs/demo-kws

--checkpoint takes a file or a shipped model name (``lstm-media models``); without it the shipped ``kws``
model is used.  ``python scripts/kws.py ...`` is the same command.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..cli_common import (UserError, add_command, add_runtime, any_float, apply_runtime, check_output, log,
                          main_for, nonneg_float, nonneg_int, positive_float, positive_int, unit_interval,
                          write_text_atomic)

PRESET_CHOICES = ["default", "digits"]
ENGINES_ALL = ("espeak", "flite", "festival", "piper", "pico")  # pipelines.kws.synth.ENGINES_ALL (not imported: --help stays fast)


def _words_arg(p, required=False, help="words to spot (default: the preset's)"):
    p.add_argument("--words", nargs="+", default=None, required=required, help=help)


def _checkpoint_arg(p):
    p.add_argument("--checkpoint", default=None,
                   help="a kws checkpoint file or shipped model name (default: the shipped 'kws')")


def build_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{synth,train,eval,predict,stream-wav,detect,export,demo}")

    s = add_command(sub, "synth", cmd_synth, "write the offline Speech Commands-layout dataset (espeak-ng, flite, Festival, piper)")
    s.add_argument("--out", default="data/kws", help="dataset folder (default %(default)s)")
    s.add_argument("--engines", nargs="+", choices=ENGINES_ALL, default=None,
                   help="speech engines to use (default: " + ", ".join(ENGINES_ALL[:4]) + "; pico, SVOX Pico, is kept out "
                        "of the default data as an engine no shipped model heard: --engines pico makes an outside test set)")
    s.add_argument("--variants-per-accent", type=nonneg_int, default=None, help="espeak-ng voices per accent (40)")
    s.add_argument("--espeak-takes", type=positive_int, default=None, help="renditions per word per espeak-ng voice (2)")
    s.add_argument("--flite-variants", type=nonneg_int, default=None, help="pseudo-speakers per flite voice (12)")
    s.add_argument("--flite-takes", type=nonneg_int, default=None, help="renditions per word per flite pseudo-speaker (1)")
    s.add_argument("--festival-variants", type=nonneg_int, default=None, help="pseudo-speakers per Festival voice (16)")
    s.add_argument("--piper-variants", type=nonneg_int, default=None, help="pseudo-speakers per piper voice (48)")
    s.add_argument("--pico-variants", type=nonneg_int, default=None, help="pseudo-speakers per SVOX Pico voice (24)")
    _words_arg(s, help="words to speak (all 35 Speech Commands words)")
    s.add_argument("--workers", type=positive_int, default=2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true", help="write into a folder that already holds files")
    s.add_argument("--json", action="store_true")

    t = add_command(sub, "train", cmd_train, "train on any Speech Commands-layout folder (resumes OUT/last.pt)")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    g = t.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=PRESET_CHOICES, default=None,
                   help="default: yes no up down left right on off stop go; digits: zero..nine")
    _words_arg(g)
    t.add_argument("--epochs", type=positive_int, default=None,
                   help="(15; without --epochs a small data set trains more epochs, to reach --min-steps)")
    t.add_argument("--min-steps", type=nonneg_int, default=None,
                   help="at least this many optimizer steps (1500 by default, 0 once --epochs is given)")
    t.add_argument("--batch-size", type=positive_int, default=None, help="(64)")
    t.add_argument("--lr", type=positive_float, default=None, help="(3e-3)")
    t.add_argument("--hidden", type=positive_int, default=None, help="LSTM width (128)")
    t.add_argument("--layers", type=positive_int, default=None, help="LSTM layers (2)")
    t.add_argument("--bidirectional", action="store_true", help="pools over time; cannot stream (detect)")
    t.add_argument("--features", choices=["mfcc", "logmel"], default=None)
    t.add_argument("--no-augment", action="store_true", help="switch off every augmentation")
    t.add_argument("--augment", choices=["robust", "basic"], default=None,
                   help="robust (default): noise, shift, gain, speed, SpecAugment and speaker and channel augmentation "
                        "(VTLP, room, EQ, telephone, babble, clipping); basic: without the speaker and channel part")
    t.add_argument("--holdout-engine", default=None, metavar="ENGINE",
                   help="leave-one-engine-out: train without this engine's clips (espeak, flite, festival or piper "
                        "in synthesised data) and test on all of them; reported beside the by-voice test")
    t.add_argument("--max-steps", type=positive_int, default=None)
    t.add_argument("--workers", type=nonneg_int, default=None,
                   help="data-loading processes (default: 1 when --threads allows 2 or more, the model keeps the rest)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--fresh", action="store_true", help="ignore OUT/last.pt and start over")
    t.add_argument("--json", action="store_true")
    add_runtime(t)

    e = add_command(sub, "eval", cmd_eval, "accuracy, per-class accuracy (and a confusion PNG) on a folder")
    _checkpoint_arg(e)
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="auto", choices=["auto", "training", "validation", "testing", "all"],
                   help="auto: the testing list when the folder has list files, else every file")
    e.add_argument("--engine", default=None, metavar="ENGINE",
                   help="only the clips of this engine (synthesised data), e.g. a model's left-out engine")
    e.add_argument("--telephone", action="store_true",
                   help="pass every clip through an 8 kHz 8-bit mu-law telephone channel (300-3400 Hz) first")
    e.add_argument("--png", default=None, help="write the confusion matrix to this PNG")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --png")
    e.add_argument("--json", action="store_true")
    add_runtime(e)

    r = add_command(sub, "predict", cmd_predict, "label and score for each 1 s clip")
    _checkpoint_arg(r)
    r.add_argument("files", nargs="+")
    r.add_argument("--json", action="store_true")
    r.add_argument("--gates", default=None, metavar="DIR",
                   help="also draw each clip's gates and cell state (as 'lstm-media explain') into DIR/<clip>.gates.png")
    r.add_argument("--overwrite", action="store_true", help="with --gates: replace existing pictures")
    add_runtime(r)

    n = add_command(sub, "enroll", cmd_enroll,
                    "add your own word(s) from a few recordings: fine-tunes a kws model into a new bundle")
    n.add_argument("--word", action="append", nargs="+", required=True, metavar=("WORD", "FILE"),
                   help="a new word and its recordings (5-10 WAVs of any rate/channels); repeat for more words")
    n.add_argument("--data", required=True,
                   help="Speech Commands-layout folder with the model's words (e.g. from 'kws synth'): keeps the "
                        "old classes with their own data")
    n.add_argument("--out", required=True, help="run folder (writes OUT/best.pt, OUT/enroll_report.json)")
    _checkpoint_arg(n)
    n.add_argument("--epochs", type=positive_int, default=None, help="(4)")
    n.add_argument("--lr", type=positive_float, default=None, help="(1e-3)")
    n.add_argument("--old-per-class", type=positive_int, default=None,
                   help="clips per old class used for fine-tuning (300)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--fresh", action="store_true", help="ignore OUT/last.pt and start over")
    n.add_argument("--json", action="store_true")
    add_runtime(n)

    w = add_command(sub, "stream-wav", cmd_stream_wav,
                    "write a long recording of held-out voices over noise (+ truth .json)")
    w.add_argument("--data", required=True)
    w.add_argument("--out", required=True, help="the .wav to write (a folder: OUT/long.wav); truth beside it")
    w.add_argument("--preset", choices=PRESET_CHOICES, default="default")
    _words_arg(w)
    w.add_argument("--keywords", type=positive_int, default=16)
    w.add_argument("--unknown", type=nonneg_int, default=4)
    w.add_argument("--snr", type=any_float, default=15.0, help="speech-to-noise ratio in dB (default %(default)s)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--overwrite", action="store_true")

    d = add_command(sub, "detect", cmd_detect, "streaming keyword detection over a recording of any length, "
                                               "or live from a microphone (--mic)")
    d.add_argument("--checkpoint", default=None,
                   help="--engine torch: a kws checkpoint file or shipped model name (default: the shipped 'kws'); "
                        "--engine onnx|torchscript: the folder `lstm-media kws export` wrote")
    d.add_argument("file", nargs="?", default=None, help="the recording (or --mic)")
    d.add_argument("--engine", choices=["torch", "onnx", "torchscript"], default="torch",
                   help="torch: the PyTorch checkpoint (default); onnx / torchscript: an exported folder")
    d.add_argument("--mic", action="store_true", help="listen to an input device (sounddevice/PortAudio); Ctrl-C "
                                                      "ends with a summary (exit 0)")
    d.add_argument("--device-index", type=nonneg_int, default=None,
                   help="--mic: input device number (--list-devices; default: the system's default input)")
    d.add_argument("--seconds", type=positive_float, default=None, help="--mic: stop after this much audio")
    d.add_argument("--list-devices", action="store_true", help="list the input devices and exit")
    d.add_argument("--block-ms", type=positive_float, default=None,
                   help="audio per model call (500 for a file, 100 with --mic)")
    d.add_argument("--average-ms", type=positive_float, default=None, help="posterior smoothing window (500)")
    d.add_argument("--threshold", type=unit_interval, default=None, help="smoothed posterior to fire (0.7)")
    d.add_argument("--suppression-ms", type=nonneg_float, default=None, help="quiet time after a detection (1500)")
    d.add_argument("--truth", default=None, help="truth .json to score against (default: FILE's .json when it "
                                                 "holds a truth list)")
    d.add_argument("--json", action="store_true")
    add_runtime(d)

    x = add_command(sub, "export", cmd_export, "write a streaming model (audio block + state in, posteriors + "
                                                "state out) as ONNX or TorchScript, optionally int8")
    x.add_argument("checkpoint", help="a kws checkpoint file or shipped model name (e.g. kws)")
    x.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    x.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the LSTM and output layer")
    x.add_argument("--out", required=True, help="folder to write (model.onnx or model.pt, and meta.json)")
    x.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    x.add_argument("--json", action="store_true")

    m = add_command(sub, "demo", cmd_demo, "synth -> train -> eval -> detect, end to end")
    m.add_argument("--out", default="runs/demo-kws")
    m.add_argument("--data", default=None, help="dataset folder (default: OUT/data; reused when present)")
    m.add_argument("--steps", type=positive_int, default=1000,
                   help="optimizer steps (1000: the demo's short run; `train` defaults to 12 epochs, >= 1500 steps)")
    m.add_argument("--epochs", type=positive_int, default=None, help="train exactly this many epochs instead")
    add_runtime(m)


# --- helpers ---------------------------------------------------------------------------------------------
def _words(args) -> list[str]:
    from .data import PRESETS, SILENCE, UNKNOWN

    words = list(args.words) if args.words else list(PRESETS[args.preset or "default"])
    dup = sorted({w for w in words if words.count(w) > 1})
    if dup:
        raise UserError(f"--words names {', '.join(dup)} more than once")
    if SILENCE in words or UNKNOWN in words:
        raise UserError(f"--words cannot use the reserved class names {SILENCE} and {UNKNOWN}")
    return words


def _train_config(args):
    from encoders.audio import AugmentConfig

    from .train import KWSConfig

    cfg = KWSConfig(seed=args.seed, words=tuple(_words(args)))
    for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                 ("hidden_size", args.hidden), ("num_layers", args.layers), ("feature_kind", args.features),
                 ("max_steps", args.max_steps)):
        if v is not None:
            cfg = replace(cfg, **{k: v})
    if args.epochs is not None or args.min_steps is not None:  # asked for epochs: exactly those, unless both
        cfg = replace(cfg, min_steps=args.min_steps or 0)
    if args.bidirectional:
        cfg = replace(cfg, bidirectional=True)
    if args.no_augment:
        cfg = replace(cfg, augment=AugmentConfig.off())
    elif args.augment is not None:
        cfg = replace(cfg, augment=getattr(AugmentConfig, args.augment)())
    if args.holdout_engine is not None:
        cfg = replace(cfg, holdout_engine=args.holdout_engine)
    return cfg


def _progress() -> bool:
    return sys.stderr.isatty()


def read_truth(path: Path) -> list[dict] | None:
    """A truth list written by ``stream-wav`` (``[{"word", "time_s", "keyword"}, ...]``), or None when the
    file is not one (unreadable, not JSON, or another structure)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, list):
        return None
    for t in data:
        if not (isinstance(t, dict) and isinstance(t.get("word"), str) and isinstance(t.get("time_s"), (int, float))
                and not isinstance(t.get("time_s"), bool) and isinstance(t.get("keyword", True), bool)):
            return None
    return data


# --- commands ---------------------------------------------------------------------------------------------
def cmd_synth(args) -> dict:
    from .synth import SynthConfig, synthesize

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; name a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} already holds files; refusing to write into it (pass --overwrite, or choose "
                        "another --out)")
    cfg = SynthConfig(seed=args.seed, workers=args.workers)
    for k, v in (("variants_per_accent", args.variants_per_accent), ("flite_takes", args.flite_takes),
                 ("espeak_takes", args.espeak_takes), ("flite_variants", args.flite_variants),
                 ("festival_variants", args.festival_variants), ("piper_variants", args.piper_variants),
                 ("pico_variants", args.pico_variants)):
        if v is not None:
            cfg = replace(cfg, **{k: v})
    if args.words:
        cfg = replace(cfg, words=tuple(_words(args)))
    if args.engines:
        cfg = replace(cfg, engines=tuple(dict.fromkeys(args.engines)))
    summary = synthesize(out, cfg, progress=_progress())
    if args.json:
        print(json.dumps({"out": str(out), **summary}))
    else:
        log(f"wrote {summary['clips']} clips from {summary['voices']} voices to {out} "
            f"({summary['splits']}; {summary['failed']} failed) in {summary['seconds']} s")
    return summary


def cmd_train(args) -> dict:
    from .train import train

    device = apply_runtime(args)
    cfg = _train_config(args)
    summary = train(args.data, args.out, cfg, progress=_progress(), resume=not args.fresh, device=device,
                    workers=args.workers)
    if args.json:
        print(json.dumps(summary))
    else:
        acc = "-" if summary["test_accuracy"] is None else f"{summary['test_accuracy']:.4f}"
        log(f"test accuracy {acc} on {summary['test_n']} clips of held-out voices; "
            f"training {summary['train_seconds']} s; checkpoint {summary['checkpoint']}")
        if summary.get("holdout_engine"):
            h = summary["holdout_engine"]
            log(f"left-out engine {h['engine']}: accuracy {h['accuracy']:.4f} on {h['n']} clips "
                f"(trained on {', '.join(h['trained_on'])})")
    return summary


def cmd_eval(args) -> dict:
    from .train import evaluate_checkpoint

    device = apply_runtime(args)
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: no such dataset folder")
    png = check_output(args.png, [args.checkpoint], args.overwrite, "--png") if args.png else None
    rep = evaluate_checkpoint(args.checkpoint, args.data, png, split=None if args.split == "all" else args.split,
                              progress=_progress(), device=device, engine=args.engine, telephone=args.telephone)
    if args.json:
        print(json.dumps(rep))
    else:
        print(f"accuracy {rep['accuracy']:.4f} on {rep['n']} clips ({rep['split']}), skipped {rep['skipped']}")
        for e, v in (rep.get("by_engine") or {}).items():
            print(f"  engine {e}: {v['accuracy']:.4f} on {v['n']} clips")
        for k, v in rep["per_class"].items():
            print(f"  {k:>10s} {'-' if v is None else f'{v:.3f}'}")
        if png is not None:
            print(f"confusion matrix: {png}")
    return rep


def cmd_predict(args):
    from .train import predict_files

    device = apply_runtime(args)
    res = predict_files(args.checkpoint, args.files, device=device)
    if args.gates and any("label" in r for r in res):
        _draw_gates(args, res)
    if args.json:
        print(json.dumps({"predictions": res}))
    else:
        for r in res:
            print(f"{r['file']}\t{r['label']}\t{r['score']:.4f}" if "label" in r else f"{r['file']}\tERROR\t{r['error']}")
    if not any("label" in r for r in res):
        raise UserError(f"none of the {len(res)} files could be read as audio")
    return res


def _draw_gates(args, res) -> None:
    """The explainer's picture for every clip that was read (the model's top layer; see pipelines.explain)."""
    from pipelines import bundle
    from pipelines.explain import explain_kws

    model, b = bundle.load(args.checkpoint, kind="kws", default="kws", command="lstm-media kws predict --gates")
    if b["model_config"].get("bidirectional"):
        raise UserError(f"{b['path']}: --gates draws unidirectional models only")
    outs = [check_output(Path(args.gates) / f"{Path(r['file']).stem}.gates.png", args.files, args.overwrite,
                         flag="--gates") for r in res if "label" in r]
    for r, out in zip([r for r in res if "label" in r], outs):
        r["gates_png"] = explain_kws(model, b, r["file"], 12, out)["png"]
        log(f"gates: {r['gates_png']}")


def cmd_enroll(args) -> dict:
    from .enroll import EnrollConfig, enroll

    device = apply_runtime(args)
    words: dict[str, list[str]] = {}
    for entry in args.word:
        w, files = entry[0], entry[1:]
        if not files:
            raise UserError(f"--word {w}: name its recordings after the word (--word {w} a.wav b.wav ...)")
        if w in words:
            raise UserError(f"--word {w} given twice")
        if w.startswith("_") or Path(w).suffix.lower() in (".wav", ".flac", ".ogg"):
            raise UserError(f"--word {w}: a word comes first, then its recordings")
        words[w] = files
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: no such dataset folder")
    cfg = EnrollConfig(seed=args.seed)
    for k, v in (("epochs", args.epochs), ("lr", args.lr), ("old_per_class", args.old_per_class)):
        if v is not None:
            cfg = replace(cfg, **{k: v})
    out = Path(args.out)
    inputs = [f for fs in words.values() for f in fs] + ([args.checkpoint] if args.checkpoint else [])
    for f in inputs:
        if Path(f).resolve().parent == out.resolve():
            raise UserError(f"--out {out} holds the input {f}; choose another folder")
    summary = enroll(words, args.data, out, args.checkpoint, cfg, progress=_progress(), resume=not args.fresh,
                     device=device)
    if args.json:
        print(json.dumps(summary))
    else:
        log(f"enrolled {', '.join(words)}: old classes' test accuracy {summary['old_classes_test_accuracy_before']:.4f}"
            f" -> {summary['old_classes_test_accuracy_after']:.4f} ({summary['test_n']} clips); "
            f"{summary['train_seconds']} s; checkpoint {summary['checkpoint']}")
    return summary


def cmd_stream_wav(args):
    from .data import scan_dataset
    from .synth import make_long_recording

    data = Path(args.data)
    if not data.is_dir():
        raise UserError(f"--data {data}: no such dataset folder")
    out = Path(args.out)
    if out.is_dir():
        out = out / "long.wav"
    if data.resolve() in out.resolve().parents:
        raise UserError(f"--out {out} is inside the dataset folder {data}; choose a place outside it")
    truth_path = out.with_suffix(".json")
    check_output(out, [], args.overwrite)
    check_output(truth_path, [out], args.overwrite, "--out (its truth .json)")
    words = _words(args)
    if not any(it.split == "testing" and it.word in words for it in scan_dataset(data, quiet=True).items):
        raise UserError(f"{data}: no testing clips of {', '.join(words)} to build a recording from")
    truth = make_long_recording(data, out, words, args.keywords, args.unknown, snr_db=args.snr, seed=args.seed)
    log(f"wrote {out} with {len(truth)} words ({sum(t['keyword'] for t in truth)} keywords); truth in {truth_path}")
    return truth


def _detector_source(args, device: str):
    """(model or None, engine or None, labels, DetectConfig, description) for ``detect``'s --engine."""
    import torch

    from .stream import DetectConfig

    if args.engine == "torch":
        from .train import load

        model, b = load(args.checkpoint, device, "lstm-media kws detect")
        if getattr(model, "bidirectional", False):
            raise UserError(f"{b['path']}: a bidirectional model needs whole clips and cannot stream; use predict")
        saved, labels, engine, source = b["extras"].get("detect_config"), b["labels"], None, b["path"]
    else:
        from .export import load_engine

        if args.checkpoint is None:
            raise UserError(f"--engine {args.engine} needs --checkpoint DIR: a folder written by "
                            f"`lstm-media kws export CHECKPOINT --format {args.engine} --out DIR`")
        if device != "cpu":
            log(f"note: --engine {args.engine} runs on the CPU")
        engine = load_engine(args.checkpoint, args.engine, threads=torch.get_num_threads())  # --threads
        model, saved, labels, source = None, engine.meta.get("detect_config"), engine.labels, str(args.checkpoint)
    cfg = DetectConfig.from_dict({**DetectConfig().to_dict(), **(saved or {})})
    for k in ("block_ms", "average_ms", "threshold", "suppression_ms"):
        if getattr(args, k) is not None:
            cfg = replace(cfg, **{k: getattr(args, k)})
    return model, engine, labels, cfg, source


def _list_devices(args):
    from .live import input_devices

    devs = input_devices()
    if args.json:
        print(json.dumps({"input_devices": devs}))
    elif not devs:
        print("no input devices")
    for d in [] if args.json else devs:
        print(f"{d['index']:3d}{' *' if d['default'] else '  '} {d['name']} ({d['channels']} ch, "
              f"{d['default_samplerate']:.0f} Hz)")
    return {"input_devices": devs}


def _detect_mic(args, model, engine, labels, cfg, source):
    from .live import run_mic, sounddevice
    from .stream import StreamingDetector

    if args.file is not None:
        raise UserError("give either a FILE or --mic, not both")
    if args.truth is not None:
        raise UserError("--truth scores a recording; it does not apply to --mic")
    sounddevice()  # PortAudio present, or one error line before anything is printed
    det = StreamingDetector(model, labels, cfg, engine=engine)

    def emit(d):
        t, w, s = d
        print(json.dumps({"time_s": t, "word": w, "score": s}) if args.json else f"{t:.2f} {w} {s:.3f}", flush=True)

    block_ms = args.block_ms if args.block_ms is not None else 100.0
    where = "default input" if args.device_index is None else f"input device {args.device_index}"
    res = run_mic(det, args.device_index, args.seconds, block_ms, emit,
                  announce=lambda: log(f"listening ({where}, {det.fc.sample_rate} Hz, {block_ms:g} ms blocks, "
                                       f"{args.engine} engine); Ctrl-C to stop"))
    res.update({"config": cfg.to_dict(), "checkpoint": source, "engine": args.engine})
    counts = ", ".join(f"{w} {n}" for w, n in sorted(res["counts"].items())) or "none"
    if args.json:
        print(json.dumps({"summary": {k: v for k, v in res.items() if k != "detections"}}))
    else:
        print(f"{'stopped' if res['interrupted'] else 'done'} after {res['seconds_audio']:.1f} s of audio: "
              f"{len(res['detections'])} detections ({counts}); real-time factor {res['rtf']:.4f}"
              + (f"; {res['overflows']} input overflows" if res["overflows"] else ""))
    return res


def cmd_detect(args):
    import torch

    from encoders.io.audio import load_audio

    from .stream import detect, score_detections

    device = apply_runtime(args)
    if args.list_devices:
        return _list_devices(args)
    if not args.mic and args.file is None:
        raise UserError("name a recording to scan (FILE), or listen with --mic")
    if not args.mic and (args.device_index is not None or args.seconds is not None):
        raise UserError("--device-index and --seconds go with --mic")
    truth, truth_path = None, None
    if args.truth is not None and not args.mic:  # asked for: it must be a truth list
        truth_path = Path(args.truth)
        if not truth_path.is_file():
            raise UserError(f"--truth {truth_path}: no such file")
        truth = read_truth(truth_path)
        if truth is None:
            raise UserError(f"--truth {truth_path}: not a truth list (a JSON list of {{\"word\", \"time_s\", "
                            "\"keyword\"}} as stream-wav writes)")
    model, engine, labels, cfg, source = _detector_source(args, device)
    if args.mic:
        return _detect_mic(args, model, engine, labels, cfg, source)
    sr = model.feature_config.sample_rate if engine is None else engine.fc.sample_rate
    wave = load_audio(args.file, sr=sr)
    if truth is None:  # the guess: FILE's .json, used only when it is a truth list
        guess = Path(args.file).with_suffix(".json")
        if guess.is_file():
            truth = read_truth(guess)
            if truth is None:
                log(f"warning: {guess} is not a truth list; not scoring")
            else:
                truth_path = guess
    res = detect(model, labels, wave, cfg, engine=engine)
    if truth is not None:
        res["score"] = score_detections(res["detections"], truth)
        res["truth"] = str(truth_path)
    res["config"] = cfg.to_dict()
    res["checkpoint"] = source
    res["engine"] = args.engine
    if args.json:
        print(json.dumps(res))
    else:
        for t, w, s in res["detections"]:
            print(f"{t:.2f} {w} {s:.3f}")
        threads = torch.get_num_threads()
        print(f"real-time factor {res['rtf']:.5f} ({res['seconds_compute']:.3f} s for {res['seconds_audio']:.1f} s "
              f"of audio, {threads} thread{'s' if threads != 1 else ''}, "
              f"{device if args.engine == 'torch' else args.engine + ' engine, cpu'})")
        if "score" in res:
            sc = res["score"]
            print(f"hits {sc['hits']}/{sc['keywords']}, misses {sc['misses']}, false alarms {sc['false_alarms']}")
    return res


def cmd_export(args) -> dict:
    from .export import export

    res = export(args.checkpoint, args.out, args.format, args.int8, args.overwrite)
    if args.json:
        print(json.dumps(res))
    else:
        log(f"wrote {res['file']} ({res['bytes'] / 1e6:.2f} MB, {res['format']}{', int8' if res['int8'] else ''}) "
            f"and {Path(res['out']) / 'meta.json'}; max |posterior - PyTorch| on a test block {res['max_abs_diff']:.2e}")
    return res


def _invoke(argv: list[str]):
    """Run one of this job's commands as the CLI would and return its result (the demo's steps)."""
    p = argparse.ArgumentParser(prog="lstm-media kws")
    build_parser(p)
    args = p.parse_args([str(a) for a in argv])
    return args.func(args)


# the demo's data: every engine, about half the voices of `synth`'s defaults (13,930 clips), to stay short
DEMO_SYNTH = ["--variants-per-accent", "20", "--flite-variants", "6", "--festival-variants", "8", "--piper-variants", "24"]


def cmd_demo(args) -> dict:
    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    rt = ["--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
    t0 = time.time()
    if not (data / "testing_list.txt").is_file():
        log(f"[1/4] synthesising the dataset into {data} (all four engines, about half the default voices)")
        _invoke(["synth", "--out", data, "--overwrite", *DEMO_SYNTH])
    t1 = time.time()
    length = ["--epochs", args.epochs] if args.epochs else ["--epochs", 1, "--min-steps", args.steps]
    log(f"[2/4] training (default configuration, {f'{args.epochs} epochs' if args.epochs else f'{args.steps} steps'})")
    summary = _invoke(["train", "--data", data, "--out", out / "run", *length, *rt])
    log("[3/4] evaluating on the held-out voices")
    ck = out / "run" / "best.pt"
    rep = _invoke(["eval", "--checkpoint", ck, "--data", data, "--png", out / "confusion_test.png", "--overwrite",
                   *rt])
    log("[4/4] streaming detection over a long recording of held-out voices in noise")
    wav = out / "long.wav"
    _invoke(["stream-wav", "--data", data, "--out", wav, "--overwrite"])
    res = _invoke(["detect", "--checkpoint", ck, wav, *rt])
    t3 = time.time()
    result = {"synth_seconds": round(t1 - t0, 1), "train_seconds": summary["train_seconds"],
              "total_seconds": round(t3 - t0, 1), "test_accuracy": rep["accuracy"], "test_n": rep["n"],
              "detect": dict(res.get("score", {})), "rtf": res["rtf"]}
    for k in ("hit_list", "false_alarm_list"):
        result["detect"].pop(k, None)
    write_text_atomic(out / "demo.json", json.dumps(result, indent=1))
    print(f"\ndemo done in {result['total_seconds']:.0f} s. Outputs:\n"
          f"  dataset            {data}\n"
          f"  checkpoint         {ck}  (loss curve {out / 'run' / 'loss.png'}, log {out / 'run' / 'metrics.jsonl'})\n"
          f"  test accuracy      {rep['accuracy']:.4f} on {rep['n']} clips of held-out voices -> {out / 'confusion_test.png'}\n"
          f"  long recording     {wav} (truth {wav.with_suffix('.json')})\n"
          f"  detection          hits {result['detect'].get('hits')}/{result['detect'].get('keywords')}, "
          f"false alarms {result['detect'].get('false_alarms')}, real-time factor {res['rtf']:.4f}\n"
          f"  summary            {out / 'demo.json'}")
    return result


main = main_for(build_parser, "lstm-media kws", __doc__)

if __name__ == "__main__":
    sys.exit(main())
