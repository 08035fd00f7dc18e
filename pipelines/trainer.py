"""The one training loop every pipeline uses.

AdamW with warm-up + cosine (or constant) learning rate, gradient-norm clipping on by default,
bf16 autocast on CUDA, seeded data order, checkpoints (``last.pt`` every N steps and at each epoch
end, ``best.pt`` on a validation metric) written atomically, exact resume, tqdm progress,
``metrics.jsonl`` and ``loss.png``, and DistributedDataParallel when launched under ``torchrun``.

Every checkpoint is a bundle (:mod:`pipelines.bundle`): the pipeline's meta part, the training config,
validation metrics, versions, weights and the resume state under ``"trainer"``.  A non-finite loss stops
training (:class:`NonFiniteLoss`) and no non-finite weights are ever saved; Ctrl-C saves ``last.pt`` at
the end of the current step and raises :class:`TrainingInterrupted`; resuming with a different config
raises :class:`ConfigMismatch`.
"""
from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from . import bundle as _bundle
from .checkpoint import load_checkpoint
from .plots import plot_curves
from encoders.config import DictConfig


@dataclass
class TrainConfig(DictConfig):
    """Training hyper-parameters (stored in every bundle as ``train``)."""

    epochs: int = 10
    batch_size: int = 32  # global batch: split evenly across DDP ranks
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0  # max global gradient norm; None turns clipping off
    schedule: str = "cosine"  # "cosine" (to 5% of lr) or "constant", after linear warm-up
    warmup_steps: int = 0
    max_steps: int | None = None  # cap on optimizer steps (the schedule is planned for it)
    amp: bool = True  # bf16 autocast, CUDA only
    seed: int = 0
    metric: str = "loss"  # key of evaluate()'s dict that selects best.pt
    mode: str = "min"  # "min" or "max" for that metric
    target: float | None = None  # stop early once the metric reaches this value
    eval_every: int = 0  # steps between evaluations; 0: at each epoch end
    checkpoint_every: int = 0  # steps between last.pt writes; 0: at each epoch end
    log_every: int = 10
    num_workers: int = 0
    # niceness of the data workers (Unix; > 0: the OS gives them the CPU the model's threads leave idle, so
    # they fill the model's gaps instead of taking turns with it)
    worker_nice: int = 0
    shuffle: bool = True
    drop_last: bool = False
    progress: bool = True
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...


# settings that change how a run is watched or where it runs, not what it learns: a resumed run may differ
RUNTIME_KEYS = frozenset({"progress", "device", "num_workers", "worker_nice", "log_every", "checkpoint_every",
                          "threads", "workers", "amp"})


def _renice(increment: int, worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: lower this worker's priority by ``increment`` (where the OS can)."""
    try:
        os.nice(increment)
    except (AttributeError, OSError):
        pass


# glibc mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_memory_held = False


def hold_freed_memory(mmap_threshold: int = 512 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let this process keep the memory it frees and reuse it, instead of handing it back to the OS and
    faulting it in again at the next step (glibc; a no-op returning False elsewhere, or with the
    environment variable ``LSTM_MEDIA_MALLOC=system``).  By default glibc gives blocks above 128 kB-32 MB
    their own mapping, unmapped when freed, and trims the heap's free top: a training step that frees its
    activations and allocates them again paid 7,000-17,000 page faults (video caption, 2 threads, a 2-core
    VM); with this held the model alone paid none and made 11.0-11.6 steps/s instead of 7.8-10.4, the whole
    loop 9.9-10.3 instead of 7.4-8.3 (issue #13 §4).  Blocks up to ``mmap_threshold``
    come from the heap and up to ``trim_threshold`` of freed heap stays with the process (its memory
    stays near its peak).  Process-wide and lasting (data workers forked later inherit it); the
    :class:`Trainer` calls it when it starts training.  Returns whether it is in effect."""
    global _memory_held
    if _memory_held:
        return True
    if os.environ.get("LSTM_MEDIA_MALLOC", "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl and others accept the call and do nothing (returning 0): then nothing is claimed
    _memory_held = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    return _memory_held


def default_workers(workers: int | None = None) -> int:
    """Data-loading processes for a training run: ``workers`` when given, else one when this process may
    use two threads or more (the augmentation then runs beside the model instead of between its steps),
    else none.  Each pipeline decides how the model shares the cores with it (kws gives it a core of its
    own; video makes its light batches in the training process: ``pipelines.video.train.video_workers``)."""
    if workers is not None:
        return max(int(workers), 0)
    return 1 if torch.get_num_threads() >= 2 else 0


class NonFiniteLoss(FloatingPointError):
    """The loss (or the gradient norm) became NaN or inf; nothing non-finite was saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: ``last.pt`` holds the state after the last completed step."""

    def __init__(self, path: Path, step: int):
        self.path, self.step = path, step
        super().__init__(f"interrupted at step {step}; {path} saved")


class ConfigMismatch(ValueError):
    """``last.pt`` in the run folder was trained with other settings than the ones given now."""


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two (nested) config dicts, runtime keys aside."""
    out = []
    for k in sorted(set(old) | set(new)):
        if k in RUNTIME_KEYS or k not in old:  # a setting newer than the checkpoint: it could not differ
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif _plain(a) != _plain(b):
            out.append(f"{prefix}{k} ({a!r} -> {b!r})")
    return out


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device) -> Any:
    """Move every tensor inside (nested) tuples, lists and dicts to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class GlobalBatchSampler(Sampler[list[int]]):
    """Seeded batches of a global batch size; each DDP rank takes its share of every global batch,
    so that N ranks see exactly the samples one process would.  ``start`` skips batches already done
    (resume) without loading them."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                 drop_last: bool = False, rank: int = 0, world: int = 1, start: int = 0):
        self.n, self.batch_size, self.rank, self.world, self.start = n, batch_size, rank, world, start
        if shuffle:
            g = torch.Generator().manual_seed(seed * 100003 + epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        self.batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if drop_last and self.batches and len(self.batches[-1]) < batch_size:
            self.batches.pop()
        if world > 1:  # every rank must run the same number of steps
            self.batches = [b for b in self.batches if len(b) >= world]

    def __len__(self) -> int:
        return max(len(self.batches) - self.start, 0)

    def __iter__(self):
        for b in self.batches[self.start:]:
            yield b[self.rank::self.world]


class _PassSampler(Sampler[list]):
    """The batch sampler of a DataLoader that lives for the whole run: :meth:`start` gives it each pass's
    :class:`GlobalBatchSampler`.  With ``tag``, every index goes out as ``(epoch, index)``, so a data worker
    that outlives an epoch (``persistent_workers``) can set its own copy of the data set to that epoch."""

    def __init__(self, tag: bool):
        self.tag, self.inner, self.epoch = tag, None, 0

    def start(self, inner: GlobalBatchSampler, epoch: int) -> None:
        self.inner, self.epoch = inner, epoch

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        for b in self.inner:
            yield [(self.epoch, i) for i in b] if self.tag else b


class _EpochKeyed(Dataset):
    """``train_set`` read through ``(epoch, index)`` keys (see :class:`_PassSampler`): calls its
    ``set_epoch`` when a key names another epoch than the one it is at."""

    def __init__(self, train_set):
        self.ds, self.epoch = train_set, None

    def _at(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.ds.set_epoch(epoch)
            self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        self._at(key[0])
        return self.ds[key[1]]

    def __getitems__(self, keys: list) -> list:
        self._at(keys[0][0])
        idx = [i for _, i in keys]
        return self.ds.__getitems__(idx) if hasattr(self.ds, "__getitems__") else [self.ds[i] for i in idx]


class Trainer:
    """Train ``model`` with ``loss_fn`` on ``train_set``; evaluate with ``evaluate``; checkpoint to ``out_dir``.

    Args:
        model: any module.  It is moved to the device (and wrapped in DDP under torchrun).
        config: :class:`TrainConfig`.
        train_set: a map-style Dataset.  If it has ``set_epoch(epoch)`` that is called before each
            epoch (for seeded per-epoch augmentation), in the data workers too (they stay for the run).
        out_dir: where ``last.pt``, ``best.pt``, ``metrics.jsonl`` and ``loss.png`` go.
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``(loss, {name: float})``; the batch is already on
            the device.  Call ``model(...)`` (its forward) so that DDP sees the computation.
        evaluate: ``evaluate(model) -> {name: float}`` on validation data, called on rank 0 with the bare
            model in eval mode; ``config.metric`` picks best.pt.  None: best.pt = last.
        collate_fn: for the DataLoader.
        bundle: the bundle's meta part (:func:`pipelines.bundle.make_meta`): kind, registry name and
            config of the model, front end, labels/vocabulary, task config, data, extras — everything
            needed to use the model later.  Saved in every checkpoint.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train_set: Dataset, out_dir: str | Path,
                 loss_fn: Callable, evaluate: Callable[[nn.Module], dict] | None = None,
                 collate_fn: Callable | None = None, bundle: dict | None = None):
        self.model = model
        self.cfg = config
        self.train_set = train_set
        self.out_dir = Path(out_dir)
        self.loss_fn = loss_fn
        self.evaluate_fn = evaluate
        self.collate_fn = collate_fn
        if bundle is None:
            raise TypeError("Trainer needs bundle=pipelines.bundle.make_meta(...)")
        self.meta = {k: bundle.get(k) for k in _bundle.META_KEYS}
        self.carry: dict = {}  # extra resume state a loss_fn keeps (e.g. carried TBPTT state); see carry_state
        self.history: list[dict] = []
        if config.mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")

    # --- distributed ----------------------------------------------------------------------
    def _setup_distributed(self):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and self.cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.is_main = self.rank == 0
        if self.world > 1 and self.cfg.batch_size % self.world:
            raise ValueError(f"batch_size {self.cfg.batch_size} is not divisible by {self.world} ranks")

    # --- helpers ---------------------------------------------------------------------------
    def _steps_per_epoch(self) -> int:
        return len(GlobalBatchSampler(len(self.train_set), self.cfg.batch_size, self.cfg.seed, 0,
                                      False, self.cfg.drop_last, 0, self.world))

    def _lr_lambda(self, total: int):
        warm, sched = self.cfg.warmup_steps, self.cfg.schedule

        def f(step: int) -> float:
            if warm and step < warm:
                return (step + 1) / warm
            if sched == "constant":
                return 1.0
            p = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))

        return f

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.cfg.mode == "min" else value > best

    def _log(self, row: dict) -> None:
        self.history.append(row)
        if self.is_main:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def _state(self, step, epoch, step_in_epoch, best, metrics) -> dict:
        trainer = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": step, "epoch": epoch, "step_in_epoch": step_in_epoch,
            "best_metric": best,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history,
            "carry": self.carry_state() if callable(getattr(self, "carry_state", None)) else {},
        }
        return _bundle.complete(self.meta, self.bare.state_dict(), train=self.cfg.to_dict(),
                                metrics={"val": metrics}, trainer=trainer)

    def _check_resume(self, ck: dict, path: Path) -> None:
        """Stop with one line when ``path`` was trained with other settings than this run's."""
        _bundle.check(ck, path)
        if "trainer" not in ck:
            raise _bundle.BundleError(f"{path}: holds no training state (a shipped or exported model); "
                                      "use --fresh or another --out")
        old = {"model": ck["model"], "model_config": ck["model_config"], "task": ck["task"], "train": ck["train"],
               "kind": ck["kind"]}
        new = {"model": self.meta["model"], "model_config": self.meta["model_config"], "task": self.meta["task"],
               "train": self.cfg.to_dict(), "kind": self.meta["kind"]}
        diff = config_diff(old, new)
        if diff:
            raise ConfigMismatch(f"{path} was trained with other settings: {'; '.join(diff[:6])}"
                                 f"{' ...' if len(diff) > 6 else ''}; rerun with --fresh to start over "
                                 "(or choose another --out)")

    def _evaluate(self) -> dict:
        if self.evaluate_fn is None or not self.is_main:
            return {}
        self.bare.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.evaluate_fn(self.bare).items()
                       if isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1)}
        self.bare.train()
        return metrics

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = True, stop_after: int | None = None) -> dict:
        """Train; returns ``{"step", "epoch", "best_metric", "metrics", "seconds", "out_dir"}``.

        Args:
            resume: continue from ``out_dir/last.pt`` when it exists.
            stop_after: stop (with a checkpoint) once this many steps are done, as if interrupted;
                the schedule is unchanged, so a later ``fit()`` continues the same run.
        """
        cfg = self.cfg
        self._setup_distributed()
        hold_freed_memory()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        device = resolve_device(cfg.device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        seed_everything(cfg.seed)
        self.bare = self.model.to(device)
        model = self.bare
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(
                self.bare, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self.bare.parameters(), lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        spe = self._steps_per_epoch()
        if spe == 0:
            raise ValueError("the training set is empty (or smaller than one batch with drop_last)")
        total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * spe)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda(total))
        step = epoch = step_in_epoch = 0
        best = None
        metrics: dict = {}
        last = self.out_dir / "last.pt"
        if resume and last.exists():
            ck = load_checkpoint(last, map_location=device)
            self._check_resume(ck, last)
            tr = ck["trainer"]
            self.bare.load_state_dict(ck["state_dict"])
            self.optimizer.load_state_dict(tr["optimizer"])
            self.scheduler.load_state_dict(tr["scheduler"])
            step, epoch, step_in_epoch = tr["step"], tr["epoch"], tr["step_in_epoch"]
            best, metrics = tr["best_metric"], ck["metrics"].get("val", {})
            self.history = list(tr["history"])
            torch.set_rng_state(tr["rng"].cpu())
            if torch.cuda.is_available() and tr["cuda_rng"]:
                torch.cuda.set_rng_state_all([s.cpu() for s in tr["cuda_rng"]])
            if tr.get("carry") and callable(getattr(self, "load_carry", None)):
                self.load_carry(tr["carry"])
            if self.is_main:
                print(f"resuming from {last} at epoch {epoch}, step {step}", file=sys.stderr, flush=True)
            if self.is_main:  # the log restarts from what the checkpoint knew
                with open(self.out_dir / "metrics.jsonl", "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in self.history)
        elif self.is_main:
            (self.out_dir / "metrics.jsonl").write_text("")
        use_amp = cfg.amp and device.type == "cuda"
        t0 = time.time()
        self.bare.train()
        running, running_n, extra_logs = 0.0, 0, {}

        def checkpoint(is_best: bool = False):
            if not self.is_main:
                return
            state = self._state(step, epoch, step_in_epoch, best, metrics)
            _bundle.save(state, last)  # refuses non-finite weights
            if is_best or self.evaluate_fn is None:
                _bundle.save(state, self.out_dir / "best.pt")

        def run_eval():
            nonlocal best, metrics
            m = self._evaluate()
            if not m:
                return False
            metrics = m
            self._log({"step": step, "epoch": epoch, **{f"val_{k}": v for k, v in m.items()}})
            if cfg.metric not in m:
                raise KeyError(f"evaluate() returned {sorted(m)}, not the selection metric {cfg.metric!r}")
            if math.isfinite(m[cfg.metric]) and self._better(m[cfg.metric], best):
                best = m[cfg.metric]
                return True
            return False

        def share_best():
            """Rank 0 evaluates; every rank must know ``best`` to stop together (early-stop target)."""
            nonlocal best
            if self.world > 1 and cfg.target is not None:
                t = torch.tensor([float("nan") if best is None else float(best)], dtype=torch.float64,
                                 device=device if dist.get_backend() == "nccl" else "cpu")
                dist.broadcast(t, 0)
                best = None if math.isnan(float(t)) else float(t)

        def reached() -> bool:
            if cfg.target is None or best is None:
                return False
            return best <= cfg.target if cfg.mode == "min" else best >= cfg.target

        def done() -> bool:
            return (epoch >= cfg.epochs or (cfg.max_steps is not None and step >= cfg.max_steps)
                    or (stop_after is not None and step >= stop_after) or reached())

        stop = {"sigint": False}
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            def on_sigint(signum, frame):  # finish the step, save, then stop: the resume stays exact
                if stop["sigint"]:  # a second Ctrl-C does not wait
                    raise KeyboardInterrupt
                stop["sigint"] = True

            previous_handler = signal.signal(signal.SIGINT, on_sigint)
        # one DataLoader for the run: its workers (if any) stay from epoch to epoch instead of starting over
        # (a fork of a process that holds the decoded data, then a first batch: ~0.5 s the model waited at
        # every epoch of kws train); a private generator keeps it off the global RNG (exact resume)
        epoch_aware = hasattr(self.train_set, "set_epoch")
        passes = _PassSampler(tag=epoch_aware and cfg.num_workers > 0)
        loader = DataLoader(_EpochKeyed(self.train_set) if passes.tag else self.train_set, batch_sampler=passes,
                            collate_fn=self.collate_fn, num_workers=cfg.num_workers,
                            persistent_workers=cfg.num_workers > 0, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed),
                            worker_init_fn=functools.partial(_renice, cfg.worker_nice)
                            if cfg.num_workers and cfg.worker_nice else None)
        try:
            while not done():
                if epoch_aware:
                    self.train_set.set_epoch(epoch)
                passes.start(GlobalBatchSampler(len(self.train_set), cfg.batch_size, cfg.seed, epoch, cfg.shuffle,
                                                cfg.drop_last, self.rank, self.world, start=step_in_epoch), epoch)
                bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           disable=not (cfg.progress and self.is_main), leave=False, dynamic_ncols=True)
                for batch in bar:
                    batch = to_device(batch, device)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        out = self.loss_fn(model, batch)
                    loss, logs = (out if isinstance(out, tuple) else (out, {}))
                    loss_value = float(loss.detach())
                    if not math.isfinite(loss_value):
                        self._non_finite(step + 1, f"loss {loss_value}")
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        gnorm = float(nn.utils.clip_grad_norm_(self.bare.parameters(), cfg.grad_clip))
                        if not math.isfinite(gnorm):
                            self._non_finite(step + 1, f"gradient norm {gnorm} (loss {loss_value:.4g})")
                        logs = {**logs, "grad_norm": gnorm}
                    self.optimizer.step()
                    self.scheduler.step()
                    step += 1
                    step_in_epoch += 1
                    running += loss_value
                    running_n += 1
                    for k, v in logs.items():
                        extra_logs[k] = extra_logs.get(k, 0.0) + float(v)
                    if step % cfg.log_every == 0 or step_in_epoch == spe:
                        row = {"step": step, "epoch": epoch, "train_loss": running / running_n,
                               "lr": self.scheduler.get_last_lr()[0], "time": round(time.time() - t0, 3)}
                        row.update({k: v / running_n for k, v in extra_logs.items()})
                        self._log(row)
                        bar.set_postfix(loss=f"{running / running_n:.4f}")
                        running, running_n, extra_logs = 0.0, 0, {}
                    is_best = bool(cfg.eval_every and step % cfg.eval_every == 0 and run_eval())
                    if cfg.eval_every and step % cfg.eval_every == 0:
                        share_best()
                    if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or is_best:
                        checkpoint(is_best)
                    if stop["sigint"]:
                        if step_in_epoch >= spe:
                            epoch, step_in_epoch = epoch + 1, 0
                        checkpoint(False)
                        raise TrainingInterrupted(last, step)
                    if done():
                        break
                bar.close()
                if step_in_epoch >= spe:  # the epoch is complete
                    epoch += 1
                    step_in_epoch = 0
                    is_best = bool(not cfg.eval_every and run_eval())
                    if not cfg.eval_every:
                        share_best()
                    checkpoint(is_best)
                else:  # interrupted (stop_after / max_steps) inside an epoch
                    checkpoint(False)
        finally:
            workers = getattr(loader, "_iterator", None)  # they end here, not when the garbage collector
            if workers is not None and hasattr(workers, "_shutdown_workers"):  # gets to the loader
                workers._shutdown_workers()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        interrupted = stop_after is not None and step >= stop_after and not (
            epoch >= cfg.epochs or (cfg.max_steps is not None and step >= cfg.max_steps) or reached())
        if self.evaluate_fn is not None and not metrics and not interrupted:
            checkpoint(run_eval())
        if self.is_main:
            self._plot()
        seconds = time.time() - t0
        if dist.is_initialized():
            dist.barrier()
        return {"step": step, "epoch": epoch, "best_metric": best, "metrics": metrics,
                "seconds": seconds, "out_dir": str(self.out_dir), "reached_target": reached()}

    def _non_finite(self, step: int, what: str) -> None:
        lr = self.scheduler.get_last_lr()[0]
        last = self.out_dir / "last.pt"
        kept = f"{last} keeps the last good state" if last.exists() else "nothing was saved"
        raise NonFiniteLoss(f"training stopped at step {step}: {what} at learning rate {lr:.3g}; {kept}; "
                            "lower --lr (or check the data) and rerun with --fresh")

    def _plot(self) -> None:
        tr = [(r["step"], r["train_loss"]) for r in self.history if "train_loss" in r]
        curves = {"train loss": ([s for s, _ in tr], [v for _, v in tr])}
        va = [(r["step"], r["val_loss"]) for r in self.history if "val_loss" in r]
        if va:
            curves["validation loss"] = ([s for s, _ in va], [v for _, v in va])
        plot_curves(curves, self.out_dir / "loss.png", title=self.out_dir.name)


__all__ = ["TrainConfig", "Trainer", "GlobalBatchSampler", "seed_everything", "to_device", "resolve_device",
           "NonFiniteLoss", "TrainingInterrupted", "ConfigMismatch", "config_diff", "RUNTIME_KEYS",
           "hold_freed_memory"]
