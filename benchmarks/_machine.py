"""The machine description every benchmark writes beside its figures."""
from __future__ import annotations

import os
import platform

import torch


def machine_info(threads: int | None = None, device: torch.device | str | None = None, note: str | None = None) -> dict:
    """CPU model, cores, load, library versions (and the GPU when ``device`` is CUDA).

    ``note`` defaults to a judgement from the load average: above half the cores counts as shared.
    """
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    cores = os.cpu_count()
    if note is None and load is not None:
        note = ("the machine was shared with other jobs while measured (see load_average): timings are contended"
                if load[0] > 0.5 * (cores or 1) else "machine idle apart from this benchmark")
    info = {"cpu": cpu, "cores": cores, "torch": torch.__version__,
            "threads": threads if threads is not None else torch.get_num_threads(),
            "python": platform.python_version(), "load_average": load, "note": note}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cudnn"] = torch.backends.cudnn.version()
    return info
