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


def card_row(name: str, models_dir: Path) -> dict:
    """A model-card row from a shipped bundle: the row its ship run recorded (``extras["card"]``), with
    the held-out figures and the size read from the bundle itself."""
    from . import bundle

    b, path = bundle.read(models_dir / f"{name}.pt")
    card = dict(b["extras"].get("card") or {})
    return {"name": name, "kind": b["kind"], "data": card.get("data", ""), "recipe": card.get("recipe", ""),
            "held_out": b["metrics"].get("held_out", {}), "train_seconds": card.get("train_seconds"),
            "size_bytes": path.stat().st_size}


def record_card(row: dict, models_dir: Path) -> None:
    """Store a ship run's row in its bundle, so the model card can be rebuilt from the bundles alone."""
    from . import bundle

    path = models_dir / f"{row['name']}.pt"
    b, _ = bundle.read(path)
    b["extras"]["card"] = {k: row[k] for k in ("data", "recipe", "train_seconds") if k in row}
    bundle.save(b, path)


def card_table(rows: list[dict]) -> str:
    lines = ["| model | kind | data | recipe | held-out figures | training time | size |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        figures = "; ".join(f"{k} {_fmt(v)}" for k, v in r["held_out"].items())
        took = "—" if r.get("train_seconds") is None else f"{r['train_seconds'] / 60:.1f} min"
        lines.append(f"| `{r['name']}` | {r['kind']} | {r['data']} | `{r['recipe']}` | {figures} | "
                     f"{took} | {r['size_bytes'] / 1e6:.2f} MB |")
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
    p.add_argument("--card-only", action="store_true",
                   help="retrain nothing: rebuild the model card from the shipped bundles")
    add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    t0 = time.time()
    models_dir = Path(args.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    results = Path(args.results)
    for job in ([] if args.card_only else args.jobs):
        log(f"== {job}: training the shipped model(s) from scratch")
        for r in importlib.import_module(f"pipelines.{job}.ship").ship(Path(args.work) / job, models_dir):
            record_card(r, models_dir)
    rows = [card_row(n, models_dir) for n in sorted(p.stem for p in models_dir.glob("*.pt"))]
    check_sizes(rows)
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    import torch

    machine["torch"] = str(torch.__version__)
    results.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results, json.dumps({"models": rows, "machine": machine,
                                           "total_bytes": sum(r["size_bytes"] for r in rows)}, indent=1))
    note = (f"Model card written by `make models` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU, "
            "shared with other jobs while the models trained). Held-out figures are on data the model never saw "
            "in training (which data: `lstm-media info NAME`); rows also in `benchmarks/results/models.json`.")
    if Path(args.readme).is_file():
        update_readme(Path(args.readme), card_table(rows), note)
    log(f"shipped {len(rows)} models ({sum(r['size_bytes'] for r in rows) / 1e6:.2f} MB) in "
        f"{(time.time() - t0) / 60:.1f} min")
    print(card_table(rows))
    return 0


main = main_for(build_parser, "make models", __doc__)

if __name__ == "__main__":
    sys.exit(main())
