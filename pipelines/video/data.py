"""Data set readers for UCF101-style folders: ``<class>/<clip>.<ext>``, split lists, ``captions.csv``.

Split lists: ``<split>.txt`` (ours), ``<split>list01.txt`` or ``ucfTrainTestlist/<split>list01.txt``
(UCF101); one clip path relative to the root per line, optionally followed by a label number, which
is ignored (the label is the clip's folder).  Classes: ``classes.txt`` / ``classInd.txt``
(``<number> <name>`` or ``<name>`` per line), else the sorted folders that hold videos.
Without split lists every clip is assigned to train/val/test (80/10/10) by a hash of its path.

Clips are decoded once, sampled to T frames and cached as uint8 tensors in ``<root>/.cache/``.  The
cache key holds every clip's path, size and modification time (and the front-end config), so a changed,
added or deleted clip makes a new cache; a cache file that cannot be read is rebuilt with a warning.

Layout errors (a list file that is not text, duplicate class names, an oversized CSV field) raise
:class:`encoders.io.DecodeError`: one line naming the file.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from encoders.io import DecodeError, SkipCounter, atomic_save
from encoders.io.video import VIDEO_EXTENSIONS, list_videos
from encoders.video import VideoFrontEndConfig, sample_clip, uint8_to_input, unit_float

SPLITS = ("train", "val", "test")


def _read_text(f: Path) -> str:
    """A small layout file (class or split list) as text; one clear line naming it otherwise."""
    try:
        data = f.read_bytes()
    except OSError as e:
        raise DecodeError(f, f"cannot read ({e.strerror or e})") from None
    if b"\x00" in data:
        raise DecodeError(f, "is a binary file, not a text list")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DecodeError(f, f"is not UTF-8 text (byte {e.start})") from None


def read_classes(root: str | Path) -> list[str]:
    """Class names in label order (``<number> <name>`` or ``<name>`` per line; names may hold spaces)."""
    root = Path(root)
    for name in ("classes.txt", "classInd.txt", "ucfTrainTestlist/classInd.txt"):
        f = root / name
        if f.is_file():
            names = []
            for line in _read_text(f).splitlines():
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                names.append(parts[1].strip() if len(parts) == 2 and parts[0].isdigit() else line.strip())
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise DecodeError(f, f"duplicate class names: {', '.join(dup[:5])}")
            return names
    return sorted({p.relative_to(root).parts[0] for p in list_videos(root) if len(p.relative_to(root).parts) > 1})


def _split_file(root: Path, split: str) -> Path | None:
    for name in (f"{split}.txt", f"{split}list01.txt", f"ucfTrainTestlist/{split}list01.txt"):
        if (root / name).is_file():
            return root / name
    return None


def _hash_split(rel: str) -> str:
    h = int(hashlib.md5(rel.encode()).hexdigest()[:8], 16) % 10
    return "train" if h < 8 else ("val" if h == 8 else "test")


def _list_entry(line: str) -> str:
    """A split-list line -> clip path: a trailing label number is dropped, spaces in names are kept."""
    text = line.strip().replace("\\", "/")
    parts = text.rsplit(maxsplit=1)
    if len(parts) == 2 and parts[1].isdigit() and not Path(text).suffix[1:].isdigit():
        text = parts[0].strip()
    return text


def _inside(root: Path, rel: str) -> bool:
    try:
        (root / rel).resolve().relative_to(root.resolve())
        return not Path(rel).is_absolute()
    except ValueError:
        return False


def read_split(root: str | Path, split: str | None) -> list[str]:
    """Clip paths (relative to ``root``, posix) of ``split`` ("train", "val", "test"; None: all clips).

    List entries that point outside ``root`` are skipped and counted on stderr."""
    root = Path(root)
    if split is None:
        return [p.relative_to(root).as_posix() for p in list_videos(root)]
    f = _split_file(root, split)
    if f is not None:
        rels = [_list_entry(line) for line in _read_text(f).splitlines() if line.strip()]
        outside = [r for r in rels if not _inside(root, r)]
        if outside:
            print(f"skip: {f}: {len(outside)} entries point outside {root} (e.g. {outside[0]})", file=sys.stderr)
        return [r for r in rels if _inside(root, r)]
    if split == "val" and _split_file(root, "train") is not None:
        return []  # UCF101 has train/test lists only
    if any(_split_file(root, s) for s in SPLITS):
        return []
    return [p.relative_to(root).as_posix() for p in list_videos(root) if _hash_split(p.relative_to(root).as_posix()) == split]


def read_captions(path: str | Path) -> dict[str, list[str]]:
    """``captions.csv`` (header ``path,caption``; several rows per clip allowed) -> {path: [captions]}."""
    out: dict[str, list[str]] = {}
    path = Path(path)
    text = _read_text(path)
    try:
        for row in csv.DictReader(io.StringIO(text, newline="")):
            p, c = (row.get("path") or "").strip().replace("\\", "/"), (row.get("caption") or "").strip()
            if p and c:
                out.setdefault(p, []).append(c)
    except csv.Error as e:  # e.g. a field larger than the csv module's limit (128 KB)
        raise DecodeError(path, f"not a readable captions CSV ({e})") from None
    return out


def tokenize(caption: str) -> list[str]:
    """Lower-case and split on anything that is not a letter, digit or apostrophe (no Java tokenizer)."""
    import re

    return re.findall(r"[a-z0-9']+", caption.lower())


@dataclass
class ClipSet:
    """Decoded clips of one split: ``frames`` uint8 (N, T, H, W, 3), ``labels`` (N,) (-1 unknown), paths."""

    root: str
    paths: list[str]
    frames: torch.Tensor
    labels: torch.Tensor
    captions: list[list[str]]
    classes: list[str]
    skipped: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def decode_many(paths: list[Path], fe: VideoFrontEndConfig, skips: SkipCounter, progress: bool = True,
                desc: str = "decode") -> tuple[list[Path], torch.Tensor]:
    """Decode + sample every path into (kept paths, uint8 frames (N, T, H, W, 3)); a bad file gets one
    line on stderr, is counted in ``skips`` and skipped."""
    kept, arrays = [], []
    for p in tqdm(paths, desc=desc, disable=not progress, leave=False):
        try:
            arrays.append(sample_clip(p, fe))
            kept.append(p)
        except DecodeError as e:
            print(f"skip: {e}", file=sys.stderr)
            skips.add(e)
    T, (H, W) = fe.num_frames, fe.size
    frames = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, T, H, W, 3, dtype=torch.uint8)
    return kept, frames


def _cache_key(root: Path, rels: list[str], cfg: VideoFrontEndConfig) -> str:
    """Hash of what the cache is made from: every clip's path, size and mtime, and the front end."""
    h = hashlib.sha1(cfg.key().encode())
    for r in rels:
        try:
            st = (root / r).stat()
            h.update(f"{r}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{r}\0missing\n".encode())
    return h.hexdigest()[:16]


def _read_cache(path: Path, rels: list[str]) -> dict | None:
    """The cached clips, or None (no cache yet; a corrupt or foreign file is reported and rebuilt)."""
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        frames, kept, skipped = d["frames"], d["paths"], d["skipped"]
        ok = (torch.is_tensor(frames) and frames.dtype == torch.uint8 and frames.dim() == 5
              and isinstance(kept, list) and len(kept) == len(frames) and set(kept) <= set(rels)
              and isinstance(skipped, list))
    except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt, never trusted
        ok = False
    if not ok:
        print(f"warning: {path}: unreadable or foreign cache file; rebuilding it", file=sys.stderr)
        return None
    return d


def load_clipset(root: str | Path, split: str | None, cfg: VideoFrontEndConfig, classes: list[str] | None = None,
                 cache: bool = True, progress: bool = True, limit: int | None = None) -> ClipSet:
    """Decode (once; later calls read the cache) every clip of ``split`` with front end ``cfg``.

    Undecodable files are reported on stderr (one line each), skipped and counted in ``skipped``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DecodeError(root, "no such data folder")
    classes = classes if classes is not None else read_classes(root)
    index = {c: i for i, c in enumerate(classes)}
    rels = read_split(root, split)
    if limit is not None:
        rels = rels[:limit]
    caps_file = root / "captions.csv"
    caps = read_captions(caps_file) if caps_file.is_file() else {}
    cache_file = root / ".cache" / f"{split or 'all'}-{_cache_key(root, rels, cfg)}.pt"
    d = _read_cache(cache_file, rels) if cache else None
    if d is not None:
        frames, kept, skipped = d["frames"], d["paths"], d["skipped"]
    else:
        skips = SkipCounter()
        kept_paths, frames = decode_many([root / r for r in rels], cfg, skips, progress, f"decode {split or 'all'}")
        kept = [p.relative_to(root).as_posix() for p in kept_paths]
        skipped = skips.errors
        if cache and root.is_dir():
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_save({"frames": frames, "paths": kept, "skipped": skipped}, cache_file)
            except OSError:  # a read-only data folder: just don't cache
                pass
    labels = torch.tensor([index.get(Path(p).parts[0], -1) if len(Path(p).parts) > 1 else -1 for p in kept],
                          dtype=torch.long)
    return ClipSet(str(root), kept, frames, labels, [caps.get(p, []) for p in kept], classes, list(skipped))


# Label-preserving augmentations of the action vocabulary: a left-right flip swaps left and right;
# playing a clip backwards swaps every action with its reverse.  Classes outside this vocabulary
# (a user's own data) switch the augmentation off.
_FLIP = {"move_left": "move_right", "move_right": "move_left"}
_REVERSE = {"move_left": "move_right", "move_right": "move_left", "move_up": "move_down", "move_down": "move_up",
            "grow": "shrink", "shrink": "grow"}
_FLIP_WORDS = {"left": "right", "right": "left"}
_REVERSE_WORDS = {"left": "right", "right": "left", "up": "down", "down": "up", "grows": "shrinks", "shrinks": "grows"}


def _label_map(classes: list[str], swap: dict[str, str], complete: bool) -> list[int] | None:
    """Class-index permutation under an augmentation, or None when some class has no known image."""
    idx = {c: i for i, c in enumerate(classes)}
    if complete and not all(c in swap for c in classes):
        return None
    m = [idx.get(swap.get(c, c), -1) for c in classes]
    return None if -1 in m else m


def _augment_choice(seed: int, epoch: int, i: int) -> tuple[bool, bool]:
    """(flip, reverse) for item i in this epoch, each with probability 1/2, independent of global RNG."""
    r = np.random.default_rng([seed, epoch, i]).integers(2, size=2)
    return bool(r[0]), bool(r[1])


class ClassifyDataset(Dataset):
    """(frames (T, 3, H, W) float normalised, label) pairs from a :class:`ClipSet`.

    With ``augment`` each clip is flipped left-right and/or played backwards, each with probability
    1/2 (seeded from ``(seed, epoch, index)``), and its label mapped accordingly (move_left <->
    move_right under a flip; every action <-> its reverse backwards).

    ``features``: ``(features (N, T, F), features of the left-right flipped clips or None)`` from a
    frozen frame encoder; items are then features (T, F) instead of frames (the same augmentation:
    the flipped clip's features, the time-reversed sequence).
    """

    def __init__(self, clips: ClipSet, cfg: VideoFrontEndConfig, augment: bool = False, seed: int = 0,
                 features: tuple[torch.Tensor, torch.Tensor | None] | None = None):
        keep = (clips.labels >= 0).nonzero().flatten()
        self.frames, self.labels = clips.frames[keep], clips.labels[keep]
        self.features = None if features is None else tuple(f[keep] if f is not None else None for f in features)
        self.cfg, self.seed, self.epoch = cfg, seed, 0
        self.flip = _label_map(clips.classes, _FLIP, complete=False) if augment else None
        self.reverse = _label_map(clips.classes, _REVERSE, complete=True) if augment else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        y = int(self.labels[i])
        flip, rev = _augment_choice(self.seed, self.epoch, i)
        flip = flip and self.flip is not None and (self.features is None or self.features[1] is not None)
        if self.features is not None:
            x = self.features[1][i] if flip else self.features[0][i]
        else:
            x = self.frames[i].flip(-2) if flip else self.frames[i]  # (T, H, W, 3): W is dim -2
        if flip:
            y = self.flip[y]
        if rev and self.reverse is not None:
            x, y = x.flip(0), self.reverse[y]
        return (x if self.features is not None else uint8_to_input(x, self.cfg)), torch.tensor(y)


def appearance_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random changes of how a clip looks, never of what it shows: float frames (T, 3, H, W) in [0, 1].

    Each with its own probability: colour (per-channel gain 0.75–1.25 and offset ±0.12: other shades
    of the same colour names, other backgrounds), size (zoom 0.7–1.3 about a random point: smaller or
    larger objects travelling shorter or longer paths), speed (a contiguous 5–8 of the T frames
    stretched back to T: a faster or slower action, another frame rate), and sensor/codec noise
    (Gaussian, sigma up to 0.03).  Labels and captions stay true under all of them.
    """
    import torch.nn.functional as F

    T, C, H, W = x.shape
    if rng.random() < 0.3 and T > 4:  # speed: a sub-window of the clip, resampled to T frames
        L = int(rng.integers(max(T - 3, 2), T + 1))
        a = int(rng.integers(0, T - L + 1))
        x = x[torch.from_numpy(np.round(np.linspace(a, a + L - 1, T)).astype(np.int64))]
    if rng.random() < 0.5:  # size
        s = float(rng.uniform(0.7, 1.3))
        h, w = max(2, round(H * s)), max(2, round(W * s))
        y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        if s >= 1:
            top, left = int(rng.integers(0, h - H + 1)), int(rng.integers(0, w - W + 1))
            x = y[..., top:top + H, left:left + W]
        else:
            top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            x = F.pad(y, (left, W - w - left, top, H - h - top), mode="replicate")
    if rng.random() < 0.8:  # colour
        gain = torch.from_numpy(rng.uniform(0.75, 1.25, (1, C, 1, 1))).to(x.dtype)
        off = torch.from_numpy(rng.uniform(-0.12, 0.12, (1, C, 1, 1))).to(x.dtype)
        x = x * gain + off
    if rng.random() < 0.5:  # noise
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        x = x + torch.randn(x.shape, generator=g, dtype=x.dtype) * float(rng.uniform(0, 0.03))
    return x.clamp(0, 1)


def zoom_augment(x: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float] = (0.65, 1.35),
                 speed_p: float = 0.0) -> torch.Tensor:
    """The same clip seen from nearer or farther: float frames (T, 3, H, W) in [0, 1], every frame zoomed
    by one factor drawn log-uniformly from ``scale`` about one point of the middle half of the frame
    (< 1: a smaller object travelling a shorter path, the border pixels continued outwards; > 1: a
    larger one, the edges cropped).  With probability ``speed_p`` also a slower action: a contiguous
    5 to T-1 of the T frames, stretched back to T (nearest frame).  Shape, colour and direction (the
    caption) stay true; one ``grid_sample`` call per clip, so it costs little next to training.
    """
    import torch.nn.functional as F

    T = x.shape[0]
    idx = speed_window(T, rng, speed_p)
    if idx is not None:
        x = take_frames(x, idx)
    if scale[0] == scale[1] == 1:  # the speed change alone (any dtype: uint8 frames stay uint8)
        return x
    x = unit_float(x)
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    cx, cy = rng.uniform(-0.5, 0.5, 2)
    # output pixel p (normalised coordinates) samples the input at c + (p - c) / s
    theta = torch.tensor([[[1 / s, 0.0, cx * (1 - 1 / s)], [0.0, 1 / s, cy * (1 - 1 / s)]]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(T, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp_(0, 1)


def speed_window(T: int, rng: np.random.Generator, speed_p: float) -> np.ndarray | None:
    """:func:`zoom_augment`'s slower action: with probability ``speed_p`` (clips of more than 5 frames) the
    frame indices of a contiguous 5 to T-1 of the T frames stretched back to T (nearest frame); else None."""
    if speed_p > 0 and T > 5 and rng.random() < speed_p:
        L = int(rng.integers(5, T))
        a = int(rng.integers(0, T - L + 1))
        return np.round(np.linspace(a, a + L - 1, T)).astype(np.int64)
    return None


def take_frames(x: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """``x[idx]`` along the first (time) axis, keeping a channels-last clip (T, 3, H, W) channels-last; a
    CPU clip through numpy (torch's indexing cost ~60 us for 8 frames of 64x64, numpy's ~8)."""
    if x.device.type == "cpu" and not x.requires_grad and x.dim() == 4 and x.movedim(1, -1).is_contiguous():
        return torch.from_numpy(x.movedim(1, -1).numpy()[idx]).movedim(-1, 1)
    return x[torch.from_numpy(np.asarray(idx, dtype=np.int64))]


@functools.lru_cache(maxsize=None)
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for ``n`` items, as compare-exchange pairs ``(i, j)``, ``i < j``."""
    pairs, p = [], 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def lower_median(x: np.ndarray) -> np.ndarray:
    """The lower median over the first axis (``np.partition(x, (len(x) - 1) // 2, axis=0)``'s middle row, as
    ``torch.median`` gives it): through a sorting network of element-wise minima and maxima of whole
    frames for up to 32 rows (8 frames of 64x64: ~5x faster than the partition), exact for any dtype."""
    n, k = len(x), (len(x) - 1) // 2
    if n > 32:
        return np.partition(x, k, axis=0)[k]
    rows = list(x)
    for i, j in _sorting_network(n):
        rows[i], rows[j] = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
    return rows[k]


def moving_box(x: torch.Tensor, threshold: float = 0.12) -> tuple[int, int, int, int] | None:
    """Bounding box ``(top, left, bottom, right)`` (bottom/right exclusive) of every pixel that changes
    in a clip: frames (T, 3, H, W), float in [0, 1] or uint8 (0-255, then compared in integers with
    ``threshold * 255``: the same pixels as the float form), a pixel counts when some frame differs from the
    clip's per-pixel (lower) median by more than ``threshold`` in some channel.  Over a clip of a moving,
    growing or shrinking object on a still background this covers the object in every frame (a grown
    object's outer ring changes; a moved one leaves and enters its path).  None when nothing changes."""
    a = np.ascontiguousarray(x.detach().cpu().numpy())  # a channels-last view: reductions over it are ~10x slower
    m = lower_median(a)
    if a.dtype == np.uint8:  # |a - m| as max - min stays in uint8; an integer d > t exactly when d > floor(t)
        d = np.maximum(a, m)
        d -= np.minimum(a, m)
        changed = (d > int(np.floor(threshold * 255.0))).any(axis=(0, 1))  # (H, W)
    else:
        changed = (np.abs(a - m) > threshold).any(axis=(0, 1))
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    if len(rows) == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def edge_pad(y: torch.Tensor, top: int, left: int, H: int, W: int) -> torch.Tensor:
    """CPU frames (T, C, h, w) placed at (``top``, ``left``) in (T, C, H, W), the border pixels continued
    outwards: ``np.pad(..., mode="edge")``'s values and (contiguous) layout, by slice assignments (~40 us
    for 8 frames of 64x64 against np.pad's 85-150)."""
    a = y.numpy()
    T, C, h, w = a.shape
    o = np.empty((T, C, H, W), dtype=a.dtype)
    o[..., top:top + h, left:left + w] = a
    o[..., top:top + h, :left] = a[..., :, :1]
    o[..., top:top + h, left + w:] = a[..., :, w - 1:]
    o[..., :top, :] = o[..., top:top + 1, :]
    o[..., top + h:, :] = o[..., top + h - 1:top + h, :]
    return torch.from_numpy(o)


def scale_augment(x: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float] = (0.8, 1.25),
                  margin: int = 1, box: Callable[[], tuple[int, int, int, int] | None] | None = None
                  ) -> tuple[torch.Tensor, float]:
    """The same clip seen a little nearer or farther, the object never cut: frames (T, 3, H, W), float in
    [0, 1] or uint8, every frame resized by one factor ``s`` drawn log-uniformly from ``scale``.

    ``s < 1``: the frames shrink (antialiased) to a random place in the frame, the border pixels
    continued outwards (a smaller object on a shorter path).  ``s > 1``: the frames grow and a
    window of the original size is cut out that holds the whole :func:`moving_box` (plus ``margin``
    pixels); ``s`` is lowered to what fits, so the object, in every frame, stays inside.  Returns
    ``(frames, s actually used)``, of the input's dtype (uint8: rounded to integers; torch resizes a uint8
    clip in channels-last layout ~5x faster than a float one, so the data sets keep clips uint8 up to here).
    ``box``: gives ``moving_box(x)`` when asked (only for ``s > 1``; a data set keeps them per clip).
    """
    import torch.nn.functional as F

    T, C, H, W = x.shape
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    if s > 1:
        found = moving_box(x) if box is None else box()
        if found is None:
            s = 1.0
        else:
            t, l, b, r = found
            t, l, b, r = max(t - margin, 0), max(l - margin, 0), min(b + margin, H), min(r + margin, W)
            s = min(s, H / (b - t), W / (r - l))
    h, w = max(2, round(H * s)), max(2, round(W * s))
    if (h, w) == (H, W):
        return x, 1.0
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=h < H)
    if h < H or w < W:
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        if y.dtype == torch.uint8 and y.device.type == "cpu":  # replicate padding: numpy's ~3x faster for uint8
            return edge_pad(y, top, left, H, W), h / H
        out = F.pad(y, (left, W - w - left, top, H - h - top), mode="replicate")
    else:  # a window that holds the scaled box: rows [t*sy, b*sy) within [top, top + H)
        sy, sx = h / H, w / W
        lo_y, hi_y = max(0, int(np.ceil(b * sy)) - H), min(h - H, int(t * sy))
        lo_x, hi_x = max(0, int(np.ceil(r * sx)) - W), min(w - W, int(l * sx))
        top = int(rng.integers(lo_y, hi_y + 1)) if hi_y >= lo_y else (h - H) // 2
        left = int(rng.integers(lo_x, hi_x + 1)) if hi_x >= lo_x else (w - W) // 2
        out = y[..., top:top + H, left:left + W]
    return (out if out.dtype == torch.uint8 else out.clamp(0, 1)), h / H


class Vocab:
    """Word vocabulary from training captions; ids 0..3 are <pad>, <bos>, <eos>, <unk>."""

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, words: list[str]):
        self.itos = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    pad, bos, eos, unk = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: list[list[str]], min_count: int = 1) -> "Vocab":
        counts: dict[str, int] = {}
        for caps in captions:
            for c in caps:
                for w in tokenize(c):
                    counts[w] = counts.get(w, 0) + 1
        return cls(sorted(w for w, n in counts.items() if n >= min_count))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, caption: str) -> list[int]:
        return [self.stoi.get(w, self.unk) for w in tokenize(caption)]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i >= len(self.SPECIALS) or i == self.unk)

    def to_list(self) -> list[str]:
        return list(self.itos)

    @classmethod
    def from_list(cls, itos: list[str]) -> "Vocab":
        return cls(list(itos[len(cls.SPECIALS):]))


class CaptionDataset(Dataset):
    """(frames (T, 3, H, W), caption ids (L,)) pairs, one per (clip, reference caption).

    With ``augment``, a left-right flip swaps the words "left" and "right", and playing the clip
    backwards swaps left/right, up/down and grows/shrinks (seeded per epoch and index); with
    ``appearance`` also :func:`appearance_augment`, with ``zoom`` (a scale range, e.g. (0.65, 1.35)) also
    :func:`zoom_augment` (``speed_p``: its probability of a slower action), with ``scale`` (e.g. (0.8, 1.25))
    also :func:`scale_augment` (a nearer or farther view that never cuts the object) on a share ``scale_p``
    of the clips (frames only, not cached features).
    """

    def __init__(self, clips: ClipSet, vocab: Vocab, cfg: VideoFrontEndConfig, augment: bool = False, seed: int = 0,
                 features: tuple[torch.Tensor, torch.Tensor | None] | None = None, appearance: bool = False,
                 zoom: tuple[float, float] | None = None, speed_p: float = 0.0,
                 scale: tuple[float, float] | None = None, scale_p: float = 1.0):
        self.items = [(i, vocab.encode(c)) for i in range(len(clips)) for c in clips.captions[i]]
        self.frames, self.vocab, self.cfg, self.features = clips.frames, vocab, cfg, features
        self.appearance = appearance and features is None
        geometry = tuple(zoom) if zoom else ((1.0, 1.0) if speed_p > 0 else None)  # (1, 1): the speed change alone
        self.zoom = geometry if features is None else None
        self.speed_p = speed_p
        self.scale = tuple(scale) if scale and features is None and scale_p > 0 else None
        self.scale_p = scale_p
        self.augment, self.seed, self.epoch = augment, seed, 0
        self._boxes: dict[tuple, tuple[int, int, int, int] | None] = {}
        self.flip = self._word_map(vocab, _FLIP_WORDS)
        # play backwards only when every caption's action word has a reverse in the vocabulary
        self.reverse = self._word_map(vocab, _REVERSE_WORDS) if all(
            any(w in _REVERSE_WORDS for w in tokenize(c)) for caps in clips.captions for c in caps) else None

    @staticmethod
    def _word_map(vocab: Vocab, swap: dict[str, str]) -> dict[int, int]:
        return {vocab.stoi[a]: vocab.stoi[b] for a, b in swap.items() if a in vocab.stoi and b in vocab.stoi}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _box_of(self, x: torch.Tensor, key: tuple, flip: bool) -> Callable[[], tuple[int, int, int, int] | None]:
        """:func:`moving_box` of ``x``, kept under ``key`` (clip, which frames) for the unflipped clip: the same
        clip comes back epoch after epoch, the box does not depend on the frames' order (played backwards),
        and a left-right flip mirrors it exactly (the changed pixels are found pixel by pixel)."""
        W = x.shape[-1]

        def mirror(box):
            return None if box is None else (box[0], W - box[3], box[2], W - box[1])

        def get():
            if key not in self._boxes:
                box = moving_box(x)
                self._boxes[key] = mirror(box) if flip else box
            return mirror(self._boxes[key]) if flip else self._boxes[key]

        return get

    def __getitem__(self, k: int):
        """``features`` (see :class:`ClassifyDataset`) make items features (T, F) instead of frames."""
        i, ids = self.items[k]
        feats = self.features
        flip, rev = _augment_choice(self.seed, self.epoch, k) if self.augment else (False, False)
        flip = flip and (feats is None or feats[1] is not None)
        if feats is not None:
            x = feats[1][i] if flip else feats[0][i]
        else:
            x = self.frames[i].flip(-2) if flip else self.frames[i]
        if flip:
            ids = [self.flip.get(t, t) for t in ids]
        if rev and self.reverse is not None:
            x, ids = x.flip(0), [self.reverse.get(t, t) for t in ids]
        if feats is not None:
            return x, torch.tensor(ids, dtype=torch.long)
        if (self.appearance or self.zoom or self.scale) and self.augment:
            from encoders.video import contiguous, normalize

            x = x.movedim(-1, -3)  # uint8 (T, 3, H, W) in channels-last layout, as long as the steps keep uint8
            # which frames of the stored clip x holds, in any order (the moving box depends on no more)
            frames = tuple(range(x.shape[0]))
            if self.zoom == (1.0, 1.0):  # the speed change alone (zoom_augment's draws): uint8 stays uint8
                idx = speed_window(x.shape[0], np.random.default_rng([self.seed, self.epoch, k, 2]), self.speed_p)
                if idx is not None:
                    x = take_frames(x, idx)
                    frames = tuple(sorted((x.shape[0] - 1 - idx if rev and self.reverse is not None else idx).tolist()))
            elif self.zoom:  # a zoom gives float frames
                x = zoom_augment(x, np.random.default_rng([self.seed, self.epoch, k, 2]), self.zoom, self.speed_p)
                frames = None
            if self.scale:
                g = np.random.default_rng([self.seed, self.epoch, k, 3])
                if g.random() < self.scale_p:
                    x = scale_augment(x, g, self.scale, box=self._box_of(x, (i, frames), flip) if frames else None)[0]
            if self.appearance:
                x = appearance_augment(unit_float(x), np.random.default_rng([self.seed, self.epoch, k, 1]))
            x = normalize(unit_float(contiguous(x)), self.cfg)
        else:
            x = uint8_to_input(x, self.cfg)
        return x, torch.tensor(ids, dtype=torch.long)


def collate_captions(batch):
    """Pad caption ids: returns (frames (B, T, 3, H, W), tgt_in (B, L+1) from BOS, tgt_out (B, L+1) to EOS)."""
    frames = torch.stack([b[0] for b in batch])
    L = max(len(b[1]) for b in batch) + 1
    tgt_in = torch.full((len(batch), L), Vocab.pad, dtype=torch.long)
    tgt_out = torch.full((len(batch), L), Vocab.pad, dtype=torch.long)
    for j, (_, ids) in enumerate(batch):
        n = len(ids)
        tgt_in[j, 0] = Vocab.bos
        tgt_in[j, 1:n + 1] = ids
        tgt_out[j, :n] = ids
        tgt_out[j, n] = Vocab.eos
    return frames, tgt_in, tgt_out


__all__ = ["SPLITS", "VIDEO_EXTENSIONS", "read_classes", "read_split", "read_captions", "tokenize", "ClipSet",
           "load_clipset", "ClassifyDataset", "appearance_augment", "zoom_augment", "speed_window", "take_frames",
           "edge_pad", "lower_median", "moving_box", "scale_augment", "Vocab", "CaptionDataset", "collate_captions"]
