#!/usr/bin/env python
"""Long-memory benchmark: does the model wait for data? (issue #13 §4)

Steps/s of the full training loop of ``lstm-media long-memory``'s default run (the adding problem, T = 100:
``pipelines.long_memory.train_one``: 60,000 training sequences made up front, whole batches of 64 handed out
by ``AddingData.__getitems__``, the Trainer, MSE loss, AdamW 1e-2, clipping, logging) vs the same model,
loss and optimizer on the batches that loop made, replayed (``benchmarks/_loop.py``); interleaved rounds,
medians, CPU and wall time.  Both cells of the experiment are timed: the LSTM (the default) and the tanh RNN
it is compared with.  Validation every 250 steps is not inside the timed steps.

  python benchmarks/long_memory.py [--loop-steps 60] [--rounds 2] [--threads 1]
                                   [--out benchmarks/results/long-memory-cpu.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import torch
from _loop import RESULTS, compare, data_side, merge_json, model_step_seconds, section, write_summary  # benchmarks/, beside this script
from _machine import machine_info


def bench_training_loop(steps: int, work: Path, rounds: int = 2, skip: int = 10, cells=("lstm", "rnn"),
                        tiny: bool = False) -> dict:
    """The default adding-problem training of each cell, loop vs model alone.  ``tiny``: 512 training
    sequences of T = 20 (tests of this code only)."""
    import pipelines.long_memory as lm

    cfg = lm.LongMemoryConfig(progress=False)
    if tiny:
        cfg = dataclasses.replace(cfg, T=20, train_size=512, valid_size=64, eval_every=10 ** 6)
    out = {}
    for cell in cells:
        hidden = cfg.lstm_hidden if cell == "lstm" else cfg.rnn_hidden
        print(f"long-memory {cell}: training loop vs model alone ({steps} steps)", file=sys.stderr, flush=True)
        res = compare(lm, lambda run: lm.train_one(cell, cfg, run, cfg.max_steps), work / cell, steps, rounds,
                      skip, label=f"long-memory {cell}")
        probe = res.pop("_probe")
        step_s = model_step_seconds(probe)
        side = data_side(probe, 50)
        side.update(model_step_cpu_s=step_s, expected_ratio_if_serial=step_s / (step_s + side["cpu_s_per_batch"]))
        res["data_side"] = side
        out[cell] = {"config": f"long-memory adding problem defaults: {cell} {hidden} units, T={cfg.T} "
                               f"(sequences of {cfg.T}..{cfg.T + cfg.T // 10} steps), batch {cfg.batch_size}, "
                               f"{cfg.train_size} training sequences, AdamW lr {cfg.lr}, clip 1.0, CPU, "
                               f"{torch.get_num_threads()} thread(s)",
                     **{k: v for k, v in res.items() if not k.startswith("_")}}
    return out


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    machine = machine_info(args.threads)
    with tempfile.TemporaryDirectory() as d:
        cells = bench_training_loop(args.loop_steps, Path(d), args.rounds, args.skip, tiny=args.tiny)
    lstm = dict(cells["lstm"])
    config = lstm.pop("config")
    sec = section(lstm, config, machine, cells={"rnn": cells["rnn"]})
    out = Path(args.out)
    merge_json(out, {"machine": machine_info(args.threads), "input_pipeline": sec})
    if not args.tiny and out.parent.resolve() == RESULTS.resolve():
        write_summary()
    print(json.dumps({"loop_vs_model_alone": {c: {"cpu": r["ratio_loop_vs_model_alone_cpu"],
                                                  "wall": r["ratio_loop_vs_model_alone_wall"]}
                                              for c, r in cells.items()}, "out": str(out)}))
    return sec


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loop-steps", type=int, default=60, help="training steps timed per run")
    p.add_argument("--rounds", type=int, default=2, help="interleaved loop / model-alone pairs (medians)")
    p.add_argument("--skip", type=int, default=10, help="warm-up steps not timed")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: least disturbed by other jobs; "
                                                          "long-memory trains on one thread)")
    p.add_argument("--tiny", action="store_true", help="tiny data (tests of this code only; no summary update)")
    p.add_argument("--out", default=str(RESULTS / "long-memory-cpu.json"))
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
