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

from pipelines import bundle
from pipelines.checkpoint import load_checkpoint, save_checkpoint
from pipelines.trainer import (ConfigMismatch, GlobalBatchSampler, NonFiniteLoss, TrainConfig, Trainer,
                               TrainingInterrupted)

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
    meta = bundle.make_meta("long-memory", "test-mlp", {"hidden": 16}, task={"note": "test"})
    return Trainer(model, cfg, data, out, loss_fn, evaluate, bundle=meta)


def test_trainer_learns_and_writes_outputs(tmp_path):
    res = make(tmp_path, epochs=15).fit()
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r["train_loss"] for r in rows if "train_loss" in r]
    assert train[-1] < 0.2 * train[0]
    assert res["best_metric"] == min(r["val_loss"] for r in rows if "val_loss" in r)
    ck = load_checkpoint(tmp_path / "best.pt")
    bundle.check(ck)
    assert ck["task"] == {"note": "test"} and ck["train"]["batch_size"] == 16 and ck["model"] == "test-mlp"
    assert ck["metrics"]["val"]["loss"] == res["best_metric"] and "optimizer" in ck["trainer"]
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    full = make(tmp_path / "full").fit()
    part = make(tmp_path / "part")
    r1 = part.fit(stop_after=7)  # 6 steps per epoch: stops inside epoch 2
    assert r1["step"] == 7
    r2 = make(tmp_path / "part").fit()  # a fresh process would do exactly this
    assert r2["step"] == full["step"] == 18
    a = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["state_dict"]
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
import json, sys, torch
from tests.test_trainer import make
kw = json.loads(sys.argv[2])
res = make(sys.argv[1], **kw).fit()
rank = torch.distributed.get_rank()
open(f"{sys.argv[1]}/rank{rank}.json", "w").write(json.dumps({"step": res["step"], "rank": rank}))
'''


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path, out, **kw):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), str(script), str(out), json.dumps(kw)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]


def test_ddp_under_torchrun_matches_single_process(tmp_path):
    torchrun(tmp_path, tmp_path / "ddp", epochs=2, p_drop=0.0, noise=0.0)
    make(tmp_path / "single", epochs=2, p_drop=0.0, noise=0.0).fit()
    a = load_checkpoint(tmp_path / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "last.pt")
    assert a["trainer"]["step"] == b["trainer"]["step"] == 12
    # two ranks on half batches with averaged gradients == one process on the whole batch
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=1e-4, atol=1e-5)


def test_ddp_early_stop_is_taken_by_every_rank(tmp_path):
    # rank 0 alone evaluates; the target it reaches must stop rank 1 too (else rank 1 hangs in all-reduce)
    rows = torchrun(tmp_path, tmp_path / "stop", epochs=40, p_drop=0.0, noise=0.0, target=1000.0)
    steps = {r["rank"]: r["step"] for r in rows}
    assert set(steps) == {0, 1} and steps[0] == steps[1] == 6, rows  # the target holds after the first epoch


def test_non_finite_loss_stops_and_saves_nothing_non_finite(tmp_path):
    t = make(tmp_path, epochs=3, lr=1e6, grad_clip=None)
    with pytest.raises(NonFiniteLoss, match="step [0-9]+: loss -?(nan|inf) at learning rate"):
        t.fit()
    for name in ("last.pt", "best.pt"):
        if (tmp_path / name).exists():
            assert not bundle.non_finite(load_checkpoint(tmp_path / name)["state_dict"])


def test_save_refuses_non_finite_weights(tmp_path):
    b = bundle.complete(bundle.make_meta("music", "m", {}), {"w": torch.tensor([1.0, float("nan")])})
    with pytest.raises(FloatingPointError, match="non-finite"):
        bundle.save(b, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_second_train_resumes_and_says_so(tmp_path, capsys):
    make(tmp_path, epochs=1).fit()
    capsys.readouterr()
    res = make(tmp_path, epochs=1).fit()
    assert f"resuming from {tmp_path / 'last.pt'} at epoch 1, step 6" in capsys.readouterr().err
    assert res["step"] == 6  # nothing left to do


def test_resume_with_other_settings_names_the_fields(tmp_path):
    make(tmp_path, epochs=1).fit()
    with pytest.raises(ConfigMismatch, match=r"train\.lr \(0\.03 -> 0\.1\).*--fresh"):
        make(tmp_path, epochs=1, lr=0.1).fit()
    res = make(tmp_path, epochs=1, lr=0.1).fit(resume=False)  # --fresh
    assert res["step"] == 6 and load_checkpoint(tmp_path / "last.pt")["train"]["lr"] == 0.1


def test_sigint_saves_last_and_resumes_exactly(tmp_path):
    import signal

    full = make(tmp_path / "full").fit()
    t = make(tmp_path / "part")
    calls = {"n": 0}
    inner = t.loss_fn

    def loss_then_interrupt(m, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of step 8
        return inner(m, batch)

    t.loss_fn = loss_then_interrupt
    with pytest.raises(TrainingInterrupted) as e:
        t.fit()
    assert e.value.step == 8 and load_checkpoint(tmp_path / "part" / "last.pt")["trainer"]["step"] == 8
    make(tmp_path / "part").fit()
    a = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


KILL_SCRIPT = r'''
import sys, time
from tests.test_trainer import make
t = make(sys.argv[1], checkpoint_every=1)
inner = t.loss_fn
def slow(m, b):
    time.sleep(0.05)
    return inner(m, b)
t.loss_fn = slow
t.fit()
'''


def test_sigkill_at_random_moments_resumes_to_the_same_weights(tmp_path):
    import random
    import signal
    import time

    full = make(tmp_path / "full").fit()
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "killed"
    rng = random.Random(0)
    for _ in range(2):  # kill -9 twice, each at a random moment once training has begun
        p = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
        deadline = time.time() + 120
        while not (out / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert load_checkpoint(out / "last.pt")["trainer"]["step"] >= 1  # whole, readable
    res = make(out).fit()
    assert res["step"] == full["step"]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = load_checkpoint(out / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


class EpochNoise(TensorDataset):
    """Items drawn from (epoch, index) as kws's KWSTrainSet does; each item also says which process made it."""

    def __init__(self, *t):
        super().__init__(*t)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        return x + 0.05 * torch.randn(x.shape, generator=g), y, torch.tensor(os.getpid())


def epoch_run(out, workers, stop_after=None):
    torch.manual_seed(0)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(1))
    y = x.sum(-1)
    model = nn.Linear(4, 1)
    pids = []

    def loss_fn(m, batch):
        xb, yb, pid = batch
        pids.append(set(pid.tolist()))
        return nn.functional.mse_loss(m(xb).squeeze(-1), yb)

    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-2, progress=False, num_workers=workers)
    meta = bundle.make_meta("long-memory", "test-linear", {}, task={})
    res = Trainer(model, cfg, EpochNoise(x, y), out, loss_fn, bundle=meta).fit(stop_after=stop_after)
    return res, model.weight.detach().clone(), pids


def test_data_workers_stay_for_the_run_and_see_every_epoch(tmp_path):
    """With a worker process the items are those of the training process epoch by epoch (the worker, kept
    from epoch to epoch, follows set_epoch through the batch keys), and one worker made every batch."""
    _, w0, pids0 = epoch_run(tmp_path / "w0", 0)
    res, w1, pids1 = epoch_run(tmp_path / "w1", 1)
    assert res["step"] == 20 and torch.equal(w0, w1)
    assert pids0[0] == {os.getpid()} and len(set().union(*pids1)) == 1 and pids1[0] != {os.getpid()}
    part, _, _ = epoch_run(tmp_path / "part", 1, stop_after=7)  # stops inside epoch 2, then resumes there
    _, w2, _ = epoch_run(tmp_path / "part", 1)
    assert part["step"] == 7 and torch.equal(w0, w2)


class NiceData(TensorDataset):
    """Items carry the niceness of the process that made them."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, y, torch.tensor(os.nice(0))


def test_data_worker_runs_at_the_configured_niceness(tmp_path):
    """``worker_nice`` lowers the data worker's priority (the model's threads keep theirs); 0 leaves it."""
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    base = os.nice(0)
    for nice in (0, 7):
        seen = []

        def loss_fn(m, batch):
            xb, yb, n = batch
            seen.extend(n.tolist())
            return nn.functional.mse_loss(m(xb).squeeze(-1), yb)

        cfg = TrainConfig(epochs=1, batch_size=8, progress=False, num_workers=1, worker_nice=nice)
        meta = bundle.make_meta("long-memory", "test-linear", {}, task={})
        Trainer(nn.Linear(4, 1), cfg, NiceData(x, x.sum(-1)), tmp_path / str(nice), loss_fn, bundle=meta).fit()
        assert seen == [min(base + nice, 19)] * 16 and os.nice(0) == base


FAULTS = """
import os, resource, sys, torch
from pipelines.trainer import hold_freed_memory

def faults():  # minor page faults of 8 rounds of a 64 MB block allocated, written and freed
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        torch.empty(16 << 20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

faults()
before = faults()
held = hold_freed_memory()
faults()
print(before, held, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_keeps_freed_memory_instead_of_faulting_it_in_again(tmp_path):
    """A block freed and allocated again at every step costs one page fault per 4 kB page by default
    (glibc maps blocks above 32 MB afresh each time); once the trainer holds freed memory it costs none.
    ``LSTM_MEDIA_MALLOC=system`` keeps the C library's behaviour."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LSTM_MEDIA_MALLOC", None)
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
    before, held, after = out.stdout.split()
    if held == "False":
        pytest.skip("this C library has no mallopt thresholds (not glibc)")
    assert int(before) > 8 * 10_000 and int(after) < 1_000, out.stdout
    out = subprocess.run([sys.executable, "-c", FAULTS], env={**env, "LSTM_MEDIA_MALLOC": "system"},
                         capture_output=True, text=True, check=True)
    before, held, after = out.stdout.split()
    assert held == "False" and int(after) > 8 * 10_000, out.stdout
