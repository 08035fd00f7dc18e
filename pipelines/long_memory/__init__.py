"""The adding problem (Hochreiter & Schmidhuber 1997, experiment 4): long-term memory, shown.

Each step is a pair (value in U[-1, 1], marker).  One of the first ten pairs and one of the first
T/2 - 1 other pairs are marked with 1; the first and last pairs carry marker -1 (if the first pair
is the marked one, X1 is 0).  Sequences have random lengths in [T, T + T/10].  The target, given
only at the end, is 0.5 + (X1 + X2) / 4; a sequence counts as correct when |error| < 0.04.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import lstm

from ..bundle import make_meta
from ..registry import register_model
from ..trainer import TrainConfig, Trainer, seed_everything

TOLERANCE = 0.04


def adding_problem(n: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Returns x (n, T + T//10, 2), lengths (n,), y (n,)."""
    max_len = T + T // 10
    lengths = torch.randint(T, max_len + 1, (n,), generator=generator)
    values = torch.rand(n, max_len, generator=generator) * 2 - 1
    markers = torch.zeros(n, max_len)
    rows = torch.arange(n)
    first = torch.randint(0, 10, (n,), generator=generator)
    # the second mark: one of the first T/2 - 1 pairs that are still unmarked
    second = torch.randint(0, T // 2 - 2, (n,), generator=generator)
    second = second + (second >= first).long()
    markers[:, 0] = -1.0
    markers[rows, lengths - 1] = -1.0
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    values[:, 0] = torch.where(markers[:, 0] == 1.0, torch.zeros(n), values[:, 0])  # a marked first pair counts 0
    x1, x2 = values[rows, first], values[rows, second]
    valid = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)
    values = values * valid
    y = 0.5 + (x1 + x2) / 4.0
    return torch.stack([values, markers], dim=-1), lengths, y


class AddingData(torch.utils.data.Dataset):
    """A fixed training set; ``__getitems__`` hands out whole batches (no per-item Python)."""

    def __init__(self, n: int, T: int, seed: int):
        self.x, self.lengths, self.y = adding_problem(n, T, torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        return self.x[idx], self.lengths[idx], self.y[idx]


@register_model("adding-regressor")
class AddingRegressor(nn.Module):
    """Recurrent layer (``cell`` = "lstm" or "rnn") → its last valid hidden state → linear output."""

    def __init__(self, cell: str = "lstm", hidden_size: int = 64, num_layers: int = 1, backend: str = "auto",
                 chrono: int | None = None):
        super().__init__()
        cls = {"lstm": lstm.LSTM, "rnn": lstm.RNN}[cell]
        self.rnn = cls(2, hidden_size, num_layers, backend=backend)
        if cell == "lstm" and chrono is not None:
            self.rnn.chrono_init(chrono)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        _, state = self.rnn(x, lengths)
        h = state[0] if isinstance(state, tuple) else state
        return self.head(h[-1]).squeeze(-1)


@dataclass
class LongMemoryConfig:
    T: int = 100
    lstm_hidden: int = 64
    rnn_hidden: int = 128  # about the LSTM's parameter count
    train_size: int = 60_000
    valid_size: int = 2560
    test_size: int = 2560
    batch_size: int = 64
    lr: float = 1e-2
    max_steps: int = 6000
    eval_every: int = 250
    rnn_min_steps: int = 2000
    target: float = 0.995  # validation accuracy that ends training early
    seed: int = 0
    progress: bool = True


def accuracy(model: nn.Module, data: tuple[Tensor, Tensor, Tensor], batch: int = 1280) -> tuple[float, float]:
    """(fraction with |error| < 0.04, mean squared error)."""
    x, lengths, y = data
    preds = torch.cat([model(x[i:i + batch], lengths[i:i + batch]) for i in range(0, len(y), batch)])
    err = (preds - y).abs()
    return float((err < TOLERANCE).float().mean()), float(err.square().mean())


def train_one(cell: str, cfg: LongMemoryConfig, out_dir: Path, max_steps: int) -> dict:
    seed_everything(cfg.seed)
    hidden = cfg.lstm_hidden if cell == "lstm" else cfg.rnn_hidden
    # chrono init: the LSTM's memory time scales spread up to the longest sequence (Tallec & Ollivier 2018)
    chrono = cfg.T + cfg.T // 10 if cell == "lstm" else None
    model = AddingRegressor(cell, hidden, chrono=chrono)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    valid = adding_problem(cfg.valid_size, cfg.T, gen)
    train = AddingData(cfg.train_size, cfg.T, cfg.seed + 2)

    def loss_fn(m, batch):
        x, lengths, y = batch
        return nn.functional.mse_loss(m(x, lengths), y)

    def evaluate(m):
        acc, mse = accuracy(m, valid)
        return {"accuracy": acc, "loss": mse}

    epochs = -(-max_steps * cfg.batch_size // cfg.train_size)
    tc = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.0, max_steps=max_steps,
                     metric="accuracy", mode="max", target=cfg.target, eval_every=cfg.eval_every,
                     warmup_steps=100, seed=cfg.seed, progress=cfg.progress, log_every=50)
    meta = make_meta("long-memory", "adding-regressor", {"cell": cell, "hidden_size": hidden, "chrono": chrono},
                     front_end={"inputs": ["value", "marker"]}, task=asdict(cfg),
                     data={"task": "adding", "T": cfg.T, "train_size": cfg.train_size, "seed": cfg.seed + 2})
    trainer = Trainer(model, tc, train, out_dir / cell, loss_fn, evaluate, collate_fn=lambda b: b, bundle=meta)
    t0 = time.time()
    res = trainer.fit(resume=False)
    seconds = time.time() - t0
    curve = [(r["step"], r["val_accuracy"]) for r in trainer.history if "val_accuracy" in r]
    return {"model": model, "result": res, "seconds": seconds, "curve": curve,
            "params": sum(p.numel() for p in model.parameters())}


def run(cfg: LongMemoryConfig, out_dir: str | Path) -> dict:
    """Train an LSTM, then a tanh RNN with the same step budget; test both on fresh sequences."""
    from ..checkpoint import load_checkpoint
    from ..plots import plot_curves

    out_dir = Path(out_dir)
    for p in (out_dir / "lstm" / "last.pt", out_dir / "rnn" / "last.pt"):
        p.unlink(missing_ok=True)
    test = adding_problem(cfg.test_size, cfg.T, torch.Generator().manual_seed(cfg.seed + 99))
    res = {"T": cfg.T}
    runs = {}
    for cell in ("lstm", "rnn"):
        # the RNN gets at least the LSTM's steps (and never fewer than rnn_min_steps), same early stop
        steps = cfg.max_steps if cell == "lstm" else max(runs["lstm"]["result"]["step"], cfg.rnn_min_steps)
        r = train_one(cell, cfg, out_dir, steps)
        best = load_checkpoint(out_dir / cell / "best.pt")
        r["model"].load_state_dict(best["state_dict"])
        r["model"].eval()
        with torch.no_grad():
            acc, mse = accuracy(r["model"], test)
        runs[cell] = r
        res.update({f"{cell}_accuracy": acc, f"{cell}_test_mse": mse, f"{cell}_steps": r["result"]["step"],
                    f"{cell}_seconds": round(r["seconds"], 1), f"{cell}_params": r["params"]})
    res["test_sequences"] = cfg.test_size
    res["tolerance"] = TOLERANCE
    plot_curves({f"LSTM ({runs['lstm']['params']} params)": tuple(zip(*runs["lstm"]["curve"])) or ([], []),
                 f"tanh RNN ({runs['rnn']['params']} params)": tuple(zip(*runs["rnn"]["curve"])) or ([], [])},
                out_dir / "learning_curves.png", ylabel=f"validation accuracy (|err| < {TOLERANCE})",
                title=f"Adding problem, T = {cfg.T}")
    res["plot"] = str(out_dir / "learning_curves.png")
    return res

from .cloze import ClozeConfig, run_cloze  # noqa: E402,F401 - registers "cloze-tagger"
