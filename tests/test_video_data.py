"""Renderer, data set readers (ours and UCF101-style), caching, bad files, augmentation, vocabulary."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from encoders.io.video import write_video
from encoders.video import VideoFrontEndConfig
from pipelines.video.data import (CaptionDataset, ClassifyDataset, Vocab, collate_captions, load_clipset,
                                  read_captions, read_classes, read_split, tokenize)
from pipelines.video.synth import (ACTIONS, COLOURS, SHAPES, caption_for, random_spec, render, render_long_video,
                                   synthesize)

FE = VideoFrontEndConfig(num_frames=4, size=(16, 16))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    synthesize(root, (2, 1, 1), seed=3, codecs=("mp4v", "mjpg"), progress=False)
    return root


def test_captions_follow_the_fixed_vocabulary():
    assert caption_for("red", "circle", "move_left") == "a red circle moves left"
    assert caption_for("white", "triangle", "grow") == "a white triangle grows"
    assert caption_for("blue", "square", "shrink") == "a blue square shrinks"
    assert COLOURS["yellow"] == (230, 220, 40) and SHAPES == ("circle", "square", "triangle")


@pytest.mark.parametrize("action", ACTIONS)
def test_render_motion_and_background(action):
    rng = np.random.default_rng(1)
    spec = random_spec(rng, action, seed=11)
    spec = type(spec)(**{**spec.__dict__, "background": "plain", "frames": 16})
    v = render(spec)
    assert v.shape == (16, spec.height, spec.width, 3) and 12 <= random_spec(rng, action, 1).frames <= 40
    col = np.array(COLOURS[spec.colour])
    obj = [np.linalg.norm(f.astype(float) - col, axis=-1) < 40 for f in v]
    # the background never has the object's colour: the pixels of that colour are the object
    corner = v[0, 0, 0].astype(float)
    assert np.linalg.norm(corner - col) >= 120
    ys0, xs0 = np.nonzero(obj[0])
    ys1, xs1 = np.nonzero(obj[-1])
    dx, dy, grow = xs1.mean() - xs0.mean(), ys1.mean() - ys0.mean(), len(ys1) / len(ys0)
    expect = {"move_left": dx < -3, "move_right": dx > 3, "move_up": dy < -3, "move_down": dy > 3,
              "grow": grow > 2, "shrink": grow < 0.5}
    assert expect[action], (dx, dy, grow)


def test_synth_layout_and_readers(tiny):
    assert read_classes(tiny) == list(ACTIONS)
    train, val, test = (read_split(tiny, s) for s in ("train", "val", "test"))
    assert len(train) == 12 and len(val) == 6 and len(test) == 6
    assert all(p.split("/")[0] in ACTIONS for p in train)
    assert {p.rsplit(".", 1)[1] for p in train} == {"mp4", "avi"}
    caps = read_captions(tiny / "captions.csv")
    assert set(caps) == set(train + val + test)
    for p in train:
        words = caps[p][0].split()
        assert words[0] == "a" and words[1] in COLOURS and words[2] in SHAPES
    assert len(read_split(tiny, None)) == 24


def test_same_seed_same_clips_new_seed_fresh(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d, s in ((a, 5), (b, 5), (c, 6)):
        synthesize(d, (0, 0, 1), seed=s, codecs=("mjpg",), progress=False)
    ma, mb, mc = ((d / "meta.csv").read_text().split("\n", 1)[1] for d in (a, b, c))
    assert ma == mb and ma != mc


def test_ucf101_style_folder_and_multiple_references(tmp_path):
    frames = np.full((5, 24, 32, 3), 90, np.uint8)
    for rel in ["Jump/v_Jump_g01_c01.avi", "Jump/v_Jump_g02_c01.avi", "Run/v_Run_g01_c01.avi"]:
        write_video(tmp_path / rel, frames, codec="mjpg")
    (tmp_path / "ucfTrainTestlist").mkdir()
    (tmp_path / "ucfTrainTestlist/classInd.txt").write_text("1 Run\n2 Jump\n")
    (tmp_path / "ucfTrainTestlist/trainlist01.txt").write_text("Jump/v_Jump_g01_c01.avi 2\nRun/v_Run_g01_c01.avi 1\n")
    (tmp_path / "ucfTrainTestlist/testlist01.txt").write_text("Jump/v_Jump_g02_c01.avi\n")
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption"])
        w.writerows([("Jump/v_Jump_g01_c01.avi", "A man jumps."), ("Jump/v_Jump_g01_c01.avi", "someone jumping")])
    assert read_classes(tmp_path) == ["Run", "Jump"]
    assert read_split(tmp_path, "train") == ["Jump/v_Jump_g01_c01.avi", "Run/v_Run_g01_c01.avi"]
    assert read_split(tmp_path, "val") == []
    cs = load_clipset(tmp_path, "train", FE, progress=False)
    assert cs.labels.tolist() == [1, 0] and cs.frames.shape == (2, 4, 16, 16, 3)
    assert cs.captions[0] == ["A man jumps.", "someone jumping"] and cs.captions[1] == []
    assert tokenize("A man jumps.") == ["a", "man", "jumps"]


def test_hash_split_without_lists(tmp_path):
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    for k in range(30):
        write_video(tmp_path / f"c{k % 2}/clip{k}.avi", frames, codec="mjpg")
    parts = [read_split(tmp_path, s) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == 30 and len(set().union(*map(set, parts))) == 30
    assert len(parts[0]) > len(parts[1])


def test_bad_files_are_skipped_counted_and_cache_reused(tmp_path, capsys):
    synthesize(tmp_path, (1, 0, 0), seed=0, codecs=("mjpg",), progress=False)
    bad = tmp_path / "grow" / "broken.avi"
    bad.write_bytes(b"not a video at all")
    (tmp_path / "train.txt").write_text((tmp_path / "train.txt").read_text() + "grow/broken.avi\n")
    cs = load_clipset(tmp_path, "train", FE, progress=False)
    assert len(cs) == 6 and len(cs.skipped) == 1 and "broken.avi" in cs.skipped[0]
    assert "broken.avi" in capsys.readouterr().err
    assert list((tmp_path / ".cache").glob("train-*.pt"))
    again = load_clipset(tmp_path, "train", FE, progress=False)
    assert torch.equal(again.frames, cs.frames) and again.skipped == cs.skipped


def test_augmentation_keeps_labels_true(tiny):
    cs = load_clipset(tiny, "train", FE, progress=False)
    plain = ClassifyDataset(cs, FE, augment=False)
    aug = ClassifyDataset(cs, FE, augment=True, seed=0)
    swap = {"move_left": "move_right", "move_right": "move_left", "move_up": "move_down", "move_down": "move_up",
            "grow": "shrink", "shrink": "grow"}
    changed = 0
    for epoch in range(3):
        aug.set_epoch(epoch)
        for i in range(len(aug)):
            x0, y0 = plain[i]
            x1, y1 = aug[i]
            if torch.equal(x0, x1):
                assert y1 == y0
                continue
            changed += 1
            name0, name1 = cs.classes[int(y0)], cs.classes[int(y1)]
            if torch.equal(x1, x0.flip(-1)):  # left-right flip only
                assert name1 == {"move_left": "move_right", "move_right": "move_left"}.get(name0, name0)
            elif torch.equal(x1, x0.flip(0)):  # backwards only
                assert name1 == swap[name0]
            else:
                assert torch.equal(x1, x0.flip(0).flip(-1))
    assert changed > 0
    aug.set_epoch(1)
    assert all(torch.equal(aug[i][0], aug[i][0]) for i in range(3))  # seeded: same item, same result


def test_vocab_and_caption_batches(tiny):
    cs = load_clipset(tiny, "train", FE, progress=False)
    vocab = Vocab.build(cs.captions)
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert Vocab.from_list(vocab.to_list()).itos == vocab.itos
    ids = vocab.encode(cs.captions[0][0])
    assert vocab.decode(ids) == cs.captions[0][0]
    ds = CaptionDataset(cs, vocab, FE)
    frames, tgt_in, tgt_out = collate_captions([ds[0], ds[1]])
    assert frames.shape == (2, 4, 3, 16, 16)
    assert (tgt_in[:, 0] == vocab.bos).all()
    n = len(ds[0][1])
    assert tgt_out[0, n] == vocab.eos and torch.equal(tgt_in[0, 1:n + 1], tgt_out[0, :n])


def test_long_video_truth(tmp_path):
    truth = render_long_video(tmp_path / "long.avi", segments=3, seconds=1.0, fps=8, size=(48, 64), codec="mjpg")
    assert [t["start"] for t in truth] == [0.0, 1.0, 2.0] and all(t["action"] in ACTIONS for t in truth)


def test_cache_is_keyed_by_size_and_mtime_of_every_clip(tmp_path):
    synthesize(tmp_path, (1, 0, 0), seed=0, codecs=("mjpg",), progress=False)
    first = load_clipset(tmp_path, "train", FE, progress=False)
    rel = first.paths[0]
    # replace one clip by another (other content, size and mtime): the cache must not serve the old frames
    other = render(random_spec(np.random.default_rng(9), "grow", seed=99))
    write_video(tmp_path / rel, other, codec="mjpg")
    again = load_clipset(tmp_path, "train", FE, progress=False)
    fresh = load_clipset(tmp_path, "train", FE, progress=False, cache=False)
    assert torch.equal(again.frames, fresh.frames) and not torch.equal(again.frames[0], first.frames[0])
    # a deleted clip is not served from the cache either: it is skipped and counted
    (tmp_path / rel).unlink()
    gone = load_clipset(tmp_path, "train", FE, progress=False)
    assert rel not in gone.paths and len(gone.skipped) == 1 and len(gone) == len(first) - 1


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, capsys):
    synthesize(tmp_path, (1, 0, 0), seed=0, codecs=("mjpg",), progress=False)
    good = load_clipset(tmp_path, "train", FE, progress=False)
    (cache_file,) = (tmp_path / ".cache").glob("train-*.pt")
    cache_file.write_bytes(b"\x80\x02garbage that is no torch file")
    capsys.readouterr()
    again = load_clipset(tmp_path, "train", FE, progress=False)
    assert torch.equal(again.frames, good.frames)
    assert "warning" in capsys.readouterr().err
    assert torch.load(cache_file, weights_only=True)["paths"] == good.paths  # rewritten


def test_layout_errors_name_the_file(tmp_path):
    from encoders.io import DecodeError

    synthesize(tmp_path, (1, 0, 0), seed=0, codecs=("mjpg",), progress=False)
    (tmp_path / "classes.txt").write_text("1 grow\n2 shrink\n3 grow\n")
    with pytest.raises(DecodeError, match="classes.txt.*duplicate class names: grow"):
        read_classes(tmp_path)
    (tmp_path / "classes.txt").write_text("".join(f"{a}\n" for a in ACTIONS))
    assert read_classes(tmp_path) == list(ACTIONS)
    (tmp_path / "val.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DecodeError, match="val.txt.*binary"):
        read_split(tmp_path, "val")
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        f.write("path,caption\n")
        f.write(f"grow/x.avi,{'word ' * 100_000}\n")  # a 500 KB field
    with pytest.raises(DecodeError, match="captions.csv"):
        read_captions(tmp_path / "captions.csv")


def test_split_lists_keep_spaces_and_skip_entries_outside_the_root(tmp_path, capsys):
    frames = np.full((4, 16, 16, 3), 90, np.uint8)
    write_video(tmp_path / "Jump" / "my clip 1.avi", frames, codec="mjpg")
    write_video(tmp_path / "Jump" / "other.avi", frames, codec="mjpg")
    write_video(tmp_path.parent / "outside.avi", frames, codec="mjpg")
    (tmp_path / "train.txt").write_text("Jump/my clip 1.avi 1\nJump/other.avi\n../outside.avi\n")
    assert read_split(tmp_path, "train") == ["Jump/my clip 1.avi", "Jump/other.avi"]
    assert "outside" in capsys.readouterr().err
    cs = load_clipset(tmp_path, "train", FE, progress=False)
    assert len(cs) == 2 and not cs.skipped


def test_appearance_augment_keeps_shape_and_range_and_is_seeded():
    import numpy as np

    from pipelines.video.data import appearance_augment

    x = torch.rand(8, 3, 32, 32)
    a = appearance_augment(x, np.random.default_rng(3))
    b = appearance_augment(x, np.random.default_rng(3))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)  # the same seed: the same change
    assert any(not torch.allclose(appearance_augment(x, np.random.default_rng(k)), x) for k in range(4))


def test_unseen_style_renders_other_settings_and_default_rendering_is_unchanged():
    import numpy as np

    from pipelines.video.synth import UNSEEN, random_spec, random_spec_unseen, render

    for k in range(12):
        spec = random_spec_unseen(np.random.default_rng([9, k]), "grow" if k % 2 else "move_left", seed=k)
        assert spec.style == "unseen" and spec.background in UNSEEN["backgrounds"] and spec.fps in UNSEEN["fps"]
        assert not 12 <= spec.frames <= 40  # outside the default range
        v = render(spec)
        assert v.shape == (spec.frames, spec.height, spec.width, 3)
    spec = random_spec(np.random.default_rng([0, 3]), "grow", seed=3)
    assert spec.style == "default"
    # the default renderer draws exactly what it drew before the unseen style existed (digest taken then)
    import hashlib

    assert hashlib.md5(render(spec).tobytes()).hexdigest() == "1a460125c9940e1d8ba0a07f433bff8d"


def test_zoom_augment_is_seeded_and_scales_the_object_not_its_colour():
    import numpy as np

    from pipelines.video.data import zoom_augment
    from pipelines.video.synth import COLOURS, ClipSpec, render

    spec = ClipSpec("move_right", "red", "circle", "plain", 96, 96, 8, 10.0, seed=4)
    x = torch.from_numpy(render(spec)).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
    red = torch.tensor(COLOURS["red"], dtype=x.dtype).view(1, 3, 1, 1) / 255

    def area(v):  # object pixels per frame (the plain background is far from the object colour)
        return float(((v - red).abs().amax(1) < 0.1).sum()) / len(v)

    a = zoom_augment(x, np.random.default_rng(5))
    assert a.shape == x.shape and torch.equal(a, zoom_augment(x, np.random.default_rng(5)))
    assert not torch.equal(a, zoom_augment(x, np.random.default_rng(6)))
    assert torch.allclose(zoom_augment(x, np.random.default_rng(5), (1.0, 1.0)), x, atol=1e-4)
    base = area(x)
    for s in (0.7, 1.3):
        z = zoom_augment(x, np.random.default_rng(7), (s, s))
        assert abs(area(z) / base - s * s) < 0.15 * s * s  # the object's area scales with s^2
        assert area(z) > 0  # still there, still red
    # the slower-action option keeps T frames, each one of the clip's own (zoom 1: unchanged pixels)
    slow = zoom_augment(x, np.random.default_rng(1), (1.0, 1.0), speed_p=1.0)
    assert slow.shape == x.shape and not torch.allclose(slow, x, atol=1e-3)
    assert all(any(torch.allclose(f, g, atol=1e-4) for g in x) for f in slow)


def test_unseen_factors_change_only_what_they_name():
    import hashlib

    import numpy as np

    from pipelines.video.synth import (UNSEEN, UNSEEN_FACTORS, random_spec, random_spec_unseen, render,
                                       unseen_factors)

    assert unseen_factors("default") == frozenset() and unseen_factors("unseen") == set(UNSEEN_FACTORS)
    assert unseen_factors("unseen:size,shade") == {"size", "shade"}
    for bad in ("unseen:", "unseen:colour", "odd"):
        with pytest.raises(ValueError):
            unseen_factors(bad)
    for k in range(6):
        rng = np.random.default_rng([4, k])
        t = random_spec_unseen(rng, "grow", seed=k, style="unseen:timing")
        assert t.background != "blobs" and t.fps in UNSEEN["fps"] and not 12 <= t.frames <= 40
        b = random_spec_unseen(np.random.default_rng([4, k]), "grow", seed=k, style="unseen:background")
        assert b.background == "blobs" and 12 <= b.frames <= 40 and b.fps not in UNSEEN["fps"]
    # a factor drawn inside the renderer (shade, size, speed) changes the clip, not its size or length
    spec = random_spec(np.random.default_rng([0, 3]), "move_left", seed=3)
    d = render(spec)
    shade = render(spec.__class__(**{**spec.__dict__, "style": "unseen:shade"}))
    assert d.shape == shade.shape and not np.array_equal(d, shade)
    # every factor at once draws exactly what the unseen style drew when it was introduced (digest taken then)
    full = random_spec_unseen(np.random.default_rng([9, 1]), "grow", seed=1)
    assert hashlib.md5(render(full).tobytes()).hexdigest() == "45e98e6b9e1f45235022918e2f38b1e1"


def test_caption_speed_augment_changes_frames_not_words_and_is_seeded(tiny):
    fe = VideoFrontEndConfig(num_frames=8, size=(16, 16))
    cs = load_clipset(tiny, "train", fe, progress=False)
    vocab = Vocab.build(cs.captions)
    plain = CaptionDataset(cs, vocab, fe, augment=True, seed=1)
    slow = CaptionDataset(cs, vocab, fe, augment=True, seed=1, speed_p=1.0)
    again = CaptionDataset(cs, vocab, fe, augment=True, seed=1, speed_p=1.0)
    changed = 0
    for k in range(len(plain)):
        (a, ia), (b, ib), (c, _) = plain[k], slow[k], again[k]
        assert torch.equal(ia, ib) and torch.equal(b, c) and b.shape == a.shape  # same words, seeded
        changed += not torch.allclose(a, b)
        # every frame of the slowed clip is one of the clip's own frames (a stretched part of it)
        assert all(any(torch.allclose(f, g) for g in a) for f in b)
    assert changed >= len(plain) // 2
    # cached frame features cannot be stretched: the option is off there
    feats = torch.zeros(len(cs), 8, 5)
    assert CaptionDataset(cs, vocab, fe, augment=True, speed_p=1.0, features=(feats, None)).zoom is None


def test_scale_augment_keeps_the_object_in_frame_scales_it_and_is_seeded():
    import numpy as np

    from pipelines.video.data import moving_box, scale_augment
    from pipelines.video.synth import COLOURS, ClipSpec, render

    red = torch.tensor(COLOURS["red"], dtype=torch.float32).view(1, 3, 1, 1) / 255

    def clip(action, seed):
        spec = ClipSpec(action, "red", "square", "plain", 64, 64, 8, 10.0, seed=seed)
        return torch.from_numpy(render(spec)).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)

    def mask(v):  # object pixels (the plain background is far from the object colour)
        return (v - red).abs().amax(1) < 0.15

    x = clip("move_right", 4)
    t, l, b, r = moving_box(x)
    m = mask(x).any(0)
    rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
    assert t <= rows[0] and b > rows[-1] and l <= cols[0] and r > cols[-1]  # the box holds the object's path
    assert moving_box(x[:1].expand(4, -1, -1, -1)) is None  # a still clip: nothing moves
    a, s = scale_augment(x, np.random.default_rng(5))
    assert a.shape == x.shape and torch.equal(a, scale_augment(x, np.random.default_rng(5))[0])
    assert not torch.equal(a, scale_augment(x, np.random.default_rng(6))[0])
    assert 0.8 - 0.02 <= s <= 1.25 + 0.02
    for action in ("move_right", "move_up", "grow", "shrink"):
        for seed in range(6):
            x = clip(action, seed)
            area = float(mask(x).sum())
            for k in range(4):
                big, s = scale_augment(x, np.random.default_rng([seed, k]), (1.3, 1.3))
                mb = mask(big)
                # the object is never cut: its area grows with s^2 (s lowered where the path would not fit)
                assert abs(float(mb.sum()) / area - s * s) < 0.2 * s * s, (action, seed, s)
                small, s2 = scale_augment(x, np.random.default_rng([seed, k]), (0.75, 0.75))
                assert abs(s2 - 0.75) < 0.02 and abs(float(mask(small).sum()) / area - s2 * s2) < 0.2 * s2 * s2
    # an object that fills the frame's width: zooming in would cut it, so the clip stays as it is
    wide = torch.zeros(4, 3, 32, 32)
    for i in range(4):
        wide[i, :, 10 + i:14 + i, :] = 1.0
    out, s = scale_augment(wide, np.random.default_rng(0), (1.2, 1.2))
    assert s == 1.0 and torch.equal(out, wide)


def test_caption_dataset_scale_augment_changes_frames_not_words(tiny):
    from pipelines.video.data import CaptionDataset, Vocab, load_clipset

    fe = VideoFrontEndConfig(num_frames=4, size=(32, 32))
    cs = load_clipset(tiny, "train", fe, progress=False)
    vocab = Vocab.build(cs.captions)
    plain = CaptionDataset(cs, vocab, fe, augment=True, seed=0)
    scaled = CaptionDataset(cs, vocab, fe, augment=True, seed=0, scale=(0.7, 0.7))
    again = CaptionDataset(cs, vocab, fe, augment=True, seed=0, scale=(0.7, 0.7))
    changed = 0
    for k in range(len(plain)):
        (x0, w0), (x1, w1), (x2, _) = plain[k], scaled[k], again[k]
        assert torch.equal(w0, w1) and torch.equal(x1, x2)
        changed += not torch.allclose(x0, x1, atol=1e-3)
    assert changed == len(plain)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_lower_median_is_the_partition_middle_row(dtype):
    from pipelines.video.data import _sorting_network, lower_median

    rng = np.random.default_rng(0)
    for n in (*range(1, 34), 40):
        a = rng.integers(0, 6 if n % 2 else 255, (n, 3, 5, 4)).astype(dtype)  # few values: ties too
        if dtype == np.float32:
            a += rng.random(a.shape, dtype=np.float32)
        ref = np.partition(a, (n - 1) // 2, axis=0)[(n - 1) // 2]
        got = lower_median(a)
        assert got.dtype == a.dtype and np.array_equal(got, ref), n
        if n <= 32:  # the network sorts every column, not only the middle
            rows = list(a)
            for i, j in _sorting_network(n):
                rows[i], rows[j] = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
            assert np.array_equal(np.stack(rows), np.sort(a, axis=0)), n


def test_uint8_clips_get_the_same_box_and_scale_as_float_ones():
    """The caption data set rescales uint8 clips (faster); the float form is the reference: the same box,
    the same factor, frames within about one level of 255 (the uint8 resize rounds, with fixed-point weights)."""
    from pipelines.video.data import moving_box, scale_augment

    for k in range(12):
        spec = random_spec(np.random.default_rng([5, k]), ACTIONS[k % len(ACTIONS)], seed=k, width=48, height=40,
                           frames=8)
        u = torch.from_numpy(render(spec)).movedim(-1, -3)  # uint8 (T, 3, H, W), channels-last view
        f = u.float() / 255
        assert moving_box(u) == moving_box(f)
        for scale in ((0.7, 0.9), (1.1, 1.4), (0.8, 1.25)):
            (a, sa), (b, sb) = (scale_augment(u, np.random.default_rng([k, 1]), scale),
                                scale_augment(f, np.random.default_rng([k, 1]), scale))
            assert a.dtype == torch.uint8 and a.shape == b.shape == f.shape and sa == sb
            assert (a.float() / 255 - b).abs().max() <= 1.1 / 255


def test_caption_items_equal_the_float_path_and_are_contiguous(tiny):
    """The data set keeps clips uint8 through the speed change and the rescaling, then normalises once:
    items equal the float path (frames in [0, 1] through the same seeded steps) to about one level of 255."""
    from encoders.video import normalize
    from pipelines.video.data import _augment_choice, scale_augment, zoom_augment

    fe = VideoFrontEndConfig(num_frames=6, size=(32, 32))
    cs = load_clipset(tiny, "train", fe, progress=False)
    ds = CaptionDataset(cs, Vocab.build(cs.captions), fe, augment=True, seed=1, speed_p=0.5, scale=(0.8, 1.25))
    ds.set_epoch(2)
    for k in range(len(ds)):
        x, _ = ds[k]
        i = ds.items[k][0]
        flip, rev = _augment_choice(1, 2, k)
        f = cs.frames[i].flip(-2) if flip else cs.frames[i]
        f = (f.flip(0) if rev and ds.reverse is not None else f).movedim(-1, -3).float() / 255
        f = zoom_augment(f, np.random.default_rng([1, 2, k, 2]), (1.0, 1.0), 0.5)
        g = np.random.default_rng([1, 2, k, 3])
        g.random()
        ref = normalize(scale_augment(f, g, (0.8, 1.25))[0], fe)
        assert x.is_contiguous() and x.shape == ref.shape
        assert (x - ref).abs().max() <= 1.1 / 255 / min(fe.std)  # uint8 rounding, fixed-point weights


def test_take_frames_equals_indexing_and_keeps_the_layout():
    from pipelines.video.data import speed_window, take_frames

    u = torch.randint(0, 256, (8, 10, 12, 3), dtype=torch.uint8).movedim(-1, -3)  # channels-last view
    idx = np.array([1, 1, 2, 4, 4, 5, 6, 7])
    for x in (u, u.float(), u.contiguous()):
        y = take_frames(x, idx)
        assert torch.equal(y, x[torch.from_numpy(idx)]) and y.stride() == x[torch.from_numpy(idx)].stride()
    assert take_frames(u, idx).movedim(1, -1).is_contiguous()  # still channels-last
    drawn = [speed_window(8, np.random.default_rng(s), 0.5) for s in range(40)]
    assert any(d is None for d in drawn) and all(d is None or (len(d) == 8 and np.all(np.diff(d) >= 0)) for d in drawn)
    assert speed_window(5, np.random.default_rng(0), 1.0) is None  # too short to slow down


def test_caption_items_with_kept_boxes_equal_boxes_found_afresh(tiny):
    """The caption data set keeps each clip's moving box (per set of frames, as the speed change and playing
    backwards leave it; mirrored under a flip); items over epochs are exactly those with every box found again."""
    from pipelines.video.data import moving_box

    fe = VideoFrontEndConfig(num_frames=6, size=(32, 32))
    cs = load_clipset(tiny, "train", fe, progress=False)
    kept = CaptionDataset(cs, Vocab.build(cs.captions), fe, augment=True, seed=1, speed_p=0.5, scale=(0.8, 1.25))
    fresh = CaptionDataset(cs, Vocab.build(cs.captions), fe, augment=True, seed=1, speed_p=0.5, scale=(0.8, 1.25))
    asked = []

    def afresh(x, key, flip):
        asked.append(key)
        return lambda: moving_box(x)

    fresh._box_of = afresh
    for epoch in range(4):
        kept.set_epoch(epoch)
        fresh.set_epoch(epoch)
        for k in range(len(kept)):
            a, b = kept[k], fresh[k]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), (epoch, k)
    assert asked and 0 < len(kept._boxes) < len(asked)  # boxes were found and some came back


def test_uint8_moving_box_equals_the_signed_reference():
    """The uint8 box (|a - m| as max - min, compared with floor(threshold * 255)) is the int16 one's."""
    from pipelines.video.data import lower_median, moving_box

    rng = np.random.default_rng(3)
    for k in range(30):
        a = rng.integers(0, 256, (int(rng.integers(1, 10)), 3, 9, 11)).astype(np.uint8)
        a[:, :, :, : k % 5] = 7  # still columns
        thr = float(rng.choice([0.0, 0.05, 30 / 255, 0.12, 0.5, 1.0]))
        s = a.astype(np.int16)
        changed = (np.abs(s - lower_median(s)) > thr * 255.0).any(axis=(0, 1))
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        ref = None if len(rows) == 0 else (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
        assert moving_box(torch.from_numpy(a), thr) == ref, (k, thr)


def test_edge_pad_equals_numpy_edge_padding():
    from pipelines.video.data import edge_pad

    rng = np.random.default_rng(4)
    for _ in range(40):
        T, C, H, W = int(rng.integers(1, 5)), 3, int(rng.integers(2, 20)), int(rng.integers(2, 20))
        h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        y = torch.from_numpy(rng.integers(0, 256, (T, h, w, C)).astype(np.uint8)).movedim(-1, 1)  # channels-last
        ref = np.pad(y.numpy(), ((0, 0), (0, 0), (top, H - h - top), (left, W - w - left)), mode="edge")
        got = edge_pad(y, top, left, H, W)
        assert got.is_contiguous() and np.array_equal(got.numpy(), ref), (T, H, W, h, w, top, left)
