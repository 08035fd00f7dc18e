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
    """18 voices (8 espeak-ng, 5 flite, 3 Festival, 2 piper pseudo-speakers) x 3 words; a tiny model trained
    without flite."""
    d = tmp_path_factory.mktemp("kws-robust")
    data, run = d / "data", d / "run"
    r = run_cli("synth", "--out", data, "--words", "yes", "no", "cat", "--variants-per-accent", "1",
                "--flite-variants", "1", "--festival-variants", "1", "--piper-variants", "2", "--espeak-takes", "1",
                "--json")
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


def test_four_engines_speak_every_word_with_pseudo_speakers(robust_run):
    data, _, s = robust_run
    meta = json.loads((data / "synth.json").read_text())
    voices = {v["id"]: v for v in meta["voices"]}
    assert s is not None and meta["summary"]["failed"] == 0
    assert sorted(v["engine"] for v in voices.values()).count("piper") == 2
    assert voices["piper-joe-v0"]["warp"] == 1.0 and voices["piper-joe-v1"]["warp"] != 1.0
    for word in ("yes", "no", "cat"):
        for vid in ("festival-kal", "festival-ked", "festival-slthts", "piper-joe-v0", "piper-joe-v1"):
            w = load_audio(data / word / f"{vid}_nohash_0.wav", sr=16000)
            assert len(w) == 16000 and 0.2 < np.abs(w).max() <= 0.9  # centred, normalised speech
            assert np.sqrt(np.mean(w ** 2)) > 0.01


def test_the_cli_names_the_engines_synth_speaks():
    from pipelines.kws import cli, synth
    from pipelines.kws.data import ENGINES

    assert cli.ENGINES_ALL == synth.ENGINES_ALL == ENGINES  # the CLI keeps a copy so that --help stays fast


def test_pico_is_the_outside_engine(robust_run, tmp_path):
    """SVOX Pico speaks every word, is not in the default data (so no run trains on it), and a trained model
    is measured on it with the leave-one-engine-out protocol."""
    pytest.importorskip("ttspico")
    from pipelines.kws.synth import DEFAULT_ENGINES, SynthConfig
    from pipelines.kws.train import outside_engine_accuracy

    assert "pico" not in SynthConfig().engines == DEFAULT_ENGINES
    data, run, _ = robust_run
    assert "pico" not in scan_dataset(data).engines
    out = tmp_path / "pico"
    r = run_cli("synth", "--out", out, "--engines", "pico", "--words", "yes", "no", "cat", "--pico-variants", "2", "--json")
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "synth.json").read_text())
    assert meta["summary"] == {**meta["summary"], "clips": 12, "voices": 4, "failed": 0}
    pitches = {v["id"]: v["pitch"] for v in meta["voices"]}
    assert pitches["pico-enUS-v0"] == 1.0 and pitches["pico-enUS-v1"] != 1.0  # variant 0: the voice as it is
    idx = scan_dataset(out)
    assert idx.engines == ["pico"] and len(idx.items) == 12
    for it in idx.items:
        w = load_audio(it.path, sr=16000)
        assert len(w) == 16000 and 0.2 < np.abs(w).max() <= 0.9 and np.sqrt(np.mean(w ** 2)) > 0.01
    o = outside_engine_accuracy(run / "best.pt", out)
    assert o["n"] == 8 + 1 + 1 and 0 <= o["accuracy"] <= 1  # every keyword clip, 10 % unknowns and silences


def test_vocal_tract_warp_scales_frequencies():
    from pipelines.kws.synth import vocal_tract_warp

    sr = 16000
    tone = np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    for factor in (0.88, 1.0, 1.15):
        w = vocal_tract_warp(tone, factor)
        assert abs(len(w) - sr / factor) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(w * np.hanning(len(w))))) * sr / len(w)
        assert abs(peak - 440 * factor) < 3


def test_synth_names_a_missing_or_unknown_engine(tmp_path, monkeypatch):
    from pipelines.cli_common import UserError
    from pipelines.kws import synth

    monkeypatch.setattr(synth, "engine_available", lambda e, cfg=None: e != "piper")
    with pytest.raises(UserError, match="piper is not installed: pip install piper-tts"):
        synth.synthesize(tmp_path / "d", synth.SynthConfig(words=("yes",)))
    with pytest.raises(UserError, match="unknown engine 'sapi'"):
        synth.synthesize(tmp_path / "d", synth.SynthConfig(words=("yes",), engines=("espeak", "sapi")))
    assert not (tmp_path / "d").exists()


def test_holdout_engine_trains_without_it_and_tests_on_all_of_it(robust_run):
    data, run, s = robust_run
    idx = scan_dataset(data)
    assert idx.engines == ["espeak", "festival", "flite", "piper"]
    h = s["holdout_engine"]
    assert h["engine"] == "flite" and h["trained_on"] == ["espeak", "festival", "piper"]
    n_flite_kw = sum(1 for it in idx.items if it.engine == "flite" and it.word in ("yes", "no"))
    assert h["n"] >= n_flite_kw == 10 and 0 <= h["accuracy"] <= 1
    b = torch.load(run / "best.pt", weights_only=True)
    assert b["task"]["holdout_engine"] == "flite"
    assert b["front_end"]["amin"] == 1e-5  # the default log floor: empty bands stay inside the trained range
    # no flite clip reached training or validation; the by-voice test covers the other engines only
    assert b["data"]["clips"]["training"] + b["data"]["clips"]["validation"] + b["data"]["clips"]["testing"] == \
        sum(1 for it in idx.items if it.engine != "flite")
    assert set(s["test_by_engine"]) <= {"espeak", "festival", "piper"}
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
    one_error_line(run_cli("eval", "--checkpoint", run / "best.pt", "--data", data, "--engine", "mbrola"),
                   "mbrola", "espeak, festival, flite, piper")
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


def test_engine_balance_gives_every_engine_the_same_share(robust_run):
    data = robust_run[0]
    labels = make_labels(["yes", "no"])
    idx = scan_dataset(data)
    tr = build_split(idx, "training", labels, SkipCounter(), progress=False)
    plain = KWSTrainSet(tr, noise_bank(data), labels, AugmentConfig.basic(), seed=0)
    fair = KWSTrainSet(tr, noise_bank(data), labels, AugmentConfig.basic(), seed=0, balance_engines=True)
    engines = sorted({tr.engines[i] for i in plain.kw})
    assert len(engines) >= 3
    drawn = []
    for epoch in range(200):
        fair.set_epoch(epoch)
        drawn += [tr.engines[i] for i in fair.kw]
        assert len(fair.kw) == len(plain.kw) and set(fair.kw) <= set(plain.kw)
    share = {e: drawn.count(e) / len(drawn) for e in engines}
    assert all(abs(s - 1 / len(engines)) < 0.03 for s in share.values()), share
    plain_share = {e: sum(tr.engines[i] == e for i in plain.kw) / len(plain.kw) for e in engines}
    assert max(plain_share.values()) > 0.4  # espeak-ng's 8 voices outnumber the others' one or two
    a, b = fair[0], fair[0]  # still seeded
    assert torch.equal(a[0], b[0])


def test_data_workers_train_the_same_model(robust_run, tmp_path):
    """--workers moves the augmentation to another process; the items, hence the weights, stay the same."""
    data = robust_run[0]
    sd = []
    for w in (0, 1):
        r = run_cli("train", "--data", data, "--out", tmp_path / f"w{w}", "--words", "yes", "no", "--hidden", "16",
                    "--layers", "1", "--batch-size", "8", "--max-steps", "3", "--epochs", "1", "--workers", str(w),
                    "--threads", "1", "--device", "cpu", "--json")
        assert r.returncode == 0, r.stderr
        sd.append(torch.load(tmp_path / f"w{w}" / "last.pt", weights_only=True)["state_dict"])
    assert sd[0].keys() == sd[1].keys()
    for k in sd[0]:
        torch.testing.assert_close(sd[0][k], sd[1][k], rtol=0, atol=1e-6)


def test_epochs_flag_trains_exactly_those_epochs():
    import argparse

    from pipelines.kws.cli import _train_config, build_parser
    from pipelines.kws.train import KWSConfig

    p = argparse.ArgumentParser()
    build_parser(p)
    base = ["train", "--data", "d", "--out", "o"]
    assert _train_config(p.parse_args(base)).min_steps == KWSConfig().min_steps > 0
    assert _train_config(p.parse_args(base + ["--epochs", "2"])).min_steps == 0
    assert _train_config(p.parse_args(base + ["--epochs", "2", "--min-steps", "40"])).min_steps == 40
    cfg = KWSConfig()  # issue #9's recipe is the default
    assert cfg.augment == AugmentConfig.robust() and cfg.balance_engines and cfg.cmn_frames > 0
