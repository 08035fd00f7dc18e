"""Default data, rendered offline: one coloured shape doing one action on a varied background.

The vocabulary is fixed (other renderers can reproduce the labels):
shapes ``circle, square, triangle``; colours (RGB) red (220,30,30), green (30,180,30), blue (30,60,220),
yellow (230,220,40), white (240,240,240); actions (the class) ``move_left, move_right, move_up, move_down,
grow, shrink``; caption ``a <colour> <shape> moves <left|right|up|down>`` / ``grows`` / ``shrinks``.

No action can be told from a single frame: start positions are drawn so that the set of positions
a moving object covers has the same distribution for every direction, and the sizes of a growing
object have the same distribution as those of a shrinking one.

Layout written by :func:`synthesize` (UCF101 style): ``<action>/<clip>.<ext>``, ``classes.txt``,
``captions.csv`` (``path,caption``), ``train.txt``/``val.txt``/``test.txt`` split lists and ``meta.csv``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from encoders.io.video import CODECS, write_video

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220),
    "yellow": (230, 220, 40), "white": (240, 240, 240),
}
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink")
BACKGROUNDS = ("plain", "gradient", "noise", "texture")
DEFAULT_CODECS = ("mp4v", "mjpg", "xvid", "h264")
MIN_COLOUR_DISTANCE = 120.0  # RGB distance between the object and any background colour


def caption_for(colour: str, shape: str, action: str) -> str:
    """The one reference caption of a rendered clip."""
    if action.startswith("move_"):
        return f"a {colour} {shape} moves {action[5:]}"
    return f"a {colour} {shape} {'grows' if action == 'grow' else 'shrinks'}"


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one rendered clip."""

    action: str
    colour: str
    shape: str
    background: str
    width: int
    height: int
    frames: int
    fps: float
    seed: int
    # "unseen": every setting of UNSEEN (never used for training data); "unseen:size,shade": only those
    # factors of UNSEEN_FACTORS (the others as in training), to tell which setting a model does not transfer to
    style: str = "default"


# Rendering settings that the default data never uses, for measuring how captions transfer: other
# shades of every colour name, smaller and larger objects, slower and faster motion, another
# background kind, longer and shorter clips at other frame rates (and, in the ship recipe, VP8).
UNSEEN = {
    "shade": 40,  # each RGB channel of the named colour moved by up to this much
    "size_scale": ((0.65, 0.8), (1.2, 1.35)),  # object radius x this (training: x 1)
    "travel": ((0.3, 0.42), (0.78, 0.9)),  # fraction of the frame a moving object crosses (training 0.45-0.75)
    "growth": ((1.35, 1.6), (2.2, 2.5)),  # final / initial radius of grow/shrink (training 1.7-2.1)
    "frames": ((8, 11), (45, 64)),  # frame counts (training 12-40)
    "fps": (8.0, 20.0, 50.0, 60.0),  # frame rates (training 10, 12, 15, 24, 25, 30)
    "backgrounds": ("blobs",),  # smooth drifting colour blobs (training: plain, gradient, noise, texture)
}


# The unseen settings, one name each: "shade" (colour shades), "size" (object size), "speed" (distance
# travelled / growth factor), "timing" (frame counts and frame rates), "background" (the blob background).
UNSEEN_FACTORS = ("shade", "size", "speed", "timing", "background")
STYLES = ("default", "unseen") + tuple(f"unseen:{f}" for f in UNSEEN_FACTORS)


def unseen_factors(style: str) -> frozenset[str]:
    """The factors of :data:`UNSEEN_FACTORS` that ``style`` changes: none for "default", all for
    "unseen", the listed ones for "unseen:a,b"."""
    if style == "default":
        return frozenset()
    if style == "unseen":
        return frozenset(UNSEEN_FACTORS)
    if style.startswith("unseen:"):
        names = [f.strip() for f in style[len("unseen:"):].split(",") if f.strip()]
        bad = [f for f in names if f not in UNSEEN_FACTORS]
        if names and not bad:
            return frozenset(names)
    raise ValueError(f"unknown style {style!r}: use default, unseen or unseen:<factors> "
                     f"(comma list of {', '.join(UNSEEN_FACTORS)})")


def _two_ranges(rng: np.random.Generator, ranges) -> float:
    lo, hi = ranges[int(rng.integers(2))]
    return float(rng.uniform(lo, hi))


def _dist_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0, 1))
    return float(np.linalg.norm(p - (a + t * ab)))


def _bg_colours(rng: np.random.Generator, obj: np.ndarray, k: int, margin: float) -> list[np.ndarray]:
    """``k`` random colours such that every mix of them stays ``margin`` away from the object colour."""
    while True:
        cols = [rng.integers(0, 256, 3).astype(np.float64) for _ in range(k)]
        if k == 1:
            ok = np.linalg.norm(cols[0] - obj) >= margin
        else:
            ok = all(_dist_to_segment(obj, cols[i], cols[j]) >= margin for i in range(k) for j in range(i + 1, k))
        if ok:
            return cols


class _Background:
    """Per-frame background images (H, W, 3) float; the texture moves, the noise changes each frame."""

    def __init__(self, kind: str, rng: np.random.Generator, H: int, W: int, obj: np.ndarray):
        self.kind, self.rng, self.H, self.W = kind, rng, H, W
        if kind == "plain":
            self.img = np.broadcast_to(_bg_colours(rng, obj, 1, MIN_COLOUR_DISTANCE)[0], (H, W, 3)).copy()
        elif kind == "gradient":
            a, b = _bg_colours(rng, obj, 2, MIN_COLOUR_DISTANCE)
            ang = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[0:H, 0:W]
            t = xx * np.cos(ang) + yy * np.sin(ang)
            t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
            self.img = a + t[..., None] * (b - a)
        elif kind == "noise":
            self.sd = rng.uniform(8, 20)
            self.base = _bg_colours(rng, obj, 1, MIN_COLOUR_DISTANCE + 3 * self.sd)[0]
        elif kind == "texture":
            self.a, self.b = _bg_colours(rng, obj, 2, MIN_COLOUR_DISTANCE)
            self.period = rng.uniform(6, 16)
            self.checker = bool(rng.integers(2))
            self.vel = rng.uniform(-2, 2, 2)  # pixels per frame, unrelated to the label
            self.ang = rng.uniform(0, np.pi)
        elif kind == "blobs":  # unseen style only: low-frequency colour noise drifting across the frame
            import cv2

            a, b = _bg_colours(rng, obj, 2, MIN_COLOUR_DISTANCE)
            big = cv2.resize(rng.random((6, 6)), (3 * W, 3 * H), interpolation=cv2.INTER_CUBIC)
            self.field = np.clip(big, 0, 1)
            self.a, self.b = a, b
            self.vel = rng.uniform(-1.5, 1.5, 2)
        else:
            raise ValueError(f"unknown background {kind!r}")

    def frame(self, t: int) -> np.ndarray:
        H, W = self.H, self.W
        if self.kind in ("plain", "gradient"):
            return self.img.copy()
        if self.kind == "blobs":
            x0 = int(round(W + self.vel[0] * t)) % (2 * W)
            y0 = int(round(H + self.vel[1] * t)) % (2 * H)
            m = self.field[y0:y0 + H, x0:x0 + W, None]
            return self.a + m * (self.b - self.a)
        if self.kind == "noise":
            return np.clip(self.base + self.rng.normal(0, self.sd, (H, W, 3)), 0, 255)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        xx, yy = xx - self.vel[0] * t, yy - self.vel[1] * t
        u = xx * np.cos(self.ang) + yy * np.sin(self.ang)
        m = np.floor(u / self.period) % 2
        if self.checker:
            v = -xx * np.sin(self.ang) + yy * np.cos(self.ang)
            m = (m + np.floor(v / self.period)) % 2
        return np.where(m[..., None] > 0, self.a, self.b)


def _draw(img: np.ndarray, shape: str, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    import cv2

    s = 16  # draw with 4 fractional bits: sub-pixel positions keep slow motion smooth
    col = tuple(float(c) for c in colour)
    if shape == "circle":
        cv2.circle(img, (round(cx * s), round(cy * s)), max(round(r * s), s), col, -1, cv2.LINE_AA, 4)
    elif shape == "square":
        h = r * 0.886  # same area as the circle of radius r
        pts = np.array([[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]])
        cv2.fillPoly(img, [np.round(pts * s).astype(np.int32)], col, cv2.LINE_AA, 4)
    elif shape == "triangle":
        R = r * 1.35  # equilateral, pointing up, roughly the circle's area
        ang = np.deg2rad([-90, 30, 150])
        pts = np.stack([cx + R * np.cos(ang), cy + R * np.sin(ang)], 1)
        cv2.fillPoly(img, [np.round(pts * s).astype(np.int32)], col, cv2.LINE_AA, 4)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def random_spec(rng: np.random.Generator, action: str, seed: int, width: int | None = None,
                height: int | None = None, frames: int | None = None, fps: float | None = None) -> ClipSpec:
    """Draw colour, shape, background, resolution (even sizes), frame count (12–40) and fps.

    Resolutions: width 64–160, aspect ratio (width / height) between 1 and 1.8 (square to 16:9), the
    range of real clips; frames are squeezed to a square model input, so wilder ratios would distort
    the shapes beyond recognition.
    """
    w = int(rng.integers(32, 81)) * 2
    h = int(round(w / rng.uniform(1.0, 1.8) / 2)) * 2
    return ClipSpec(
        action=action,
        colour=list(COLOURS)[rng.integers(len(COLOURS))],
        shape=SHAPES[rng.integers(len(SHAPES))],
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        width=width or w,
        height=height or h,
        frames=frames or int(rng.integers(12, 41)),
        fps=fps or float(rng.choice([10, 12, 15, 24, 25, 30])),
        seed=seed,
    )


def random_spec_unseen(rng: np.random.Generator, action: str, seed: int, style: str = "unseen") -> ClipSpec:
    """Like :func:`random_spec`, with the settings of :data:`UNSEEN` (frame counts, frame rates and
    background kinds that the default data never uses; shades, sizes and speeds are drawn in
    :func:`render`).  ``style`` "unseen:<factors>" changes only those factors (see :func:`unseen_factors`)."""
    factors = unseen_factors(style)
    spec = random_spec(rng, action, seed)
    lo, hi = UNSEEN["frames"][int(rng.integers(2))]
    bg = UNSEEN["backgrounds"][int(rng.integers(len(UNSEEN["backgrounds"])))]
    frames, fps = int(rng.integers(lo, hi + 1)), float(rng.choice(UNSEEN["fps"]))
    if "timing" not in factors:
        frames, fps = spec.frames, spec.fps
    return ClipSpec(action=action, colour=spec.colour, shape=spec.shape,
                    background=bg if "background" in factors else spec.background,
                    width=spec.width, height=spec.height, frames=frames, fps=fps, seed=seed, style=style)


def render(spec: ClipSpec) -> np.ndarray:
    """Render a clip: uint8 RGB (frames, height, width, 3)."""
    rng = np.random.default_rng(spec.seed)
    H, W, n = spec.height, spec.width, spec.frames
    factors = unseen_factors(spec.style)
    colour = COLOURS[spec.colour]
    if "shade" in factors:
        shift = rng.integers(-UNSEEN["shade"], UNSEEN["shade"] + 1, 3)
        colour = tuple(int(v) for v in np.clip(np.asarray(colour) + shift, 0, 255))
    obj = np.asarray(colour, dtype=np.float64)
    bg = _Background(spec.background, rng, H, W, obj)
    size, speed = "size" in factors, "speed" in factors
    m = min(H, W) * (_two_ranges(rng, UNSEEN["size_scale"]) if size else 1.0)
    if spec.action in ("grow", "shrink"):
        r_small = rng.uniform(0.12, 0.15) * m
        r_big = r_small * (_two_ranges(rng, UNSEEN["growth"]) if speed else rng.uniform(1.7, 2.1))
        if size or speed:  # keep the largest object inside the frame
            r_big = min(r_big, 0.38 * min(H, W))
        r0, r1 = (r_small, r_big) if spec.action == "grow" else (r_big, r_small)
        pad = r_big * 1.2 + 1
        cx0 = cx1 = rng.uniform(pad, W - pad)
        cy0 = cy1 = rng.uniform(pad, H - pad)
    else:
        r0 = r1 = rng.uniform(0.16, 0.24) * m
        if size:
            r0 = r1 = min(r0, 0.3 * min(H, W))
        pad = r0 * 1.2 + 1
        horizontal = spec.action in ("move_left", "move_right")
        extent = (W if horizontal else H) - 2 * pad
        d = (_two_ranges(rng, UNSEEN["travel"]) if speed else rng.uniform(0.45, 0.75)) * extent
        # start uniform over the positions that keep the whole path inside the frame: the covered
        # positions then have the same distribution for both directions along an axis
        lo = rng.uniform(pad, pad + extent - d)
        a, b = (lo + d, lo) if spec.action in ("move_left", "move_up") else (lo, lo + d)
        other = rng.uniform(pad, (H if horizontal else W) - pad)
        if horizontal:
            cx0, cx1, cy0, cy1 = a, b, other, other
        else:
            cy0, cy1, cx0, cx1 = a, b, other, other
    out = np.empty((n, H, W, 3), dtype=np.uint8)
    for t in range(n):
        p = t / max(n - 1, 1)
        img = np.ascontiguousarray(bg.frame(t).astype(np.uint8))
        r = r0 + p * (r1 - r0)
        _draw(img, spec.shape, cx0 + p * (cx1 - cx0), cy0 + p * (cy1 - cy0), r, colour)
        out[t] = img
    return out


def synthesize(out: str | Path, per_class: tuple[int, int, int] = (150, 20, 30), seed: int = 0,
               codecs: tuple[str, ...] = DEFAULT_CODECS, progress: bool = True, frames: int | None = None,
               style: str = "default") -> dict:
    """Render ``per_class`` = (train, val, test) clips of every action into ``out``.

    Clip ``k`` of the run uses seed ``(seed, k)``: another ``seed`` gives entirely fresh clips.
    Codecs rotate over ``codecs`` (several codecs/containers in one data set).  ``frames``: every
    clip this many frames long (default: 12–40 drawn per clip).  ``style="unseen"`` renders with the
    settings of :data:`UNSEEN` instead (held-out measurements only); "unseen:<factors>" with only some
    of them (:func:`unseen_factors`).  Returns counts.
    """
    unseen_factors(style)  # an unknown style fails before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "val": [], "test": []}
    rows, meta = [], []
    jobs = [(split, action, i) for split, n in zip(splits, per_class) for action in ACTIONS for i in range(n)]
    for k, (split, action, i) in enumerate(tqdm(jobs, desc="render clips", disable=not progress, leave=False)):
        rng = np.random.default_rng([seed, k])
        if style != "default":
            spec = random_spec_unseen(rng, action, seed=int(rng.integers(2**31)), style=style)
        else:
            spec = random_spec(rng, action, seed=int(rng.integers(2**31)), frames=frames)
        codec = codecs[k % len(codecs)]
        rel = f"{action}/{action}_s{seed}_{split}_{i:04d}{CODECS[codec][1]}"
        write_video(out / rel, render(spec), spec.fps, codec)
        splits[split].append(rel)
        rows.append((rel, caption_for(spec.colour, spec.shape, action)))
        meta.append([rel, split, action, spec.colour, spec.shape, spec.background, spec.width, spec.height,
                     spec.frames, spec.fps, codec, spec.seed])
    (out / "classes.txt").write_text("".join(f"{i + 1} {a}\n" for i, a in enumerate(ACTIONS)))
    for split, items in splits.items():
        (out / f"{split}.txt").write_text("".join(f"{p}\n" for p in items))
    with open(out / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption"])
        w.writerows(rows)
    with open(out / "meta.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "split", "action", "colour", "shape", "background", "width", "height", "frames", "fps",
                    "codec", "seed"])
        w.writerows(meta)
    return {k: len(v) for k, v in splits.items()} | {"out": str(out)}


def render_long_video(path: str | Path, segments: int = 6, seconds: float = 2.0, fps: float = 10.0,
                      size: tuple[int, int] = (96, 128), seed: int = 0, codec: str = "mp4v") -> list[dict]:
    """Concatenate ``segments`` rendered clips of ``seconds`` each into one video (for ``label --segment``).

    Returns the ground truth: one ``{"start", "end", "action", "caption"}`` per segment (seconds).
    """
    rng = np.random.default_rng([seed, 991])
    n = max(int(round(seconds * fps)), 2)
    frames, truth = [], []
    for s in range(segments):
        action = ACTIONS[(s + int(rng.integers(len(ACTIONS)))) % len(ACTIONS)]
        spec = random_spec(rng, action, seed=int(rng.integers(2**31)), width=size[1], height=size[0], frames=n, fps=fps)
        frames.append(render(spec))
        truth.append({"start": s * n / fps, "end": (s + 1) * n / fps, "action": action,
                      "caption": caption_for(spec.colour, spec.shape, action)})
    write_video(path, np.concatenate(frames), fps, codec)
    return truth


# --- Moving-MNIST-style digits (Srivastava et al. 2015), made offline --------------------------------------

def digit_images(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits (1797 images of 8x8, nothing downloaded) scaled up to
    ``size`` x ``size`` uint8, and their labels."""
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([cv2.resize((im * (255.0 / 16.0)).astype(np.float32), (size, size),
                                interpolation=cv2.INTER_CUBIC) for im in d.images])
    return np.clip(imgs, 0, 255).astype(np.uint8), d.target


def render_digits(rng: np.random.Generator, digits: np.ndarray, frames: int = 20, canvas: int = 64,
                  n_digits: int = 2, speed: tuple[float, float] = (2.0, 4.0)) -> np.ndarray:
    """Moving-MNIST-style clip: ``n_digits`` digit images bouncing off the walls of a ``canvas``
    square at a constant speed (pixels per frame, drawn per digit), overlapping by maximum.
    Returns uint8 gray (frames, canvas, canvas)."""
    size = digits.shape[1]
    lim = canvas - size
    out = np.zeros((frames, canvas, canvas), np.uint8)
    for _ in range(n_digits):
        img = digits[rng.integers(len(digits))]
        pos = rng.uniform(0, lim, 2)
        ang = rng.uniform(0, 2 * np.pi)
        vel = rng.uniform(*speed) * np.array([np.cos(ang), np.sin(ang)])
        for t in range(frames):
            x, y = (int(round(v)) for v in pos)
            np.maximum(out[t, y:y + size, x:x + size], img, out=out[t, y:y + size, x:x + size])
            pos = pos + vel
            for k in range(2):  # bounce
                if pos[k] < 0:
                    pos[k], vel[k] = -pos[k], -vel[k]
                elif pos[k] > lim:
                    pos[k], vel[k] = 2 * lim - pos[k], -vel[k]
    return out


def synthesize_digits(out: str | Path, counts: tuple[int, int, int] = (1000, 100, 100), seed: int = 0,
                      frames: int = 20, codec: str = "mjpg", progress: bool = True) -> dict:
    """Render (train, val, test) Moving-MNIST-style clips (two digits, 64x64, ``frames`` frames) into
    ``out/digits/`` with split lists, readable as any clip folder.  Clip ``k`` uses seed ``(seed, k)``;
    the split decides which digit images it may use (train: the first 1200 of scikit-learn's
    1797, val/test: the rest), so held-out clips also show unseen handwriting."""
    out = Path(out)
    (out / "digits").mkdir(parents=True, exist_ok=True)
    imgs, _ = digit_images()
    pools = {"train": imgs[:1200], "val": imgs[1200:], "test": imgs[1200:]}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    jobs = [(split, i) for split, n in zip(splits, counts) for i in range(n)]
    ext = CODECS[codec][1]
    for k, (split, i) in enumerate(tqdm(jobs, desc="render digits", disable=not progress, leave=False)):
        rng = np.random.default_rng([seed, 7, k])
        rel = f"digits/digits_s{seed}_{split}_{i:05d}{ext}"
        write_video(out / rel, render_digits(rng, pools[split], frames), 10.0, codec)
        splits[split].append(rel)
    (out / "classes.txt").write_text("1 digits\n")
    for split, items in splits.items():
        (out / f"{split}.txt").write_text("".join(f"{p}\n" for p in items))
    return {k: len(v) for k, v in splits.items()} | {"out": str(out)}


__all__ = ["UNSEEN", "UNSEEN_FACTORS", "STYLES", "unseen_factors", "random_spec_unseen", "digit_images", "render_digits", "synthesize_digits", "SHAPES", "COLOURS",
           "ACTIONS", "BACKGROUNDS", "DEFAULT_CODECS", "caption_for", "ClipSpec", "random_spec", "render",
           "synthesize", "render_long_video"]
