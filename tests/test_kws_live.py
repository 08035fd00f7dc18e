"""``lstm-media kws detect --mic``: a stand-in input stream replays a WAV through the very PortAudio callback
path and gives the detections of ``detect FILE``; Ctrl-C and --seconds end with a summary; no PortAudio or
no input device is one error line."""
import _thread
import json
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from encoders.io.audio import load_audio
from pipelines.kws.cli import main

MODELS = Path(__file__).resolve().parents[1] / "pipelines" / "models"
needs_shipped = pytest.mark.skipif(not (MODELS / "kws.pt").is_file(), reason="shipped kws model not built (make models)")


class PortAudioError(Exception):
    pass


def fake_sounddevice(wave: np.ndarray, loop: bool = False, interrupt_after: int | None = None, record: dict = None):
    """A sounddevice stand-in whose InputStream feeds ``wave`` to the callback from its own thread, in
    ``blocksize`` blocks of shape (frames, 1) float32, as PortAudio does."""

    class InputStream:
        def __init__(self, samplerate, blocksize, device, channels, dtype, callback):
            assert (samplerate, channels, dtype) == (16000, 1, "float32")
            self.block, self.callback, self.active = blocksize, callback, False
            self.stop = threading.Event()
            if record is not None:
                record.update(device=device, blocksize=blocksize)

        def _feed(self):
            n = 0
            while not self.stop.is_set():
                for s in range(0, len(wave), self.block):
                    if self.stop.is_set():
                        break
                    chunk = wave[s: s + self.block]
                    self.callback(chunk[:, None].astype(np.float32), len(chunk), None, 0)
                    n += 1
                    if interrupt_after is not None and n == interrupt_after:
                        # the user presses Ctrl-C, and again while the program has not stopped: a
                        # KeyboardInterrupt that lands in a finaliser run by the garbage collector (an
                        # in-process DataLoader's, say) is printed and dropped by Python, as a real
                        # Ctrl-C would be
                        while not self.stop.wait(0 if n == interrupt_after else 2.0):
                            _thread.interrupt_main()
                            n += 1
                        return
                    time.sleep(0)
                if not loop:
                    break
            self.active = False

        def __enter__(self):
            self.active = True
            self.thread = threading.Thread(target=self._feed, daemon=True)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.stop.set()
            self.thread.join()
            self.active = False
            return False

    def query_devices(device=None, kind=None):
        info = {"name": "replay", "max_input_channels": 1, "default_samplerate": 16000.0}
        return info if (device is not None or kind is not None) else [info]

    return types.SimpleNamespace(InputStream=InputStream, PortAudioError=PortAudioError, query_devices=query_devices,
                                 check_input_settings=lambda **kw: None,
                                 default=types.SimpleNamespace(device=(0, 0)))


def detections_from_lines(out: str):
    return [tuple(json.loads(line).values()) for line in out.splitlines() if line.startswith('{"time_s"')]


@needs_shipped
def test_replayed_wav_through_the_callback_gives_the_file_detections(kws_stream_recording, monkeypatch, capsys):
    assert main(["detect", str(kws_stream_recording), "--json", "--threads", "1"]) == 0
    ref = [tuple(d) for d in json.loads(capsys.readouterr().out)["detections"]]
    assert len(ref) >= 3  # the shipped model hears the keywords of held-out voices

    wave = load_audio(kws_stream_recording, sr=16000)
    seen = {}
    monkeypatch.setattr("pipelines.kws.live.sounddevice", lambda: fake_sounddevice(wave, record=seen))
    assert main(["detect", "--mic", "--json", "--device-index", "3", "--block-ms", "30", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert detections_from_lines(out) == ref
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert seen == {"device": 3, "blocksize": 480}
    assert abs(summary["seconds_audio"] - len(wave) / 16000) < 1e-6 and not summary["interrupted"]
    assert sum(summary["counts"].values()) == len(ref)

    # the plain text form prints "time word score" lines as they happen, then the summary line
    assert main(["detect", "--mic", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[1] for ln in lines[:-1]] == [w for _, w, _ in ref]
    assert lines[-1].startswith("done after") and f"{len(ref)} detections" in lines[-1]


@needs_shipped
def test_ctrl_c_and_seconds_end_with_a_summary(kws_stream_recording, monkeypatch, capsys):
    import signal

    wave = load_audio(kws_stream_recording, sr=16000)
    monkeypatch.setattr("pipelines.kws.live.sounddevice", lambda: fake_sounddevice(wave, interrupt_after=40))
    # Ctrl-C as a terminal delivers it: a test run started in the background (a shell's `cmd &`) inherits
    # SIGINT ignored, and then Python raises nothing for it
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(["detect", "--mic", "--block-ms", "100"]) == 0  # Ctrl-C: a clean end, exit 0
    finally:
        signal.signal(signal.SIGINT, previous)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("stopped after") and "detections" in last

    monkeypatch.setattr("pipelines.kws.live.sounddevice", lambda: fake_sounddevice(wave, loop=True))
    assert main(["detect", "--mic", "--seconds", "2.5", "--json"]) == 0  # an endless source, stopped by --seconds
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary["seconds_audio"] == 2.5 and not summary["interrupted"]


def _has_input_device() -> bool:
    try:
        import sounddevice as sd

        return any(d["max_input_channels"] > 0 for d in sd.query_devices())
    except Exception:  # no sounddevice, no PortAudio, or PortAudio without devices
        return False


@pytest.mark.skipif(_has_input_device(), reason="this machine has an audio input device")
@pytest.mark.parametrize("argv", [["--mic"], ["--mic", "--device-index", "7", "--seconds", "1"]])
def test_no_portaudio_or_no_input_device_is_one_error_line(argv):
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "kws", "detect", *argv], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:"), r.stderr


@pytest.mark.parametrize("argv, code", [
    (["--mic", "--device-index", "-1"], 2),
    (["--mic", "--seconds", "0"], 2),
    ([], 1),  # neither FILE nor --mic
    (["x.wav", "--seconds", "3"], 1),  # --seconds goes with --mic
])
def test_mic_flags_are_checked(argv, code, capsys):
    try:
        rc = main(["detect", *argv])
    except SystemExit as e:  # argparse usage error
        rc = e.code
    assert rc == code
    if code == 1:
        assert capsys.readouterr().err.strip().startswith("error:")
