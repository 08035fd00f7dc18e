"""The bundle: one checkpoint schema for every job, one loader for every command.

A bundle is a plain dict (tensors and Python values only, read with ``weights_only=True``)::

    {"format": "lstm-media-bundle", "format_version": 1,
     "kind": "kws" | "video-classify" | "video-caption" | "video-predict" | "music" | "long-memory",
     "model": registry name, "model_config": keyword arguments of the registered builder,
     "front_end": front-end config (features / frames / MIDI vocabulary config),
     "labels": class names or None, "vocab": vocabulary or None,
     "task": the pipeline's own config (what ``train`` was asked for),
     "train": TrainConfig dict, "metrics": {"val": {...}, "test": {...}, ...},
     "data": description of the training data, "extras": pipeline data the model needs at use time,
     "versions": {"lstm_media", "torch", "python"}, "state_dict": weights,
     "trainer": resume state (optimizer, scheduler, step, rng, history) — absent in shipped bundles}

``make_meta`` builds the descriptive part (the trainer adds ``train``, ``metrics``, ``versions``,
``state_dict`` and ``trainer``); :func:`load` turns any bundle, a file or a shipped model name, into
``(model, bundle)``.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Iterable

import torch

from encoders.io import atomic_save

FORMAT = "lstm-media-bundle"
FORMAT_VERSION = 1
KINDS = ("kws", "video-classify", "video-caption", "video-predict", "music", "long-memory")
META_KEYS = ("kind", "model", "model_config", "front_end", "labels", "vocab", "task", "data", "extras")
SHIPPED_DIR = Path(__file__).resolve().parent / "models"


class BundleError(ValueError):
    """A checkpoint that cannot serve: unreadable, not a bundle, or of the wrong kind.  One line."""


def versions() -> dict:
    try:
        from importlib.metadata import version

        ours = version("lstm-media")
    except Exception:  # noqa: BLE001 - running from a checkout that was never installed
        ours = "unknown"
    return {"lstm_media": ours, "torch": str(torch.__version__), "python": platform.python_version()}


def make_meta(kind: str, model: str, model_config: dict, *, front_end: dict | None = None,
              labels: list[str] | None = None, vocab=None, task: dict | None = None, data: dict | None = None,
              extras: dict | None = None) -> dict:
    """The descriptive part of a bundle (everything but weights, training state and metrics)."""
    if kind not in KINDS:
        raise ValueError(f"unknown bundle kind {kind!r}; kinds: {', '.join(KINDS)}")
    return {"kind": kind, "model": model, "model_config": dict(model_config), "front_end": dict(front_end or {}),
            "labels": list(labels) if labels is not None else None, "vocab": vocab, "task": dict(task or {}),
            "data": dict(data or {}), "extras": dict(extras or {})}


def complete(meta: dict, state_dict: dict, *, train: dict | None = None, metrics: dict | None = None,
             trainer: dict | None = None) -> dict:
    """A full bundle from its meta part, weights and (optionally) training config, metrics and state."""
    b = {"format": FORMAT, "format_version": FORMAT_VERSION, **{k: meta.get(k) for k in META_KEYS},
         "train": dict(train or {}), "metrics": dict(metrics or {}), "versions": versions(),
         "state_dict": state_dict}
    if trainer is not None:
        b["trainer"] = trainer
    return b


def save(bundle: dict, path: str | Path) -> Path:
    """Write a bundle atomically after checking it (no non-finite weights ever reach the disk)."""
    check(bundle, path)
    bad = non_finite(bundle["state_dict"])
    if bad:
        raise FloatingPointError(f"refusing to save {path}: non-finite weights in {', '.join(bad[:3])}")
    return atomic_save(bundle, path)


def non_finite(state_dict: dict) -> list[str]:
    """Names of floating-point tensors that hold NaN or inf."""
    return [k for k, v in state_dict.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check(bundle, source: str | Path = "bundle") -> dict:
    """Raise :class:`BundleError` (one line naming ``source``) unless ``bundle`` follows the schema."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        what = type(bundle).__name__ if not isinstance(bundle, dict) else "a dict without the bundle format"
        raise BundleError(f"{source}: not an lstm-media checkpoint (it holds {what})")
    if bundle.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{source}: bundle format version {bundle.get('format_version')!r}; this lstm-media "
                          f"reads version {FORMAT_VERSION}")
    missing = [k for k in (*META_KEYS, "state_dict") if k not in bundle]
    if missing:
        raise BundleError(f"{source}: bundle lacks {', '.join(missing)}")
    if bundle["kind"] not in KINDS:
        raise BundleError(f"{source}: unknown kind {bundle['kind']!r}")
    return bundle


# --- shipped models ------------------------------------------------------------------------------
def shipped_path(name: str) -> Path | None:
    p = SHIPPED_DIR / f"{name}.pt"
    return p if p.is_file() else None


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))


def resolve(spec: str | Path | None, kind: str | Iterable[str] | None = None, default: str | None = None) -> Path:
    """A file path, or the shipped model named ``spec`` (or ``default`` when ``spec`` is None)."""
    if spec is None:
        if default is None or shipped_path(default) is None:
            raise BundleError(f"no --checkpoint given and no shipped model {default!r} is installed; "
                              f"train one or pass --checkpoint")
        return shipped_path(default)
    p = Path(spec)
    if p.is_file():
        return p
    if shipped_path(str(spec)) is not None and p.suffix != ".pt" and "/" not in str(spec):
        return shipped_path(str(spec))
    if p.is_dir():
        raise BundleError(f"{p}: is a folder, not a checkpoint (did you mean {p / 'best.pt'}?)")
    names = ", ".join(shipped_names()) or "none installed"
    raise BundleError(f"{spec}: no such checkpoint file or shipped model (shipped: {names})")


def read(spec: str | Path | None, kind: str | Iterable[str] | None = None, default: str | None = None,
         command: str | None = None, map_location="cpu") -> tuple[dict, Path]:
    """Read and check a bundle; ``kind`` (one or several) is what the command needs."""
    from .checkpoint import load_checkpoint

    path = resolve(spec, kind, default)
    b = check(load_checkpoint(path, map_location=map_location), path)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if b["kind"] not in kinds:
            needs = " or ".join(kinds)
            cmd = f"'{command}' needs" if command else "this needs"
            raise BundleError(f"{path} is a {b['kind']} checkpoint; {cmd} a {needs} checkpoint")
    return b, path


def build(bundle: dict) -> torch.nn.Module:
    """The bundle's model, built through the registry, weights loaded (fp16 storage widened), eval mode."""
    from .registry import get_model

    model = get_model(bundle["model"], **bundle["model_config"])
    own = model.state_dict()
    sd = {k: (v.to(own[k].dtype) if k in own and torch.is_tensor(v) and v.is_floating_point() else v)
          for k, v in bundle["state_dict"].items()}
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise BundleError(f"weights do not fit model {bundle['model']!r}: {first}") from None
    return model.eval()


def load(spec: str | Path | None, kind: str | Iterable[str] | None = None, *, device: str | torch.device = "cpu",
         default: str | None = None, command: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Any bundle -> ``(model on device in eval mode, bundle)``.  ``spec``: a path, a shipped model name,
    or None for ``default`` (the job's shipped model).  The bundle gains ``"path"``."""
    b, path = read(spec, kind, default, command)
    try:
        model = build(b)
    except BundleError as e:
        raise BundleError(f"{path}: {e}") from None
    b["path"] = str(path)
    return model.to(device), b


def for_shipping(bundle: dict, half: bool = True) -> dict:
    """A copy without resume state, floating weights stored as fp16 (widened again by :func:`build`)."""
    out = {k: v for k, v in bundle.items() if k not in ("trainer", "path")}
    if half:
        out["state_dict"] = {k: (v.half() if torch.is_tensor(v) and v.dtype == torch.float32 else v)
                             for k, v in bundle["state_dict"].items()}
    return out


def describe(bundle: dict, path: str | Path | None = None) -> dict:
    """What ``lstm-media info`` shows: everything but weights and resume state, plus sizes."""
    sd = bundle["state_dict"]
    params = sum(v.numel() for v in sd.values() if torch.is_tensor(v) and v.is_floating_point())
    out = {k: bundle.get(k) for k in ("kind", "model", "model_config", "front_end", "labels", "task", "train",
                                      "metrics", "data", "versions", "format_version")}
    vocab = bundle.get("vocab")
    out["vocab_size"] = len(vocab) if isinstance(vocab, (list, tuple)) else None
    out["vocab"] = vocab if not isinstance(vocab, (list, tuple)) or len(vocab) <= 64 else list(vocab[:64]) + ["..."]
    out["parameters"] = params
    out["resumable"] = "trainer" in bundle
    if path is not None:
        out["path"] = str(path)
        out["size_bytes"] = Path(path).stat().st_size
    return out


__all__ = ["BundleError", "FORMAT", "FORMAT_VERSION", "KINDS", "make_meta", "complete", "save", "check", "read",
           "build", "load", "resolve", "shipped_names", "shipped_path", "for_shipping", "describe", "non_finite",
           "versions"]
