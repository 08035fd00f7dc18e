"""Issue #9: engines known per clip, leave-one-engine-out training, channel augmentation (VTLP, room, EQ,
telephone), any input rate/channels, and ``enroll`` (custom words from a few recordings)."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from encoders.audio import (AugmentConfig, FeatureConfig, features, hard_clip, mu_law, random_eq, reverberate,
                            telephone, warped_filterbank, _tables)
from encoders.io import SkipCounter
from encoders.io.audio import load_audio
from pipelines import bundle
from pipelines.kws.data import KWSTrainSet, build_split, engine_of, make_labels, noise_bank, scan_dataset

from test_kws_cli import one_error_line, run_cli

TINY = ("--epochs", "1", "--hidden", "16", "--layers", "1", "--batch-size", "8", "--device", "cpu")


def chirp(n=16000, sr=16000):
    t = np.arange(n) / sr
    return (0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    """13 voices (8 espeak-ng, 5 flite) x 3 words; a tiny model trained without flite."""
    d = tmp_path_factory.mktemp("kws-robust")
    data, run = d / "data", d / "run"
    r = run_cli("synth", "--out", data, "--words", "yes", "no", "cat", "--variants-per-accent", "1",
                "--flite-takes", "1", "--espeak-takes", "1", "--json")
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "--data", data, "--out", run, "--words", "yes", "no", *TINY, "--holdout-engine", "flite",
                "--json")
    assert r.returncode == 0, r.stderr
    return data, run, json.loads(r.stdout)


def test_engine_of_names():
    assert engine_of("yes/espeak-en-us-m3_nohash_0.wav") == "espeak"
    assert engine_of("flite-kal16_nohash_3.wav") == "flite"
    assert engine_of("yes/0a7c2a8d_nohash_0.wav") is None  # a Speech Commands speaker: a person
    assert engine_of("x_nohash_0.wav", {"x": "festival"}) == "festival"  # synth.json's record wins


def test_holdout_engine_trains_without_it_and_tests_on_all_of_it(robust_run):
    data, run, s = robust_run
    idx = scan_dataset(data)
    assert idx.engines == ["espeak", "flite"]
    h = s["holdout_engine"]
    assert h["engine"] == "flite" and h["trained_on"] == ["espeak"]
    n_flite_kw = sum(1 for it in idx.items if it.engine == "flite" and it.word in ("yes", "no"))
    assert h["n"] >= n_flite_kw == 10 and 0 <= h["accuracy"] <= 1
    b = torch.load(run / "best.pt", weights_only=True)
    assert b["task"]["holdout_engine"] == "flite"
    assert b["front_end"]["amin"] == 1e-5  # the default log floor: empty bands stay inside the trained range
    # no flite clip reached training or validation; the by-voice test covers espeak only
    assert b["data"]["clips"]["training"] + b["data"]["clips"]["validation"] + b["data"]["clips"]["testing"] == \
        sum(1 for it in idx.items if it.engine == "espeak")
    assert set(s["test_by_engine"]) <= {"espeak"}
    assert s["test_telephone_accuracy"] is None or 0 <= s["test_telephone_accuracy"] <= 1
    rep = json.loads((run / "test_report.json").read_text())
    assert rep["holdout_engine"]["engine"] == "flite" and (run / "confusion_holdout_engine.png").is_file()


def test_eval_by_engine_and_telephone(robust_run, tmp_path):
    data, run, _ = robust_run
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", data, "--split", "all", "--engine", "flite",
                "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert list(rep["by_engine"]) == ["flite"] and rep["by_engine"]["flite"]["n"] == rep["n"] == 15
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", data, "--telephone", "--json", "--device", "cpu")
    assert r.returncode == 0 and json.loads(r.stdout)["telephone"] is True
    one_error_line(run_cli("eval", "--checkpoint", run / "best.pt", "--data", data, "--engine", "festival"),
                   "festival", "espeak, flite")
    one_error_line(run_cli("train", "--data", data, "--out", tmp_path / "r", *TINY, "--holdout-engine", "mbrola"),
                   "mbrola")
    assert not (tmp_path / "r").exists()


def test_vtlp_filterbank():
    cfg = FeatureConfig()
    _, fb, _ = _tables(cfg)
    assert torch.allclose(warped_filterbank(cfg, torch.ones(2))[1], fb, atol=1e-6)
    x = torch.from_numpy(np.stack([chirp(), chirp()]))
    assert torch.allclose(features(x, cfg, torch.ones(2)), features(x, cfg), atol=1e-3)
    # a factor > 1 reads higher bins: the filters' centres of mass move up the bin axis
    bins = torch.arange(fb.shape[0], dtype=torch.float32).unsqueeze(-1)
    centre = lambda b: ((b * bins).sum(0) / b.sum(0).clamp_min(1e-9))[5:30]
    w = warped_filterbank(cfg, torch.tensor([1.2, 0.8]))
    assert (centre(w[0]) > centre(fb)).all() and (centre(w[1]) < centre(fb)).all()


def test_channel_effects_keep_length_and_level_and_are_seeded():
    x = chirp() + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))
    for f in (lambda r: reverberate(x, r, 0.5), lambda r: random_eq(x, r, 10.0)):
        a, b, c = f(np.random.default_rng(1)), f(np.random.default_rng(1)), f(np.random.default_rng(2))
        assert a.shape == x.shape and np.array_equal(a, b) and not np.array_equal(a, c)
        assert abs(rms(a) / rms(x) - 1) < 1e-3
    assert len(np.unique(mu_law(np.linspace(-1, 1, 10000)))) <= 256
    y = telephone(x)
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / 16000)
    assert y.shape == x.shape and spec[f > 4200].sum() < 1e-3 * spec.sum()  # nothing above 8 kHz's Nyquist
    assert spec[f < 150].sum() < 1e-2 * spec.sum()  # the band starts near 300 Hz
    assert np.abs(hard_clip(x, 0.5)).max() == pytest.approx(np.abs(x).max(), rel=1e-5)


def test_robust_augmentation_is_seeded(robust_run):
    data = robust_run[0]
    labels = make_labels(["yes", "no"])
    tr = build_split(scan_dataset(data), "training", labels, SkipCounter(), progress=False)
    ds = KWSTrainSet(tr, noise_bank(data), labels, AugmentConfig.robust(), seed=1)
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0]) and a[5] == b[5] and 0.85 <= a[5] <= 1.18
    assert torch.isfinite(a[0]).all()
    basic = KWSTrainSet(tr, noise_bank(data), labels, AugmentConfig.basic(), seed=1)
    assert basic[0][5] == 1.0


def test_eight_khz_stereo_input(robust_run, tmp_path):
    data, run, _ = robust_run
    clip = load_audio(next((data / "yes").glob("espeak-*_nohash_0.wav")))
    from scipy.signal import resample_poly

    narrow = resample_poly(clip, 1, 2).astype(np.float32)
    f8 = tmp_path / "phone.wav"
    sf.write(f8, np.stack([narrow, 0.5 * narrow], 1), 8000, subtype="PCM_16")
    back = load_audio(f8)
    assert back.shape == (16000,) and np.corrcoef(back, clip)[0, 1] > 0.9  # resampled and mixed down
    r = run_cli("predict", "--checkpoint", run / "best.pt", f8, "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"][0]["label"] in ("_silence_", "_unknown_", "yes", "no")


def test_enroll_adds_a_word_and_writes_a_kws_bundle(robust_run, tmp_path):
    data, run, _ = robust_run
    recs = sorted((data / "cat").glob("espeak-*.wav"))[:3]
    out = tmp_path / "enrolled"
    r = run_cli("enroll", "--word", "kitty", *recs, "--data", data, "--checkpoint", run / "best.pt", "--out", out,
                "--epochs", "1", "--old-per-class", "4", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["labels"] == ["_silence_", "_unknown_", "yes", "no", "kitty"] and len(s["words"]["kitty"]) == 3
    b = torch.load(out / "best.pt", weights_only=True)
    bundle.check(b)
    assert b["kind"] == "kws" and b["model_config"]["n_classes"] == 5 and b["extras"]["enrolled"] == ["kitty"]
    base = torch.load(run / "best.pt", weights_only=True)
    assert torch.equal(b["state_dict"]["feat_mean"], base["state_dict"]["feat_mean"])  # the front end is kept
    r = run_cli("predict", "--checkpoint", out / "best.pt", recs[0], "--json", "--device", "cpu")
    assert r.returncode == 0 and json.loads(r.stdout)["predictions"][0]["label"] in s["labels"]
    assert (out / "enroll_report.json").is_file()
    r = run_cli("eval", "--checkpoint", out / "best.pt", "--data", data, "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr  # an enrolled bundle is an ordinary kws bundle
    # an existing class, a missing word, unreadable recordings: one line each
    one_error_line(run_cli("enroll", "--word", "yes", *recs, "--data", data, "--checkpoint", run / "best.pt",
                           "--out", tmp_path / "x"), "yes", "already")
    one_error_line(run_cli("enroll", "--word", str(recs[0]), "--data", data, "--out", tmp_path / "x"), "--word")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    one_error_line(run_cli("enroll", "--word", "kitty", bad, "--data", data, "--checkpoint", run / "best.pt",
                           "--out", tmp_path / "y"), "kitty", "recordings")
