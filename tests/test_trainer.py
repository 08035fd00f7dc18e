"""The shared trainer: it learns, resumes exactly, writes atomic checkpoints, runs under torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pipelines.checkpoint import load_checkpoint, save_checkpoint
from pipelines.trainer import GlobalBatchSampler, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


class NoisyData(TensorDataset):
    """y = x @ w + noise drawn at load time from the global RNG (like augmentation)."""

    noise = 0.01

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x + self.noise * torch.randn_like(x), y


def make(out, seed=0, epochs=3, lr=3e-2, p_drop=0.1, noise=0.01, **kw):
    torch.manual_seed(seed)  # model init, as a pipeline seeds before building
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(p_drop), nn.Tanh(), nn.Linear(16, 1))

    def loss_fn(m, batch):
        xb, yb = batch
        return nn.functional.mse_loss(m(xb).squeeze(-1), yb)

    def evaluate(m):
        return {"loss": nn.functional.mse_loss(m(x).squeeze(-1), y).item()}

    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, seed=seed, progress=False, log_every=1, **kw)
    data = NoisyData(x, y)
    data.noise = noise
    return Trainer(model, cfg, data, out, loss_fn, evaluate, extra={"note": "test"})


def test_trainer_learns_and_writes_outputs(tmp_path):
    res = make(tmp_path, epochs=15).fit()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r["train_loss"] for r in rows if "train_loss" in r]
    assert train[-1] < 0.2 * train[0]
    assert res["best_metric"] == min(r["val_loss"] for r in rows if "val_loss" in r)
    ck = load_checkpoint(tmp_path / "best.pt")
    assert ck["extra"] == {"note": "test"} and ck["train_config"]["batch_size"] == 16
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    full = make(tmp_path / "full").fit()
    part = make(tmp_path / "part")
    r1 = part.fit(stop_after=7)  # 6 steps per epoch: stops inside epoch 2
    assert r1["step"] == 7
    r2 = make(tmp_path / "part").fit()  # a fresh process would do exactly this
    assert r2["step"] == full["step"] == 18
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert r2["best_metric"] == pytest.approx(full["best_metric"], abs=1e-7)


def test_gradient_clipping_is_on_by_default(tmp_path):
    assert TrainConfig().grad_clip == 1.0
    make(tmp_path, epochs=1).fit()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("grad_norm" in r for r in rows if "train_loss" in r)


def test_atomic_checkpoint_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint({"a": torch.ones(2)}, p)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint({"a": Boom()}, p)
    assert torch.equal(load_checkpoint(p)["a"], torch.ones(2))
    assert [f.name for f in tmp_path.iterdir()] == ["ck.pt"]


def test_checkpoint_load_rejects_pickled_objects(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"m": nn.Linear(2, 2)}, p)  # a whole module needs unpickling of arbitrary classes
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(p)


def test_global_batches_split_across_ranks():
    one = list(GlobalBatchSampler(10, 4, seed=3, epoch=1))
    r0 = list(GlobalBatchSampler(10, 4, seed=3, epoch=1, rank=0, world=2))
    r1 = list(GlobalBatchSampler(10, 4, seed=3, epoch=1, rank=1, world=2))
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in one]
    assert list(GlobalBatchSampler(10, 4, seed=3, epoch=1, start=1)) == one[1:]


DDP_SCRIPT = r'''
import sys, torch
sys.path.insert(0, sys.argv[2])
from tests.test_trainer import make
make(sys.argv[1], epochs=2, p_drop=0.0, noise=0.0).fit()
'''


def test_ddp_under_torchrun_matches_single_process(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), str(tmp_path / "ddp"), str(ROOT)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    make(tmp_path / "single", epochs=2, p_drop=0.0, noise=0.0).fit()
    a = load_checkpoint(tmp_path / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "last.pt")
    assert a["step"] == b["step"] == 12
    # two ranks on half batches with averaged gradients == one process on the whole batch
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
