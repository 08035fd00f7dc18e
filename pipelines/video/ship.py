"""The recipe of the shipped video models ("video-classify", "video-caption"), run by ``make models``.

1. Render the default data as the demo does: 100 training + 20 validation clips per action, seed 0,
   codecs mp4v / MJPG / XVID / H.264 rotating.
2. Train with the recipe of ``lstm-media video train`` (front end T=8 frames, uniform):
   ``video-classify`` = ``video-cnn-lstm``, 32x32, 25 epochs (the ``train`` default);
   ``video-caption`` = ``video-caption`` with ``train --task caption``'s defaults
   (:data:`pipelines.video.train.CAPTION_RECIPE`: 64x64 frames, CNN widths 8,16,32,64 with global max
   pooling only, speed augmentation 0.5, every clip rescaled by 0.8-1.25, 60 epochs).  batch 16, lr 3e-3,
   flip/reverse augmentation on, seed 0.
   (``--appearance-augment on``, random colour, size, speed and noise, was measured for the 32x32 captioner:
   exact match 0.56 on fresh clips and 0.60 on unseen settings, against 0.89 and 0.76 without; not used.)
3. Measure on clips the models never saw, rendered with other seeds:
   * 30 clips per action rendered with seed 12345 and the training codecs;
   * 30 clips per action rendered with seed 777 and VP8/WebM, a codec and container the training never used
     (the renderer's sizes, frame counts, fps and backgrounds are drawn per clip, so they cannot be set apart);
   * 30 clips per action rendered with seed 777 and ``synth --style unseen`` in VP8/WebM: settings the training
     never used (other shades of every colour, smaller/larger objects, slower/faster motion, 8–11 or 45–64
     frames at 8/20/50/60 fps, a drifting-blob background): keys ``*_unseen``;
   * for the classifier also a long video (seed 7, 6 segments of 2 s at 96x128, 10 fps) labelled in 2 s windows.
4. Write ``models_dir/<name>.pt`` through :func:`pipelines.bundle.for_shipping` (fp16, no resume state).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipelines import bundle as _bundle

from .infer import evaluate, label_segments
from .synth import DEFAULT_CODECS, render_long_video, synthesize
from .train import CAPTION_RECIPE, VideoTrainConfig, caption_config, train

FRONT_END = {"num_frames": 8, "size": [32, 32], "sampling": "uniform", "stride": 2}
RECIPES = {  # name -> (task, registry model, epochs, appearance augmentation)
    "video-classify": ("classify", "video-cnn-lstm", 25, False),
    "video-caption": ("caption", "video-caption", CAPTION_RECIPE["epochs"], False),  # + the rest of CAPTION_RECIPE
}
MAX_BYTES = 3_000_000


def _log(msg: str) -> None:
    print(f"[ship video] {msg}", file=sys.stderr, flush=True)


def ship(work: Path, models_dir: Path, quick: bool = False, only: tuple[str, ...] | None = None) -> list[dict]:
    """Render, train, measure and write the shipped video models; returns their model-card rows.

    ``quick``: a tiny version (a few clips, 1 epoch, 4 frames of 16x16) for tests of this code only.
    ``only``: the names of :data:`RECIPES` to (re)make (default: all)."""
    work, models_dir = Path(work), Path(models_dir)
    work.mkdir(parents=True, exist_ok=True)
    per_class, fresh_n = ((2, 1, 0), 1) if quick else ((100, 20, 0), 30)
    fe = {"num_frames": 4, "size": [16, 16], "sampling": "uniform", "stride": 2} if quick else FRONT_END
    progress = not quick and sys.stderr.isatty()

    data, fresh, fresh_vp8, unseen = work / "clips", work / "fresh", work / "fresh-vp8", work / "unseen-vp8"
    renders = ((data, per_class, 0, DEFAULT_CODECS, "default"),
               (fresh, (0, 0, fresh_n), 12345, DEFAULT_CODECS, "default"),
               (fresh_vp8, (0, 0, fresh_n), 777, ("vp8",), "default"),
               (unseen, (0, 0, fresh_n), 777, ("vp8",), "unseen"))
    for root, counts, seed, codecs, style in renders:
        if not (root / "classes.txt").is_file():
            _log(f"rendering {root} (seed {seed}, {', '.join(codecs)}, {style} settings)")
            synthesize(root, counts, seed=seed, codecs=codecs, progress=progress, style=style)
    long_video = work / "long" / "long.mp4"
    truth = render_long_video(long_video, segments=6, seconds=2.0, fps=10.0, seed=7)

    rows = []
    for name, (task, model, epochs, appearance) in RECIPES.items():
        if only is not None and name not in only:
            continue
        if quick:
            epochs = 1
        if task == "caption":
            cfg = caption_config(fe, epochs, recipe_frames=not quick, progress=progress, appearance_augment=appearance)
        else:
            cfg = VideoTrainConfig(task=task, model=model, frontend=fe, epochs=epochs, progress=progress,
                                   appearance_augment=appearance)
        run = work / name
        _log(f"training {name}: {model}, {epochs} epochs")
        t0 = time.time()
        train(data, run, cfg, resume=False)
        seconds = time.time() - t0
        best = run / "best.pt"
        held: dict = {}
        if task == "classify":
            for tag, root in (("", fresh), ("_vp8", fresh_vp8), ("_unseen", unseen)):
                rep = evaluate(best, root, "test", run, progress=False)
                held[f"accuracy{tag}"] = round(rep["accuracy"], 4)
                held[f"n{tag}"] = rep["n"]
            segs = label_segments(best, long_video, 2.0, progress=False)["segments"]
            held["long_video_windows_right"] = round(
                sum(s["label"] == g["action"] for s, g in zip(segs, truth)) / max(len(truth), 1), 4)
        else:
            for tag, root in (("", fresh), ("_vp8", fresh_vp8), ("_unseen", unseen)):
                greedy = evaluate(best, root, "test", progress=False, meteor=False)
                beam = evaluate(best, root, "test", beam_size=5, progress=False, meteor=False)
                held[f"exact_match{tag}"] = round(greedy["exact_match"], 4)
                held[f"bleu4{tag}"] = round(greedy["bleu4"], 4)
                held[f"exact_match_beam5{tag}"] = round(beam["exact_match"], 4)
                held[f"bleu4_beam5{tag}"] = round(beam["bleu4"], 4)
                held[f"n{tag}"] = greedy["n"]
        b, _ = _bundle.read(best)
        shipped = _bundle.for_shipping(b)
        shipped["metrics"] = {**shipped["metrics"], "held_out": held}
        shipped["data"] = {**shipped["data"], "root": "rendered default clips (lstm-media video synth --train "
                                                      f"{per_class[0]} --val {per_class[1]} --seed 0)",
                           "held_out": f"{fresh_n} clips per action rendered with seed 12345 (training codecs), "
                                       f"seed 777 (VP8/WebM, a codec never seen in training) and seed 777 with "
                                       f"unseen settings (synth --style unseen, VP8/WebM)"}
        shipped["extras"] = {**shipped["extras"], "description": (
            "labels a clip: move left/right/up/down, grow or shrink (CNN-LSTM)" if task == "classify" else
            "describes a clip in one sentence, e.g. 'a red circle moves left' (CNN + LSTM encoder-decoder)")}
        path = _bundle.save(shipped, models_dir / f"{name}.pt")
        size = path.stat().st_size
        if size > MAX_BYTES and not quick:
            raise RuntimeError(f"{path}: {size} bytes, over the {MAX_BYTES} byte limit of a shipped model")
        frame = cfg.frontend["size"]
        aug = "flip/reverse" + (" + appearance" if appearance else "") + (
            f" + speed ({cfg.speed_augment:g})" if cfg.speed_augment else "") + (
            f" + scale ({cfg.scale_augment[0]:g}-{cfg.scale_augment[1]:g}, share {cfg.scale_p:g})"
            if cfg.scale_augment else "") + " augmentation"
        cnn = cfg.model_kwargs.get("frame_cnn", {}).get("channels")
        recipe = (f"{model}, {epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, {aug}, "
                  f"T={fe['num_frames']} {frame[0]}x{frame[1]}" + (f", CNN {','.join(map(str, cnn))}" if cnn else "")
                  + (", CNN global max pooling only" if cfg.model_kwargs.get("frame_cnn", {}).get("pool_mean") is False
                     else ""))
        row = {"name": name, "kind": shipped["kind"],
               "data": f"rendered clips: {per_class[0]} train + {per_class[1]} val per action (seed 0)",
               "recipe": recipe, "held_out": held, "train_seconds": round(seconds, 1), "size_bytes": size}
        _log(json.dumps(row))
        rows.append(row)
    return rows


__all__ = ["ship", "RECIPES", "FRONT_END"]


if __name__ == "__main__":  # python -m pipelines.video.ship WORK MODELS_DIR [--quick]
    import argparse

    ap = argparse.ArgumentParser(description="retrain the shipped video models")
    ap.add_argument("work")
    ap.add_argument("models_dir")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=list(RECIPES), default=None, help="remake only these models")
    a = ap.parse_args()
    print(json.dumps(ship(Path(a.work), Path(a.models_dir), a.quick, tuple(a.only) if a.only else None), indent=2))
