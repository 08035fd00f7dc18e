#!/usr/bin/env python
"""Music benchmarks, side by side in one run:

1. tokenising the chorale corpus, files/s: our event tokeniser as the pipeline runs it
   (``encoders.io.midi.load_notes``: symusic's C++ reader + quantise + clean, then ``encode_notes``), the same
   with pretty_midi reading (the previous path, for reference), vs miditok 3 REMI and MIDILike (symusic
   reading), same pitch range, no velocities; passes interleaved, best of ``--repeat``;
2. generation tokens/s at batch 1 and 64: state carried (one token per step) vs re-running the prefix;
3. rendering MIDI to audio (``lstm-media music render``), seconds of audio per second of compute, for
   FluidSynth with each General MIDI SoundFont found and for pretty_midi's sine synthesiser (the fallback);
4. does the model wait for data (issue #13 §4)?  steps/s of the full training loop of ``music train``'s
   default run (Trainer, TokenStreams, carried-state loss, AdamW, clipping, logging; 2 x 384 LSTM, 32 streams
   x 128 tokens) vs the same model, loss and optimizer on pre-made tensors of the same shapes, side by side.

  python benchmarks/music.py [--data data/chorales] [--files 120] [--tokens 128] [--loop-steps 40]
                             [--threads 1] [--out benchmarks/results/music-cpu.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
from _loop import StepClock, ratios as loop_ratios, write_summary  # benchmarks/_loop.py: the clock every job's loop part uses
from _machine import machine_info  # benchmarks/_machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]


def bench_tokenisers(files: list[Path], repeat: int = 1) -> dict:
    from miditok import MIDILike, REMI, TokenizerConfig

    from encoders.io.midi import load_notes, read_midi
    from encoders.midi import CHORALE, MidiVocab, encode_notes, midi_to_notes

    vocab = MidiVocab(CHORALE)

    def ours(f):  # what pipelines.music.data runs
        return len(encode_notes(load_notes(f, CHORALE), vocab))

    def ours_pm(f):
        return len(encode_notes(midi_to_notes(read_midi(f), CHORALE), vocab))

    cfg = dict(pitch_range=(21, 109), beat_res={(0, 4): 4, (4, 12): 2}, num_velocities=1)
    tokenisers = {"ours (event, beats)": ours, "ours, pretty_midi reader": ours_pm}
    for cls in (REMI, MIDILike):
        tok = cls(TokenizerConfig(**cfg))

        def run(f, tok=tok):
            seq = tok(f)
            return sum(len(s.ids) for s in seq) if isinstance(seq, list) else len(seq.ids)
        tokenisers[f"miditok {cls.__name__}"] = run
    for fn in tokenisers.values():
        fn(files[0])  # warm-up (imports, caches)
    best, n_tok = {}, {}
    for _ in range(repeat):  # interleaved passes: a burst of load on the shared machine hits all alike
        for name, fn in tokenisers.items():
            t0 = time.perf_counter()
            n_tok[name] = sum(fn(f) for f in files)
            dt = time.perf_counter() - t0
            best[name] = min(best.get(name, dt), dt)
    out = {}
    for name in tokenisers:
        out[name] = {"files_per_s": len(files) / best[name], "tokens_per_file": n_tok[name] / len(files),
                     "seconds": best[name]}
        print(f"  {name:26s} {len(files) / best[name]:8.1f} files/s  ({n_tok[name] / len(files):.0f} tokens/file)",
              file=sys.stderr)
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


def bench_render(files: list[Path], work: Path, sr: int = 44100) -> dict:
    import shutil

    from pipelines.music.render import SOUNDFONT_DIRS, find_soundfont, render_file

    setups = {}
    if shutil.which("fluidsynth"):
        fonts = {find_soundfont()} | {p for d in SOUNDFONT_DIRS for p in Path(d).glob("*.sf2") if p.is_file()}
        for f in sorted({Path(f).resolve() for f in fonts if f is not None}):
            setups[f"fluidsynth {f.name}"] = ("fluidsynth", f)
    setups["pretty_midi sines"] = ("pretty_midi", None)
    out = {"sample_rate": sr, "files": len(files)}
    for name, (engine, sf2) in setups.items():
        audio = compute = 0.0
        for i, f in enumerate(files):
            r = render_file(f, work / f"{i}.flac", sr, engine, sf2, overwrite=True)
            audio += r["seconds"]
            compute += r["compute_seconds"]
        out[name] = {"audio_seconds": audio, "compute_seconds": compute, "audio_s_per_compute_s": audio / compute}
        print(f"  {name:28s} {audio:6.1f} s of audio in {compute:5.2f} s: {audio / compute:6.1f} s per s",
              file=sys.stderr)
    return out


def bench_training_loop(data: Path, steps: int, work: Path, rounds: int = 2) -> dict:
    """Steps/s of ``music train``'s full training loop (the Trainer with its data, loss and optimizer) vs
    the same model, loss and optimizer on pre-made tensors of the same shapes; ``rounds`` interleaved pairs,
    medians.  Both are timed per iteration from inside the loss call (steps 10..N, so data loading before
    the loop and the checkpoint after it are not counted).  CPU time (``time.process_time``) is the figure
    that a machine shared with other jobs disturbs least; wall time is given too.  The clock and the ratios
    are ``benchmarks/_loop.py``'s, as for every job (kws, video, long-memory replay the loop's own batches
    through the Trainer's probe; here the batches are random tokens of the same shapes, which cost the same)."""
    from torch.nn import utils as nn_utils

    import pipelines.music.train as music_train
    from encoders.midi import CHORALE, MidiVocab
    from pipelines.registry import get_model
    from pipelines.trainer import hold_freed_memory

    hold_freed_memory()  # as the Trainer does when it starts: the model alone runs with the same allocator
    cfg = music_train.MusicTrainConfig(max_steps=steps, epochs=1, progress=False, device="cpu")  # train's defaults
    vocab = MidiVocab(CHORALE)

    def model_alone(n: int) -> dict:
        torch.manual_seed(0)
        model = get_model(cfg.model, vocab_size=len(vocab)).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn, clock = music_train.CarriedStateLoss(), StepClock()
        batches = [(torch.randint(3, len(vocab), (cfg.n_streams, cfg.bptt)),
                    torch.randint(3, len(vocab), (cfg.n_streams, cfg.bptt)), torch.tensor(i == 0)) for i in range(4)]
        for i in range(n):  # n calls, as the loop's max_steps
            clock.tick()
            loss = loss_fn(model, batches[i % 4])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn_utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return clock.rates()

    def full_loop(run: Path) -> dict:
        clock = StepClock()

        class TimedLoss(music_train.CarriedStateLoss):
            def __call__(self, model, batch):
                clock.tick()
                return super().__call__(model, batch)

        original = music_train.CarriedStateLoss
        music_train.CarriedStateLoss = TimedLoss  # train() builds its loss from this name
        try:
            music_train.train(data, run, cfg, resume=False)
        finally:
            music_train.CarriedStateLoss = original
        return clock.rates()

    alone, loop = [], []
    for r in range(rounds):
        alone.append(model_alone(steps))
        loop.append(full_loop(work / f"loop{r}"))
    out = {"config": f"music train defaults: {cfg.model} (embed 128, 2 x 384), {cfg.n_streams} streams x "
                     f"{cfg.bptt} tokens, AdamW, clip 1.0, CPU, {torch.get_num_threads()} thread(s)",
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "steps_timed": loop[0]["steps"], "rounds": rounds, **loop_ratios(loop, alone), "loop": loop,
           "model_alone": alone}
    for clock in ("cpu", "wall"):
        lo, al = out[f"loop_{clock}_steps_per_s"], out[f"alone_{clock}_steps_per_s"]
        print(f"  training loop {lo:.3f} steps/s, model alone {al:.3f} steps/s ({clock} time) -> ratio "
              f"{lo / al:.3f}", file=sys.stderr)
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
    import tempfile

    print(f"rendering {min(len(files), 5)} files to FLAC", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        res["render"] = bench_render(files[:5], Path(d))
    if args.loop_steps:
        print(f"training loop vs model alone ({args.loop_steps} steps of music train's defaults)", file=sys.stderr)
        with tempfile.TemporaryDirectory() as d:
            res["input_pipeline"] = bench_training_loop(Path(args.data), args.loop_steps, Path(d))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    if "input_pipeline" in res and Path(args.out).parent.resolve() == (ROOT / "benchmarks" / "results").resolve():
        write_summary()
    print(json.dumps({"tokeniser_ratios": ratios,
                      "loop_vs_model_alone": res.get("input_pipeline", {}).get("ratio_loop_vs_model_alone"),
                      "render_audio_s_per_compute_s": {k: v["audio_s_per_compute_s"] for k, v in res["render"].items()
                                                       if isinstance(v, dict)},
                      "generation_speedup": {k: v["speedup_carried_vs_rerun"] for k, v in gen.items()
                                             if k.startswith("batch_")}, "out": args.out}))
    return res


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/chorales")
    p.add_argument("--files", type=int, default=120, help="first N files of the corpus")
    p.add_argument("--repeat", type=int, default=2, help="best of N passes")
    p.add_argument("--tokens", type=int, default=128, help="new tokens per generated sequence")
    p.add_argument("--loop-steps", type=int, default=40, help="training steps timed (0: skip that part)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: least disturbed by other jobs)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "music-cpu.json"))
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
