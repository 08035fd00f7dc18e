"""Does the model wait for data? (issue #13 §4) — the one measurement every pipeline's benchmark shares.

A pipeline's real training command runs (its own data, augmentation, collation, Trainer, loss, optimizer,
clipping, logging) with its ``Trainer`` swapped for a subclass that puts a :class:`StepClock` inside the loss
call: the interval between two calls is one whole iteration of the loop.  After ``steps`` iterations the
run is stopped (:class:`StopLoop`; no checkpoint, evaluation or test is made).  The first run also keeps a
copy of every batch the loss saw.  "Model alone" then replays those very batches (same shapes, same values)
through a fresh copy of the same initial model, the same loss function, AdamW with the run's settings,
clipping and the LR scheduler: the loop minus its data side.  Rounds are interleaved (loop, alone, loop,
alone, ...) and medians compared; the first ``skip`` iterations of each are warm-up.

Three clocks: wall time; CPU time of this process (``time.process_time``: the figure a shared machine
disturbs least, and the headline ratio, as in ``benchmarks/music.py``); and CPU time of this process plus
its child processes (DataLoader workers), which is the fair CPU figure when ``num_workers > 0``.  With
workers only the wall clock says whether the model waits (a process blocked on a worker's batch spends no
CPU time), so prototypes with workers are judged on wall time, on a machine with a core free for them.

``benchmarks/<job>.py --loop-steps N`` runs it for each job; results go to the job's JSON under
``input_pipeline`` (merged: other keys of the file are kept) and a side-by-side summary to
``results/input-pipeline-cpu.json`` (:func:`write_summary`).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"
SUMMARY = RESULTS / "input-pipeline-cpu.json"
GOAL = 0.9
CLOCKS = ("cpu", "wall", "cpu_all")
# the jobs side by side: summary row -> (results file, key path of the section inside it)
SOURCES = {
    "music": ("music-cpu.json", ("input_pipeline",)),
    "kws": ("kws-cpu.json", ("input_pipeline",)),
    "video-classify": ("video-cpu.json", ("input_pipeline", "classify")),
    "video-caption": ("video-cpu.json", ("input_pipeline", "caption")),
    # video train's default on a 2-core machine: two threads (its default data loading: video_workers)
    "video-classify-2-threads": ("video-cpu.json", ("input_pipeline_2_threads", "classify")),
    "video-caption-2-threads": ("video-cpu.json", ("input_pipeline_2_threads", "caption")),
    "long-memory": ("long-memory-cpu.json", ("input_pipeline",)),
}

try:
    _TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _TICKS = 100


def children_cpu() -> float:
    """CPU seconds of this process's child processes, live ones (DataLoader workers, read from /proc) and
    finished ones; 0.0 where /proc is not there."""
    t = os.times()
    total = t.children_user + t.children_system
    try:
        pids: set[str] = set()
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(f.read().split())
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # it ended between the two reads: os.times() counts it once reaped
                continue
            total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)
    except OSError:
        pass
    return total


class StepClock:
    """Wall time, CPU time of this process and CPU time with child processes at every :meth:`tick`; the
    interval between two ticks is one iteration of the loop around the call that ticks.  :meth:`exclude`
    takes time spent inside the current interval by the measurement itself (copying a batch) out again."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.cpu_all: list[float] = []
        self.excluded: list[list[float]] = []  # per interval (after tick i): [wall, cpu, cpu_all] seconds
        self.marked: set[int] = set()  # intervals (after tick i) that held an evaluation or a checkpoint

    def _now(self) -> tuple[float, float, float]:
        cpu = time.process_time()
        return time.perf_counter(), cpu, cpu + children_cpu()

    def tick(self) -> None:
        w, c, a = self._now()
        self.wall.append(w)
        self.cpu.append(c)
        self.cpu_all.append(a)
        self.excluded.append([0.0, 0.0, 0.0])

    @contextmanager
    def excluding(self):
        """Time spent in this block (after a tick) does not count towards the current interval."""
        w0, c0, a0 = self._now()
        try:
            yield
        finally:
            w1, c1, a1 = self._now()
            ex = self.excluded[-1]
            ex[0] += w1 - w0
            ex[1] += c1 - c0
            ex[2] += a1 - a0

    def mark(self) -> None:
        """Flag the current interval (it holds an evaluation or a checkpoint: not a step of the loop proper)."""
        if self.wall:
            self.marked.add(len(self.wall) - 1)

    @property
    def intervals(self) -> int:
        return max(len(self.wall) - 1, 0)

    def rates(self, skip: int = 10) -> dict:
        """Steps/s over the intervals after the first ``skip`` (warm-up), for each clock; intervals flagged
        by :meth:`mark` are left out (counted in ``marked``, their time beyond the median step in
        ``marked_extra_wall_s``)."""
        keep = [i for i in range(skip, len(self.wall) - 1) if i not in self.marked]
        if not keep:
            raise ValueError(f"{len(self.wall)} ticks: nothing left to time after {skip} warm-up steps")
        out: dict[str, Any] = {"steps": len(keep)}
        for k, name in enumerate(CLOCKS):
            t = getattr(self, name)
            span = sum(t[i + 1] - t[i] - self.excluded[i][k] for i in keep)
            out[f"{name}_steps_per_s"] = len(keep) / span if span > 0 else float("inf")
        dropped = sorted(i for i in self.marked if skip <= i < len(self.wall) - 1)
        if dropped:
            med = statistics.median(self.wall[i + 1] - self.wall[i] for i in keep)
            out["marked"] = len(dropped)
            out["marked_extra_wall_s"] = [round(self.wall[i + 1] - self.wall[i] - med, 4) for i in dropped]
        return out


class StopLoop(BaseException):
    """Raised inside the loss call once the steps are timed: it ends the training run at once (no
    checkpoint, evaluation or test).  A BaseException, so that the CLI's error contract lets it through."""


def _clone(batch):
    if torch.is_tensor(batch):
        return batch.detach().clone()
    if isinstance(batch, dict):
        return {k: _clone(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        items = [_clone(v) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return copy.deepcopy(batch)


class LoopProbe:
    """What one probed training run records: the clock, the Trainer's arguments (a copy of the model as
    it was before training, the TrainConfig actually used, the loss function, the data set) and, with
    ``capture``, a copy of every batch the loss was given.

    Args:
        steps: iterations to time; the run stops at the loss call after them.
        capture: keep the batches (for :func:`model_alone`).
        overrides: TrainConfig fields to change in the run (a prototype, e.g. ``{"num_workers": 1}``).
        wrap_data: ``(train_set, collate_fn) -> (train_set, collate_fn)`` given to the Trainer instead (a
            prototype of another data side).
    """

    def __init__(self, steps: int, capture: bool = False, overrides: dict | None = None,
                 wrap_data: Callable | None = None):
        self.steps, self.capture, self.overrides = steps, capture, dict(overrides or {})
        self.wrap_data = wrap_data
        self.clock = StepClock()
        self.batches: list = []
        self.model0 = self.config = self.loss_fn = self.train_set = self.collate_fn = None

    def wrap(self, loss_fn: Callable) -> Callable:
        def timed_loss(model, batch):
            self.clock.tick()
            if self.clock.intervals >= self.steps:
                raise StopLoop
            if self.capture:
                with self.clock.excluding():
                    self.batches.append(_clone(batch))
            return loss_fn(model, batch)

        return timed_loss


@contextmanager
def probed(module, probe: LoopProbe):
    """Within the block, ``module.Trainer`` (the name a pipeline's training code calls) is a subclass that
    records its arguments in ``probe`` and times the loss calls."""
    base = module.Trainer

    class ProbedTrainer(base):
        def __init__(self, model, config, train_set, out_dir, loss_fn, *args, **kwargs):
            if probe.overrides:
                config = dataclasses.replace(config, **probe.overrides)
            probe.model0, probe.config, probe.loss_fn = copy.deepcopy(model), config, loss_fn
            collate = kwargs.get("collate_fn", args[1] if len(args) > 1 else None)
            if probe.wrap_data is not None:
                train_set, collate = probe.wrap_data(train_set, collate)
                if len(args) > 1:
                    args = (args[0], collate, *args[2:])
                else:
                    kwargs["collate_fn"] = collate
            probe.train_set, probe.collate_fn = train_set, collate
            super().__init__(model, config, train_set, out_dir, probe.wrap(loss_fn), *args, **kwargs)

        def _evaluate(self):  # validation is not the input pipeline: its step is left out of the rates
            probe.clock.mark()
            return super()._evaluate()

        def _state(self, *a, **k):  # nor is a checkpoint
            probe.clock.mark()
            return super()._state(*a, **k)

    module.Trainer = ProbedTrainer
    try:
        yield probe
    finally:
        module.Trainer = base


def run_probed(module, run: Callable[[], Any], probe: LoopProbe) -> LoopProbe:
    """Run ``run()`` (a pipeline's training) with ``module.Trainer`` probed until ``probe.steps`` are timed."""
    with probed(module, probe):
        try:
            run()
        except StopLoop:
            return probe
    raise RuntimeError(f"the training ended after {probe.clock.intervals} steps, before the {probe.steps} "
                       "to time (give it more data or epochs, or time fewer steps)")


def model_alone(probe: LoopProbe, steps: int, skip: int = 10) -> dict:
    """The model, loss, optimizer, clipping and LR schedule of ``probe``'s run on the batches it captured
    (replayed in the same order), without data loading: steps/s as :meth:`StepClock.rates`.  The probe's
    Trainer has run in this process, so the allocator holds freed memory here too (``hold_freed_memory``)."""
    from torch import nn

    from pipelines.trainer import Trainer, resolve_device

    if not probe.batches:
        raise ValueError("the probe captured no batches (LoopProbe(capture=True))")
    cfg = probe.config
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(probe.model0).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Trainer._lr_lambda(SimpleNamespace(cfg=cfg), 10 ** 6))
    use_amp = cfg.amp and device.type == "cuda"
    clock = StepClock()
    for i in range(steps + 1):
        clock.tick()
        if i == steps:
            break
        batch = probe.batches[i % len(probe.batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = probe.loss_fn(model, batch)
        loss = out[0] if isinstance(out, tuple) else out
        float(loss.detach())  # the Trainer reads the loss every step too
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            float(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        opt.step()
        sched.step()
    return clock.rates(skip)


def ratios(loop: list[dict], alone: list[dict]) -> dict:
    """Medians over rounds of each clock's steps/s, and loop / alone for each clock (the headline, as
    music's); also ``ratio_paired_median_*``: the median over rounds of each round's loop / alone (a round's
    two halves run minutes apart at most, so a load that drifts over the run disturbs it less)."""
    out = {}
    for c in CLOCKS:
        if not all(f"{c}_steps_per_s" in x for x in loop + alone):
            continue  # a section measured before this clock existed
        lo = statistics.median(x[f"{c}_steps_per_s"] for x in loop)
        al = statistics.median(x[f"{c}_steps_per_s"] for x in alone)
        out[f"loop_{c}_steps_per_s"], out[f"alone_{c}_steps_per_s"] = lo, al
        out[f"ratio_loop_vs_model_alone_{c}"] = lo / al
        out[f"ratio_paired_median_{c}"] = statistics.median(
            x[f"{c}_steps_per_s"] / y[f"{c}_steps_per_s"] for x, y in zip(loop, alone))
    out["ratio_loop_vs_model_alone"] = out["ratio_loop_vs_model_alone_cpu"]
    return out


def compare(module, run_train: Callable[[Path], Any], work: Path, steps: int, rounds: int = 2, skip: int = 10,
            overrides: dict | None = None, label: str = "", wrap_data: Callable | None = None) -> dict:
    """Steps/s of the full training loop (``run_train(run_dir)``, which trains through ``module.Trainer``)
    vs the model alone on the batches that loop made; ``rounds`` interleaved pairs, medians.

    Returns ``{"steps_timed", "rounds", "skip", "loop": [...], "model_alone": [...], "num_workers",
    "ratio_loop_vs_model_alone" (CPU time of this process), "ratio_loop_vs_model_alone_{cpu,wall,cpu_all}",
    "loop_*_steps_per_s", "alone_*_steps_per_s", "load_average": [before, after]}`` and the probe of
    the first run under ``"_probe"`` (not JSON: pop it before writing)."""
    if steps <= skip:
        raise ValueError(f"steps ({steps}) must exceed the warm-up steps ({skip})")
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    loop, alone, first = [], [], None
    for r in range(rounds):
        probe = run_probed(module, lambda: run_train(Path(work) / f"loop{r}"),
                           LoopProbe(steps, capture=first is None, overrides=overrides, wrap_data=wrap_data))
        loop.append(probe.clock.rates(skip))
        first = first or probe
        alone.append(model_alone(first, steps, skip))
        print(f"  {label} round {r + 1}/{rounds}: loop {loop[-1]['cpu_steps_per_s']:.3f} steps/s, model alone "
              f"{alone[-1]['cpu_steps_per_s']:.3f} steps/s (CPU time); wall {loop[-1]['wall_steps_per_s']:.3f} vs "
              f"{alone[-1]['wall_steps_per_s']:.3f}", file=sys.stderr, flush=True)
    out = {"steps_timed": loop[0]["steps"], "rounds": rounds, "skip": skip,
           "num_workers": first.config.num_workers, "batch_size": first.config.batch_size,
           **ratios(loop, alone), "loop": loop, "model_alone": alone,
           "load_average": [load0, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
           "_probe": first}
    print(f"  {label}: ratio {out['ratio_loop_vs_model_alone_cpu']:.3f} (CPU), "
          f"{out['ratio_loop_vs_model_alone_wall']:.3f} (wall), {out['ratio_loop_vs_model_alone_cpu_all']:.3f} "
          f"(CPU with workers)", file=sys.stderr, flush=True)
    return out


def data_side(probe: LoopProbe, batches: int, profile_top: int = 0) -> dict:
    """Seconds per batch of the data side alone: ``batches`` batches of ``probe``'s data set made as the
    Trainer's DataLoader makes them (items + collate, in this process), timed; with ``profile_top`` also a
    cProfile of as many further batches (the top functions by own time and by cumulative time)."""
    import cProfile
    import io
    import pstats

    from pipelines.trainer import GlobalBatchSampler

    cfg, ds = probe.config, probe.train_set
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(0)
    sampler = GlobalBatchSampler(len(ds), cfg.batch_size, cfg.seed, 0, cfg.shuffle, cfg.drop_last)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=probe.collate_fn, num_workers=0)
    it = iter(loader)
    next(it)  # warm-up

    def make(k: int) -> int:
        n = 0
        for _ in range(k):
            try:
                next(it)
            except StopIteration:
                break
            n += 1
        return n

    w0, c0 = time.perf_counter(), time.process_time()
    n = make(batches)  # timed without the profiler (it slows Python-heavy code)
    out = {"batches": n, "wall_s_per_batch": (time.perf_counter() - w0) / max(n, 1),
           "cpu_s_per_batch": (time.process_time() - c0) / max(n, 1), "profiled": bool(profile_top)}
    prof = cProfile.Profile() if profile_top else None
    if prof:  # then the same number of further batches under cProfile
        prof.enable()
        make(batches)
        prof.disable()
    if prof:
        total = pstats.Stats(prof).total_tt
        for key, sort in (("top_own_time", "tottime"), ("top_cumulative", "cumulative")):
            rows = []
            st = pstats.Stats(prof, stream=io.StringIO())
            st.sort_stats(sort)
            for func in st.fcn_list[:profile_top]:
                cc, nc, tt, ct, _ = st.stats[func]
                fname, line, name = func
                where = f"{Path(fname).name}:{line}" if line else fname
                rows.append({"function": f"{where}({name})", "calls": nc, "own_s": round(tt, 4),
                             "cumulative_s": round(ct, 4), "own_share": round(tt / total, 3) if total else None})
            out[key] = rows
    return out


def model_step_seconds(probe: LoopProbe, steps: int = 6) -> float:
    """CPU seconds of one model step (loss, backward, clipping, AdamW) on the captured batches."""
    r = model_alone(probe, steps + 1, skip=1)
    return 1.0 / r["cpu_steps_per_s"]


# --- results files --------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dig(d: dict, keys: tuple[str, ...]):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def merge_json(path: Path, updates: dict) -> dict:
    """Write ``updates`` into the JSON object in ``path`` (created when absent): each of its top-level keys
    replaced whole (a section is one run's figures, never mixed with an older run's), every other key
    kept (and the file's indentation); atomically."""
    path = Path(path)

    def merge(a: dict, b: dict) -> dict:
        a.update(b)
        return a

    text = path.read_text() if path.is_file() else ""
    old = json.loads(text) if text else {}
    lines = text.splitlines()
    indent = len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 and lines[1].startswith(" ") else 1
    new = merge(old, updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(new, indent=indent))
    os.replace(tmp, path)
    return new


def hand_recorded(path: Path, key: str, names: tuple[str, ...]) -> dict:
    """The entries ``names`` of section ``key`` in the results file ``path``: figures recorded by hand, once
    (before a change, under another setting), that no rerun makes and every rerun's section keeps ({} when
    the file or the section is absent or unreadable)."""
    try:
        old = json.loads(Path(path).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: old[k] for k in names if k in old} if isinstance(old, dict) else {}


def section(result: dict, config: str, machine: dict, **extra) -> dict:
    """The JSON section of one job: the measured figures (probe dropped), what was trained, when, where."""
    r = {k: v for k, v in result.items() if not k.startswith("_")}
    return {"config": config, "date": _now(), "machine": machine, "goal": GOAL, **r, **extra}


def _date_of(path: Path, sec: dict) -> str | None:
    if sec.get("date"):
        return sec["date"]
    try:  # a section written before dates were recorded: the commit that last changed the file
        d = subprocess.run(["git", "log", "-1", "--format=%cI", "--", path.name], cwd=path.parent,
                           capture_output=True, text=True, timeout=10).stdout.strip()
        if d:
            return d + " (commit date of the results file)"
    except (OSError, subprocess.SubprocessError):
        pass
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ (file time)")


def write_summary(results: Path = RESULTS, out: Path | None = None) -> dict:
    """``input-pipeline-cpu.json``: every job's loop-vs-model-alone ratios side by side, copied from the
    jobs' own results files (with the date each was measured)."""
    results = Path(results)
    rows = {}
    for name, (fname, keys) in SOURCES.items():
        path = results / fname
        if not path.is_file():
            continue
        sec = _dig(json.loads(path.read_text()), keys)
        if not isinstance(sec, dict) or "ratio_loop_vs_model_alone" not in sec:
            continue
        paired = ratios(sec["loop"], sec["model_alone"]) if sec.get("loop") and sec.get("model_alone") else {}
        row = {"ratio_cpu": sec.get("ratio_loop_vs_model_alone_cpu", sec["ratio_loop_vs_model_alone"]),
               "ratio_wall": sec.get("ratio_loop_vs_model_alone_wall"),
               # with data workers the training process's CPU time hides the waiting: judge by wall time then
               "meets_goal": (sec.get("ratio_loop_vs_model_alone_wall") if sec.get("num_workers")
                              else sec["ratio_loop_vs_model_alone"]) >= GOAL,
               "judged_by": "wall" if sec.get("num_workers") else "cpu",
               "ratio_cpu_paired_median": paired.get("ratio_paired_median_cpu"),
               "ratio_wall_paired_median": paired.get("ratio_paired_median_wall"),
               "config": sec.get("config"), "steps_timed": sec.get("steps_timed"), "rounds": sec.get("rounds"),
               "num_workers": sec.get("num_workers", 0), "measured": _date_of(path, sec),
               "source": f"{fname}: {'.'.join(keys)}"}
        mach = sec.get("machine") or json.loads(path.read_text()).get("machine")
        if isinstance(mach, dict):
            row["load_average"] = mach.get("load_average")
            row["threads"] = mach.get("threads")
        side = sec.get("data_side")
        if isinstance(side, dict) and "cpu_s_per_batch" in side:
            row["data_side"] = {k: side[k] for k in ("cpu_s_per_batch", "model_step_cpu_s", "expected_ratio_if_serial")
                                if k in side}
        protos = dict(sec.get("worker_prototypes") or {})
        for key in ("lean_prototype", "batched_prototype"):
            if isinstance(sec.get(key), dict) and "ratio_loop_vs_model_alone" in sec[key]:
                protos[key] = sec[key]
        if isinstance(sec.get("augment_robust"), dict) and "ratio_loop_vs_model_alone" in sec["augment_robust"]:
            v = sec["augment_robust"]
            row["variant_augment_robust"] = {**{c: v.get(f"ratio_loop_vs_model_alone_{c}") for c in CLOCKS},
                                             "what": v.get("what")}
        if protos:
            row["prototypes"] = {k: {c: v.get(f"ratio_loop_vs_model_alone_{c}") for c in CLOCKS} for k, v in protos.items()}
        if sec.get("before"):
            row["before"] = sec["before"]
        rows[name] = row
    doc = {"what": "issue #13 §4: steps/s of each job's default training loop vs the same model, loss and "
                   "optimizer on pre-made tensors of the same shapes (ratio; goal >= 0.9). ratio_cpu: CPU time of "
                   "the training process, medians over rounds (least disturbed by a shared machine; the headline); "
                   "ratio_wall: wall time; *_paired_median: the median of each round's own ratio. data_side: "
                   "seconds per batch of the data side alone next to the model step's, and the ratio they predict "
                   "when the two run one after the other. prototypes: the same loop with a proposed change (kws). "
                   "Method: benchmarks/_loop.py; each job's figures and machine load in its own results file.",
           "goal": GOAL, "jobs": rows}
    out = Path(out) if out else results / SUMMARY.name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    return doc


if __name__ == "__main__":  # python benchmarks/_loop.py: rebuild the summary from the jobs' results files
    print(json.dumps(write_summary(), indent=1))
