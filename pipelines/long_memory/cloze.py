"""Bidirectional context, shown: a cloze task whose blank is decided only by what comes after it.

As in *"Students go to ___ ... Students come out of school"*: every sequence holds noise tokens, one
``BLANK`` and, somewhere after the blank, one of ``K`` answer words; the model must name that word at the
blank's position.  A forward-only LSTM has read nothing that decides the blank when it reaches it (its
best is chance, 1/K); a bidirectional LSTM reads the rest of the sequence backwards and can fill it.
Every Keras merge mode (concat, sum, mul, ave) is trained under the same step budget.
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

MODELS = ("forward", "concat", "sum", "mul", "ave")


@dataclass
class ClozeConfig:
    length: int = 24  # tokens per sequence
    answers: int = 8  # K answer words: chance is 1/K
    noise_tokens: int = 16
    hidden_size: int = 32
    train_size: int = 20_000
    valid_size: int = 1000
    test_size: int = 2000
    batch_size: int = 64
    lr: float = 1e-2
    max_steps: int = 600  # the same budget for every model
    eval_every: int = 25
    seed: int = 0
    progress: bool = True

    @property
    def vocab_size(self) -> int:
        return self.noise_tokens + self.answers + 1  # noise, answers, BLANK

    @property
    def blank(self) -> int:
        return self.vocab_size - 1


def cloze_data(n: int, cfg: ClozeConfig, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Returns tokens (n, L), blank positions (n,), answers (n,) in [0, K).

    The blank lies in the first half, the answer word after it: nothing before the blank tells the answer.
    """
    L, K = cfg.length, cfg.answers
    x = torch.randint(0, cfg.noise_tokens, (n, L), generator=generator)
    rows = torch.arange(n)
    blank = torch.randint(0, L // 2, (n,), generator=generator)
    after = blank + 1 + (torch.rand(n, generator=generator) * (L - 1 - blank).float()).long()
    answer = torch.randint(0, K, (n,), generator=generator)
    x[rows, blank] = cfg.blank
    x[rows, after] = cfg.noise_tokens + answer
    return x, blank, answer


@register_model("cloze-tagger")
class ClozeTagger(nn.Module):
    """Embedding → one LSTM layer (forward, or bidirectional with a Keras merge) → answer logits per step."""

    def __init__(self, vocab_size: int, answers: int, hidden_size: int = 32, direction: str = "forward"):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, hidden_size)
        bi = direction != "forward"
        self.rnn = lstm.LSTM(hidden_size, hidden_size, bidirectional=bi, merge=direction if bi else "concat")
        self.head = nn.Linear(self.rnn.output_size, answers)

    def forward(self, x: Tensor, blank: Tensor) -> Tensor:
        """(B, L) tokens, (B,) blank positions -> (B, K) logits at the blank."""
        out, _ = self.rnn(self.embed(x))
        return self.head(out[torch.arange(len(x)), blank])


class _Batches(torch.utils.data.Dataset):
    def __init__(self, data):
        self.x, self.blank, self.y = data

    def __len__(self):
        return len(self.y)

    def __getitems__(self, idx):
        idx = torch.as_tensor(idx)
        return self.x[idx], self.blank[idx], self.y[idx]


@torch.no_grad()
def cloze_accuracy(model: nn.Module, data) -> float:
    x, blank, y = data
    model.eval()
    acc = float((model(x, blank).argmax(-1) == y).float().mean())
    model.train()
    return acc


def run_cloze(cfg: ClozeConfig, out_dir: str | Path) -> dict:
    """Train the forward model and the four bidirectional merges with the same budget; test all of them."""
    from ..plots import plot_curves

    out_dir = Path(out_dir)
    train = cloze_data(cfg.train_size, cfg, torch.Generator().manual_seed(cfg.seed + 1))
    valid = cloze_data(cfg.valid_size, cfg, torch.Generator().manual_seed(cfg.seed + 2))
    test = cloze_data(cfg.test_size, cfg, torch.Generator().manual_seed(cfg.seed + 3))
    res: dict = {"chance": 1.0 / cfg.answers, "test_sequences": cfg.test_size, "steps": cfg.max_steps}
    curves = {}
    for name in MODELS:
        seed_everything(cfg.seed)
        kwargs = {"vocab_size": cfg.vocab_size, "answers": cfg.answers, "hidden_size": cfg.hidden_size,
                  "direction": name}
        model = ClozeTagger(**kwargs)
        tc = TrainConfig(epochs=-(-cfg.max_steps * cfg.batch_size // cfg.train_size), batch_size=cfg.batch_size,
                         lr=cfg.lr, max_steps=cfg.max_steps, metric="accuracy", mode="max",
                         eval_every=cfg.eval_every, warmup_steps=50, seed=cfg.seed, progress=cfg.progress,
                         log_every=50)
        meta = make_meta("long-memory", "cloze-tagger", kwargs, front_end={"tokens": cfg.vocab_size},
                         task={"task": "cloze", **asdict(cfg)}, data={"task": "cloze", "seed": cfg.seed + 1})
        trainer = Trainer(model, tc, _Batches(train), out_dir / name,
                          lambda m, b: nn.functional.cross_entropy(m(b[0], b[1]), b[2]),
                          lambda m: {"accuracy": cloze_accuracy(m, valid)}, collate_fn=lambda b: b, bundle=meta)
        t0 = time.time()
        trainer.fit(resume=False)
        res[name] = cloze_accuracy(model, test)  # the model after the full budget
        res[f"{name}_seconds"] = round(time.time() - t0, 1)
        curves[name] = tuple(zip(*[(r["step"], r["val_accuracy"]) for r in trainer.history
                                   if "val_accuracy" in r])) or ([], [])
    curves[f"chance ({res['chance']:.3f})"] = ([0, cfg.max_steps], [res["chance"]] * 2)
    res["plot"] = str(plot_curves(curves, out_dir / "cloze_curves.png", ylabel="validation accuracy at the blank",
                                  title="Cloze: the blank is decided by what comes after it"))
    return res


__all__ = ["ClozeConfig", "ClozeTagger", "cloze_data", "cloze_accuracy", "run_cloze", "MODELS"]
