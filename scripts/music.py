#!/usr/bin/env python
"""Music pipeline CLI: corpus, train, eval, generate, stats, demo.

  python scripts/music.py corpus --out data/chorales [--folk]
  python scripts/music.py train --data data/chorales --out runs/music-lstm [--model lstm|rnn|pianoroll]
  python scripts/music.py eval --checkpoint runs/music-lstm/best.pt --data data/chorales --split test --json
  python scripts/music.py generate --checkpoint runs/music-lstm/best.pt --out song.mid --num 4 --seconds 30
  python scripts/music.py stats data/chorales runs/gen --json
  python scripts/music.py demo --out runs/demo-music
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("corpus", help="write the music21 Bach chorales (and folk tunes) as .mid + split lists")
    c.add_argument("--out", required=True)
    c.add_argument("--folk", action="store_true", help="also the folk tunes (music21 ABC → abc2midi)")
    c.add_argument("--limit", type=int, default=None, help="first N chorales only")
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--json", action="store_true")

    t = sub.add_parser("train", help="train a music model on DIR's train split (valid split for best.pt)")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--model", default="lstm", help="lstm | rnn | pianoroll (registry name music-<model>)")
    t.add_argument("--preset", default="chorale", help="vocabulary preset: chorale | performance")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--hidden", type=int, default=None, help="hidden size (default: the model's)")
    t.add_argument("--layers", type=int, default=None)
    t.add_argument("--embed", type=int, default=None, help="token embedding size (event models)")
    t.add_argument("--dropout", type=float, default=None)
    t.add_argument("--streams", type=int, default=None, help="parallel streams for truncated BPTT")
    t.add_argument("--bptt", type=int, default=None, help="tokens per truncated-BPTT chunk")
    t.add_argument("--transpose", type=int, default=None, help="random transposition ± semitones")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--json", action="store_true")

    e = sub.add_parser("eval", help="NLL of a corpus split under a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--json", action="store_true")

    g = sub.add_parser("generate", help="sample MIDI files (+ piano-roll PNGs)")
    g.add_argument("--checkpoint", required=True)
    g.add_argument("--out", required=True, help="song.mid; with --num N > 1: song_000.mid ...")
    g.add_argument("--num", type=int, default=1)
    length = g.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=None, help="length per piece, primer included (default 30)")
    length.add_argument("--tokens", type=int, default=None, help="event tokens (piano roll: frames), primer included")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--primer", default=None, help="a MIDI file to continue")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-note-steps", type=int, default=None,
                   help="longest note written, in grid steps (default: the training data's longest)")
    g.add_argument("--json", action="store_true")

    s = sub.add_parser("stats", help="pitch classes, note density, polyphony, pitch range of files/folders")
    s.add_argument("paths", nargs="+", help="each argument (a file or folder) is one set; distances to the first")
    s.add_argument("--json", action="store_true")

    d = sub.add_parser("demo", help="corpus subset → brief training → eval → generate MIDI + PNGs → stats")
    d.add_argument("--out", default="runs/demo-music")
    d.add_argument("--limit", type=int, default=120, help="chorales in the demo corpus (music21's first N)")
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument("--json", action="store_true")
    return p


def _emit(args, obj: dict, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(obj))
    else:
        print(text)


def cmd_corpus(args) -> int:
    from pipelines.music.corpus import build_chorales, build_folk

    res = {"chorales": build_chorales(args.out, args.limit, args.workers)}
    if args.folk:
        res["folk"] = build_folk(args.out)
    for part in res.values():
        for f in part["failed"]:
            log(f)
    res["out"] = args.out
    res["splits"] = list(res.values())[-2]["splits"] if args.folk else res["chorales"]["splits"]
    _emit(args, res, f"corpus in {args.out}: {res['splits']} (lists: {args.out}/train.txt, valid.txt, test.txt)")
    return 0


def cmd_train(args) -> int:
    from pipelines.music.train import MusicTrainConfig, train

    kw = {k: v for k, v in (("hidden_size", args.hidden), ("num_layers", args.layers), ("embed_size", args.embed),
                            ("dropout", args.dropout)) if v is not None}
    opts = {k: v for k, v in (("epochs", args.epochs), ("max_steps", args.max_steps), ("lr", args.lr),
                              ("n_streams", args.streams), ("bptt", args.bptt), ("max_transpose", args.transpose))
            if v is not None}
    cfg = MusicTrainConfig(model=f"music-{args.model}", preset=args.preset, model_kwargs=kw, seed=args.seed,
                           device=args.device, **opts)
    res = train(args.data, args.out, cfg)
    res["best_checkpoint"] = str(Path(args.out) / "best.pt")
    _emit(args, res, f"trained {cfg.model} ({res['n_params']} parameters) for {res['step']} steps in "
                     f"{res['seconds']:.0f} s; best validation NLL {res['best_metric']:.4f}; checkpoint "
                     f"{res['best_checkpoint']}")
    return 0


def cmd_eval(args) -> int:
    from pipelines.music.inference import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, args.data, args.split)
    unit = "token" if "nll_per_token" in res else "frame"
    extra = f"; unigram baseline {res['unigram_nll_per_token']:.4f}" if "unigram_nll_per_token" in res else ""
    _emit(args, res, f"{res['model']} on {args.data} [{args.split}]: NLL per {unit} {res[f'nll_per_{unit}']:.4f}, "
                     f"perplexity {res['perplexity']:.3f}, {res['n_files']} files, {res[f'n_{unit}s']} {unit}s{extra}")
    return 0


def cmd_generate(args) -> int:
    from pipelines.music.inference import generate_files

    if args.num < 1:
        raise ValueError("--num must be >= 1")
    res = generate_files(args.checkpoint, args.out, args.num, args.seconds, args.tokens, args.temperature,
                         args.top_k, args.top_p, args.primer, args.seed, max_note_steps=args.max_note_steps)
    lines = [f"{r['midi']} ({r['n_notes']} notes, {r['seconds']} s), piano roll {r['png']}" for r in res]
    _emit(args, {"files": res}, "\n".join(lines))
    return 0


def cmd_stats(args) -> int:
    from pipelines.music.stats import distance, format_stats, stats_of_paths

    sets = {p: stats_of_paths([p]) for p in args.paths}
    first = sets[args.paths[0]]
    out = {"stats": sets}
    if len(sets) > 1 and first.get("n_files"):
        out["distance_to_first"] = {p: distance(first, s) for p, s in sets.items() if p != args.paths[0]
                                    and s.get("n_files")}
    text = [format_stats(p, s) for p, s in sets.items()]
    for p, d in out.get("distance_to_first", {}).items():
        text.append(f"distance {args.paths[0]} → {p}: " + ", ".join(f"{k} {v:.3f}" for k, v in d.items()))
    _emit(args, out, "\n".join(text))
    return 0


def cmd_demo(args) -> int:
    """Corpus subset → brief LSTM training → test NLL vs unigram → 4 generated pieces + PNGs → stats."""
    from pipelines.music.corpus import build_chorales, corpus_files
    from pipelines.music.inference import evaluate_checkpoint, generate_files
    from pipelines.music.stats import distance, stats_of_paths
    from pipelines.music.train import MusicTrainConfig, train

    t0 = time.time()
    out = Path(args.out)
    corpus = out / "corpus"
    log(f"[1/4] chorale corpus (music21's first {args.limit}) → {corpus}")
    c = build_chorales(corpus, args.limit, workers=2)
    log(f"[2/4] training a small LSTM for {args.epochs} epochs")
    cfg = MusicTrainConfig(model="music-lstm", model_kwargs={"hidden_size": 256, "num_layers": 1, "embed_size": 64,
                                                              "dropout": 0.1},
                           epochs=args.epochs, lr=3e-3, n_streams=16, bptt=96, max_transpose=3)
    tr = train(corpus, out / "lstm", cfg)
    ck = out / "lstm" / "best.pt"
    log("[3/4] test-split NLL")
    ev = evaluate_checkpoint(ck, corpus, "test")
    log("[4/4] generating 4 pieces of 20 s (temperature 0.8)")
    gen = generate_files(ck, out / "generated" / "demo.mid", num=4, seconds=20, temperature=0.8, seed=0)
    test_stats = stats_of_paths(corpus_files(corpus, "test"), progress=False)
    gen_stats = stats_of_paths([out / "generated"], progress=False)
    res = {"corpus": str(corpus), "splits": c["splits"], "train_steps": tr["step"], "train_seconds": tr["seconds"],
           "eval": ev, "generated": gen, "stats_distance_test_to_generated": distance(test_stats, gen_stats),
           "seconds": time.time() - t0, "out": str(out)}
    (out / "demo.json").write_text(json.dumps(res, indent=1))
    text = [f"demo done in {res['seconds']:.0f} s",
            f"  corpus: {corpus} {c['splits']}",
            f"  model: {ck} (loss curve {out / 'lstm' / 'loss.png'})",
            f"  test NLL per token {ev['nll_per_token']:.3f} (unigram {ev['unigram_nll_per_token']:.3f})",
            "  generated:"] + [f"    {g['midi']}  {g['png']}" for g in gen] + [
            "  stats distance test → generated: " + ", ".join(
                f"{k} {v:.3f}" for k, v in res["stats_distance_test_to_generated"].items()),
            f"  summary: {out / 'demo.json'}"]
    _emit(args, res, "\n".join(text))
    return 0


def main(args) -> int:
    import torch

    from encoders.io import DecodeError

    torch.set_num_threads(max(1, args.threads))
    fn = {"corpus": cmd_corpus, "train": cmd_train, "eval": cmd_eval, "generate": cmd_generate,
          "stats": cmd_stats, "demo": cmd_demo}[args.cmd]
    try:
        return fn(args)
    except (DecodeError, ValueError, FileNotFoundError, KeyError) as e:
        log(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return 2


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
