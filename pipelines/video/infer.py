"""Using a trained video model: evaluation, labelling clips (top-k with scores), labelling a long
video window by window (with an .srt subtitle file), and captioning clips.

Every function takes ``checkpoint``: a bundle file, a shipped model name, or None for the shipped
model of its kind ("video-classify" for labelling, "video-caption" for captioning)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from encoders.io import DecodeError, SkipCounter
from encoders.io.video import iter_frames, list_videos
from encoders.video import StreamSampler, VideoFrontEndConfig
from pipelines import bundle as _bundle
from pipelines.cli_common import UserError, write_text_atomic
from pipelines.plots import classification_report, plot_confusion

from .data import Vocab, decode_many, load_clipset
from .metrics import caption_scores
from .train import KINDS, generate_captions, predict_logits

CLASSIFY, CAPTION = KINDS["classify"], KINDS["caption"]


def load_model(checkpoint: str | Path | None, kind: str | tuple[str, ...] = (CLASSIFY, CAPTION),
               device: str = "cpu", command: str | None = None):
    """(model on ``device`` in eval mode, bundle, front-end config) from a bundle of ``kind``; None
    picks the shipped model of ``kind`` (the classifier when several kinds are allowed)."""
    default = kind if isinstance(kind, str) else kind[0]
    model, b = _bundle.load(checkpoint, kind, device=device, default=default, command=command)
    # the weights now live in the model: the bundle's copy (and any resume state) would only double the
    # memory of a long labelling run (47 MB each for ResNet-18)
    b = {k: v for k, v in b.items() if k not in ("state_dict", "trainer")}
    release_memory()
    return model, b, VideoFrontEndConfig.from_dict(b["front_end"])


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; nothing elsewhere)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders replaced by every video file under them."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out += list_videos(p) if p.is_dir() else [p]
    return out


def evaluate(checkpoint: str | Path | None, data: str | Path, split: str | None = "test",
             out_dir: str | Path | None = None, beam_size: int = 1, progress: bool = True, device: str = "cpu",
             overwrite: bool = True, meteor: bool = True) -> dict:
    """Score a checkpoint on ``data``'s ``split`` (all clips when the folder has no split lists).

    classify: ``{"accuracy", "per_class", "n", "confusion", "confusion_png"}`` (the PNG goes to
    ``out_dir``, default beside a checkpoint file; none for a shipped model without ``out_dir``);
    caption: ``{"bleu4", "cider", "exact_match", "n"}`` (+ "meteor" with Java), references from
    ``data/captions.csv`` (``meteor=False`` skips METEOR, which starts a Java VM).  Both report
    ``skipped`` bad files.  No usable clip: :class:`UserError`.
    """
    data = Path(data)
    if not data.is_dir():  # checked first: nothing (not even a cache folder) is created
        raise UserError(f"{data}: no such data folder")
    model, b, fe = load_model(checkpoint, (CLASSIFY, CAPTION), device, "lstm-media video eval")
    png_path = None
    if b["kind"] == CLASSIFY:
        shipped = Path(b["path"]).resolve().parent == _bundle.SHIPPED_DIR.resolve()
        folder = Path(out_dir) if out_dir else (None if shipped else Path(b["path"]).parent)
        if folder is not None:
            from pipelines.cli_common import check_output

            png_path = check_output(folder / "confusion.png", [data], overwrite=overwrite, flag="--out")
    classes = b["labels"] if b["kind"] == CLASSIFY else None
    clips = load_clipset(data, split, fe, classes=classes, progress=progress)
    if split is not None and len(clips) == 0 and not clips.skipped:
        clips = load_clipset(data, None, fe, classes=classes, progress=progress)
    if b["kind"] == CLASSIFY:
        keep = (clips.labels >= 0).nonzero().flatten()
        if len(keep) == 0:
            raise UserError(f"{data}: no usable labelled clips to evaluate ({len(clips.skipped)} unreadable, "
                            f"{len(clips)} outside the checkpoint's classes)")
        logits = predict_logits(model, clips.frames[keep], fe)
        pred = logits.argmax(-1).tolist()
        rep = classification_report(clips.labels[keep].tolist(), pred, b["labels"])
        rep["confusion_png"] = None
        if png_path is not None:
            rep["confusion_png"] = str(plot_confusion(np.asarray(rep["confusion"]), b["labels"], png_path,
                                                      title=f"{b['model']}: accuracy {rep['accuracy']:.3f} "
                                                            f"(n={rep['n']})"))
    else:
        vocab = Vocab.from_list(b["vocab"])
        keep = [i for i, c in enumerate(clips.captions) if c]
        if not keep:
            raise UserError(f"{data}: no usable captioned clips to evaluate ({len(clips.skipped)} unreadable; "
                            "references come from captions.csv)")
        preds = generate_captions(model, clips.frames[keep], fe, vocab, beam_size=beam_size)
        rep = caption_scores({i: p for i, p in zip(keep, preds)}, {i: clips.captions[i] for i in keep},
                             meteor=meteor)
        rep["examples"] = [{"path": clips.paths[i], "caption": p, "reference": clips.captions[i][0]}
                           for i, p in list(zip(keep, preds))[:5]]
    rep["skipped"] = len(clips.skipped)
    rep["model"] = b["model"]
    rep["kind"] = b["kind"]
    rep["checkpoint"] = b["path"]
    return rep


def label_clips(checkpoint: str | Path | None, paths: list[str | Path], top_k: int = 3, progress: bool = True,
                device: str = "cpu") -> dict:
    """Top-k labels with softmax scores for every clip given or found under the folders given."""
    model, b, fe = load_model(checkpoint, CLASSIFY, device, "lstm-media video label")
    classes = b["labels"]
    skips = SkipCounter()
    kept, frames = decode_many(expand_paths(paths), fe, skips, progress)
    probs = predict_logits(model, frames, fe).softmax(-1) if len(kept) else torch.zeros(0, len(classes))
    k = min(top_k, len(classes))
    rows = []
    for p, pr in zip(kept, probs):
        s, i = pr.topk(k)
        rows.append({"path": str(p), "label": classes[int(i[0])], "score": float(s[0]),
                     "top_k": [{"label": classes[int(j)], "score": float(v)} for v, j in zip(s, i)]})
    return {"labels": rows, "n": len(rows), "skipped": len(skips), "skipped_files": skips.errors,
            "checkpoint": b["path"]}


def label_segments(checkpoint: str | Path | None, video: str | Path, seconds: float, top_k: int = 3,
                   progress: bool = True, device: str = "cpu", loaded=None) -> dict:
    """Label a long video window by window (``seconds`` each, by decoder timestamps, so variable frame
    rate is handled); each window's frames are sampled like a clip.  Returns ``{"segments": [...]}``.
    ``loaded``: an already loaded ``(model, bundle, front end)`` from :func:`load_model`."""
    if not seconds > 0:
        raise ValueError("--segment must be > 0 seconds")
    model, b, fe = loaded or load_model(checkpoint, CLASSIFY, device, "lstm-media video label")
    classes = b["labels"]
    # frames are resized while decoding and each window keeps a bounded, thinned set of them
    # (encoders.video.StreamSampler): memory does not grow with the video's length or the window's
    segs = []
    win, cur, t0, t1 = None, None, 0.0, 0.0

    def flush(w: int, s: StreamSampler, first: float, last: float):
        x = torch.from_numpy(s.sample(fe)).unsqueeze(0)
        pr = predict_logits(model, x, fe).softmax(-1)[0]
        sc, i = pr.topk(min(top_k, len(pr)))
        segs.append({"start": w * seconds, "end": (w + 1) * seconds, "first_frame_time": first,
                     "last_frame_time": last, "frames": len(s), "label": classes[int(i[0])], "score": float(sc[0]),
                     "top_k": [{"label": classes[int(j)], "score": float(v)} for v, j in zip(sc, i)]})

    for t, f in tqdm(iter_frames(video, size=tuple(fe.size)), desc="decode", disable=not progress, leave=False):
        w = int(t // seconds + 1e-9)
        if w != win:
            if cur is not None:
                flush(win, cur, t0, t1)
            win, cur, t0 = w, StreamSampler(), t
        cur.add(t, f)
        t1 = t
    if cur is not None:
        flush(win, cur, t0, t1)
    if not segs:
        raise DecodeError(video, "no frames decoded")
    segs[-1]["end"] = max(segs[-1]["last_frame_time"], segs[-1]["start"])  # the last window ends with the video
    return {"video": str(video), "segment_seconds": seconds, "segments": segs, "n": len(segs)}


def _srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt_text(segments: list[dict]) -> str:
    """One subtitle per window: ``label (score)``."""
    out = []
    for k, s in enumerate(segments, 1):
        end = s["end"] if s["end"] > s["start"] else s["start"] + 0.04
        out.append(f"{k}\n{_srt_time(s['start'])} --> {_srt_time(end)}\n{s['label']} ({s['score']:.2f})\n\n")
    return "".join(out)


def write_srt(segments: list[dict], path: str | Path) -> Path:
    """Write :func:`srt_text` atomically (callers check the path with ``check_output`` first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, srt_text(segments))


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
    """Labels to .json (everything) or .csv (path,label,score,top_k as label:score;...), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = result.get("labels", result.get("segments", []))
    if path.suffix.lower() == ".json":
        return write_text_atomic(path, json.dumps(result, indent=2))
    buf = io.StringIO()
    w = csv.writer(buf)
    seg = "segments" in result
    w.writerow((["start", "end"] if seg else ["path"]) + ["label", "score", "top_k"])
    for r in rows:
        topk = ";".join(f"{t['label']}:{t['score']:.4f}" for t in r["top_k"])
        w.writerow(([f"{r['start']:.3f}", f"{r['end']:.3f}"] if seg else [r["path"]])
                   + [r["label"], f"{r['score']:.4f}", topk])
    return write_text_atomic(path, buf.getvalue())


def write_captions(result: dict, path: str | Path) -> Path:
    """Captions to .json (everything) or .csv (path,caption), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        return write_text_atomic(path, json.dumps(result, indent=2))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "caption"])
    w.writerows([(c["path"], c["caption"]) for c in result["captions"]])
    return write_text_atomic(path, buf.getvalue())


def caption_clips(checkpoint: str | Path | None, paths: list[str | Path], beam_size: int = 5, max_len: int = 12,
                  progress: bool = True, device: str = "cpu") -> dict:
    """One sentence per clip (beam search; ``beam_size=1`` is greedy)."""
    model, b, fe = load_model(checkpoint, CAPTION, device, "lstm-media video caption")
    vocab = Vocab.from_list(b["vocab"])
    skips = SkipCounter()
    kept, frames = decode_many(expand_paths(paths), fe, skips, progress)
    caps = generate_captions(model, frames, fe, vocab, beam_size=beam_size, max_len=max_len) if kept else []
    return {"captions": [{"path": str(p), "caption": c} for p, c in zip(kept, caps)], "n": len(kept),
            "skipped": len(skips), "skipped_files": skips.errors, "checkpoint": b["path"]}


__all__ = ["load_model", "expand_paths", "decode_many", "evaluate", "label_clips", "label_segments", "srt_text",
           "write_srt", "read_srt", "write_labels", "write_captions", "caption_clips"]
