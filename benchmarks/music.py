#!/usr/bin/env python
"""Music benchmarks, side by side in one run:

1. tokenising the chorale corpus, files/s: our event tokeniser (pretty_midi reading + quantise + encode)
   vs miditok 3 REMI and MIDILike (symusic reading), same pitch range, no velocities;
2. generation tokens/s at batch 1 and 64: state carried (one token per step) vs re-running the prefix.

  python benchmarks/music.py [--data data/chorales] [--files 120] [--tokens 128] [--out benchmarks/results/music-cpu.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _machine import machine_info  # benchmarks/_machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]


def bench_tokenisers(files: list[Path], repeat: int = 1) -> dict:
    from miditok import MIDILike, REMI, TokenizerConfig

    from encoders.io.midi import read_midi
    from encoders.midi import CHORALE, MidiVocab, midi_to_tokens

    vocab = MidiVocab(CHORALE)

    def ours(f):
        return len(midi_to_tokens(read_midi(f), vocab))

    cfg = dict(pitch_range=(21, 109), beat_res={(0, 4): 4, (4, 12): 2}, num_velocities=1)
    tokenisers = {"ours (event, beats)": ours}
    for cls in (REMI, MIDILike):
        tok = cls(TokenizerConfig(**cfg))

        def run(f, tok=tok):
            seq = tok(f)
            return sum(len(s.ids) for s in seq) if isinstance(seq, list) else len(seq.ids)
        tokenisers[f"miditok {cls.__name__}"] = run
    out = {}
    for name, fn in tokenisers.items():
        fn(files[0])  # warm-up (imports, caches)
        best = None
        for _ in range(repeat):
            t0 = time.perf_counter()
            n_tok = sum(fn(f) for f in files)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        out[name] = {"files_per_s": len(files) / best, "tokens_per_file": n_tok / len(files), "seconds": best}
        print(f"  {name:24s} {len(files) / best:8.1f} files/s  ({n_tok / len(files):.0f} tokens/file)", file=sys.stderr)
    return out


def bench_generation(n_tokens: int, batches=(1, 64)) -> dict:
    from encoders.midi import CHORALE, MidiVocab
    from pipelines.music.generate import sample_tokens
    from pipelines.registry import get_model

    import pipelines.music  # noqa: F401 - registers the models

    vocab = MidiVocab(CHORALE)
    torch.manual_seed(0)
    model = get_model("music-lstm", vocab_size=len(vocab)).eval()  # the default (full-quality) size
    out = {"model": "music-lstm defaults (embed 128, 2 x 384)", "new_tokens": n_tokens}
    for b in batches:
        row = {}
        for mode, carry in (("carried", True), ("rerun", False)):
            sample_tokens(model, vocab, n=b, max_tokens=4, carry_state=carry)  # warm-up
            t0 = time.perf_counter()
            seqs = sample_tokens(model, vocab, n=b, max_tokens=n_tokens, carry_state=carry, seed=0)
            dt = time.perf_counter() - t0
            row[mode] = {"tokens_per_s": b * n_tokens / dt, "seconds": dt}
            assert all(len(s) <= n_tokens for s in seqs)
        row["speedup_carried_vs_rerun"] = row["carried"]["tokens_per_s"] / row["rerun"]["tokens_per_s"]
        out[f"batch_{b}"] = row
        print(f"  batch {b:3d}: carried {row['carried']['tokens_per_s']:9.1f} tok/s, re-run "
              f"{row['rerun']['tokens_per_s']:9.1f} tok/s  → {row['speedup_carried_vs_rerun']:.1f}x", file=sys.stderr)
    return out


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    from pipelines.music.corpus import corpus_files

    files = corpus_files(args.data)[: args.files]
    if not files:
        raise SystemExit(f"{args.data}: no MIDI files (lstm-media music corpus --out {args.data})")
    print(f"tokenising {len(files)} files of {args.data}", file=sys.stderr)
    tok = bench_tokenisers(files, args.repeat)
    ours = tok["ours (event, beats)"]["files_per_s"]
    ratios = {f"ours / {k}": ours / v["files_per_s"] for k, v in tok.items() if not k.startswith("ours")}
    print(f"generating {args.tokens} tokens (music-lstm defaults)", file=sys.stderr)
    gen = bench_generation(args.tokens)
    res = {"machine": machine_info(args.threads), "corpus": str(args.data), "n_files": len(files),
           "tokenisers": tok, "tokeniser_ratios": ratios, "generation": gen}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({"tokeniser_ratios": ratios,
                      "generation_speedup": {k: v["speedup_carried_vs_rerun"] for k, v in gen.items()
                                             if k.startswith("batch_")}, "out": args.out}))
    return res


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/chorales")
    p.add_argument("--files", type=int, default=120, help="first N files of the corpus")
    p.add_argument("--repeat", type=int, default=2, help="best of N passes")
    p.add_argument("--tokens", type=int, default=128, help="new tokens per generated sequence")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "music-cpu.json"))
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
