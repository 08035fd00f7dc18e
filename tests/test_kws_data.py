"""Dataset layout reader, task labels, and seeded augmentation."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from encoders.audio import AugmentConfig
from encoders.io import SkipCounter
from encoders.io.audio import write_wav
from encoders.io import DecodeError
from pipelines.kws.data import (CLIP, PREFIX, KWSTrainSet, build_split, collate, eval_set, label_of, load_clip,
                                make_labels, noise_bank, scan_dataset, to_float, which_set)


def tone(f, n=16000, amp=0.3):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / 16000)).astype(np.float32)


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "sc"
    for w, f in (("yes", 300), ("no", 500), ("cat", 700), ("dog", 900)):
        for spk in ("aaa", "bbb", "ccc"):
            write_wav(root / w / f"{spk}_nohash_0.wav", tone(f))
    write_wav(root / "_background_noise_" / "white.wav", np.random.default_rng(0).standard_normal(40000) * 0.1)
    (root / "validation_list.txt").write_text("yes/bbb_nohash_0.wav\nno/bbb_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/ccc_nohash_0.wav\ncat/ccc_nohash_0.wav\n")
    (root / "README.txt").write_text("not audio, not a folder: ignored")
    return root


def test_reader_follows_lists(layout):
    idx = scan_dataset(layout)
    assert idx.has_lists and len(idx.items) == 12 and len(idx.noise_files) == 1
    split = {(it.word, it.path.name): it.split for it in idx.items}
    assert split[("yes", "bbb_nohash_0.wav")] == "validation"
    assert split[("cat", "ccc_nohash_0.wav")] == "testing"
    assert split[("dog", "ccc_nohash_0.wav")] == "training"  # not listed -> training
    assert all(it.word != "_background_noise_" for it in idx.items)


def test_reader_without_lists_splits_by_speaker(layout):
    (layout / "validation_list.txt").unlink()
    (layout / "testing_list.txt").unlink()
    idx = scan_dataset(layout)
    assert not idx.has_lists
    for spk in ("aaa", "bbb", "ccc"):  # a speaker's clips all land in one split
        assert len({it.split for it in idx.items if it.path.name.startswith(spk)}) == 1
    assert which_set("yes/x_nohash_0.wav", 10, 10) == which_set("no/x_nohash_5.wav", 10, 10)


def test_labels_and_unknown_mapping():
    labels = make_labels(["yes", "no"])
    assert labels == ["_silence_", "_unknown_", "yes", "no"]
    assert label_of("no", labels) == 3 and label_of("cat", labels) == 1
    with pytest.raises(ValueError):
        make_labels(["yes", "yes"])


def test_build_split_counts_and_eval_set(layout):
    labels = make_labels(["yes", "no"])
    idx = scan_dataset(layout)
    sk = SkipCounter()
    tr = build_split(idx, "training", labels, sk, progress=False)
    # training: the 12 clips less the 4 listed; cat and dog are unknown words
    assert len(tr.waves) == 8 and int(tr.is_unknown.sum()) == 5 and len(sk) == 0
    assert tr.n_silence == 1 and tr.n_unknown == 1  # ceil(10 % of 3 keywords)
    w, y = eval_set(tr, noise_bank(layout), labels, seed=0)
    assert len(y) == 3 + 1 + 1 and (y == 0).sum() == 1 and (y == 1).sum() == 1
    w2, y2 = eval_set(tr, noise_bank(layout), labels, seed=0)
    assert torch.equal(w, w2) and torch.equal(y, y2)


def test_augmentation_is_seeded_and_optional(layout):
    labels = make_labels(["yes", "no"])
    idx = scan_dataset(layout)
    tr = build_split(idx, "training", labels, SkipCounter(), progress=False)
    bank = noise_bank(layout)
    ds = KWSTrainSet(tr, bank, labels, AugmentConfig(), seed=3)
    a = [ds[i] for i in range(len(ds))]
    b = [ds[i] for i in range(len(ds))]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[2], y[2]) for x, y in zip(a, b))
    ds.set_epoch(1)
    c = [ds[i] for i in range(len(ds))]
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    other_seed = KWSTrainSet(tr, bank, labels, AugmentConfig(), seed=4)
    assert not torch.equal(other_seed[0][0], a[0][0])
    # all augmentation off: the last second is the clip itself
    clean = KWSTrainSet(tr, [], labels, AugmentConfig.off(), seed=3)
    for i in range(len(clean.kw)):
        wave, label, tm, fm, _, warp = clean[i]
        assert warp == 1.0
        assert wave.shape == (PREFIX + CLIP,)
        assert torch.equal(wave[-CLIP:], to_float(tr.waves[clean.kw[i]])) and label == int(tr.labels[clean.kw[i]])
        assert (tm[:, 1] == 0).all() and (fm[:, 1] == 0).all()
    silence = clean[len(clean) - 1]
    assert silence[1] == 0
    batch = collate([a[0], a[1]])
    assert batch[0].shape[1] == CLIP + a[0][4] and batch[1].shape == (2,)


def test_trim_and_centre():
    from pipelines.kws.synth import trim_and_centre

    x = np.zeros(20000, np.float32)
    x[1000:5000] = 0.5
    y = trim_and_centre(x)
    nz = np.flatnonzero(y)
    assert len(y) == 16000 and abs((nz[0] + nz[-1]) / 2 - 8000) < 5


def test_reading_a_dataset_does_not_load_the_synthesiser():
    code = ("import sys, pipelines.kws.data, pipelines.kws, pipelines; "
            "print('pipelines.kws.synth' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_list_entries_with_spaces_are_kept_whole(layout):
    write_wav(layout / "yes" / "my voice_nohash_0.wav", tone(300))
    write_wav(layout / "no" / "trailing _nohash_0.wav", tone(500))
    (layout / "testing_list.txt").write_text("yes/my voice_nohash_0.wav\r\nno/trailing _nohash_0.wav\n"
                                             "yes/ccc_nohash_0.wav  \n")
    idx = scan_dataset(layout)
    split = {(it.word, it.path.name): it.split for it in idx.items}
    assert split[("yes", "my voice_nohash_0.wav")] == "testing"
    assert split[("no", "trailing _nohash_0.wav")] == "testing"
    assert split[("yes", "ccc_nohash_0.wav")] == "testing"  # stray blanks after a name without any
    assert idx.list_missing == 0 and idx.list_outside == 0


def test_list_entries_outside_the_root_are_skipped_and_counted(layout, capsys):
    outside = layout.parent / "elsewhere" / "yes"
    write_wav(outside / "zzz_nohash_0.wav", tone(300))
    (layout / "testing_list.txt").write_text(f"../elsewhere/yes/zzz_nohash_0.wav\n{outside / 'zzz_nohash_0.wav'}\n"
                                             "yes/ccc_nohash_0.wav\nyes/../../elsewhere/yes/zzz_nohash_0.wav\n")
    idx = scan_dataset(layout)
    assert idx.list_outside == 3
    assert all(layout in it.path.parents for it in idx.items) and len(idx.items) == 12
    assert [it.path.name for it in idx.split("testing")] == ["ccc_nohash_0.wav"]
    err = capsys.readouterr().err
    assert "skipped 3 entries pointing outside" in err and "testing_list.txt" in err


def test_binary_list_file_is_one_line_naming_it(layout):
    (layout / "validation_list.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DecodeError) as e:
        scan_dataset(layout)
    assert "validation_list.txt" in str(e.value) and "\n" not in str(e.value)


def test_silence_is_judged_by_energy_not_peak(tmp_path):
    write_wav(tmp_path / "dc.wav", np.full(16000, 0.999, np.float32))  # full scale, no signal
    hum = np.full(16000, -0.5, np.float32) + np.float32(2e-5) * np.sign(np.sin(np.arange(16000)))
    write_wav(tmp_path / "offset.wav", hum)  # a DC offset and a -94 dBFS ripple
    for name in ("dc.wav", "offset.wav"):
        with pytest.raises(DecodeError, match="energy") as e:
            load_clip(tmp_path / name)
        assert name in str(e.value)
    write_wav(tmp_path / "quiet.wav", tone(440, amp=0.003))  # quiet speech level (-53 dBFS RMS) is kept
    assert np.abs(load_clip(tmp_path / "quiet.wav")).max() > 0.002


def _reference_item(ds, i):
    """KWSTrainSet.__getitem__ written the plain way (speed_perturb, time_shift, concatenate): the fast
    in-place version must give the same items."""
    from encoders.audio import sample_spec_masks, speed_perturb, time_shift
    from pipelines.kws.data import PCM, SR, noise_segment, silence_clip
    from test_kws_augment_speed import plain_channel

    def clip_of(rng, j):
        w = ds.split.waves[j].numpy().astype(np.float32) / PCM
        w = speed_perturb(w, float(rng.uniform(*ds.aug.speed)))
        return w * 10 ** (rng.uniform(*ds.aug.gain_db) / 20)

    rng = np.random.default_rng([ds.seed, ds.epoch, i])
    a = ds.aug
    src = ds.kw[i] if i < len(ds.kw) else (ds.unk[ds.unk_order[i - len(ds.kw)]] if i < len(ds.kw) + ds.n_unknown
                                           else None)
    if src is None:
        clip, label = np.zeros(CLIP, np.float32), ds.silence
    else:
        clip, label = clip_of(rng, src), int(ds.split.labels[src])
        m = int(SR * a.shift_ms / 1000)
        clip = time_shift(torch.from_numpy(clip), int(rng.integers(-m, m + 1))).numpy()
    prefix = np.zeros(PREFIX, np.float32)
    if rng.random() < ds.context_prob:
        prefix = clip_of(rng, int(rng.integers(len(ds.split.waves))))[-PREFIX:]
    wave = np.concatenate([prefix, clip]).astype(np.float32)
    if src is None:
        wave = wave + silence_clip(rng, ds.bank, len(wave))
    elif rng.random() < a.noise_prob:
        noise = noise_segment(rng, ds.bank, len(wave))
        snr = rng.uniform(*a.snr_db)
        s = np.sqrt(np.mean(clip ** 2))
        n = max(float(np.sqrt(np.mean(noise[-CLIP:] ** 2))), 1e-8)
        wave = wave + noise * (s / (n * 10 ** (snr / 20)))
    if src is not None:
        wave = plain_channel(ds, rng, wave, clip)  # the channel effects as they were (issue #13 §4 batches them)
    tm, fm = sample_spec_masks(rng, ds.n_frames, ds.n_features, a)
    return wave.astype(np.float32), label, tm, fm


@pytest.mark.parametrize("recipe", ["basic", "robust"])
def test_fast_item_equals_the_plain_reference(layout, recipe):
    labels = make_labels(["yes", "no"])
    tr = build_split(scan_dataset(layout), "training", labels, SkipCounter(), progress=False)
    ds = KWSTrainSet(tr, noise_bank(layout), labels, getattr(AugmentConfig, recipe)(), seed=5)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            got, want = ds[i], _reference_item(ds, i)
            assert got[1] == want[1] and torch.equal(got[2], want[2]) and torch.equal(got[3], want[3])
            np.testing.assert_allclose(got[0].numpy(), want[0], atol=2e-3 if recipe == "robust" else 1e-5)
