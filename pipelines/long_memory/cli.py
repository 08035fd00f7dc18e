"""``lstm-media long-memory``: what an LSTM's memory does, as runnable experiments.

    lstm-media long-memory --T 100 --json        # adding problem: LSTM vs tanh RNN (Hochreiter & Schmidhuber 1997)
    lstm-media long-memory --task cloze --json   # a blank decided by what follows: forward vs bidirectional merges
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..cli_common import (add_debug, add_runtime, apply_runtime, bounded_int, main_for, nonneg_int,
                          positive_float, positive_int)


def build_parser(p: argparse.ArgumentParser) -> None:
    from . import LongMemoryConfig

    d = LongMemoryConfig()
    p.add_argument("--task", choices=["adding", "cloze"], default="adding",
                   help="adding: LSTM vs tanh RNN on long sequences; cloze: forward vs bidirectional LSTMs")
    p.add_argument("--T", type=bounded_int(10, 100_000), default=d.T, help="minimal sequence length (default %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default runs/long_memory or runs/cloze)")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help=f"step budget (adding: the LSTM's, {d.max_steps}; the RNN gets the steps the LSTM used; "
                        "cloze: every model's, 600)")
    p.add_argument("--rnn-min-steps", type=nonneg_int, default=d.rnn_min_steps,
                   help="adding: the tanh RNN trains max(LSTM's steps, this) steps (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr", type=positive_float, default=None, help=f"learning rate (adding {d.lr}, cloze 0.01)")
    p.add_argument("--lstm-hidden", type=positive_int, default=d.lstm_hidden)
    p.add_argument("--rnn-hidden", type=positive_int, default=d.rnn_hidden)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--dry-run", action="store_true", help="a few steps on tiny data (CI)")
    add_runtime(p, device=False)
    add_debug(p)
    p.set_defaults(func=run_cmd, threads=1)  # small recurrent nets run best on one thread


def run_cmd(args) -> int:
    from . import LongMemoryConfig, run

    apply_runtime(args)
    if args.task == "cloze":
        return run_cloze_cmd(args)
    cfg = LongMemoryConfig(T=args.T, max_steps=args.max_steps or LongMemoryConfig.max_steps,
                           batch_size=args.batch_size, lr=args.lr or LongMemoryConfig.lr,
                           lstm_hidden=args.lstm_hidden, rnn_hidden=args.rnn_hidden, seed=args.seed,
                           rnn_min_steps=args.rnn_min_steps,
                           progress=sys.stderr.isatty())
    if args.dry_run:
        cfg = dataclasses.replace(cfg, train_size=256, valid_size=64, test_size=64, max_steps=8, eval_every=4,
                                  rnn_min_steps=8)
    res = run(cfg, args.out or "runs/long_memory")
    if args.json:
        print(json.dumps(res))
    else:
        print(f"adding problem, T={res['T']}: accuracy on {res['test_sequences']} test sequences "
              f"(|error| < {res['tolerance']})")
        for cell in ("lstm", "rnn"):
            print(f"  {cell.upper():5s} {res[f'{cell}_accuracy']:.4f}  ({res[f'{cell}_params']} params, "
                  f"{res[f'{cell}_steps']} steps, {res[f'{cell}_seconds']} s)")
        print(f"learning curves: {res['plot']}")
    return 0


def run_cloze_cmd(args) -> int:
    from .cloze import MODELS, ClozeConfig, run_cloze

    cfg = ClozeConfig(batch_size=args.batch_size, seed=args.seed, progress=sys.stderr.isatty())
    if args.lr:
        cfg = dataclasses.replace(cfg, lr=args.lr)
    if args.max_steps:
        cfg = dataclasses.replace(cfg, max_steps=args.max_steps)
    if args.dry_run:
        cfg = dataclasses.replace(cfg, train_size=256, valid_size=64, test_size=64, max_steps=8, eval_every=4)
    res = run_cloze(cfg, args.out or "runs/cloze")
    if args.json:
        print(json.dumps(res))
    else:
        print(f"cloze, blank decided by a later word: accuracy at the blank on {res['test_sequences']} test "
              f"sequences after {res['steps']} steps each (chance {res['chance']:.3f})")
        for name in MODELS:
            kind = "forward-only LSTM" if name == "forward" else f"bidirectional, merge={name}"
            print(f"  {kind:<28s} {res[name]:.4f}  ({res[f'{name}_seconds']} s)")
        print(f"learning curves: {res['plot']}")
    return 0


main = main_for(build_parser, "lstm-media long-memory", __doc__)

if __name__ == "__main__":
    sys.exit(main())
