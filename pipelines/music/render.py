"""Music you can hear: MIDI -> WAV or FLAC with FluidSynth and a General MIDI SoundFont.

FluidSynth (the ``fluidsynth`` command, Debian package ``fluidsynth``) renders the file offline with a GM
SoundFont found by path (Debian's ``/usr/share/sounds/sf2/*.sf2``, else the ``TimGM6mb.sf2`` that pretty_midi
bundles).  Without the ``fluidsynth`` command, pretty_midi's own synthesiser (one sine per note) is used
and a one-line warning says so.  The audio is cut at the end of the last note plus a short release tail,
peak-normalised and written as 16-bit PCM (format by suffix), through a temp file and a rename.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from encoders.io import DecodeError, atomic_write
from encoders.io.audio import write_wav
from encoders.io.midi import read_midi

from ..cli_common import UserError, check_output

AUDIO_SUFFIXES = {".wav": "WAV", ".flac": "FLAC"}
ENGINES = ("auto", "fluidsynth", "pretty_midi")
TAIL_SECONDS = 0.5  # release tail kept after the last note ends
PEAK = 0.89  # -1 dBFS
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
SOUNDFONT_NAMES = ("default-GM.sf2", "FluidR3_GM.sf2", "TimGM6mb.sf2", "default.sf2")


def find_soundfont(explicit: str | Path | None = None) -> Path | None:
    """A General MIDI SoundFont: ``explicit`` (must exist), else the first of Debian's
    ``/usr/share/sounds/sf2/{default-GM,FluidR3_GM,TimGM6mb}.sf2`` (and ``/usr/share/soundfonts``) that exists,
    else pretty_midi's bundled ``TimGM6mb.sf2``; None when there is none."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise UserError(f"--soundfont {p}: no such file")
        return p
    for d in SOUNDFONT_DIRS:
        for n in SOUNDFONT_NAMES:
            p = Path(d) / n
            if p.is_file():
                return p.resolve()
    try:
        import pretty_midi

        p = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
        return p if p.is_file() else None
    except ImportError:
        return None


def audio_suffix(path: str | Path, flag: str = "out") -> str:
    suf = Path(path).suffix.lower()
    if suf not in AUDIO_SUFFIXES:
        raise UserError(f"{flag} {path}: the audio format is chosen by the suffix: .wav or .flac")
    return suf


def _fluidsynth(midi: Path, sr: int, soundfont: Path, seconds: float) -> np.ndarray:
    """(N, 2) float32 audio of ``midi`` rendered by the fluidsynth command (``seconds``: its length, to
    bound the wait)."""
    with tempfile.TemporaryDirectory(prefix="lstm-media-render-") as d:
        raw = Path(d) / "out.wav"
        # absolute paths: a file name starting with "-" is never read as an option
        cmd = ["fluidsynth", "-ni", "-q", "-F", str(raw), "-T", "wav", "-O", "float", "-r", str(sr),
               "-o", "synth.reverb.active=1", "-o", "synth.chorus.active=0", str(Path(soundfont).resolve()),
               str(Path(midi).resolve())]
        limit = 120 + 2 * seconds  # far slower than real time means something is wrong
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise UserError(f"{midi}: fluidsynth did not finish within {limit:.0f} s") from None
        if proc.returncode != 0 or not raw.is_file() or raw.stat().st_size == 0:
            msg = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise UserError(f"{midi}: fluidsynth failed (exit {proc.returncode}"
                            + (f": {msg[-1]}" if msg else "") + ")")
        import soundfile as sf

        audio, got_sr = sf.read(str(raw), dtype="float32", always_2d=True)
    if got_sr != sr:
        raise UserError(f"{midi}: fluidsynth wrote {got_sr} Hz instead of {sr} Hz")
    return audio


def synthesize(pm, sr: int = 44100, engine: str = "auto", soundfont: str | Path | None = None,
               source: Path | None = None, warn=None) -> tuple[np.ndarray, dict]:
    """Audio ``(N, C)`` float32 in [-PEAK, PEAK] of a ``PrettyMIDI``, ``N`` = end of the last note +
    ``TAIL_SECONDS`` (fade-out over the tail's last 50 ms).

    Args:
        engine: "fluidsynth" (required), "pretty_midi" (sine waves) or "auto" (FluidSynth when the command
            is installed, else pretty_midi with a one-line warning through ``warn``).
        source: the MIDI file ``pm`` came from (rendered as is by FluidSynth; else ``pm`` is written to a
            temp file).
    Returns ``(audio, info)``; info: ``engine``, ``soundfont`` (file name or None), ``sample_rate``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    warn = warn or (lambda m: print(m, file=sys.stderr))
    have = shutil.which("fluidsynth") is not None
    if engine == "fluidsynth" and not have:
        raise UserError("the fluidsynth command is not installed (Debian: apt-get install fluidsynth)")
    sf2 = find_soundfont(soundfont) if engine != "pretty_midi" and have else None
    if engine == "fluidsynth" and sf2 is None:
        raise UserError("no General MIDI SoundFont found (Debian: apt-get install timgm6mb-soundfont)")
    use = "fluidsynth" if (engine != "pretty_midi" and have and sf2 is not None) else "pretty_midi"
    if engine == "auto" and use == "pretty_midi":
        why = "the fluidsynth command is not installed" if not have else "no General MIDI SoundFont was found"
        warn(f"warning: {why}; rendering with pretty_midi's sine-wave synthesiser (apt-get install fluidsynth "
             "timgm6mb-soundfont for real instruments)")
    end = max((n.end for i in pm.instruments for n in i.notes), default=0.0)
    n_out = int(round((end + TAIL_SECONDS) * sr))
    if use == "fluidsynth":
        if source is not None:
            audio = _fluidsynth(Path(source), sr, sf2, end)
        else:
            with tempfile.TemporaryDirectory(prefix="lstm-media-render-") as d:
                tmp = Path(d) / "in.mid"
                pm.write(str(tmp))
                audio = _fluidsynth(tmp, sr, sf2, end)
    else:
        audio = pm.synthesize(fs=sr).astype(np.float32)[:, None]
    audio = audio[:n_out]
    if len(audio) < n_out:
        audio = np.vstack([audio, np.zeros((n_out - len(audio), audio.shape[1]), np.float32)])
    fade = min(len(audio), int(0.05 * sr))
    if fade:
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio = audio * (PEAK / peak)
    return audio.astype(np.float32), {"engine": use, "soundfont": None if sf2 is None else sf2.name,
                                      "sample_rate": sr}


def write_audio(path: Path, audio: np.ndarray, sr: int) -> Path:
    """Write (N, C) float audio as 16-bit PCM, WAV or FLAC by the suffix of ``path``, atomically."""
    audio_suffix(path)
    return atomic_write(Path(path), lambda tmp: write_wav(tmp, audio, sr))


def render_file(midi: str | Path, out: str | Path, sample_rate: int = 44100, engine: str = "auto",
                soundfont: str | Path | None = None, overwrite: bool = False, pm=None, warn=None) -> dict:
    """Render MIDI file ``midi`` to ``out`` (.wav or .flac), never over the input nor (without
    ``overwrite``) over an existing file.  ``pm``: the file already parsed (skips re-reading it);
    ``warn``: where the fallback warning goes (default stderr).

    Returns ``{"midi", "audio", "engine", "soundfont", "sample_rate", "seconds" (of audio),
    "compute_seconds", "speed" (seconds of audio per second of compute)}``.
    Raises DecodeError for a bad MIDI file, UserError for a bad output or a failed renderer."""
    midi, out = Path(midi), Path(out)
    audio_suffix(out, "--out" if pm is None else "audio")
    check_output(out, [midi], overwrite)
    t0 = time.perf_counter()
    if pm is None:
        pm = read_midi(midi)
    audio, info = synthesize(pm, sample_rate, engine, soundfont, source=midi, warn=warn)
    write_audio(out, audio, sample_rate)
    dt = time.perf_counter() - t0
    secs = len(audio) / sample_rate
    return {"midi": str(midi), "audio": str(out), **info, "seconds": round(secs, 3),
            "compute_seconds": round(dt, 3), "speed": round(secs / max(dt, 1e-9), 1)}


__all__ = ["AUDIO_SUFFIXES", "ENGINES", "TAIL_SECONDS", "find_soundfont", "audio_suffix",
           "synthesize", "write_audio", "render_file", "DecodeError"]
