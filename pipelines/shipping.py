"""``make models``: retrain every shipped model from scratch with its exact recipe, record held-out figures
in each bundle, and write the model card (``benchmarks/results/models.json`` and the README table).

Each job's ``pipelines/<job>/ship.py`` holds the recipe: ``ship(work, models_dir, quick=False) -> rows``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

from .cli_common import add_debug, log, main_for, write_text_atomic

JOBS = ("kws", "video", "music", "long_memory")
MAX_BYTES = 3 * 1024 * 1024
MAX_TOTAL = 10 * 1024 * 1024
START, END = "<!-- model-card:start -->", "<!-- model-card:end -->"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def card_table(rows: list[dict]) -> str:
    lines = ["| model | kind | data | recipe | held-out figures | training time | size |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in r["held_out"].items())
        lines.append(f"| `{r['name']}` | {r['kind']} | {r['data']} | {r['recipe']} | {figures} | "
                     f"{r['train_seconds'] / 60:.1f} min | {r['size_bytes'] / 1e6:.2f} MB |")
    return "\n".join(lines)


def update_readme(readme: Path, table: str, note: str) -> None:
    text = readme.read_text()
    block = f"{START}\n{note}\n\n{table}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Shipped models\n\n" + block + "\n"
    write_text_atomic(readme, text)


def check_sizes(rows: list[dict]) -> None:
    for r in rows:
        if r["size_bytes"] > MAX_BYTES:
            raise ValueError(f"shipped model {r['name']} is {r['size_bytes']} bytes (> 3 MB)")
    total = sum(r["size_bytes"] for r in rows)
    if total > MAX_TOTAL:
        raise ValueError(f"shipped models take {total} bytes together (> 10 MB)")


def build_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    p.add_argument("--work", default="data/ship", help="where the default data and training runs go")
    p.add_argument("--models-dir", default=str(Path(__file__).resolve().parent / "models"))
    p.add_argument("--readme", default="README.md", help="README whose model-card table is rewritten")
    p.add_argument("--results", default="benchmarks/results/models.json")
    add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    t0 = time.time()
    models_dir = Path(args.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    old = json.loads(results.read_text()) if results.is_file() else {}
    by_name = {r["name"]: r for r in old.get("models", [])}
    for job in args.jobs:
        log(f"== {job}: training the shipped model(s) from scratch")
        t = time.time()
        rows = importlib.import_module(f"pipelines.{job}.ship").ship(Path(args.work) / job, models_dir)
        for r in rows:
            r["job_seconds"] = round(time.time() - t, 1)
            by_name[r["name"]] = r
    rows = [by_name[n] for n in sorted(by_name)]
    check_sizes(rows)
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    import torch

    machine["torch"] = str(torch.__version__)
    results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results, json.dumps({"models": rows, "machine": machine,
                                           "total_bytes": sum(r["size_bytes"] for r in rows)}, indent=1))
    note = (f"Written by `make models` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU); "
            "held-out figures are on data the model never saw in training; "
            "full rows in `benchmarks/results/models.json`.")
    if Path(args.readme).is_file():
        update_readme(Path(args.readme), card_table(rows), note)
    log(f"shipped {len(rows)} models ({sum(r['size_bytes'] for r in rows) / 1e6:.2f} MB) in "
        f"{(time.time() - t0) / 60:.1f} min")
    print(card_table(rows))
    return 0


main = main_for(build_parser, "make models", __doc__)

if __name__ == "__main__":
    sys.exit(main())
