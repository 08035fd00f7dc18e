"""``lstm-media music``: MIDI event tokens -> LSTM -> generated MIDI (``python scripts/music.py`` is the same).

  lstm-media music generate --out song.mid --seconds 10          # the shipped chorale model
  lstm-media music corpus --out data/chorales [--folk]
  lstm-media music train --data data/chorales --out runs/music-lstm [--model lstm|rnn|pianoroll] [--fresh]
  lstm-media music eval --data data/chorales --split test --json [--checkpoint runs/music-lstm/best.pt]
  lstm-media music generate --checkpoint runs/music-lstm/best.pt --out gen/ --num 4 --seconds 30
  lstm-media music generate --out song.mid --primer-pitches 60 64 67 --tempo 90 --program 19 --audio flac
  lstm-media music render song.mid song.wav                        # FluidSynth + a General MIDI SoundFont
  lstm-media music stats data/chorales runs/gen --json
  lstm-media music demo --out runs/demo-music
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..cli_common import (UserError, add_command, add_runtime, apply_runtime, bounded_float, bounded_int, log,
                          main_for, nonneg_int, positive_float, positive_int, probability, write_text_atomic)
from encoders.io.midi import MAX_BPM, MIN_BPM

from .inference import DEFAULT_TEMPERATURE, MAX_SECONDS, MAX_TOKENS

MODELS = ("lstm", "rnn", "pianoroll")  # registry names music-<model>


def build_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="{corpus,train,eval,generate,render,stats,demo}")

    c = add_command(sub, "corpus", cmd_corpus, "write the music21 Bach chorales (and folk tunes) as .mid + split lists")
    c.add_argument("--out", required=True, help="corpus folder (existing .mid files are kept)")
    c.add_argument("--folk", action="store_true", help="also the folk tunes (music21 ABC -> abc2midi)")
    c.add_argument("--limit", type=positive_int, default=None, help="first N chorales only")
    c.add_argument("--workers", type=bounded_int(1, 64), default=2, help="processes (default 2)")
    c.add_argument("--json", action="store_true")
    add_runtime(c, device=False)

    t = add_command(sub, "train", cmd_train, "train a music model on DIR's train split (valid split for best.pt)")
    t.add_argument("--data", required=True, help="corpus folder (train/valid split lists or the hash rule)")
    t.add_argument("--out", required=True, help="run folder: best.pt, last.pt, metrics.jsonl, loss.png")
    t.add_argument("--model", default="lstm", choices=MODELS, help="registry name music-<model> (default lstm)")
    t.add_argument("--preset", default="chorale", choices=("chorale", "performance"),
                   help="vocabulary preset (default chorale: 4 steps per quarter)")
    t.add_argument("--epochs", type=positive_int, default=None, help="default 40")
    t.add_argument("--max-steps", type=positive_int, default=None)
    t.add_argument("--lr", type=positive_float, default=None, help="default 2e-3")
    t.add_argument("--hidden", type=positive_int, default=None, help="hidden size (default: the model's)")
    t.add_argument("--layers", type=bounded_int(1, 16), default=None)
    t.add_argument("--embed", type=positive_int, default=None, help="token embedding size (event models)")
    t.add_argument("--dropout", type=bounded_float(0.9, 0.0, lo_open=False), default=None)
    t.add_argument("--streams", type=positive_int, default=None, help="parallel streams for truncated BPTT")
    t.add_argument("--bptt", type=positive_int, default=None, help="tokens per truncated-BPTT chunk")
    t.add_argument("--transpose", type=bounded_int(0, 12), default=None, help="random transposition ± semitones")
    t.add_argument("--batch-size", type=positive_int, default=None, help="pieces per batch (piano-roll model)")
    t.add_argument("--seed", type=nonneg_int, default=0)
    t.add_argument("--fresh", action="store_true", help="start over even if --out holds a last.pt")
    t.add_argument("--json", action="store_true")
    add_runtime(t)

    e = add_command(sub, "eval", cmd_eval, "NLL of a corpus split under a checkpoint (default: the shipped model)")
    e.add_argument("--checkpoint", default=None, help="a bundle file or shipped model name (default: music)")
    e.add_argument("--data", required=True, help="corpus folder")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--json", action="store_true")
    add_runtime(e)

    g = add_command(sub, "generate", cmd_generate, "sample MIDI files (+ piano-roll PNGs)")
    g.add_argument("--checkpoint", default=None, help="a bundle file or shipped model name (default: music)")
    g.add_argument("--out", required=True,
                   help="song.mid (with --num N > 1: song_000.mid ...), or a folder: music_NNN.mid inside it")
    g.add_argument("--num", type=bounded_int(1, 256), default=1, help="pieces (default 1)")
    length = g.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=bounded_float(MAX_SECONDS), default=None,
                        help=f"length per piece, primer included (default 30, at most {MAX_SECONDS:g})")
    length.add_argument("--tokens", type=bounded_int(1, MAX_TOKENS), default=None,
                        help="event tokens (piano roll: frames), primer included")
    g.add_argument("--temperature", type=positive_float, default=DEFAULT_TEMPERATURE,
                   help=f"sampling temperature (default {DEFAULT_TEMPERATURE:g}: closer to the corpus' four voices than 1.0)")
    g.add_argument("--top-k", type=nonneg_int, default=0, help="keep the k likeliest tokens (0: all)")
    g.add_argument("--top-p", type=probability, default=1.0, help="nucleus sampling, in (0, 1]")
    prim = g.add_mutually_exclusive_group()
    prim.add_argument("--primer", default=None, help="a MIDI file to continue")
    prim.add_argument("--primer-pitches", type=bounded_int(0, 127), nargs="+", default=None, metavar="PITCH",
                      help="a chord to continue, sounded for one quarter note, e.g. 60 64 67 (C major)")
    g.add_argument("--tempo", type=bounded_float(MAX_BPM, MIN_BPM, lo_open=False), default=None, metavar="BPM",
                   help="tempo of the output (default the model's, 120 bpm); --seconds counts at it")
    g.add_argument("--program", type=bounded_int(0, 127), default=None, metavar="N",
                   help="General MIDI instrument of the output, 0..127 (default 0, piano; 19 church organ)")
    g.add_argument("--audio", choices=("wav", "flac"), default=None,
                   help="also render each piece to audio beside its .mid (see the render verb)")
    _render_flags(g)
    g.add_argument("--seed", type=nonneg_int, default=0)
    g.add_argument("--max-note-steps", type=positive_int, default=None,
                   help="longest note written, in grid steps (default: the training data's longest)")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.add_argument("--json", action="store_true")
    add_runtime(g)

    r = add_command(sub, "render", cmd_render, "MIDI -> WAV or FLAC (FluidSynth + General MIDI SoundFont)")
    r.add_argument("midi", help="a MIDI file")
    r.add_argument("out", help="the audio file: .wav or .flac (format by suffix)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.add_argument("--json", action="store_true")
    _render_flags(r)

    s = add_command(sub, "stats", cmd_stats, "pitch classes, note density, polyphony, pitch range of files/folders")
    s.add_argument("paths", nargs="+", help="each argument (a file or folder) is one set; distances to the first")
    s.add_argument("--json", action="store_true")

    d = add_command(sub, "demo", cmd_demo,
                    "corpus subset -> brief training -> eval -> generate MIDI + PNGs + WAVs -> stats")
    d.add_argument("--out", default="runs/demo-music", help="demo folder (its own outputs are rewritten)")
    d.add_argument("--limit", type=positive_int, default=120, help="chorales in the demo corpus (music21's first N)")
    d.add_argument("--epochs", type=positive_int, default=10)
    d.add_argument("--json", action="store_true")
    add_runtime(d)


def _render_flags(p) -> None:
    from .render import ENGINES

    p.add_argument("--sample-rate", type=bounded_int(8000, 192000), default=44100, help="Hz (default 44100)")
    p.add_argument("--soundfont", default=None,
                   help="a .sf2 file (default: Debian's /usr/share/sounds/sf2 GM SoundFont, else pretty_midi's TimGM6mb)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto: FluidSynth when installed, else pretty_midi's sine synthesiser with a warning")


def _emit(args, obj: dict, text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


def cmd_corpus(args) -> int:
    from .corpus import build_chorales, build_folk

    apply_runtime(args)
    res = {"chorales": build_chorales(args.out, args.limit, args.workers)}
    if args.folk:
        res["folk"] = build_folk(args.out)
    for part in list(res.values()):
        for f in part["failed"]:
            log(f)
    res["out"] = args.out
    res["splits"] = res["folk"]["splits"] if args.folk else res["chorales"]["splits"]
    _emit(args, res, f"corpus in {args.out}: {res['splits']} (lists: {args.out}/train.txt, valid.txt, test.txt)")
    return 0


def train_config(args):
    """The :class:`MusicTrainConfig` the ``train`` flags ask for (checked: unknown model settings are one line)."""
    from .models import model_config
    from .train import MusicTrainConfig

    kw = {k: v for k, v in (("hidden_size", args.hidden), ("num_layers", args.layers), ("embed_size", args.embed),
                            ("dropout", args.dropout)) if v is not None}
    opts = {k: v for k, v in (("epochs", args.epochs), ("max_steps", args.max_steps), ("lr", args.lr),
                              ("n_streams", args.streams), ("bptt", args.bptt), ("max_transpose", args.transpose),
                              ("batch_size", args.batch_size)) if v is not None}
    name = f"music-{args.model}"
    try:
        model_config(name, **kw, **({"n_pitches": 88} if args.model == "pianoroll" else {"vocab_size": 1}))
    except ValueError as e:
        raise UserError(str(e)) from None
    return MusicTrainConfig(model=name, preset=args.preset, model_kwargs=kw, seed=args.seed,
                            device=args.device, progress=sys.stderr.isatty(), **opts)


def cmd_train(args) -> int:
    from .train import train

    device = apply_runtime(args)
    args.device = device
    cfg = train_config(args)
    res = train(args.data, args.out, cfg, resume=not args.fresh)
    res["best_checkpoint"] = str(Path(args.out) / "best.pt")
    _emit(args, res, f"trained {cfg.model} ({res['n_params']} parameters) for {res['step']} steps in "
                     f"{res['seconds']:.0f} s; best validation NLL {res['best_metric']:.4f}; checkpoint "
                     f"{res['best_checkpoint']}")
    return 0


def cmd_eval(args) -> int:
    from .inference import evaluate_checkpoint

    device = apply_runtime(args)
    res = evaluate_checkpoint(args.checkpoint, args.data, args.split, progress=sys.stderr.isatty(), device=device)
    unit = "token" if "nll_per_token" in res else "frame"
    extra = f"; unigram baseline {res['unigram_nll_per_token']:.4f}" if "unigram_nll_per_token" in res else ""
    _emit(args, res, f"{res['model']} on {args.data} [{args.split}]: NLL per {unit} {res[f'nll_per_{unit}']:.4f}, "
                     f"perplexity {res['perplexity']:.3f}, {res['n_files']} files, {res[f'n_{unit}s']} {unit}s{extra}")
    return 0


def cmd_generate(args) -> int:
    from .inference import generate_files

    device = apply_runtime(args)
    res = generate_files(args.checkpoint, args.out, args.num, args.seconds, args.tokens, args.temperature,
                         args.top_k, args.top_p, args.primer, args.seed, device=device,
                         max_note_steps=args.max_note_steps, overwrite=args.overwrite,
                         primer_pitches=args.primer_pitches, tempo=args.tempo, program=args.program, audio=args.audio,
                         sample_rate=args.sample_rate, soundfont=args.soundfont, engine=args.engine)
    lines = [f"{r['midi']} ({r['n_notes']} notes, {r['seconds']} s), piano roll {r['png']}"
             + (f", audio {r['audio']} ({r['engine']})" if "audio" in r else "") for r in res]
    _emit(args, {"files": res}, "\n".join(lines))
    return 0


def cmd_render(args) -> int:
    from .render import render_file

    res = render_file(args.midi, args.out, args.sample_rate, args.engine, args.soundfont, args.overwrite)
    sf2 = f" with {res['soundfont']}" if res["soundfont"] else ""
    _emit(args, res, f"{res['audio']}: {res['seconds']:.1f} s of audio ({res['engine']}{sf2}) in "
                     f"{res['compute_seconds']:.2f} s ({res['speed']:.0f} s of audio per second)")
    return 0


def cmd_stats(args) -> int:
    from .stats import distance, format_stats, stats_of_paths

    for p in args.paths:
        if not Path(p).exists():
            raise UserError(f"{p}: no such file or folder")
    sets = {p: stats_of_paths([p], progress=sys.stderr.isatty()) for p in args.paths}
    empty = [p for p, s in sets.items() if not s.get("n_files")]
    if empty:
        raise UserError(f"{empty[0]}: no readable MIDI file ({sets[empty[0]].get('skipped', 0)} skipped); "
                        "no statistics on nothing")
    first = sets[args.paths[0]]
    out = {"stats": sets}
    if len(sets) > 1:
        out["distance_to_first"] = {p: distance(first, s) for p, s in sets.items() if p != args.paths[0]}
    text = [format_stats(p, s) for p, s in sets.items()]
    for p, d in out.get("distance_to_first", {}).items():
        text.append(f"distance {args.paths[0]} -> {p}: " + ", ".join(f"{k} {v:.3f}" for k, v in d.items()))
    _emit(args, out, "\n".join(text))
    return 0


def cmd_demo(args) -> int:
    """Corpus subset -> brief LSTM training -> test NLL vs unigram -> 4 generated pieces + PNGs -> stats.
    The demo owns its folder: it trains afresh and rewrites its own outputs there."""
    from .corpus import build_chorales, corpus_files
    from .inference import evaluate_checkpoint, generate_files
    from .stats import distance, stats_of_paths
    from .train import MusicTrainConfig, train

    device = apply_runtime(args)
    t0 = time.time()
    out = Path(args.out)
    corpus = out / "corpus"
    log(f"[1/4] chorale corpus (music21's first {args.limit}) -> {corpus}")
    c = build_chorales(corpus, args.limit, workers=2)
    log(f"[2/4] training a small LSTM for {args.epochs} epochs")
    cfg = MusicTrainConfig(model="music-lstm", model_kwargs={"hidden_size": 256, "num_layers": 1, "embed_size": 64,
                                                              "dropout": 0.1},
                           epochs=args.epochs, lr=3e-3, n_streams=16, bptt=96, max_transpose=3, device=device,
                           progress=sys.stderr.isatty())
    tr = train(corpus, out / "lstm", cfg, resume=False)
    ck = out / "lstm" / "best.pt"
    log("[3/4] test-split NLL")
    ev = evaluate_checkpoint(ck, corpus, "test", progress=False, device=device)
    log("[4/4] generating 4 pieces of 20 s (temperature 0.8), with audio")
    gen = generate_files(ck, out / "generated" / "demo.mid", num=4, seconds=20, temperature=0.8, seed=0,
                         device=device, overwrite=True, audio="wav")
    test_stats = stats_of_paths(corpus_files(corpus, "test"), progress=False)
    gen_stats = stats_of_paths([g["midi"] for g in gen], progress=False)
    res = {"corpus": str(corpus), "splits": c["splits"], "train_steps": tr["step"], "train_seconds": tr["seconds"],
           "eval": ev, "generated": gen, "stats_distance_test_to_generated": distance(test_stats, gen_stats),
           "seconds": time.time() - t0, "out": str(out)}
    write_text_atomic(out / "demo.json", json.dumps(res, indent=1))
    text = [f"demo done in {res['seconds']:.0f} s",
            f"  corpus: {corpus} {c['splits']}",
            f"  model: {ck} (loss curve {out / 'lstm' / 'loss.png'})",
            f"  test NLL per token {ev['nll_per_token']:.3f} (unigram {ev['unigram_nll_per_token']:.3f})",
            "  generated:"] + [f"    {g['midi']}  {g['png']}  {g['audio']}" for g in gen] + [
            "  stats distance test -> generated: " + ", ".join(
                f"{k} {v:.3f}" for k, v in res["stats_distance_test_to_generated"].items()),
            f"  summary: {out / 'demo.json'}"]
    _emit(args, res, "\n".join(text))
    return 0


main = main_for(build_parser, "lstm-media music", __doc__)

if __name__ == "__main__":
    sys.exit(main())
