"""Bad input: every file is decoded in one place; bad files give one line naming the file and are
skipped and counted by train/eval/predict, never crashing the run (the commands: test_kws_cli.py)."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encoders.io import DecodeError, SkipCounter
from encoders.io.audio import load_audio, write_wav
from pipelines.kws.data import build_split, make_labels, scan_dataset


def tone(n=16000, sr=16000, f=440.0, amp=0.3):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def make_bad_files(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    files = {"empty": d / "empty_nohash_0.wav", "text": d / "text_nohash_0.wav", "silent": d / "silent_nohash_0.wav",
             "truncated": d / "trunc_nohash_0.wav", "garbage": d / "garbage_nohash_0.flac"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not audio\n" * 20)
    write_wav(files["silent"], np.zeros(16000, np.float32))
    write_wav(d / "_full.wav", tone())
    raw = (d / "_full.wav").read_bytes()
    files["truncated"].write_bytes(raw[: len(raw) // 2])  # header promises 16000 frames
    (d / "_full.wav").unlink()
    files["garbage"].write_bytes(b"fLaC" + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    return files


@pytest.mark.parametrize("kind", ["empty", "text", "silent", "truncated", "garbage", "missing"])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, kind):
    files = make_bad_files(tmp_path)
    path = files.get(kind, tmp_path / "missing.wav")
    with pytest.raises(DecodeError) as e:
        load_audio(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg


def test_stereo_is_mixed_down(tmp_path):
    left, right = tone(f=300), tone(f=700, amp=0.1)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "st.wav"), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 22050, 44100])
def test_other_rates_are_resampled(tmp_path, sr):
    sf.write(tmp_path / "r.wav", tone(n=sr, sr=sr, f=440), sr, subtype="FLOAT")
    y = load_audio(tmp_path / "r.wav")
    assert abs(len(y) - 16000) <= 1
    spec = np.abs(np.fft.rfft(y[:16000] * np.hanning(16000)))
    assert abs(np.argmax(spec) - 440) <= 2  # the tone survives at the right pitch (1 Hz bins)


def test_short_and_long_clips_padded_or_cut(tmp_path):
    write_wav(tmp_path / "short.wav", tone(n=4000))
    write_wav(tmp_path / "long.wav", tone(n=30000))
    s, l = load_audio(tmp_path / "short.wav", length=16000), load_audio(tmp_path / "long.wav", length=16000)
    assert len(s) == len(l) == 16000
    assert np.all(s[4000:] == 0) and np.abs(s[:4000]).max() > 0.2
    np.testing.assert_allclose(l, load_audio(tmp_path / "long.wav")[:16000])


def test_silent_noise_file_allowed_when_asked(tmp_path):
    write_wav(tmp_path / "z.wav", np.zeros(16000, np.float32))
    assert load_audio(tmp_path / "z.wav", allow_silent=True).shape == (16000,)


def test_split_builder_skips_and_counts(tmp_path):
    root = tmp_path / "ds"
    write_wav(root / "yes" / "a_nohash_0.wav", tone())
    bad = make_bad_files(root / "no")
    sk = SkipCounter()
    sp = build_split(scan_dataset(root), None, make_labels(["yes", "no"]), sk, progress=False)
    assert len(sp.waves) == 1 and len(sk) == len(bad)
    assert all(any(str(p) in e for e in sk.errors) for p in bad.values())
