"""Issue #13 §4: the channel augmentation made cheap (encoders.audio's ``*_rows`` kernels, KWSTrainSet's
``__getitems__``) does what the plain versions did.  The plain versions are kept here as the reference.

Tolerances: each effect equals its plain version to 2e-6 of the signal's peak (measured: <= 3.2e-7; float32
FFTs instead of float64) and consumes the same random draws; mu-law is equal to the bit.  A whole item equals
the plain item to 1e-5 of its peak, except that a telephone-bound item whose room or EQ ran in float32 may see
the 8-bit codec round a sample that sat within float noise of a decision boundary to the neighbouring code:
one code step (up to ~4 % of the peak near full scale, much less below), spread by the 8 kHz -> 16 kHz filter
over ~20 samples; such items keep their level (RMS) to 1e-3.
"""
from dataclasses import replace
from math import gcd

import numpy as np
import pytest
import torch

from encoders.audio import (AugmentConfig, eq_draw, eq_rows, hard_clip, mu_law, random_eq, reverb_rows, reverberate,
                            room_impulse, telephone, telephone_rows)
from encoders.io import SkipCounter
from encoders.io.audio import write_wav
from pipelines.kws.data import CLIP, PCM, SR, KWSTrainSet, build_split, make_labels, noise_bank, scan_dataset


# --- the plain versions (as they were before issue #13 §4) -----------------------------------------------
def plain_reverberate(wave, rng, rt60, sr=16000):
    from scipy.signal import fftconvolve

    n = max(int(min(rt60, 1.0) * sr), 16)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    delay = int(rng.uniform(0.002, 0.010) * sr)
    tail[:delay] = 0.0
    ir = tail * 10 ** (rng.uniform(-6, 3) / 20) / max(float(np.sqrt(np.sum(tail ** 2))), 1e-8)
    ir[0] = 1.0
    out = fftconvolve(wave, ir)[: len(wave)]
    return (out * (np.sqrt(np.mean(wave ** 2)) / max(float(np.sqrt(np.mean(out ** 2))), 1e-8))).astype(np.float32)


def plain_random_eq(wave, rng, max_db, sr=16000):
    spec = np.fft.rfft(wave)
    f = np.fft.rfftfreq(len(wave), 1 / sr)
    pts = np.geomspace(60.0, sr / 2, 8)
    db = rng.uniform(-max_db, max_db, len(pts)) + rng.uniform(-1, 1) * max_db * np.linspace(-1, 1, len(pts))
    gain = 10 ** (np.interp(np.log(np.maximum(f, 1.0)), np.log(pts), db) / 20)
    out = np.fft.irfft(spec * gain, n=len(wave))
    return (out * (np.sqrt(np.mean(wave ** 2)) / max(float(np.sqrt(np.mean(out ** 2))), 1e-8))).astype(np.float32)


def plain_mu_law(wave, bits=8):
    mu = 2 ** bits - 1
    x = np.clip(wave, -1, 1)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def plain_telephone(wave, sr=16000, band=(300.0, 3400.0)):
    from scipy.signal import resample_poly

    x = np.asarray(wave, np.float64)
    if band is not None:
        spec = np.fft.rfft(x)
        f = np.fft.rfftfreq(len(x), 1 / sr)
        lo, hi = band
        gain = np.clip((f - lo * 0.7) / (lo * 0.3), 0, 1) * np.clip((hi * 1.15 - f) / (hi * 0.15), 0, 1)
        x = np.fft.irfft(spec * gain, n=len(x))
    peak = max(float(np.abs(x).max()), 1e-8)
    g = gcd(8000, sr)
    narrow = resample_poly(x / peak * 0.5, 8000 // g, sr // g)
    back = resample_poly(plain_mu_law(narrow), sr // g, 8000 // g)[: len(x)]
    back = np.pad(back, (0, len(x) - len(back)))
    return (back * peak / 0.5).astype(np.float32)


def plain_channel(ds, rng, wave, clip):
    """KWSTrainSet's channel augmentation as it was: every effect applied in turn on the item, plain versions."""
    a = ds.aug
    if a.babble_prob and rng.random() < a.babble_prob:
        s = float(np.sqrt(np.mean(clip ** 2)))
        for _ in range(int(rng.integers(1, 4))):
            other = ds.split.waves[int(rng.integers(len(ds.split.waves)))].numpy().astype(np.float32) / PCM
            other = np.roll(other, int(rng.integers(-SR // 2, SR // 2)))
            o = max(float(np.sqrt(np.mean(other ** 2))), 1e-8)
            snr = rng.uniform(*a.babble_snr_db)
            wave[-CLIP:] += other * (s / (o * 10 ** (snr / 20)))
    if a.reverb_prob and rng.random() < a.reverb_prob:
        wave = plain_reverberate(wave, rng, float(rng.uniform(*a.rt60)))
    if a.eq_prob and rng.random() < a.eq_prob:
        wave = plain_random_eq(wave, rng, a.eq_db)
    if a.phone_prob and rng.random() < a.phone_prob:
        wave = plain_telephone(wave, band=(float(rng.uniform(200, 400)), float(rng.uniform(3000, 3600))))
    if a.clip_prob and rng.random() < a.clip_prob:
        wave = hard_clip(wave, float(rng.uniform(0.3, 0.8)))
    return np.clip(wave, -4.0, 4.0)


# --- inputs ---------------------------------------------------------------------------------------------
def speechlike(n, seed):
    """Seeded noise bursts under a decaying envelope with a quiet stretch (peaks and near-silence both)."""
    g = np.random.default_rng(seed)
    x = g.standard_normal(n) * np.exp(-np.linspace(0, 3, n)) * 0.3
    x[n // 3: n // 3 + n // 10] *= 1e-3
    return x.astype(np.float32)


def close(got, want, rel=2e-6):
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= rel * np.abs(want).max(), float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("n", [24000, 16000, 12345])
def test_effects_equal_their_plain_versions_and_draw_the_same(n):
    for seed in range(4):
        x = speechlike(n, seed)
        for rt60 in (0.15, 0.55, 1.3):
            r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
            close(reverberate(x, r1, rt60), plain_reverberate(x, r2, rt60))
            assert r1.random() == r2.random()  # the same draws consumed: what follows is unchanged
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        close(random_eq(x, r1, 10.0), plain_random_eq(x, r2, 10.0))
        assert r1.random() == r2.random()
        for band in ((300.0, 3400.0), (213.0, 3577.0), None):
            close(telephone(x, band=band), plain_telephone(x, band=band))
        close(telephone(x, sr=22050), plain_telephone(x, sr=22050))  # another rate: resample_poly still


def test_mu_law_is_the_same_to_the_bit():
    x = np.concatenate([np.linspace(-1.2, 1.2, 20001), speechlike(5000, 1) * 3])
    for dtype in (np.float64, np.float32):
        got, want = mu_law(x.astype(dtype)), plain_mu_law(x.astype(dtype))
        assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)


def test_row_kernels_give_each_row_what_it_gets_alone():
    """A clip must not depend on its batch: each row of a kernel call equals, bit for bit, the call on that
    row alone (the 1-D functions), whatever the rows beside it."""
    x = np.stack([speechlike(24000, s) for s in range(7)])
    irs = [room_impulse(np.random.default_rng(s), 0.15 + 0.1 * s) for s in range(7)]  # several FFT sizes
    dbs = [eq_draw(np.random.default_rng(s), 10.0) for s in range(7)]
    bands = [(200.0 + 30 * s, 3000.0 + 80 * s) for s in range(7)]
    rev, eq, tel = reverb_rows(x, irs), eq_rows(x, dbs), telephone_rows(x, bands)
    for b in range(7):
        assert np.array_equal(rev[b], reverb_rows(x[b:b + 1], irs[b:b + 1])[0])
        assert np.array_equal(eq[b], eq_rows(x[b:b + 1], dbs[b:b + 1])[0])
        assert np.array_equal(tel[b], telephone(x[b], band=bands[b]))
    assert np.array_equal(reverb_rows(x[[3, 0]], [irs[3], irs[0]])[0], rev[3])


@pytest.fixture(scope="module")
def robust_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("kws-aug") / "sc"
    g = np.random.default_rng(0)
    for w, f in (("yes", 300), ("no", 500), ("cat", 700)):
        for spk in ("aaa", "bbb", "ccc", "ddd"):
            t = np.arange(16000) / 16000
            tone = 0.3 * np.sin(2 * np.pi * f * t * (1 + 0.2 * t)) * np.hanning(16000) + 0.01 * g.standard_normal(16000)
            write_wav(root / w / f"{spk}_nohash_0.wav", tone.astype(np.float32))
    write_wav(root / "_background_noise_" / "white.wav", g.standard_normal(40000) * 0.1)
    labels = make_labels(["yes", "no"])
    tr = build_split(scan_dataset(root), None, labels, SkipCounter(), progress=False)
    # every channel effect likely, so that a few items cover each and their combinations
    aug = replace(AugmentConfig.robust(), reverb_prob=0.6, eq_prob=0.6, phone_prob=0.5, clip_prob=0.3, babble_prob=0.4)
    return KWSTrainSet(tr, noise_bank(root), labels, aug, seed=11)


def plain_item(ds, i):
    """The item as __getitem__ made it before: the same cheap part (_draw's random stream is shared up to the
    channel), then the plain channel effects applied in turn."""
    saved = ds._channel  # _draw with its channel part swapped for the plain one (same random stream)
    out = {}

    def channel(rng_, wave, dry):
        out["wave"] = plain_channel(ds, rng_, wave, dry)
        return {}

    ds._channel = channel
    try:
        wave, _, label, tm, fm, context, warp = ds._draw(i)
    finally:
        ds._channel = saved
    return out.get("wave", wave), label, tm, fm, context, warp


def test_items_equal_the_plain_items(robust_set):
    ds = robust_set
    flips, phone_items = 0, 0
    for epoch in (0, 3):
        ds.set_epoch(epoch)
        idx = list(range(len(ds)))
        got = ds.__getitems__(idx)
        for i, g in zip(idx, got):
            w, label, tm, fm, context, warp = plain_item(ds, i)
            assert g[1] == label and torch.equal(g[2], tm) and torch.equal(g[3], fm)
            assert g[4] == context and g[5] == warp
            d = np.abs(g[0].numpy() - w)
            peak = max(float(np.abs(w).max()), 1e-6)
            effects = ds._draw(i)[1]
            if "phone" in effects and ("reverb" in effects or "eq" in effects) and d.max() > 1e-5 * peak:
                flips += 1  # a code step at a decision boundary (see the module docstring)
                assert d.max() <= 0.05 * peak and (d > 1e-5 * peak).mean() <= 0.1
                rms_got, rms_want = float(np.sqrt(np.mean(g[0].numpy() ** 2))), float(np.sqrt(np.mean(w ** 2)))
                assert abs(rms_got - rms_want) <= 1e-3 * rms_want
            else:
                assert d.max() <= 1e-5 * peak, (i, sorted(effects), float(d.max() / peak))
            phone_items += "phone" in effects
    assert phone_items >= 5  # the comparison covered the telephone
    assert flips <= phone_items // 2


def test_items_do_not_depend_on_their_batch_and_are_seeded(robust_set):
    ds = robust_set
    ds.set_epoch(1)
    idx = list(range(len(ds)))
    alone = [ds[i] for i in idx]
    mixed = ds.__getitems__(idx[::-1])[::-1]  # other neighbours, other order
    again = KWSTrainSet(ds.split, ds.bank, ds.labels, ds.aug, seed=ds.seed)
    again.set_epoch(1)
    for a, b, c in zip(alone, mixed, again.__getitems__(idx)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) and a[1] == b[1] == c[1]
    ds.set_epoch(2)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(alone, ds.__getitems__(idx)))
