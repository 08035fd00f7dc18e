"""Video file decoding and encoding: the one place that opens video files.

Decoding goes through opencv (any codec its FFmpeg backend reads).  The frame count always comes
from decoding, never from the container header (headers lie: truncated files, variable frame rate).
Frames are returned RGB, uint8, ``(N, H, W, 3)``; grayscale video comes back with three equal
channels.  Every failure raises :class:`encoders.io.DecodeError` with one line naming the file.

Writing supports opencv's own encoders (``mp4v`` in .mp4, ``MJPG``/``XVID`` in .avi, ``VP80`` in
.webm) and H.264 through the ``ffmpeg`` executable (opencv wheels usually lack an H.264 encoder).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from . import DecodeError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")

# codec name -> (fourcc for opencv, or None for ffmpeg's libx264; file extension)
CODECS: dict[str, tuple[str | None, str]] = {
    "mp4v": ("mp4v", ".mp4"),
    "mjpg": ("MJPG", ".avi"),
    "xvid": ("XVID", ".avi"),
    "vp8": ("VP80", ".webm"),
    "h264": (None, ".mp4"),
}

# Frames larger than this are shrunk while decoding when no target size is given, so that a huge
# resolution never holds gigabytes of raw frames in memory.
MAX_DECODE_SIDE = 1024


@dataclass(frozen=True)
class VideoInfo:
    """What decoding a file found: decoded frame count, size, nominal fps and duration in seconds."""

    path: str
    frames: int
    width: int
    height: int
    fps: float
    duration: float
    header_frames: int


def _cv2():
    import cv2

    return cv2


def _open(path: str | Path):
    cv2 = _cv2()
    path = Path(path)
    if not path.exists():
        raise DecodeError(path, "no such file")
    if not path.is_file():
        raise DecodeError(path, "not a file")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DecodeError(path, "unreadable video (opencv/FFmpeg could not open it)")
    return cap


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    if frame.ndim == 2:  # grayscale decoders may hand back one channel
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    if frame.shape[2] == 1:
        return cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _fit(frame: np.ndarray, size: tuple[int, int] | None, max_side: int | None) -> np.ndarray:
    """Resize to ``size=(H, W)``, or shrink so that the longer side is at most ``max_side``."""
    cv2 = _cv2()
    h, w = frame.shape[:2]
    if size is not None:
        if (h, w) == tuple(size):
            return frame
        # INTER_AREA averages pixels when shrinking (no aliasing of fine textures)
        interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_LINEAR
        return cv2.resize(frame, (int(size[1]), int(size[0])), interpolation=interp)
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        return cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return frame


def iter_frames(path: str | Path, size: tuple[int, int] | None = None,
                max_side: int | None = MAX_DECODE_SIDE) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(timestamp_seconds, frame (H, W, 3) uint8 RGB)`` for every decodable frame.

    Timestamps come from the decoder (presentation time), so variable-frame-rate files keep their
    real timing.  A file that opens but has no decodable frame raises :class:`DecodeError`.
    Decoding stops quietly at the first unreadable frame (a truncated file gives its good prefix).
    """
    cv2 = _cv2()
    cap = _open(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    n = 0
    last_t = -1.0
    frame = None
    try:
        while True:
            try:
                # the decoder writes into the previous frame's buffer (one full-size frame for the whole
                # file, not a fresh allocation per frame); what is yielded is always a new array
                ok, frame = cap.read(frame)
            except cv2.error as e:  # corrupt data inside the stream
                if n == 0:
                    raise DecodeError(path, f"decoder error: {e}") from None
                break
            if not ok or frame is None:
                break
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not np.isfinite(t) or t < 0 or (n > 0 and t <= last_t):
                # some containers report no usable timestamps: fall back to the nominal rate
                t = n / fps if fps > 0 else float(n)
                if n > 0 and t <= last_t:
                    t = last_t + (1.0 / fps if fps > 0 else 1.0)
            last_t = t
            n += 1
            out = _to_rgb(_fit(frame, size, max_side))  # shrink first: the colour conversion sees small frames
            yield t, (out.copy() if np.shares_memory(out, frame) else out)
    finally:
        cap.release()
    if n == 0:
        raise DecodeError(path, "no decodable frames (zero-frame, truncated or unsupported video)")


def read_video(path: str | Path, size: tuple[int, int] | None = None,
               max_side: int | None = MAX_DECODE_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole file.

    Args:
        path: any video file opencv can read.
        size: ``(H, W)`` to resize every frame to while decoding (keeps memory small); None keeps the
            size, shrunk to ``max_side`` when larger.
    Returns:
        ``(frames (N, H, W, 3) uint8 RGB, timestamps (N,) float seconds)``; N >= 1.
    """
    frames, times = [], []
    for t, f in iter_frames(path, size, max_side):
        frames.append(f)
        times.append(t)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def probe_video(path: str | Path) -> VideoInfo:
    """Decode the file once and report what it really holds (frame count from decoding)."""
    cv2 = _cv2()
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    finally:
        cap.release()
    n, last = 0, 0.0
    for t, f in iter_frames(path, size=(8, 8)):  # decode, don't keep full frames
        n += 1
        last = t
    step = 1.0 / fps if fps > 0 else 0.0
    return VideoInfo(str(path), n, w, h, fps, last + step, header)


def list_videos(root: str | Path) -> list[Path]:
    """Every video file under ``root`` (a file is returned as is), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0, codec: str = "mp4v") -> Path:
    """Encode ``frames`` (N, H, W, 3) uint8 RGB (or (N, H, W) gray) to ``path`` with ``codec``.

    ``codec`` is a key of :data:`CODECS`; "h264" runs the ``ffmpeg`` executable (libx264, yuv420p,
    so H and W are rounded down to even numbers).
    """
    cv2 = _cv2()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) == 0:
        raise ValueError(f"{path}: frames must be non-empty uint8 (N, H, W[, 3]), got {frames.dtype} {frames.shape}")
    gray = frames.ndim == 3
    N, H, W = frames.shape[:3]
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    fourcc, _ = CODECS[codec]
    if fourcc is None:
        return _write_ffmpeg(path, frames, fps, gray)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (W, H), not gray)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: opencv cannot encode {codec} ({fourcc}) here")
    try:
        for f in frames:
            writer.write(f if gray else cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _write_ffmpeg(path: Path, frames: np.ndarray, fps: float, gray: bool) -> Path:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError(f"{path}: H.264 needs the ffmpeg executable (apt-get install ffmpeg)")
    N, H, W = frames.shape[:3]
    H2, W2 = H - H % 2, W - W % 2
    frames = np.ascontiguousarray(frames[:, :H2, :W2])
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
           "-pix_fmt", "gray" if gray else "rgb24", "-s", f"{W2}x{H2}", "-r", f"{fps}", "-i", "-",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{path}: ffmpeg failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
    return path


def ffmpeg_decode_seconds(paths: list[str | Path], threads: int = 1) -> float:
    """Wall time for ffmpeg alone to decode ``paths`` (``ffmpeg -i f -f null -``): the benchmark's yardstick."""
    import time

    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg executable not found")
    t0 = time.perf_counter()
    for p in paths:
        subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-threads", str(threads), "-i", os.fspath(p),
                        "-f", "null", "-"], check=False, capture_output=True)
    return time.perf_counter() - t0


__all__ = ["VideoInfo", "CODECS", "VIDEO_EXTENSIONS", "MAX_DECODE_SIDE", "iter_frames", "read_video", "probe_video",
           "list_videos", "write_video", "ffmpeg_decode_seconds"]
