"""Live keyword spotting from an input device (``lstm-media kws detect --mic``).

PortAudio (through ``sounddevice``, the ``[live]`` extra; Debian ``libportaudio2``) calls
:meth:`LiveSession.callback` from its own thread with each captured block; the callback only copies the
block into a queue.  The main thread takes blocks from the queue and pushes them through the same
:class:`pipelines.kws.stream.StreamingDetector` as file detection, printing each detection as it
happens.  Ctrl-C (or ``--seconds``) ends the session; the summary follows.  Any class with
``sounddevice.InputStream``'s constructor, context manager and ``active`` attribute can stand in for
the device (the tests replay a WAV file through the very same callback).
"""
from __future__ import annotations

import queue
import time
from typing import Callable

import numpy as np

from ..cli_common import UserError


def sounddevice():
    """The ``sounddevice`` module, or a one-line :class:`UserError` saying what is missing."""
    try:
        import sounddevice as sd
    except ImportError:
        raise UserError("live input needs the sounddevice package: pip install 'lstm-media[live]' "
                        "(make setup installs it)") from None
    except OSError as e:  # sounddevice is there but the PortAudio library is not
        raise UserError(f"live input needs the PortAudio library ({e}); install Debian's libportaudio2 "
                        "(scripts/setup_debian.sh does)") from None
    return sd


def input_devices() -> list[dict]:
    """``[{"index", "name", "channels", "default_samplerate", "default"}]`` for every input device."""
    sd = sounddevice()
    try:
        devices = sd.query_devices()
        default = sd.default.device[0] if sd.default.device is not None else -1
    except sd.PortAudioError as e:
        raise UserError(f"cannot list audio devices: {e}") from None
    return [{"index": i, "name": d["name"], "channels": int(d["max_input_channels"]),
             "default_samplerate": float(d["default_samplerate"]), "default": i == default}
            for i, d in enumerate(devices) if d["max_input_channels"] > 0]


class LiveSession:
    """Blocks from a PortAudio-style callback -> the detector -> detections, as they happen."""

    def __init__(self, detector, sample_rate: int, block: int,
                 emit: Callable[[tuple[float, str, float]], None] = lambda d: None):
        self.detector, self.sample_rate, self.block, self.emit = detector, int(sample_rate), int(block), emit
        self.queue: queue.Queue = queue.Queue()
        self.detections: list[tuple[float, str, float]] = []
        self.samples = 0
        self.overflows = 0  # blocks PortAudio flagged (input overflow: audio was lost)
        self.compute = 0.0

    def callback(self, indata, frames, time_info, status) -> None:
        """PortAudio's thread: keep a copy of the block (first channel) and return at once."""
        if status:
            self.overflows += 1
        self.queue.put(np.array(indata[:frames, 0], dtype=np.float32))

    def _consume(self, block: np.ndarray) -> None:
        t0 = time.perf_counter()
        found = self.detector.push(block)
        self.compute += time.perf_counter() - t0
        self.samples += len(block)
        for d in found:
            self.detections.append(d)
            self.emit(d)

    def run(self, stream_class, device=None, seconds: float | None = None) -> dict:
        """Open ``stream_class`` (``sounddevice.InputStream`` or a stand-in) and detect until ``seconds`` of
        audio have passed, the stream ends, or Ctrl-C.  Returns the summary."""
        limit = None if seconds is None else int(round(seconds * self.sample_rate))
        interrupted = False
        stream = stream_class(samplerate=self.sample_rate, blocksize=self.block, device=device, channels=1,
                              dtype="float32", callback=self.callback)
        try:
            with stream:
                while limit is None or self.samples < limit:
                    try:
                        block = self.queue.get(timeout=0.2)
                    except queue.Empty:
                        if not stream.active and self.queue.empty():
                            break  # the stream ended (a stand-in ran out, or the device went away)
                        continue
                    if limit is not None:
                        block = block[: limit - self.samples]
                    self._consume(block)
        except KeyboardInterrupt:
            interrupted = True
        return self.summary(interrupted)

    def summary(self, interrupted: bool = False) -> dict:
        audio = self.samples / self.sample_rate
        counts: dict[str, int] = {}
        for _, w, _ in self.detections:
            counts[w] = counts.get(w, 0) + 1
        return {"detections": self.detections, "counts": counts, "seconds_audio": audio,
                "seconds_compute": self.compute, "rtf": self.compute / max(audio, 1e-9),
                "overflows": self.overflows, "interrupted": interrupted}


def open_error(e: Exception, device) -> UserError:
    where = "the default input device" if device is None else f"input device {device}"
    return UserError(f"cannot record from {where}: {' '.join(str(e).split())} "
                     "(lstm-media kws detect --list-devices shows the devices)")


def run_mic(detector, device: int | None, seconds: float | None, block_ms: float,
            emit: Callable[[tuple[float, str, float]], None], announce: Callable[[], None] | None = None) -> dict:
    """Detect from a real input device through sounddevice (16 kHz mono float32).  ``announce`` runs once
    the device has been checked (so a missing device is one error line, with nothing printed before)."""
    sd = sounddevice()
    sr = detector.fc.sample_rate
    try:
        if device is None:
            sd.query_devices(kind="input")  # raises when there is no default input device
        else:
            info = sd.query_devices(device)
            if info["max_input_channels"] < 1:
                raise UserError(f"--device-index {device}: {info['name']} has no input channels "
                                "(--list-devices shows the input devices)")
        sd.check_input_settings(device=device, channels=1, dtype="float32", samplerate=sr)
    except UserError:
        raise
    except (sd.PortAudioError, ValueError) as e:
        raise open_error(e, device) from None
    session = LiveSession(detector, sr, max(1, int(round(block_ms * sr / 1000))), emit)
    if announce is not None:
        announce()
    try:
        return session.run(sd.InputStream, device=device, seconds=seconds)
    except sd.PortAudioError as e:
        raise open_error(e, device) from None


__all__ = ["LiveSession", "run_mic", "input_devices", "sounddevice"]
