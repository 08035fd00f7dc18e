"""The adding problem is generated as Hochreiter & Schmidhuber describe it."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from pipelines.long_memory import adding_problem

ROOT = Path(__file__).resolve().parents[1]


def test_adding_problem_follows_the_paper():
    T = 40
    x, lengths, y = adding_problem(500, T, torch.Generator().manual_seed(0))
    assert x.shape == (500, T + T // 10, 2)
    assert lengths.min() >= T and lengths.max() <= T + T // 10
    values, markers = x[..., 0], x[..., 1]
    for b in range(500):
        L = int(lengths[b])
        marked = (markers[b] == 1).nonzero().flatten().tolist()
        assert len(marked) == 2
        assert marked[0] < 10 and marked[1] < T // 2 - 1
        assert markers[b, L - 1] == -1
        assert markers[b, 0] == (1 if marked[0] == 0 else -1)
        assert torch.all(markers[b, L:] == 0) and torch.all(values[b, L:] == 0)
        others = [t for t in range(1, L - 1) if t not in marked]
        assert torch.all(markers[b, others] == 0)
        x1 = 0.0 if marked[0] == 0 else float(values[b, marked[0]])
        assert abs(float(y[b]) - (0.5 + (x1 + float(values[b, marked[1]])) / 4)) < 1e-6
    assert values[lengths.unsqueeze(1) > torch.arange(x.shape[1])].abs().max() <= 1


def test_long_memory_script_reports_both_models(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "long_memory.py"), "--dry-run", "--json",
                        "--threads", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    for k in ("T", "lstm_accuracy", "rnn_accuracy", "lstm_steps", "rnn_steps", "lstm_seconds", "rnn_seconds"):
        assert k in res
    assert 0 <= res["lstm_accuracy"] <= 1 and res["lstm_steps"] == 8
    assert (tmp_path / "learning_curves.png").stat().st_size > 5000
