"""``lstm-media``: one command for every job.

    lstm-media kws predict clip.wav            # keyword spotting (shipped model unless --checkpoint)
    lstm-media video label clip.mp4 --out labels.csv
    lstm-media video caption clip.mp4
    lstm-media music generate --out song.mid --seconds 10
    lstm-media long-memory --T 100             # LSTM vs tanh RNN on the adding problem
    lstm-media explain --task adding           # the gates of a trained LSTM, drawn (adding | kws)
    lstm-media models [--json]                 # the trained models shipped with the package
    lstm-media info CHECKPOINT [--json]        # what a checkpoint holds
"""
from __future__ import annotations

import argparse
import json
import sys

from .cli_common import add_command, log, run_command

JOBS = {  # sub-command -> (module with build_parser, help)
    "kws": ("pipelines.kws.cli", "keyword spotting in speech"),
    "video": ("pipelines.video.cli", "video clip classification, captioning and labelling"),
    "music": ("pipelines.music.cli", "music generation written as MIDI files"),
    "long-memory": ("pipelines.long_memory.cli", "the adding problem: LSTM vs tanh RNN"),
}


def cmd_models(args) -> int:
    from . import bundle

    rows = []
    for name in bundle.shipped_names():
        b, path = bundle.read(name)
        extras = b.get("extras") or {}
        rows.append({"name": name, "kind": b["kind"], "model": b["model"],
                     "description": extras.get("description", ""), "metrics": b["metrics"].get("held_out", {}),
                     "size_bytes": path.stat().st_size})
    if args.json:
        print(json.dumps({"models": rows}))
    elif not rows:
        print("no shipped models are installed (run 'make models' in a checkout)")
    else:
        for r in rows:
            figures = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in r["metrics"].items() if not isinstance(v, (dict, list)))
            print(f"{r['name']:<16} {r['kind']:<15} {r['size_bytes'] / 1e6:5.2f} MB  {r['description']}")
            if figures:
                print(f"{'':<16} held out: {figures}")
    return 0


def cmd_info(args) -> int:
    from . import bundle

    b, path = bundle.read(args.checkpoint)
    d = bundle.describe(b, path)
    if args.json:
        print(json.dumps(d, default=str))
        return 0
    print(f"{path}: {d['kind']} checkpoint, model {d['model']} ({d['parameters']:,} parameters, "
          f"{d['size_bytes'] / 1e6:.2f} MB{', resumable' if d['resumable'] else ''})")
    if d["labels"]:
        print(f"  labels      {', '.join(map(str, d['labels']))}")
    if d["vocab_size"]:
        print(f"  vocabulary  {d['vocab_size']} tokens")
    for key in ("model_config", "front_end", "data", "metrics", "versions"):
        if d.get(key):
            print(f"  {key:<11} {json.dumps(d[key], default=str)[:300]}")
    tr = d.get("train") or {}
    if tr:
        print(f"  train       epochs {tr.get('epochs')}, batch {tr.get('batch_size')}, lr {tr.get('lr')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(prog="lstm-media", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="job", required=True, metavar="{kws,video,music,long-memory,explain,models,info}")
    for name, (module, help_) in JOBS.items():
        jp = sub.add_parser(name, help=help_, description=help_)
        importlib.import_module(module).build_parser(jp)
    from . import explain

    explain.build(sub.add_parser("explain", help="draw the gates and cell state of a trained LSTM for one input",
                                 description=explain.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    m = add_command(sub, "models", cmd_models, "list the trained models shipped with the package")
    m.add_argument("--json", action="store_true")
    i = add_command(sub, "info", cmd_info, "what a checkpoint (file or shipped model name) holds")
    i.add_argument("checkpoint")
    i.add_argument("--json", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "func"):
        log("error: name a command (see --help)")
        return 2
    return run_command(args, argv)


if __name__ == "__main__":
    sys.exit(main())
