"""The one place that decodes audio files.

Every WAV/FLAC/OGG the keyword-spotting pipeline reads goes through :func:`load_audio`: stereo is
mixed down, other sample rates are resampled, and unusable files (missing, empty, non-audio,
truncated, silent-only) raise :class:`encoders.io.DecodeError` with one line naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from . import DecodeError

# a clip whose peak is below this (about -90 dBFS) carries no signal: "silent-only"
SILENCE_PEAK = 3e-5


def resample(wave: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy's ``resample_poly``, Kaiser window) of a 1-D float array.

    Polyphase filtering costs ~1 ms for a 1 s clip; sinc kernels rebuilt per call cost ~250 ms."""
    if orig_sr == sr:
        return wave
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(sr))
    return resample_poly(np.asarray(wave, dtype=np.float32), sr // g, orig_sr // g).astype(np.float32)


def fix_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros at the end or cut to exactly ``n`` samples."""
    if len(wave) >= n:
        return wave[:n]
    return np.pad(wave, (0, n - len(wave)))


def _riff_shortfall(path: Path) -> str | None:
    """For RIFF/WAVE files: a reason when the data chunk promises more bytes than the file holds.
    libsndfile quietly shortens such files to what is there, so a cut download would pass unnoticed."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI" if head[:4] == b"RIFF" else ">4sI", f.read(8))
            if cid == b"data":
                if pos + 8 + clen > size:
                    return f"truncated WAV: data chunk declares {clen} bytes, file holds {size - pos - 8}"
                return None
            pos += 8 + clen + (clen & 1)
    return "truncated WAV: no data chunk"


def load_audio(path: str | Path, sr: int = 16000, length: int | None = None,
               allow_silent: bool = False) -> np.ndarray:
    """Decode an audio file to a mono float32 array at ``sr`` Hz in [-1, 1].

    Args:
        path: any file libsndfile reads (WAV, FLAC, OGG, AIFF...).
        sr: target sample rate; other rates are resampled.
        length: pad with zeros / cut to this many samples (e.g. 16000 for the 1 s clips); None keeps it.
        allow_silent: accept all-zero (digitally silent) audio, e.g. for noise files.
    Returns:
        (N,) float32.
    Raises:
        DecodeError: one line naming the file, for missing, unreadable, non-audio, truncated, empty or
        silent-only files.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "no such file")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile's messages vary; report one line
        raise DecodeError(path, f"not a readable audio file ({e})") from None
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise DecodeError(path, f"truncated or corrupt audio ({e})") from None
    # libsndfile silently returns fewer frames than the header promises for a cut file
    if info.frames > 0 and data.shape[0] < info.frames:
        raise DecodeError(path, f"truncated audio: header says {info.frames} frames, file holds {data.shape[0]}")
    short = _riff_shortfall(path)
    if short:
        raise DecodeError(path, short)
    if data.shape[0] == 0:
        raise DecodeError(path, "no audio samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wave)):
        raise DecodeError(path, "audio holds NaN or infinite samples")
    if not allow_silent and float(np.abs(wave).max()) < SILENCE_PEAK:
        raise DecodeError(path, "silent-only audio (no signal above -90 dBFS)")
    wave = resample(wave, int(file_sr), sr).astype(np.float32, copy=False)
    if length is not None:
        wave = fix_length(wave, length)
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_wav(path: str | Path, wave: np.ndarray, sr: int = 16000) -> Path:
    """Write a mono float array as 16-bit PCM WAV (clipped to [-1, 1])."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wave, dtype=np.float32), -1, 1), sr, subtype="PCM_16")
    return path


__all__ = ["load_audio", "write_wav", "resample", "fix_length", "SILENCE_PEAK"]
