#!/usr/bin/env python
"""Long-term dependency, shown: LSTM vs tanh RNN on the adding problem (Hochreiter & Schmidhuber 1997).

    python scripts/long_memory.py --T 100 --json
"""
import argparse
import dataclasses
import json
import sys

import torch

from pipelines.long_memory import LongMemoryConfig, run


def get_args_parser() -> argparse.ArgumentParser:
    d = LongMemoryConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=d.T, help="minimal sequence length (default %(default)s)")
    p.add_argument("--out", default="runs/long_memory", help="output folder (checkpoints, curves PNG)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="LSTM step budget; the RNN gets the steps the LSTM used")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lstm-hidden", type=int, default=d.lstm_hidden)
    p.add_argument("--rnn-hidden", type=int, default=d.rnn_hidden)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (small recurrent nets run best on one)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--dry-run", action="store_true", help="a few steps on tiny data (CI)")
    return p


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    cfg = LongMemoryConfig(T=args.T, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                           lstm_hidden=args.lstm_hidden, rnn_hidden=args.rnn_hidden, seed=args.seed,
                           progress=sys.stderr.isatty())
    if args.dry_run:
        cfg = dataclasses.replace(cfg, train_size=256, valid_size=64, test_size=64, max_steps=8, eval_every=4,
                                  rnn_min_steps=8)
    res = run(cfg, args.out)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"adding problem, T={res['T']}: accuracy on {res['test_sequences']} test sequences "
              f"(|error| < {res['tolerance']})")
        for cell in ("lstm", "rnn"):
            print(f"  {cell.upper():5s} {res[f'{cell}_accuracy']:.4f}  ({res[f'{cell}_params']} params, "
                  f"{res[f'{cell}_steps']} steps, {res[f'{cell}_seconds']} s)")
        print(f"learning curves: {res['plot']}")
    return res


if __name__ == "__main__":
    main(get_args_parser().parse_args())
