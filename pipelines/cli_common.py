"""What every ``lstm-media`` command shares: the error contract, device and thread flags, checked
numeric flags, and the rule that outputs never destroy inputs.

Error contract: an expected failure (bad file, bad checkpoint, wrong kind, permission, full disk, bad
layout, bad settings) prints one ``error: ...`` line and exits 1; Ctrl-C exits 130 (training saves
``last.pt`` first and says how to resume); anything unexpected prints one line and a hint to rerun with
``--debug``, which shows the traceback instead.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, Iterable


class UserError(Exception):
    """An expected failure: ``str(err)`` is the one line the user sees after ``error:``."""


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# --- checked numeric flags (argparse types: a bad value is a usage error, exit 2) -------------------
def _number(kind, lo=None, hi=None, lo_open=False, hi_open=False, what=""):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        bad = ((lo is not None and (v <= lo if lo_open else v < lo)) or
               (hi is not None and (v >= hi if hi_open else v > hi)))
        if bad:
            raise argparse.ArgumentTypeError(f"{text} is out of range ({what})")
        return v

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, what="must be >= 1")
nonneg_int = _number(int, 0, what="must be >= 0")
positive_float = _number(float, 0, lo_open=True, what="must be > 0")
nonneg_float = _number(float, 0, what="must be >= 0")
probability = _number(float, 0, 1, lo_open=True, what="must be in (0, 1]")
unit_interval = _number(float, 0, 1, what="must be in [0, 1]")
any_float = _number(float, what="")


def bounded_float(hi: float, lo: float = 0.0, lo_open: bool = True):
    return _number(float, lo, hi, lo_open=lo_open, what=f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]")


def bounded_int(lo: int, hi: int):
    return _number(int, lo, hi, what=f"must be in [{lo}, {hi}]")


def device_name(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use auto, cpu, cuda or cuda:N")


# --- runtime flags -----------------------------------------------------------------------------------
def add_runtime(p: argparse.ArgumentParser, device: bool = True) -> None:
    """``--device`` (where a model runs), ``--threads`` (CPU threads, default all cores)."""
    if device:
        p.add_argument("--device", type=device_name, default="auto",
                       help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help=f"CPU threads (default: all {os.cpu_count()} cores)")


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")


def add_command(sub, name: str, func: Callable, help: str, **kw) -> argparse.ArgumentParser:
    """A sub-command that runs ``func(args)`` under the error contract, with ``--debug``."""
    p = sub.add_parser(name, help=help, description=help, **kw)
    add_debug(p)
    p.set_defaults(func=func)
    return p


def main_for(build: Callable[[argparse.ArgumentParser], None], prog: str, description: str):
    """A ``main(argv=None) -> int`` for a parser that ``build`` fills with sub-commands."""

    def main(argv=None) -> int:
        p = argparse.ArgumentParser(prog=prog, description=description,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        build(p)
        return run_command(p.parse_args(argv), argv)

    return main


def run_command(args: argparse.Namespace, argv) -> int:
    """:func:`run_main` of the parsed command; a real command line (``argv`` None) of a command that sets
    ``lean_exit`` then ends the program through :func:`lean_exit`."""
    code = run_main(args.func, args)
    if argv is None and getattr(args, "lean_exit", False):
        lean_exit(code)
    return code


def lean_exit(code: int):
    """End the program now: Python's atexit handlers run and stdout/stderr are flushed, but not the
    interpreter teardown and C++ static destructors (those of torch's CUDA libraries page ~120 MB back
    into memory just to exit, on machines without a GPU too).  Only for a real command line (``main``
    called without ``argv``) of commands that set ``lean_exit`` (e.g. ``video label``/``caption``,
    whose peak memory is a promise)."""
    import atexit

    atexit._run_exitfuncs()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not change the exit code
            pass
    os._exit(code)


def apply_runtime(args) -> str:
    """Set the thread count; return the resolved device name (raises UserError for a missing GPU)."""
    import torch

    threads = getattr(args, "threads", None) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    dev = getattr(args, "device", "auto") or "auto"
    if dev == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {dev}: no CUDA device is available here (use --device cpu or auto)")
        idx = int(dev[5:]) if ":" in dev else 0
        if idx >= torch.cuda.device_count():
            raise UserError(f"--device {dev}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


# --- outputs never destroy inputs ------------------------------------------------------------------
def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                 flag: str = "--out") -> Path:
    """Refuse (UserError) an output path that is one of the inputs, or an existing file without
    ``overwrite``.  Returns the path; its folder is created."""
    out = Path(out)
    for i in inputs:
        if i is not None and (_same(out, Path(i)) or out.resolve() == Path(i).resolve()):
            raise UserError(f"{flag} {out} is one of the command's inputs; refusing to write over it")
    if out.is_dir():
        raise UserError(f"{flag} {out} is a folder; name a file")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; refusing to overwrite it (pass --overwrite, or choose another {flag})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out.parent}: cannot create the output folder ({e.strerror or e})") from None
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"{out.parent}: the output folder is not writable")
    return out


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text output atomically (temp file in the same folder, then a rename)."""
    from encoders.io import atomic_write_text

    return atomic_write_text(path, text)


# --- the error contract ------------------------------------------------------------------------------
def expected_errors() -> tuple[type[BaseException], ...]:
    from encoders.config import ConfigError
    from encoders.io import DecodeError

    from .bundle import BundleError
    from .trainer import ConfigMismatch, NonFiniteLoss

    return (UserError, DecodeError, BundleError, ConfigError, ConfigMismatch, NonFiniteLoss, FileNotFoundError,
            PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {e.strerror or text}"
    return text[:1000] or type(e).__name__


def run_main(fn: Callable[[argparse.Namespace], object], args: argparse.Namespace) -> int:
    """Run a command under the error contract; returns the exit code."""
    from .trainer import TrainingInterrupted

    debug = getattr(args, "debug", False)
    try:
        res = fn(args)
        return res if isinstance(res, int) else 0
    except TrainingInterrupted as e:
        log(f"interrupted: {e.path} saved at step {e.step}; run the same command again to resume")
        return 130
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BrokenPipeError:  # `| head` closed the pipe: not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except expected_errors() as e:
        if debug:
            raise
        log(f"error: {_one_line(e)}")
        return 1
    except OSError as e:  # disk full, read-only file system, ...
        if debug:
            raise
        log(f"error: {_one_line(e)}")
        return 1
    except Exception as e:  # noqa: BLE001 - the contract: one line, traceback on --debug
        if debug:
            raise
        log(f"error: unexpected {type(e).__name__}: {_one_line(e)} (rerun with --debug for the traceback)")
        return 1


__all__ = ["UserError", "log", "positive_int", "nonneg_int", "positive_float", "nonneg_float", "probability",
           "unit_interval", "any_float", "bounded_float", "bounded_int", "device_name", "add_runtime", "add_debug",
           "add_command", "main_for",
           "apply_runtime", "check_output", "write_text_atomic", "run_main", "run_command", "lean_exit"]
