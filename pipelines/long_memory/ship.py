"""Ship recipe for ``adding-lstm``: the adding-problem LSTM (T = 100) that ``lstm-media explain`` draws."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import bundle


def ship(work: Path, models_dir: Path, quick: bool = False) -> list[dict]:
    from . import LongMemoryConfig, accuracy, adding_problem, train_one

    torch.set_num_threads(1)  # a 64-unit LSTM runs fastest on one thread
    cfg = LongMemoryConfig(T=100, progress=False)
    if quick:
        cfg = LongMemoryConfig(T=20, train_size=512, valid_size=64, test_size=64, max_steps=20, eval_every=10,
                               progress=False)
    t0 = time.time()
    r = train_one("lstm", cfg, Path(work), cfg.max_steps)
    seconds = time.time() - t0
    b, _ = bundle.read(Path(work) / "lstm" / "best.pt")
    model = bundle.build(b)
    test = adding_problem(cfg.test_size, cfg.T, torch.Generator().manual_seed(cfg.seed + 99))
    with torch.no_grad():
        acc, mse = accuracy(model, test)
    b["metrics"]["held_out"] = {"accuracy": acc, "mse": mse, "n": cfg.test_size, "T": cfg.T}
    b["extras"]["description"] = ("LSTM (64 units, chrono init) that solves the adding problem at T = 100; "
                                  "drawn by 'lstm-media explain --task adding'")
    path = Path(models_dir) / "adding-lstm.pt"
    bundle.save(bundle.for_shipping(b), path)
    return [{"name": "adding-lstm", "kind": "long-memory", "data": f"adding problem, T={cfg.T}, "
             f"{cfg.train_size} generated sequences", "recipe": f"lstm-media long-memory --T {cfg.T} "
             f"(LSTM part: chrono init, lr {cfg.lr}, batch {cfg.batch_size}, stop at val accuracy "
             f"{cfg.target}; {r['result']['step']} steps)", "held_out": b["metrics"]["held_out"],
             "train_seconds": round(seconds, 1), "size_bytes": path.stat().st_size}]
