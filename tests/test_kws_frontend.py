"""Front end: librosa match, batched == clip by clip, streaming framing, augmentation primitives, configs."""
import dataclasses

import librosa
import numpy as np
import pytest
import torch

from encoders.audio import (AugmentConfig, FeatureConfig, StreamingFrames, features, log_mel, mfcc, mix_noise,
                            rms, sample_spec_masks, spec_augment, time_shift)


def signal(seed=0, n=16000):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = rng.uniform(150, 900)
    return (0.3 * np.sin(2 * np.pi * f0 * t) * np.hanning(n) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def librosa_logmel(y, cfg):
    m = librosa.feature.melspectrogram(y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
                                       hop_length=cfg.hop_length, center=False, n_mels=cfg.n_mels, fmin=cfg.f_min,
                                       fmax=cfg.f_max, power=2.0)
    return librosa.power_to_db(m, amin=cfg.amin, top_db=None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mfcc_matches_librosa(seed):
    cfg = FeatureConfig()
    y = signal(seed)
    ref = librosa.feature.mfcc(S=librosa_logmel(y, cfg), n_mfcc=cfg.n_mfcc).T
    ours = mfcc(torch.from_numpy(y)[None], cfg)[0].numpy()
    assert ours.shape == ref.shape == (97, 40)
    # librosa works in float64 here; 1e-3 dB-scale units is well below the feature spread (~100)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_logmel_matches_librosa_and_option():
    cfg = FeatureConfig(kind="logmel", n_mels=64)
    y = signal(5)
    ours = features(torch.from_numpy(y), cfg).numpy()
    assert ours.shape == (97, 64)
    np.testing.assert_allclose(ours, librosa_logmel(y, cfg).T, atol=2e-3, rtol=1e-4)


def test_batched_equals_clip_by_clip():
    cfg = FeatureConfig()
    waves = torch.from_numpy(np.stack([signal(s) for s in range(5)]))
    batched = mfcc(waves, cfg)
    single = torch.stack([mfcc(w[None], cfg)[0] for w in waves])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("block", [1, 160, 777, 4000])
def test_streaming_frames_equal_whole_signal(block):
    cfg = FeatureConfig()
    y = torch.from_numpy(signal(3, 9000))
    s = StreamingFrames(cfg)
    got = torch.cat([s.push(y[i:i + block]) for i in range(0, len(y), block)])
    whole = features(y, cfg)
    assert got.shape == whole.shape == (cfg.num_frames(9000), 40)
    torch.testing.assert_close(got, whole, atol=1e-4, rtol=1e-5)


def test_digital_silence_is_finite():
    out = mfcc(torch.zeros(2, 16000))
    assert torch.isfinite(out).all()


def test_time_shift_and_mix_noise():
    x = torch.arange(1.0, 11.0)
    assert time_shift(x, 3).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert time_shift(x, -2).tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 0, 0]
    g = torch.Generator().manual_seed(0)
    s, n = torch.randn(2, 16000, generator=g), torch.randn(2, 16000, generator=g) * 5
    mixed = mix_noise(s, n, torch.tensor([10.0, 0.0]))
    snr = 20 * torch.log10(rms(s) / rms(mixed - s))
    torch.testing.assert_close(snr, torch.tensor([10.0, 0.0]), atol=1e-3, rtol=0)


def test_speed_perturb_keeps_length_and_scales_pitch():
    from encoders.audio import speed_perturb

    y = tone = (0.3 * np.sin(2 * np.pi * 500 * np.arange(16000) / 16000)).astype(np.float32)
    assert speed_perturb(y, 1.0) is y
    for f in (0.9, 1.1):
        z = speed_perturb(y, f)
        assert z.shape == (16000,)
        seg = z[4000:12000]
        peak = np.argmax(np.abs(np.fft.rfft(seg * np.hanning(len(seg))))) * 16000 / len(seg)
        assert abs(peak - 500 * f) < 5


def test_spec_augment_masks_exactly_what_is_asked():
    f = torch.ones(2, 20, 8)
    tm = torch.tensor([[[0, 3]], [[5, 0]]])  # item 0: last 3 frames; item 1: nothing
    fm = torch.tensor([[[2, 2]], [[0, 0]]])
    out = spec_augment(f, tm, fm)
    assert (out[0, 17:] == 0).all() and (out[0, :17, 2:4] == 0).all() and out[0, :17, [0, 1, 4, 5, 6, 7]].eq(1).all()
    assert out[1].eq(1).all()


def test_spec_masks_seeded():
    cfg = AugmentConfig()
    a = sample_spec_masks(np.random.default_rng([1, 2, 3]), 97, 40, cfg)
    b = sample_spec_masks(np.random.default_rng([1, 2, 3]), 97, 40, cfg)
    c = sample_spec_masks(np.random.default_rng([1, 2, 4]), 97, 40, cfg)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert (a[0][:, 1] <= cfg.time_mask_max).all() and (a[1][:, 0] + a[1][:, 1] <= 40).all()


def test_configs_round_trip():
    from pipelines.kws.stream import DetectConfig
    from pipelines.kws.synth import SynthConfig
    from pipelines.kws.train import KWSConfig

    for c in (FeatureConfig(kind="logmel", n_mels=64), AugmentConfig(snr_db=(3.0, 9.0)), AugmentConfig.off(),
              DetectConfig(threshold=0.5), SynthConfig(words=("yes",), flite_takes=2),
              KWSConfig(words=("a", "b"), augment=AugmentConfig.off(), epochs=3)):
        assert type(c).from_dict(c.to_dict()) == c
        with pytest.raises(dataclasses.FrozenInstanceError):
            c.seed = 1 if hasattr(c, "seed") else None
            c.kind = "x"
    with pytest.raises(ValueError):
        FeatureConfig(kind="cqt")
