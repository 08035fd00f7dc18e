"""Using a trained video model: evaluation, labelling clips (top-k with scores), labelling a long
video window by window (with an .srt subtitle file), and captioning clips."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from encoders.io import SkipCounter
from encoders.io.video import iter_frames, list_videos
from encoders.video import VideoFrontEndConfig, sample_frames
from pipelines.plots import classification_report, plot_confusion
from pipelines.trainer import load_for_inference

from .data import Vocab, decode_many, load_clipset
from .metrics import caption_scores
from .train import build_model, generate_captions, predict_logits


def load_model(checkpoint: str | Path, device: str = "cpu"):
    """(model in eval mode, extra, front-end config) from a checkpoint written by :func:`train`."""
    model, extra = load_for_inference(checkpoint, build_model, map_location=device)
    return model.to(device), extra, VideoFrontEndConfig.from_dict(extra["frontend"])


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders replaced by every video file under them."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out += list_videos(p) if p.is_dir() else [p]
    return out


def evaluate(checkpoint: str | Path, data: str | Path, split: str | None = "test", out_dir: str | Path | None = None,
             beam_size: int = 1, progress: bool = True) -> dict:
    """Score a checkpoint on ``data``'s ``split`` (all clips when the folder has no split lists).

    classify: ``{"accuracy", "per_class", "n", "confusion", "confusion_png"}``;
    caption: ``{"bleu4", "cider", "exact_match", "n"}`` (+ "meteor" with Java), references from
    ``data/captions.csv``.  Both report ``skipped`` bad files.
    """
    model, extra, fe = load_model(checkpoint)
    clips = load_clipset(data, split, fe, classes=extra.get("classes"), progress=progress)
    if split is not None and len(clips) == 0 and not clips.skipped:
        clips = load_clipset(data, None, fe, classes=extra.get("classes"), progress=progress)
    if extra["task"] == "classify":
        keep = (clips.labels >= 0).nonzero().flatten()
        logits = predict_logits(model, clips.frames[keep], fe)
        pred = logits.argmax(-1).tolist() if len(keep) else []
        rep = classification_report(clips.labels[keep].tolist(), pred, extra["classes"])
        out_dir = Path(out_dir) if out_dir else Path(checkpoint).parent
        png = plot_confusion(np.asarray(rep["confusion"]), extra["classes"], out_dir / "confusion.png",
                             title=f"{extra['model']}: accuracy {rep['accuracy']:.3f} (n={rep['n']})")
        rep["confusion_png"] = str(png)
    else:
        vocab = Vocab.from_list(extra["vocab"])
        keep = [i for i, c in enumerate(clips.captions) if c]
        preds = generate_captions(model, clips.frames[keep], fe, vocab, beam_size=beam_size)
        rep = caption_scores({i: p for i, p in zip(keep, preds)}, {i: clips.captions[i] for i in keep})
        rep["examples"] = [{"path": clips.paths[i], "caption": p, "reference": clips.captions[i][0]}
                           for i, p in list(zip(keep, preds))[:5]]
    rep["skipped"] = len(clips.skipped)
    rep["model"] = extra["model"]
    return rep


def label_clips(checkpoint: str | Path, paths: list[str | Path], top_k: int = 3, progress: bool = True) -> dict:
    """Top-k labels with softmax scores for every clip given or found under the folders given."""
    model, extra, fe = load_model(checkpoint)
    if extra["task"] != "classify":
        raise ValueError(f"{checkpoint}: a {extra['task']} checkpoint cannot label clips; use 'caption'")
    skips = SkipCounter()
    kept, frames = decode_many(expand_paths(paths), fe, skips, progress)
    probs = predict_logits(model, frames, fe).softmax(-1) if len(kept) else torch.zeros(0, len(extra["classes"]))
    k = min(top_k, len(extra["classes"]))
    rows = []
    for p, pr in zip(kept, probs):
        s, i = pr.topk(k)
        rows.append({"path": str(p), "label": extra["classes"][int(i[0])], "score": float(s[0]),
                     "top_k": [{"label": extra["classes"][int(j)], "score": float(v)} for v, j in zip(s, i)]})
    return {"labels": rows, "n": len(rows), "skipped": len(skips), "skipped_files": skips.errors}


def label_segments(checkpoint: str | Path, video: str | Path, seconds: float, top_k: int = 3,
                   progress: bool = True) -> dict:
    """Label a long video window by window (``seconds`` each, by decoder timestamps, so variable frame
    rate is handled); each window's frames are sampled like a clip.  Returns ``{"segments": [...]}``."""
    if seconds <= 0:
        raise ValueError("--segment must be > 0 seconds")
    model, extra, fe = load_model(checkpoint)
    if extra["task"] != "classify":
        raise ValueError(f"{checkpoint}: a {extra['task']} checkpoint cannot label segments")
    windows: dict[int, list[np.ndarray]] = {}
    bounds: dict[int, list[float]] = {}
    # frames are shrunk while decoding; only the current window is held in memory at a time
    segs = []

    def flush(w: int):
        frames = np.stack(windows.pop(w))
        t0, t1 = bounds.pop(w)
        x = torch.from_numpy(sample_frames(frames, fe)).unsqueeze(0)
        pr = predict_logits(model, x, fe).softmax(-1)[0]
        s, i = pr.topk(min(top_k, len(pr)))
        segs.append({"start": w * seconds, "end": (w + 1) * seconds, "first_frame_time": t0, "last_frame_time": t1,
                     "frames": len(frames), "label": extra["classes"][int(i[0])], "score": float(s[0]),
                     "top_k": [{"label": extra["classes"][int(j)], "score": float(v)} for v, j in zip(s, i)]})

    for t, f in tqdm(iter_frames(video, size=tuple(fe.size)), desc="decode", disable=not progress, leave=False):
        w = int(t // seconds + 1e-9)
        for old in [k for k in windows if k < w]:
            flush(old)
        windows.setdefault(w, []).append(f)
        b = bounds.setdefault(w, [t, t])
        b[1] = t
    for old in sorted(windows):
        flush(old)
    if segs:  # the last window ends with the video
        segs[-1]["end"] = max(segs[-1]["last_frame_time"], segs[-1]["start"])
    return {"video": str(video), "segment_seconds": seconds, "segments": segs, "n": len(segs)}


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(segments: list[dict], path: str | Path) -> Path:
    """One subtitle per window: ``label (score)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for k, s in enumerate(segments, 1):
            end = s["end"] if s["end"] > s["start"] else s["start"] + 0.04
            f.write(f"{k}\n{_srt_time(s['start'])} --> {_srt_time(end)}\n{s['label']} ({s['score']:.2f})\n\n")
    return path


def read_srt(path: str | Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of every subtitle in an .srt file (used by tests and tools)."""
    def secs(x: str) -> float:
        h, m, rest = x.strip().split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    out = []
    for block in Path(path).read_text().strip().split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) >= 3:
            a, b = lines[1].split("-->")
            out.append((secs(a), secs(b), " ".join(lines[2:])))
    return out


def write_labels(result: dict, path: str | Path) -> Path:
    """Labels to .json (everything) or .csv (path,label,score,top_k as label:score;...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = result.get("labels", result.get("segments", []))
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(result, indent=2))
        return path
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        seg = "segments" in result
        w.writerow((["start", "end"] if seg else ["path"]) + ["label", "score", "top_k"])
        for r in rows:
            topk = ";".join(f"{t['label']}:{t['score']:.4f}" for t in r["top_k"])
            w.writerow(([f"{r['start']:.3f}", f"{r['end']:.3f}"] if seg else [r["path"]])
                       + [r["label"], f"{r['score']:.4f}", topk])
    return path


def caption_clips(checkpoint: str | Path, paths: list[str | Path], beam_size: int = 5, max_len: int = 12,
                  progress: bool = True) -> dict:
    """One sentence per clip (beam search; ``beam_size=1`` is greedy)."""
    model, extra, fe = load_model(checkpoint)
    if extra["task"] != "caption":
        raise ValueError(f"{checkpoint}: a {extra['task']} checkpoint cannot caption; use 'label'")
    vocab = Vocab.from_list(extra["vocab"])
    skips = SkipCounter()
    kept, frames = decode_many(expand_paths(paths), fe, skips, progress)
    caps = generate_captions(model, frames, fe, vocab, beam_size=beam_size, max_len=max_len) if kept else []
    return {"captions": [{"path": str(p), "caption": c} for p, c in zip(kept, caps)], "n": len(kept),
            "skipped": len(skips), "skipped_files": skips.errors}


__all__ = ["load_model", "expand_paths", "decode_many", "evaluate", "label_clips", "label_segments", "write_srt",
           "read_srt", "write_labels", "caption_clips"]
