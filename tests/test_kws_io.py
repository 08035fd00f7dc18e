"""Bad input: every file is decoded in one place; bad files give one line naming the file and are
skipped and counted by train/eval/predict, never crashing the run."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from encoders.io import DecodeError, SkipCounter
from encoders.io.audio import load_audio, write_wav
from pipelines.kws.data import build_split, make_labels, scan_dataset

REPO = Path(__file__).resolve().parents[1]


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


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args):
    """Run scripts/kws.py in this process (no interpreter start-up per call); capture its streams."""
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("kws_cli", REPO / "scripts" / "kws.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(cli.get_args_parser().parse_args([str(a) for a in args]))
        except Exception as e:  # noqa: BLE001 - a crash is a failed run, reported like a subprocess would
            import traceback

            traceback.print_exc(file=err)
            rc = 1
    return Result(rc, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthesised dataset (3 words, 10 voices) with bad files mixed in, and a few training steps."""
    d = tmp_path_factory.mktemp("kws")
    data, run = d / "data", d / "run"
    r = run_cli("synth", "--out", data, "--words", "yes", "no", "cat", "--variants-per-accent", "1",
                "--flite-takes", "1", "--espeak-takes", "1", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["clips"] == 3 * (8 + 5 * 1) and summary["failed"] == 0
    bad = make_bad_files(data / "yes")
    r = run_cli("train", "--data", data, "--out", run, "--words", "yes", "no", "--epochs", "2", "--hidden", "16",
                "--layers", "1", "--batch-size", "8", "--json")
    assert r.returncode == 0, r.stderr
    return data, run, bad, json.loads(r.stdout), r.stderr


def test_synth_layout(tiny_run):
    data = tiny_run[0]
    for w in ("yes", "no", "cat"):
        clips = sorted((data / w).glob("*-*_nohash_*.wav"))
        assert len(clips) >= 13
        info = sf.info(clips[0])
        assert info.samplerate == 16000 and info.frames == 16000 and info.channels == 1
    assert (data / "validation_list.txt").is_file() and (data / "testing_list.txt").is_file()
    assert len(list((data / "_background_noise_").glob("*.wav"))) >= 5
    meta = json.loads((data / "synth.json").read_text())
    listed = (data / "testing_list.txt").read_text().split() + (data / "validation_list.txt").read_text().split()
    test_voices = {Path(p).name.split("_nohash_")[0] for p in (data / "testing_list.txt").read_text().split()}
    train_voices = {p.name.split("_nohash_")[0] for p in data.glob("*/*_nohash_*.wav")} - \
        {Path(p).name.split("_nohash_")[0] for p in listed}
    assert not (test_voices & train_voices)  # split by voice, never by clip
    assert len(meta["voices"]) == 13


def test_train_skips_bad_files_and_writes_checkpoint(tiny_run):
    data, run, bad, summary, stderr = tiny_run
    assert (run / "best.pt").is_file() and (run / "loss.png").is_file()
    n_bad_training = sum(1 for p in bad.values())  # names share one speaker: all in one split
    assert summary["skipped"] == n_bad_training
    for p in bad.values():
        assert str(p) in stderr
    assert 0.0 <= summary["test_accuracy"] <= 1.0 if summary["test_accuracy"] is not None else True


def test_eval_json_and_png_with_and_without_lists(tiny_run, tmp_path):
    data, run, bad, _, _ = tiny_run
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", data, "--json", "--png", tmp_path / "cm.png")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert {"accuracy", "per_class", "n"} <= set(rep) and rep["n"] > 0 and (tmp_path / "cm.png").is_file()
    # a folder without list files: every file counts (bad ones skipped and counted)
    flat = tmp_path / "flat"
    for p in list(data.glob("no/*.wav"))[:4] + list(bad.values()):
        (flat / "no").mkdir(parents=True, exist_ok=True)
        (flat / "no" / p.name).write_bytes(p.read_bytes())
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", flat, "--json", "--png", tmp_path / "cm2.png")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["n"] == 4 and rep["skipped"] == len(bad) and rep["split"] == "all"


def test_predict_and_detect(tiny_run, tmp_path):
    data, run, bad, _, _ = tiny_run
    good = sorted(data.glob("no/*.wav"))[0]
    r = run_cli("predict", "--checkpoint", run / "best.pt", good, bad["text"], "--json")
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)["predictions"]
    assert preds[0]["label"] in ("_silence_", "_unknown_", "yes", "no") and 0 <= preds[0]["score"] <= 1
    assert "error" in preds[1] and str(bad["text"]) in r.stderr
    wav = tmp_path / "long.wav"
    r = run_cli("stream-wav", "--data", data, "--out", wav, "--words", "yes", "no", "--keywords", "3",
                "--unknown", "1")
    assert r.returncode == 0, r.stderr
    truth = json.loads(wav.with_suffix(".json").read_text())
    assert len(truth) == 4 and sf.info(wav).duration > 4 * 2
    r = run_cli("detect", "--checkpoint", run / "best.pt", wav, "--json", "--threshold", "0.0")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["rtf"] > 0 and res["score"]["keywords"] == 3 and len(res["detections"]) >= 1
    r = run_cli("detect", "--checkpoint", run / "best.pt", bad["empty"])
    assert r.returncode != 0 and str(bad["empty"]) in r.stderr and "Traceback" not in r.stderr


def test_cli_task_selection():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kws_cli", REPO / "scripts" / "kws.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    p = cli.get_args_parser()
    cfg = cli._train_config(p.parse_args(["train", "--data", "d", "--out", "o"]))
    assert cfg.words == ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go") and cfg.epochs == 15
    cfg = cli._train_config(p.parse_args(["train", "--data", "d", "--out", "o", "--preset", "digits", "--epochs", "3"]))
    assert cfg.words[0] == "zero" and len(cfg.words) == 10 and cfg.epochs == 3
    cfg = cli._train_config(p.parse_args(["train", "--data", "d", "--out", "o", "--words", "cat", "dog",
                                          "--bidirectional", "--features", "logmel", "--no-augment"]))
    assert cfg.words == ("cat", "dog") and cfg.bidirectional and cfg.feature_kind == "logmel"
    assert cfg.augment.noise_prob == 0 and cfg.augment.speed == (1.0, 1.0)
