"""The gate explainer: what the input, forget and output gates and the cell state of a trained LSTM do
for one input, drawn under that input on the same time axis, with the most active units ranked.

    lstm-media explain --task adding --out gates.png                 # shipped adding-problem LSTM
    lstm-media explain --task kws --input clip.wav --out gates.png   # shipped keyword spotter

On the adding problem the picture shows the mechanism of Hochreiter & Schmidhuber: a few units whose
cell state steps at the two marked positions and is then held (forget gate near 1) until the end.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .cli_common import (UserError, add_debug, add_runtime, apply_runtime, check_output, main_for,
                         positive_int)

KINDS = {"adding": ("long-memory", "adding-lstm"), "kws": ("kws", "kws")}


def rank_units(c: torch.Tensor, marks: torch.Tensor | None = None) -> list[int]:
    """Units, most telling first.  ``c``: (T, H) cell state of one sequence; ``marks``: (T,) bool.

    With marks: by how many times more the cell state changes at the marked steps than elsewhere (mean
    |Δc|), among the units whose marked-step change is at least a tenth of the largest — the units that
    write at the marks and hold.  Without marks: by total |Δc| (the busiest units)."""
    dc = torch.diff(c, dim=0, prepend=torch.zeros_like(c[:1])).abs()
    if marks is None or not bool(marks.any()) or bool(marks.all()):
        return torch.argsort(dc.sum(0), descending=True).tolist()
    at, off = dc[marks].mean(0), dc[~marks].mean(0)
    ratio = at / off.clamp_min(1e-12)
    ratio = torch.where(at >= 0.1 * at.max(), ratio, ratio - ratio.max() - 1)  # small writers go last
    return torch.argsort(ratio, descending=True).tolist()


def cell_steps(c: torch.Tensor, marks: torch.Tensor, units: list[int]) -> tuple[float, float]:
    """Mean |Δc| of ``units`` at marked steps and at the other steps (for the numeric check)."""
    dc = torch.diff(c, dim=0, prepend=torch.zeros_like(c[:1])).abs()[:, units]
    return float(dc[marks].mean().detach()), float(dc[~marks].mean().detach())


def plot_explanation(trace: dict, inputs: list[tuple[str, np.ndarray, str]], units: list[int], path: Path,
                     title: str, marks: np.ndarray | None = None) -> Path:
    """Input rows on top, then heatmaps (units × steps) of i, f, o and c for the ranked units.

    ``inputs``: (label, array (rows, T) or (T,), "image"|"line") drawn on the shared step axis.
    """
    from .plots import _plt

    plt = _plt()
    gates = [("i", "input gate", "viridis", (0, 1)), ("f", "forget gate", "viridis", (0, 1)),
             ("o", "output gate", "viridis", (0, 1)), ("c", "cell state", "coolwarm", None)]
    n = len(inputs) + len(gates)
    T = trace["c"].shape[1]
    fig = plt.figure(figsize=(11, 1.7 * n + 0.6))
    grid = fig.add_gridspec(n, 2, width_ratios=[60, 1], wspace=0.02)
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[r, 0], sharex=axes[0]) for r in range(1, n)]
    for r in range(len(inputs)):
        fig.add_subplot(grid[r, 1]).axis("off")  # keeps every row's time axis the same width
    for ax, (label, arr, style) in zip(axes, inputs):
        if style == "image":
            ax.imshow(arr, aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                      extent=(-0.5, T - 0.5, 0, arr.shape[0]))
        else:
            ax.plot(np.arange(len(arr)), arr, lw=1)
            ax.set_xlim(-0.5, T - 0.5)
        ax.set_ylabel(label)
    for ax, (key, label, cmap, lim) in zip(axes[len(inputs):], gates):
        data = trace[key][0, :, units].detach().float().cpu().numpy().T  # (units, T)
        if lim is None:  # each unit's cell state scaled to its own largest |c|, so small units show too
            data = data / np.maximum(np.abs(data).max(1, keepdims=True), 1e-12)
            lim, label = (-1, 1), "cell state\n(per unit)"
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
        ax.set_yticks(range(len(units)), [str(u) for u in units], fontsize=7)
        ax.set_ylabel(f"{label}\nunit (ranked)")
        fig.colorbar(im, cax=fig.add_subplot(grid[axes.index(ax), 1]))
    if marks is not None:
        for ax in axes:
            for t in np.flatnonzero(marks):
                ax.axvline(t, color="white" if ax in axes[len(inputs):] else "red", lw=0.8, ls="--", alpha=0.8)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("time step")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.08, right=0.95, top=0.95, bottom=0.05, hspace=0.15)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def explain_adding(model, T: int, seed: int, top: int, out: Path) -> dict:
    from .long_memory import adding_problem

    x, lengths, y = adding_problem(1, T, torch.Generator().manual_seed(seed))
    L = int(lengths[0])
    x = x[:, :L]
    with torch.no_grad():
        trace = model.rnn.trace_gates(x)[0]  # layer 0: i, f, g, o, c each (1, L, H)
    marks = x[0, :, 1] == 1
    units = rank_units(trace["c"][0], marks)[:top]
    at, off = cell_steps(trace["c"][0], marks, units[:5])
    with torch.no_grad():
        pred = float(model(x, torch.tensor([L])))
    f_hold = float(trace["f"][0, :, units[:5]].mean())
    png = plot_explanation(trace, [("value", x[0, :, 0].numpy(), "line"), ("marker", x[0, :, 1].numpy(), "line")],
                           units, out, f"adding problem, T={L}: target {float(y):.3f}, LSTM says {pred:.3f} "
                           f"(red: the two marked steps)", marks.numpy())
    return {"task": "adding", "png": str(png), "steps": L, "target": float(y), "prediction": pred,
            "top_units": units, "mean_abs_dc_marked": at,  # these three: over the top 5 units "mean_abs_dc_unmarked": off,
            "ratio": at / max(off, 1e-12), "mean_forget_top_units": f_hold}


def explain_kws(model, b: dict, wav: str, top: int, out: Path) -> dict:
    from encoders.io.audio import load_audio

    sr = model.feature_config.sample_rate
    wave = torch.from_numpy(load_audio(wav, sr=sr)).float().unsqueeze(0)
    with torch.no_grad():
        feats = model.encode(wave)  # (1, frames, D)
        steps = model.stack_frames(feats)
        probs = model(wave).softmax(-1)[0]
    with torch.no_grad():
        trace = model.lstm.trace_gates(steps)[-1]  # the top layer, whose state the head reads
    units = rank_units(trace["c"][0])[:top]
    k = int(probs.argmax())
    S = steps.shape[1]
    if S == 0:
        raise UserError(f"{wav}: too short for one LSTM step")
    mf = feats[0, : S * model.stack].T.numpy()  # (D, frames): averaged over the frames of each step
    mf = mf.reshape(mf.shape[0], S, model.stack).mean(-1)
    per_step = model.stack * model.feature_config.hop_length  # samples per LSTM step
    w = wave[0].numpy()
    w = np.pad(w, (0, max(0, S * per_step - len(w))))[: S * per_step]
    env = np.abs(w).reshape(S, per_step).max(-1)  # the waveform's peak within each step
    png = plot_explanation(trace, [("waveform\n(peak)", env, "line"), ("features", mf, "image")], units, out,
                           f"{Path(wav).name}: '{b['labels'][k]}' ({float(probs[k]):.2f}); one step = "
                           f"{model.stack * model.feature_config.hop_ms:g} ms")
    return {"task": "kws", "png": str(png), "file": wav, "label": b["labels"][k], "score": float(probs[k]),
            "steps": S, "top_units": units}


def build_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=sorted(KINDS), required=True)
    p.add_argument("--checkpoint", default=None, help="bundle path or shipped name (default: the task's shipped model)")
    p.add_argument("--input", default=None, help="kws: a WAV file (required); adding: not used")
    p.add_argument("--T", type=positive_int, default=100, help="adding: sequence length (default 100)")
    p.add_argument("--seed", type=int, default=0, help="adding: which random sequence")
    p.add_argument("--top", type=positive_int, default=12, help="units shown, most active first")
    p.add_argument("--out", default="gates.png")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    add_runtime(p, device=False)  # tracing runs the gate-level reference on the CPU


def build(p: argparse.ArgumentParser) -> None:
    build_parser(p)
    add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from . import bundle

    apply_runtime(args)
    kind, default = KINDS[args.task]
    model, b = bundle.load(args.checkpoint, kind=kind, default=default, command="lstm-media explain")
    if args.task == "kws" and not args.input:
        raise UserError("--input WAV is needed for --task kws")
    out = check_output(args.out, [args.input, b["path"]], args.overwrite)
    if args.task == "adding":
        if b["model"] != "adding-regressor" or b["model_config"].get("cell", "lstm") != "lstm":
            raise UserError(f"{b['path']}: explain --task adding needs an adding-problem LSTM "
                            f"(got {b['model']} {b['model_config'].get('cell', '')})")
        res = explain_adding(model, args.T, args.seed, args.top, out)
    else:
        res = explain_kws(model, b, args.input, args.top, out)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"gates: {res['png']} (units ranked as the picture ranks them: {res['top_units'][:5]} ...)")
        if args.task == "adding":
            print(f"  target {res['target']:.3f}, prediction {res['prediction']:.3f}; top units' |Δc| at the marked "
                  f"steps is {res['ratio']:.1f}× that elsewhere; their forget gate averages "
                  f"{res['mean_forget_top_units']:.3f} (top 5 units)")
        else:
            print(f"  predicted '{res['label']}' ({res['score']:.2f}) over {res['steps']} steps")
    return 0


main = main_for(build, "lstm-media explain", __doc__)

if __name__ == "__main__":
    sys.exit(main())
