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
    r = subprocess.run([sys.executable, "-m", "pipelines.long_memory.cli", "--dry-run", "--json",
                        "--threads", "1", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    for k in ("T", "lstm_accuracy", "rnn_accuracy", "lstm_steps", "rnn_steps", "lstm_seconds", "rnn_seconds"):
        assert k in res
    assert 0 <= res["lstm_accuracy"] <= 1 and res["lstm_steps"] == 8
    assert (tmp_path / "learning_curves.png").stat().st_size > 5000


def test_cloze_blank_is_decided_only_by_what_follows():
    from pipelines.long_memory.cloze import ClozeConfig, cloze_data

    cfg = ClozeConfig()
    x, blank, y = cloze_data(400, cfg, torch.Generator().manual_seed(0))
    for b in range(400):
        row, p = x[b], int(blank[b])
        assert row[p] == cfg.blank and (row == cfg.blank).sum() == 1
        answers = ((row >= cfg.noise_tokens) & (row < cfg.blank)).nonzero().flatten().tolist()
        assert len(answers) == 1 and answers[0] > p and int(row[answers[0]]) - cfg.noise_tokens == int(y[b])
        assert bool((row[:p] < cfg.noise_tokens).all())  # before the blank: noise only
    assert set(y.tolist()) == set(range(cfg.answers))


def test_cloze_bidirectional_fills_the_blank_forward_cannot(tmp_path):
    from pipelines.long_memory.cloze import MODELS, ClozeConfig, run_cloze

    torch.set_num_threads(1)
    res = run_cloze(ClozeConfig(max_steps=150, train_size=4000, valid_size=200, test_size=500, progress=False),
                    tmp_path)
    assert res["chance"] == 0.125
    assert res["forward"] < 0.25  # it has not seen the answer when it reaches the blank
    for merge in MODELS[1:]:
        assert res[merge] >= 0.95, (merge, res)
    assert (tmp_path / "cloze_curves.png").stat().st_size > 5000


def test_long_memory_command_runs_cloze(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "long-memory", "--task", "cloze", "--dry-run",
                        "--json", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert set(res) >= {"forward", "concat", "sum", "mul", "ave", "chance"}
