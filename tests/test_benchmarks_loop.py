"""benchmarks/_loop.py, the input-pipeline measurement of issue #13 §4: the clock counts what it should, the
probed Trainer stops after the steps asked for and replays exactly the batches it saw, and a benchmark
entry point runs in seconds with tiny settings and merges into its results file."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pipelines import bundle
from pipelines.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("benchmarks_loop", ROOT / "benchmarks" / "_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeTime:
    """perf_counter / process_time that only move when told."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def advance(self, wall: float, cpu: float):
        self.wall += wall
        self.cpu += cpu


@pytest.fixture
def fake_time(loop, monkeypatch):
    t = FakeTime()
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: t.wall, process_time=lambda: t.cpu))
    monkeypatch.setattr(loop, "children_cpu", lambda: 0.0)
    return t


def test_step_clock_counts_intervals_after_warm_up(loop, fake_time):
    c = loop.StepClock()
    for step in range(6):  # 6 ticks = 5 intervals; the first 2 are warm-up and take longer
        c.tick()
        fake_time.advance(wall=1.0 if step < 2 else 0.5, cpu=0.4 if step < 2 else 0.25)
    r = c.rates(skip=2)
    assert r["steps"] == 3
    assert r["wall_steps_per_s"] == pytest.approx(2.0)
    assert r["cpu_steps_per_s"] == pytest.approx(4.0)
    assert r["cpu_all_steps_per_s"] == pytest.approx(4.0)
    with pytest.raises(ValueError):
        c.rates(skip=5)


def test_step_clock_excludes_its_own_work_and_drops_marked_steps(loop, fake_time):
    c = loop.StepClock()
    for step in range(5):
        c.tick()
        fake_time.advance(0.5, 0.5)
        if step == 1:
            with c.excluding():  # e.g. copying the batch: not part of the loop
                fake_time.advance(2.0, 2.0)
        if step == 2:
            c.mark()  # an evaluation happened in this interval: left out
            fake_time.advance(3.0, 3.0)
    r = c.rates(skip=0)
    assert r["steps"] == 3 and r["marked"] == 1
    assert r["wall_steps_per_s"] == pytest.approx(2.0)  # 3 intervals of 0.5 s
    assert r["marked_extra_wall_s"] == [pytest.approx(3.0)]


def test_children_cpu_is_a_number(loop):
    assert loop.children_cpu() >= 0.0


def _tiny_training(module, out: Path, n: int = 96, eval_every: int = 0, max_steps=None):
    """What a pipeline's train() does: build data, model and loss, hand them to ``module.Trainer``."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g), torch.randn(n, generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    model = nn.Linear(4, 1)
    calls = {"loss": 0}

    def loss_fn(m, batch):
        calls["loss"] += 1
        xb, yb = batch
        return nn.functional.mse_loss(m(xb).squeeze(-1), yb)

    cfg = TrainConfig(epochs=3, batch_size=8, progress=False, device="cpu", eval_every=eval_every,
                      max_steps=max_steps)
    meta = bundle.make_meta("long-memory", "tiny-linear", {})
    module.Trainer(model, cfg, data, out, loss_fn, lambda m: {"loss": 0.0}, bundle=meta).fit(resume=False)
    return calls


def test_probe_stops_after_the_steps_and_replays_the_same_batches(loop, tmp_path):
    module = SimpleNamespace(Trainer=Trainer)
    calls = {}
    probe = loop.run_probed(module, lambda: calls.update(_tiny_training(module, tmp_path / "a", eval_every=4)),
                            loop.LoopProbe(steps=9, capture=True))
    assert module.Trainer is Trainer  # put back
    assert probe.clock.intervals == 9 and len(probe.clock.wall) == 10  # the 10th loss call stopped the run
    assert len(probe.batches) == 9 and probe.batches[0][0].shape == (8, 4)
    assert probe.clock.marked == {3, 7}  # evaluations after steps 4 and 8 (intervals 3 and 7)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]  # stopped at once: nothing ran after the timed steps
    r = probe.clock.rates(skip=1)
    assert r["steps"] == 6 and r["marked"] == 2
    alone = loop.model_alone(probe, 9, skip=1)
    assert alone["steps"] == 8
    # a training that ends before the steps were timed says so
    with pytest.raises(RuntimeError, match="before the 50"):
        loop.run_probed(module, lambda: _tiny_training(module, tmp_path / "b", max_steps=20), loop.LoopProbe(50))


def test_probe_overrides_the_train_config(loop, tmp_path):
    module = SimpleNamespace(Trainer=Trainer)
    probe = loop.run_probed(module, lambda: _tiny_training(module, tmp_path / "c"),
                            loop.LoopProbe(steps=3, overrides={"log_every": 1}))
    assert probe.config.log_every == 1 and probe.config.batch_size == 8


def test_long_memory_entry_point_merges_and_summarises(loop, tmp_path):
    out = tmp_path / "long-memory-cpu.json"
    out.write_text(json.dumps({"other": {"kept": 1}}))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "long_memory.py"), "--tiny", "--loop-steps", "5",
                        "--skip", "1", "--rounds", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["other"] == {"kept": 1}
    sec = res["input_pipeline"]
    assert sec["steps_timed"] == 4 and sec["rounds"] == 1 and sec["ratio_loop_vs_model_alone"] > 0
    assert sec["ratio_loop_vs_model_alone"] == sec["ratio_loop_vs_model_alone_cpu"]
    assert "rnn" in sec["cells"] and sec["date"]
    summary = loop.write_summary(tmp_path, tmp_path / "summary.json")
    assert list(summary["jobs"]) == ["long-memory"]
    assert summary["jobs"]["long-memory"]["ratio_cpu"] == sec["ratio_loop_vs_model_alone_cpu"]


def test_summary_has_the_video_rows_of_one_and_two_threads(loop, tmp_path):
    """video train's default on a 2-core machine is two threads; rows with a data worker are judged by wall
    time, rows without one by CPU time."""
    def sec(cpu, wall, workers):
        return {"ratio_loop_vs_model_alone": cpu, "ratio_loop_vs_model_alone_cpu": cpu,
                "ratio_loop_vs_model_alone_wall": wall, "num_workers": workers, "date": "2026-01-01T00:00:00Z"}

    (tmp_path / "video-cpu.json").write_text(json.dumps({
        "input_pipeline": {"classify": sec(0.95, 0.94, 0), "caption": sec(0.85, 0.84, 0)},
        "input_pipeline_2_threads": {"what": "x", "classify": sec(1.2, 0.95, 1), "caption": sec(1.1, 0.88, 1)}}))
    jobs = loop.write_summary(tmp_path, tmp_path / "summary.json")["jobs"]
    assert set(jobs) == {"video-classify", "video-caption", "video-classify-2-threads", "video-caption-2-threads"}
    assert jobs["video-classify"]["meets_goal"] and not jobs["video-caption"]["meets_goal"]
    two = jobs["video-caption-2-threads"]
    assert two["judged_by"] == "wall" and two["ratio_wall"] == 0.88 and not two["meets_goal"]
    assert jobs["video-classify-2-threads"]["meets_goal"]


def test_hand_recorded_figures_survive_a_rerun(loop, tmp_path):
    """A rerun replaces a results section whole; the figures recorded by hand in it are carried over."""
    out = tmp_path / "r.json"
    assert loop.hand_recorded(out, "input_pipeline", ("before",)) == {}  # no file yet
    out.write_text(json.dumps({"input_pipeline": {"before": {"ratio": 0.8}, "ratio_loop_vs_model_alone": 0.9,
                                                  "active_waits": 1}}))
    assert loop.hand_recorded(out, "input_pipeline", ("before", "independent_check")) == {"before": {"ratio": 0.8}}
    assert loop.hand_recorded(out, "other", ("before",)) == {}
    out.write_text("{not json")
    assert loop.hand_recorded(out, "input_pipeline", ("before",)) == {}
